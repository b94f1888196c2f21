"""Artifact keys: `(model, layer, unit, technique, params_hash)` names one stored artifact.

`param_hash(params) -> 16 hex chars` (sha256 of the canonical JSON); an `Artifact` is a key
plus its params, meta and `files` (file name -> blob sha256).
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from dataclasses import dataclass
from typing import Any

from microtome.errors import MicrotomeError, NotFound

SHA_RE = re.compile(r"[0-9a-f]{64}")
PARAMS_HASH_RE = re.compile(r"[0-9a-f]{16}")


class _Any:
    """The "no filter" default of `Store.find(unit=...)`, where None means layer-level."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


def canonical_json(value: Any, what: str = "value") -> str:
    """Sorted keys, no spaces, ASCII: equal values give equal text (hence equal hashes).

    NaN and infinities are refused (they are not JSON, and would break the web's `.json`)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise MicrotomeError(
            f"{what} must be plain JSON data (dict with str keys, list, str, int, finite float, "
            f"bool, None); convert numpy/tensor values and replace NaN with None: {e}"
        ) from None


def param_hash(params: dict[str, Any]) -> str:
    """First 16 hex chars of the sha256 of `params` as canonical JSON; key order does not matter."""
    if not isinstance(params, dict):
        raise MicrotomeError(f"params must be a dict, got {type(params).__name__}")
    return hashlib.sha256(canonical_json(params, "params").encode()).hexdigest()[:16]


def check_sha(sha: object) -> str:
    """`sha` if it names a blob (64 lowercase hex chars), else NotFound: no path ever comes from it."""
    if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
        shown = sha if not isinstance(sha, str) or len(sha) < 80 else sha[:77] + "..."
        raise NotFound(f"no blob {shown!r}: a blob name is its sha256, 64 lowercase hex characters")
    return sha


def key_unit(unit: object) -> int | None:
    """A key's unit: an int >= 0 (numpy and torch integers included) or None for a layer-level
    artifact; MicrotomeError otherwise. The store knows no layers: a unit's range is the model
    card's to check (`ModelCard.unit`)."""
    if unit is None:
        return None
    try:
        if isinstance(unit, bool):
            raise TypeError
        index = operator.index(unit)
    except TypeError:
        raise MicrotomeError(f"unit must be a channel index (int) or None for the whole layer, got {unit!r}") from None
    if index < 0:
        raise MicrotomeError(f"unit must be >= 0 (None for the whole layer), got {index}")
    return index


@dataclass(frozen=True)
class ArtifactKey:
    """Which artifact: `unit` is a channel index, or None for a layer-level artifact (DeepDream).

    `params_hash` is `param_hash(params)`; `ArtifactKey.for_params` computes it."""

    model: str
    layer: str
    unit: int | None
    technique: str
    params_hash: str

    def __post_init__(self) -> None:
        for name in ("model", "layer", "technique"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise MicrotomeError(f"artifact key: {name} must be a non-empty string, got {value!r}")
        object.__setattr__(self, "unit", key_unit(self.unit))
        if not isinstance(self.params_hash, str) or not PARAMS_HASH_RE.fullmatch(self.params_hash):
            raise MicrotomeError(
                f"artifact key: params_hash must be 16 lowercase hex characters "
                f"(param_hash(params)), got {self.params_hash!r}"
            )

    @classmethod
    def for_params(
        cls, model: str, layer: str, unit: int | None, technique: str, params: dict[str, Any]
    ) -> ArtifactKey:
        """The key of the artifact computed with `params`."""
        return cls(model, layer, unit, technique, param_hash(params))

    def __str__(self) -> str:
        unit = "*" if self.unit is None else str(self.unit)
        return f"{self.model}/{self.layer}:{unit}/{self.technique}@{self.params_hash}"


@dataclass
class Artifact:
    """One stored artifact; `files` maps a file name to the sha256 of its blob (`Store.read`).

    `created` is a Unix time in seconds."""

    key: ArtifactKey
    params: dict[str, Any]
    meta: dict[str, Any]
    files: dict[str, str]
    created: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the key fields, then params, meta, files and created."""
        k = self.key
        return {
            "model": k.model, "layer": k.layer, "unit": k.unit, "technique": k.technique,
            "params_hash": k.params_hash, "params": self.params, "meta": self.meta,
            "files": dict(self.files), "created": self.created,
        }
