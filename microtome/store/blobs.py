"""Content-addressed files: `root/blobs/ab/cdef...` holds the bytes whose sha256 is `abcdef...`.

Every blob is written to `root/tmp/<pid>-<random>.tmp`, made durable and renamed into place, so
a blob under `blobs/` is always complete; a killed writer leaves at most a temp file.
`write_many({sha: bytes})` does that for a batch with one durability pass for all its files
(one `syncfs` of the store's filesystem when the batch is large, else one fsync per file),
so a task's thousands of small blobs do not pay a journal commit each.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from microtome.errors import NotFound
from microtome.store.keys import SHA_RE, check_sha

TEMP_SUFFIX = ".tmp"
STALE_TEMP_S = 3600.0  # a temp file older than this is stale even if its writer's pid is alive
_CHUNK = 1 << 20
SYNCFS_MIN_FILES = 32  # from this many files on, one syncfs beats one fsync per file


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (best effort: not every OS can open a directory)."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _syncfs(path: Path) -> bool:
    """Flush every dirty file of the filesystem holding `path` (Linux `syncfs(2)`, which Python's
    `os` lacks); False where it is unavailable, so the caller fsyncs file by file instead."""
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs  # this process's libc
    except (OSError, AttributeError, TypeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


def _fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's live process; an invalid pid cannot be alive
    return True


class BlobDir:
    """The `blobs/` and `tmp/` folders of one store."""

    def __init__(self, root: Path):
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"

    def path(self, sha: str) -> Path:
        """Where the blob `sha` lives (it may not exist); NotFound unless `sha` is 64 lowercase hex."""
        sha = check_sha(sha)
        return self.blobs / sha[:2] / sha[2:]

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh name in `tmp/` tagged with this pid, so `gc` can tell abandoned files apart."""
        return self.tmp / f"{os.getpid()}-{secrets.token_hex(8)}{suffix}{TEMP_SUFFIX}"

    def write(self, data: bytes, sha: str | None = None) -> str:
        """Store `data` and return its sha256; a blob already present with the same size is kept.

        `sha`, when given, must be the sha256 of `data` (callers that already hashed it)."""
        if sha is None:
            sha = hashlib.sha256(data).hexdigest()
        dest = self.path(sha)
        with suppress(FileNotFoundError):
            if dest.stat().st_size == len(data):
                return sha
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.write_atomic(dest, data)
        return sha

    def write_atomic(self, dest: Path, data: bytes) -> None:
        """Write `data` to `dest` via a temp file: `dest` is either absent, old, or complete."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        tmp = self.temp_path()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(dest.parent)

    def _file(self, sha: str) -> str:
        """`path(sha)` as a string, for shas this process computed (no check, no pathlib: the
        batch paths below run once per file, hundreds of thousands of times in a build)."""
        return f"{self.blobs}{os.sep}{sha[:2]}{os.sep}{sha[2:]}"

    def missing(self, blobs: dict[str, bytes]) -> dict[str, bytes]:
        """The blobs of `{sha: data}` not on disk yet (a present file of the same size is kept)."""
        todo = {}
        for sha, data in blobs.items():
            try:
                if os.stat(self._file(sha)).st_size == len(data):
                    continue
            except FileNotFoundError:
                pass
            todo[sha] = data
        return todo

    def write_many(self, blobs: dict[str, bytes]) -> int:
        """Store `{sha: data}` (each sha the sha256 of its data) and return how many were new.

        All temp files are written (in `tmp/`: one directory is several times cheaper to create
        files in than 256), made durable in one pass, then renamed into place, then the
        renames are made durable: a kill at any instant leaves each blob absent or complete."""
        todo = self.missing(blobs)
        if not todo:
            return 0
        self.tmp.mkdir(parents=True, exist_ok=True)
        prefix = str(self.temp_path())[:-len(TEMP_SUFFIX)]
        temps: list[tuple[str, str]] = []  # (temp file, destination)
        try:
            for n, (sha, data) in enumerate(todo.items()):
                tmp = f"{prefix}-{n}{TEMP_SUFFIX}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                temps.append((tmp, self._file(sha)))
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            self._sync([tmp for tmp, _ in temps])  # contents durable before names point at them
            folders = sorted({os.path.dirname(dest) for _, dest in temps})
            for folder in folders:
                os.makedirs(folder, exist_ok=True)
            for tmp, dest in temps:
                os.replace(tmp, dest)
            self._sync([str(self.blobs), *folders])  # the renames durable
        except BaseException:
            for tmp, _ in temps:
                with suppress(OSError):
                    os.unlink(tmp)
            raise
        return len(todo)

    def _sync(self, paths: list[str]) -> None:
        """Make `paths` (files or directories) durable: one syncfs for many, else one fsync each."""
        if len(paths) >= SYNCFS_MIN_FILES and _syncfs(self.tmp):
            return
        for path in paths:
            if os.path.isdir(path):
                _fsync_dir(Path(path))
            else:
                _fsync_path(path)

    def read(self, sha: str) -> bytes:
        try:
            return self.path(sha).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"no blob {sha} in this store (`microtome verify` checks the store)") from None

    def hash_of(self, sha: str) -> str:
        """The sha256 of the blob's actual content (differs from `sha` when it is corrupt)."""
        h = hashlib.sha256()
        with open(self.path(sha), "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def scan(self) -> tuple[set[str], list[str]]:
        """(shas of all blobs on disk, paths relative to the store of files that are not blobs)."""
        shas: set[str] = set()
        strays: list[str] = []
        if not self.blobs.is_dir():
            return shas, strays
        for top in os.scandir(self.blobs):
            if not top.is_dir(follow_symlinks=False):
                strays.append(f"blobs/{top.name}")
                continue
            for entry in os.scandir(top.path):
                sha = top.name + entry.name
                if entry.is_file(follow_symlinks=False) and len(top.name) == 2 and SHA_RE.fullmatch(sha):
                    shas.add(sha)
                else:
                    strays.append(f"blobs/{top.name}/{entry.name}")
        return shas, sorted(strays)

    def temp_files(self) -> Iterator[tuple[Path, bool]]:
        """Each file in `tmp/` with whether it is stale (its writer is dead, or it is old)."""
        if not self.tmp.is_dir():
            return
        now = time.time()
        for entry in os.scandir(self.tmp):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed into place meanwhile
            if stat.S_ISDIR(st.st_mode):
                continue
            pid = entry.name.split("-", 1)[0]
            dead = not pid.isdigit() or not _pid_alive(int(pid))
            yield Path(entry.path), dead or now - st.st_mtime > STALE_TEMP_S
