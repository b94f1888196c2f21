"""One-file store archives: a `.tar.gz` (or `.tar`) of `index.sqlite` plus `blobs/ab/cdef...`.

Reading trusts nothing: every member name is checked against that exact layout before anything
is written, so an archive cannot place a file outside the target (no absolute paths, no '..',
no links or devices), and each blob is re-hashed as it is written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tarfile
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from microtome.errors import MicrotomeError, NotFound
from microtome.store.blobs import BlobDir
from microtome.store.keys import SHA_RE

INDEX_NAME = "index.sqlite"


def snapshot_index(db: sqlite3.Connection, path: Path) -> set[str]:
    """Copy the index `db` to `path` as one self-contained file without claims; the blobs it names."""
    copy = sqlite3.connect(path)
    try:
        db.backup(copy)
        copy.execute("DELETE FROM claims")
        copy.commit()
        copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        return {sha for (f,) in copy.execute("SELECT files FROM artifacts") for sha in json.loads(f).values()}
    finally:
        copy.close()


def write_mode(archive_path: Path) -> str:
    """The tarfile mode for `archive_path`, from its name."""
    name = archive_path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "w:gz"
    if name.endswith(".tar"):
        return "w"
    raise MicrotomeError(f"archive name must end in .tar.gz, .tgz or .tar, got {archive_path.name!r}")


def write_archive(archive_path: Path, index_file: Path, blobs: BlobDir, shas: Iterable[str]) -> None:
    """Write the archive next to its destination and rename it into place when complete."""
    mode = write_mode(archive_path)
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    partial = archive_path.with_name(f".{archive_path.name}.{os.getpid()}.partial")
    try:
        with tarfile.open(partial, mode) as tar:
            tar.add(index_file, arcname=INDEX_NAME, recursive=False)
            for sha in sorted(shas):
                try:
                    tar.add(blobs.path(sha), arcname=f"blobs/{sha[:2]}/{sha[2:]}", recursive=False)
                except FileNotFoundError:
                    raise MicrotomeError(
                        f"cannot pack: blob {sha} is indexed but missing (`microtome verify` lists the damage)"
                    ) from None
        os.replace(partial, archive_path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(partial)


def _member_kind(member: tarfile.TarInfo, archive: Path) -> tuple[str, str]:
    """("index" | "blob" | "dir", normalized name), or MicrotomeError for anything else."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise MicrotomeError(f"refusing to unpack {archive}: member {name!r} is an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise MicrotomeError(f"refusing to unpack {archive}: member {name!r} points outside the target ('..')")
    norm = "/".join(parts)
    if member.isdir() and (norm == "blobs" or (len(parts) == 2 and parts[0] == "blobs" and len(parts[1]) == 2)):
        return "dir", norm
    if member.isfile():
        if norm == INDEX_NAME:
            return "index", norm
        if len(parts) == 3 and parts[0] == "blobs" and len(parts[1]) == 2 and SHA_RE.fullmatch(parts[1] + parts[2]):
            return "blob", parts[1] + parts[2]
    kind = "file" if member.isfile() else "directory" if member.isdir() else "link or special file"
    raise MicrotomeError(
        f"refusing to unpack {archive}: unexpected {kind} {name!r} "
        f"(a store archive holds only {INDEX_NAME} and blobs/ab/cdef...)"
    )


def open_archive(archive_path: Path) -> tuple[tarfile.TarFile, list[tuple[tarfile.TarInfo, str, str]]]:
    """The open archive and its members with their kind, all checked before anything is written."""
    if not archive_path.is_file():
        raise NotFound(f"no archive at {archive_path}")
    try:
        tar = tarfile.open(archive_path, "r:*")
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise MicrotomeError(f"{archive_path} is not a readable .tar/.tar.gz archive: {e}") from None
    try:
        checked = [(m, *_member_kind(m, archive_path)) for m in members]
        if not any(kind == "index" for _, kind, _ in checked):
            raise MicrotomeError(f"{archive_path} is not a microtome store archive: it has no {INDEX_NAME}")
    except BaseException:
        tar.close()
        raise
    return tar, checked


def extract(tar: tarfile.TarFile, members: list[tuple[tarfile.TarInfo, str, str]], root: Path) -> None:
    """Write the checked members under `root`; a blob whose content does not match its name is refused."""
    blobs = BlobDir(root)
    blobs.blobs.mkdir(parents=True, exist_ok=True)
    for member, kind, name in members:
        if kind == "dir":
            continue
        f = tar.extractfile(member)
        if f is None:  # pragma: no cover - isfile() members always have data
            continue
        data = f.read()
        if kind == "index":
            blobs.write_atomic(root / INDEX_NAME, data)
        elif blobs.write(data) != name:
            raise MicrotomeError(f"archive member blobs/{name[:2]}/{name[2:]} is corrupt: "
                                 "its content has another sha256")
