"""Researchers' notes on units, kept in the store's index (so pack/unpack and export keep them).

`add_note(store, model, layer, unit, text) -> Note`; `notes(store, model, layer, unit) -> [Note]`
oldest first. Text is stored as given (plain text, at most MAX_NOTE_BYTES of UTF-8); every
page escapes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from microtome.errors import MicrotomeError
from microtome.store.store import Store

MAX_NOTE_BYTES = 4096


@dataclass(frozen=True)
class Note:
    model: str
    layer: str
    unit: int
    text: str
    created: float

    def to_json(self) -> dict:
        return {"text": self.text, "created": self.created}


def check_text(text: object) -> str:
    """The note's text, stripped; empty, non-text or over MAX_NOTE_BYTES is an error saying so."""
    if not isinstance(text, str) or not text.strip():
        raise MicrotomeError("a note needs some text")
    text = text.strip()
    size = len(text.encode("utf-8"))
    if size > MAX_NOTE_BYTES:
        raise MicrotomeError(f"a note is at most {MAX_NOTE_BYTES} bytes of text; this one is {size}")
    return text


def add_note(store: Store, model: str, layer: str, unit: int, text: str) -> Note:
    """Record a note on `model/layer:unit` (names as the caller checked them)."""
    note = Note(model, layer, int(unit), check_text(text), time.time())
    with store._write() as db:  # noqa: SLF001 - the store package's own connection
        db.execute("INSERT INTO notes (model, layer, unit, text, created) VALUES (?, ?, ?, ?, ?)",
                   (note.model, note.layer, note.unit, note.text, note.created))
    return note


def notes(store: Store, model: str, layer: str | None = None, unit: int | None = None) -> list[Note]:
    """Notes on a model, a layer or a unit, oldest first."""
    where, args = ["model = ?"], [model]
    if layer is not None:
        where.append("layer = ?")
        args.append(layer)
    if unit is not None:
        where.append("unit = ?")
        args.append(int(unit))
    with store._read() as db:  # noqa: SLF001
        rows = db.execute(f"SELECT model, layer, unit, text, created FROM notes WHERE {' AND '.join(where)} "
                          "ORDER BY created, id", args).fetchall()
    return [Note(*row) for row in rows]


__all__ = ["MAX_NOTE_BYTES", "Note", "add_note", "check_text", "notes"]
