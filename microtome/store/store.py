"""The artifact store: `root/index.sqlite` (rows) + `root/blobs/ab/cdef...` (content, by sha256).

`put(key, params, files, meta) -> Artifact` writes every blob atomically first, then the row in
one transaction (`put_many([PutEntry...])` does the same for a batch: one durability pass for
all new blobs, one transaction for all rows), so a process killed at any instant leaves no row pointing at a missing or
truncated blob: at worst an orphan blob or a temp file, which `verify` reports and `gc` removes.
Several processes may use one store at once; `claim` keeps two builds from computing one key.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from microtome.errors import MicrotomeError, NotFound, unknown
from microtome.store import archive, batch, index
from microtome.store.batch import PutEntry
from microtome.store.blobs import BlobDir
from microtome.store.index import KEY_COLUMNS, KEY_WHERE, LAYER_UNIT, key_row
from microtome.store.keys import ANY, Artifact, ArtifactKey, canonical_json, key_unit
from microtome.store.reports import GcReport, VerifyReport

DEFAULT_ROOT = "./microtome-store"
_ROW = f"{KEY_COLUMNS}, params, meta, files, created"


def _alive(owner: str) -> bool:
    """False when `owner` ("host:pid:..."), a process of this host, has died (its claims are
    stale); True otherwise, including owners on other hosts (their claims expire by TTL)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _artifact(row: tuple) -> Artifact:
    model, layer, unit, technique, phash, params, meta, files, created = row
    key = ArtifactKey(model, layer, None if unit == LAYER_UNIT else unit, technique, phash)
    return Artifact(key, json.loads(params), json.loads(meta), json.loads(files), created)


def _key_row(key: ArtifactKey) -> tuple:
    if not isinstance(key, ArtifactKey):
        raise TypeError(f"expected an ArtifactKey, got {type(key).__name__}")
    return key_row(key.model, key.layer, key.unit, key.technique, key.params_hash)


class Store:
    """A store directory; safe to share between threads of a process and between processes.

    `create=False` opens an existing store only (the web app, `microtome verify`)."""

    def __init__(self, root: str | Path = DEFAULT_ROOT, create: bool = True):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise MicrotomeError(f"store path {self.root} is a file; a store is a directory")
        if not create and not (self.root / "index.sqlite").is_file():
            raise NotFound(
                f"no store at {self.root} (no index.sqlite there); build one with `microtome build` "
                f"or point at an existing store directory"
            )
        self._blobs = BlobDir(self.root)
        for folder in (self._blobs.blobs, self._blobs.tmp):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._forked: list[sqlite3.Connection] = []
        with self._read():
            pass  # open now, so a bad index fails here and not on first use

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- connection: one per Store and process, shared by its threads under a lock --

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:  # inherited through fork(): never use nor close it here
                self._forked.append(self._conn)
            self._conn = index.connect(self.root / "index.sqlite")
            self._pid = os.getpid()
        return self._conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlock)."""
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # -- artifacts --

    def put(
        self, key: ArtifactKey, params: dict[str, Any], files: dict[str, bytes], meta: dict[str, Any] | None = None
    ) -> Artifact:
        """Store an artifact and return it; if `key` is already stored, return that one unchanged.

        `params` must hash to `key.params_hash`. When two writers race on one key, the first
        row wins and both get it back (the loser's blobs become orphans for `gc`)."""
        self.put_many([PutEntry(key, params, files, meta)])
        stored = self.get(key)
        if stored is None:  # pragma: no cover - rows are never deleted
            raise RuntimeError(f"artifact {key} vanished while being written")
        return stored

    def put_many(self, entries: Iterable[PutEntry | tuple]) -> int:
        """Store many artifacts, `PutEntry(key, params, files, meta)` each; keys already stored
        are left as they are. Returns how many artifacts were new.

        Blobs already in the store are not written again; the new ones are written with one
        durability pass for them all, then every row is inserted in one transaction."""
        rows, blobs = batch.prepare(PutEntry(*e) for e in entries)
        stored = self._stored([r.key for r in rows])
        rows = [r for r in rows if r.key not in stored]
        needed = {sha: blobs[sha] for r in rows for sha in r.shas.values()}
        generation = self._gc_generation(None)
        self._blobs.write_many(needed)
        return self._commit(rows, needed, generation)

    def _commit(self, rows: list[batch.Row], blobs: dict[str, bytes], generation: int) -> int:
        """Insert the rows whose keys are new; returns how many. If `gc` ran since the blobs
        were written (its generation moved), they are re-checked inside the transaction: gc
        deletes orphans under the same write lock, so none can vanish after."""
        created, inserted = time.time(), 0
        with self._write() as db:
            if self._gc_generation(db) != generation:
                self._blobs.write_many(blobs)  # only what gc removed meanwhile
            for r in rows:
                cur = db.execute(
                    f"INSERT OR IGNORE INTO artifacts ({_ROW}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*_key_row(r.key), r.params_json, r.meta_json, canonical_json(r.shas), created),
                )
                inserted += cur.rowcount
            db.executemany(f"DELETE FROM claims WHERE {KEY_WHERE}", [_key_row(r.key) for r in rows])
        return inserted

    def _gc_generation(self, db: sqlite3.Connection | None) -> int:
        """How many times `gc` has deleted blobs from this store (0 for a store that never did)."""
        sql = "SELECT value FROM store_info WHERE name = 'gc_generation'"
        if db is None:
            with self._read() as conn:
                row = conn.execute(sql).fetchone()
        else:
            row = db.execute(sql).fetchone()
        return int(row[0]) if row else 0

    def _stored(self, keys: list[ArtifactKey]) -> set[ArtifactKey]:
        """Those of `keys` already stored, read under one lock."""
        with self._read() as db:
            return {key for key in keys
                    if db.execute(f"SELECT 1 FROM artifacts WHERE {KEY_WHERE}", _key_row(key)).fetchone()}

    def get(self, key: ArtifactKey) -> Artifact | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_ROW} FROM artifacts WHERE {KEY_WHERE}", _key_row(key)).fetchone()
        return _artifact(row) if row else None

    def has(self, key: ArtifactKey) -> bool:
        with self._read() as db:
            return db.execute(f"SELECT 1 FROM artifacts WHERE {KEY_WHERE}", _key_row(key)).fetchone() is not None

    def find(
        self, model: str | None = None, layer: str | None = None, unit: Any = ANY, technique: str | None = None
    ) -> list[Artifact]:
        """Artifacts matching every given filter, ordered by model, layer, unit, technique.

        `unit=None` selects layer-level artifacts; leave `unit` out for all units."""
        where, args = [], []
        for column, value in (("model", model), ("layer", layer), ("technique", technique)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if unit is not ANY:
            where.append("unit = ?")
            args.append(LAYER_UNIT if unit is None else key_unit(unit))
        sql = f"SELECT {_ROW} FROM artifacts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as db:
            rows = db.execute(sql + f" ORDER BY {KEY_COLUMNS}", args).fetchall()
        return [_artifact(r) for r in rows]

    def forget(self, keys: Iterable[ArtifactKey]) -> int:
        """Remove the rows of `keys` in one transaction (replacing a retrained SAE's artifacts);
        their blobs become orphans, which `gc` removes. Returns how many rows were removed."""
        rows = [_key_row(key) for key in keys]
        with self._write() as db:
            before = db.total_changes
            db.executemany(f"DELETE FROM artifacts WHERE {KEY_WHERE}", rows)
            return db.total_changes - before

    def stats(self, model: str | None = None) -> dict[tuple[str, str, str], int]:
        """Artifact counts per (model, layer, technique), sorted."""
        sql = "SELECT model, layer, technique, COUNT(*) FROM artifacts"
        args: tuple = ()
        if model is not None:
            sql, args = sql + " WHERE model = ?", (model,)
        with self._read() as db:
            rows = db.execute(sql + " GROUP BY model, layer, technique ORDER BY model, layer, technique", args)
            return {(m, layer, t): n for m, layer, t, n in rows.fetchall()}

    # -- blobs --

    def blob_path(self, sha: str) -> Path:
        """The file holding blob `sha` (to serve it directly); NotFound if `sha` is malformed or absent."""
        path = self._blobs.path(sha)
        if not path.is_file():
            raise NotFound(f"no blob {sha} in this store (`microtome verify` checks the store)")
        return path

    def read(self, sha: str) -> bytes:
        """The bytes of blob `sha`; NotFound if `sha` is malformed or absent."""
        return self._blobs.read(sha)

    def read_file(self, artifact: Artifact, name: str) -> bytes:
        """The bytes of `artifact`'s file `name`; NotFound (with near names) if it has no such file."""
        if name not in artifact.files:
            raise unknown("file", name, sorted(artifact.files), where=str(artifact.key))
        return self.read(artifact.files[name])

    # -- model summaries --

    def put_model(self, model_id: str, summary: dict[str, Any]) -> None:
        """Record (or replace) the JSON summary of a model spec: layers, edges, title, trained..."""
        if not isinstance(model_id, str) or not model_id:
            raise MicrotomeError(f"model id must be a non-empty string, got {model_id!r}")
        text = canonical_json(summary, f"summary of {model_id}")
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO models VALUES (?, ?, ?)", (model_id, text, time.time()))

    def models(self) -> dict[str, dict[str, Any]]:
        """Every recorded model summary, by model id (sorted)."""
        with self._read() as db:
            rows = db.execute("SELECT model, summary FROM models ORDER BY model").fetchall()
        return {m: json.loads(s) for m, s in rows}

    def model(self, model_id: str) -> dict[str, Any] | None:
        with self._read() as db:
            row = db.execute("SELECT summary FROM models WHERE model = ?", (model_id,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- claims: which build computes which key --

    def claim(self, key: ArtifactKey, owner: str, ttl: float = 600) -> bool:
        """Reserve `key` for `owner` for `ttl` seconds; False if it is stored or another owner
        holds an unexpired claim. Claiming again as the same owner renews; `put` ends the claim."""
        now = time.time()
        with self._write() as db:
            if db.execute(f"SELECT 1 FROM artifacts WHERE {KEY_WHERE}", _key_row(key)).fetchone():
                return False
            held = db.execute(f"SELECT owner, expires FROM claims WHERE {KEY_WHERE}", _key_row(key)).fetchone()
            if held is not None and held[0] != owner and held[1] > now and _alive(held[0]):
                return False
            db.execute(
                f"INSERT OR REPLACE INTO claims ({KEY_COLUMNS}, owner, expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*_key_row(key), owner, now + ttl),
            )
            return True

    def release(self, key: ArtifactKey, owner: str) -> None:
        """Drop `owner`'s claim on `key` (a no-op if it holds none, e.g. after `put`)."""
        with self._write() as db:
            db.execute(f"DELETE FROM claims WHERE {KEY_WHERE} AND owner = ?", (*_key_row(key), owner))

    # -- integrity --

    def _referenced(self) -> set[str]:
        with self._read() as db:
            rows = db.execute("SELECT files FROM artifacts").fetchall()
        return {sha for (files,) in rows for sha in json.loads(files).values()}

    def verify(self) -> VerifyReport:
        """Re-hash every indexed blob and list what is corrupt, missing, orphaned or left over."""
        refs = self._referenced()
        on_disk, strays = self._blobs.scan()
        present = sorted(refs & on_disk)
        return VerifyReport(
            checked=len(present),
            corrupt=[sha for sha in present if self._blobs.hash_of(sha) != sha],
            missing=sorted(refs - on_disk),
            orphans=sorted(on_disk - refs),
            temp_files=sorted(str(p.relative_to(self.root)) for p, _ in self._blobs.temp_files()),
            strays=strays,
        )

    def gc(self) -> GcReport:
        """Remove orphan blobs and the temp files of dead writers (live writers' temps are kept).

        Holds the index write lock while deleting, so a concurrent `put` cannot lose a blob."""
        report = GcReport()
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO store_info VALUES ('gc_generation', ?)",
                       (str(self._gc_generation(db) + 1),))  # tells writers to re-check their blobs
            refs = self._referenced()
            on_disk, _ = self._blobs.scan()
            for sha in sorted(on_disk - refs):
                path = self._blobs.path(sha)
                with suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    report.orphans.append(sha)
                    report.bytes_freed += size
        for path, stale in self._blobs.temp_files():
            if stale:
                with suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    report.temp_files.append(str(path.relative_to(self.root)))
                    report.bytes_freed += size
        return report

    # -- archives --

    def pack(self, archive_path: str | Path) -> Path:
        """Write a consistent snapshot (index + referenced blobs, no claims) to one .tar.gz/.tar."""
        archive_path = Path(archive_path)
        archive.write_mode(archive_path)  # fail on a bad name before any work
        snapshot = self._blobs.temp_path(".index")
        try:
            with self._read() as db:
                shas = archive.snapshot_index(db, snapshot)
            archive.write_archive(archive_path, snapshot, self._blobs, shas)
        finally:
            with suppress(FileNotFoundError):
                snapshot.unlink()
        return archive_path

    @classmethod
    def unpack(cls, archive_path: str | Path, root: str | Path) -> Store:
        """Unpack an archive made by `pack` into `root` (absent or empty) and verify it.

        Refuses, before writing anything, archives with members outside the store layout."""
        archive_path, root = Path(archive_path), Path(root)
        existed = root.exists()
        if existed and (not root.is_dir() or any(root.iterdir())):
            raise MicrotomeError(f"refusing to unpack into {root}: it is not empty; choose a new directory")
        tar, members = archive.open_archive(archive_path)
        try:
            with tar:
                root.mkdir(parents=True, exist_ok=True)
                archive.extract(tar, members, root)
            store = cls(root, create=False)
            report = store.verify()
            if not report.ok:
                store.close()
                raise MicrotomeError(
                    f"{archive_path} unpacked damaged: {len(report.corrupt)} corrupt and "
                    f"{len(report.missing)} missing blobs"
                )
            return store
        except BaseException:
            if existed:
                for child in root.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            else:
                shutil.rmtree(root, ignore_errors=True)
            raise
