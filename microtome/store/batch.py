"""A batch of artifacts for `Store.put_many`: `PutEntry(key, params, files, meta)` each.

`prepare(entries) -> (rows, blobs)` checks every entry, renders its JSON once and hashes each
distinct file content once: `rows [Row]` (one per distinct key, first wins) and
`blobs {sha256: bytes}`. A bytes object shared by many entries (a photo shown by many units)
is hashed once, and its content is one blob however many files name it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from microtome.errors import MicrotomeError
from microtome.store.keys import ArtifactKey, canonical_json, param_hash


class PutEntry(NamedTuple):
    """One artifact to store: `files` maps a file name to its bytes; `meta` is JSON data."""

    key: ArtifactKey
    params: dict[str, Any]
    files: dict[str, bytes]
    meta: dict[str, Any] | None = None


@dataclass
class Row:
    """One prepared artifact: its key, canonical JSON and files as {name: sha256}."""

    key: ArtifactKey
    params_json: str
    meta_json: str
    shas: dict[str, str]


def check(entry: PutEntry, params_json: str | None = None) -> None:
    """MicrotomeError/TypeError naming what is wrong with one entry, before anything is written.
    `params_json`: `canonical_json(entry.params)` when the caller has it already."""
    if not isinstance(entry.key, ArtifactKey):
        raise TypeError(f"expected an ArtifactKey, got {type(entry.key).__name__}")
    if params_json is None:
        got = param_hash(entry.params)
    else:  # param_hash, from the text already rendered
        got = hashlib.sha256(params_json.encode()).hexdigest()[:16]
    if got != entry.key.params_hash:
        raise MicrotomeError(
            f"params hash to {got} but the key says {entry.key.params_hash}; "
            f"make the key with ArtifactKey.for_params(..., params)"
        )
    files = entry.files
    if not isinstance(files, dict) or not all(isinstance(n, str) and n for n in files):
        raise TypeError("files must be a dict of non-empty file names to bytes")


def prepare(entries: Iterable[PutEntry]) -> tuple[list[Row], dict[str, bytes]]:
    """Check and render every entry; hash each distinct bytes object once."""
    rows: dict[ArtifactKey, Row] = {}
    blobs: dict[str, bytes] = {}
    by_object: dict[int, tuple[bytes, str]] = {}  # id(data) -> (data, sha); data kept alive
    for entry in entries:
        if not isinstance(entry.params, dict):
            raise MicrotomeError(f"params must be a dict, got {type(entry.params).__name__}")
        params_json = canonical_json(entry.params, "params")
        check(entry, params_json)
        shas = {}
        for name, data in entry.files.items():
            known = by_object.get(id(data))
            if known is None or known[0] is not data:
                payload = bytes(data)
                known = by_object[id(data)] = (data, hashlib.sha256(payload).hexdigest())
                blobs.setdefault(known[1], payload)
            shas[name] = known[1]
        if entry.key not in rows:
            rows[entry.key] = Row(entry.key, params_json,
                                  canonical_json({} if entry.meta is None else entry.meta, "meta"), shas)
    return list(rows.values()), blobs
