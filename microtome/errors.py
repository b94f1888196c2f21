"""User-facing errors: each carries what was wrong, what would be right, and an HTTP status.

The command line turns a `MicrotomeError` into its message and exit code 2; the web app
into a 4xx page or JSON with `status`. Programming errors stay ordinary exceptions.
A `MicrotomeError` is a `ValueError` too, so code ported from Lucid, Lucent or scikit-learn that
expects `ValueError` for a bad argument still catches it; an `except ValueError` around code
that may raise one must re-raise it first (`except MicrotomeError: raise`) to keep its message
and status.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MicrotomeError(ValueError):
    """An error in what the user asked for (a name, a range, a path), not in microtome: a bad
    argument, hence a `ValueError`."""

    status: int = 400

    def __init__(self, message: str, *, status: int | None = None, suggestions: Iterable[str] = ()):
        super().__init__(message)
        self.message = message
        self.suggestions = list(suggestions)
        if status is not None:
            self.status = status


class NotFound(MicrotomeError):
    """A model, layer, unit, dataset or artifact that does not exist (HTTP 404)."""

    status = 404


class Busy(MicrotomeError):
    """The server cannot take this job now (a full queue, a slot held): HTTP 503, and the web
    answers with a `Retry-After: retry_after` header (seconds)."""

    status = 503

    def __init__(self, message: str, retry_after: int = 30):
        super().__init__(message)
        self.retry_after = retry_after


def close_names(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The names in `choices` nearest to `name`, best first (case-insensitive)."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    prefix = [c for c in choices if c.lower().startswith(name.lower()) and c.lower() not in hits]
    return [lowered[h] for h in hits] + prefix[: max(0, n - len(hits))]


def unknown(kind: str, name: str, choices: Iterable[str], where: str = "", hint: str = "") -> NotFound:
    """A NotFound for `name` that lists the nearest valid names, e.g.
    "no layer 'blok10' in efficientnet_lite0; did you mean block10?"."""
    choices = list(choices)
    near = close_names(name, choices)
    msg = f"no {kind} {name!r}" + (f" in {where}" if where else "")
    if near:
        msg += "; did you mean " + ", ".join(near) + "?"
    elif len(choices) <= 12:
        msg += "; valid: " + ", ".join(choices)
    if hint:
        msg += f" ({hint})"
    return NotFound(msg, suggestions=near)
