"""The SQLite index `root/index.sqlite`: artifact rows, model summaries, build claims and notes.

One row per artifact key; `unit` None is stored as -1, so the primary key treats every
layer-level artifact as one value (SQLite counts NULLs as distinct in unique constraints).
WAL journal and a busy timeout let several processes read and write at once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from microtome.errors import MicrotomeError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
LAYER_UNIT = -1  # how unit None is stored

KEY_COLUMNS = "model, layer, unit, technique, params_hash"
KEY_WHERE = "model = ? AND layer = ? AND unit = ? AND technique = ? AND params_hash = ?"

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS artifacts (
        model TEXT NOT NULL, layer TEXT NOT NULL, unit INTEGER NOT NULL,
        technique TEXT NOT NULL, params_hash TEXT NOT NULL,
        params TEXT NOT NULL, meta TEXT NOT NULL, files TEXT NOT NULL, created REAL NOT NULL,
        PRIMARY KEY ({KEY_COLUMNS}))""",
    "CREATE INDEX IF NOT EXISTS artifacts_by_technique ON artifacts (technique, model)",
    """CREATE TABLE IF NOT EXISTS models (
        model TEXT PRIMARY KEY, summary TEXT NOT NULL, updated REAL NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS claims (
        model TEXT NOT NULL, layer TEXT NOT NULL, unit INTEGER NOT NULL,
        technique TEXT NOT NULL, params_hash TEXT NOT NULL,
        owner TEXT NOT NULL, expires REAL NOT NULL,
        PRIMARY KEY ({KEY_COLUMNS}))""",
    "CREATE TABLE IF NOT EXISTS store_info (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # researchers' notes on units (added in place to older stores: no schema version change)
    """CREATE TABLE IF NOT EXISTS notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, layer TEXT NOT NULL,
        unit INTEGER NOT NULL, text TEXT NOT NULL, created REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS notes_by_unit ON notes (model, layer, unit)",
)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the index at `path`, in autocommit mode: callers BEGIN themselves.

    The connection may be used from any thread; the caller serializes access with a lock."""
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        # in WAL mode: a crash never corrupts, power loss may drop the last commits
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA:
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO store_info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            version = int(db.execute("SELECT value FROM store_info WHERE name = 'schema_version'").fetchone()[0])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as e:
        raise MicrotomeError(f"{path} is not a usable microtome index: {e}") from None
    if version > SCHEMA_VERSION:
        db.close()
        raise MicrotomeError(
            f"the store index {path} has schema version {version}, newer than this microtome "
            f"understands ({SCHEMA_VERSION}); upgrade microtome"
        )
    return db


def key_row(model: str, layer: str, unit: int | None, technique: str, params_hash: str) -> tuple:
    """The key as stored (unit None -> -1), in KEY_COLUMNS order."""
    return (model, layer, LAYER_UNIT if unit is None else unit, technique, params_hash)
