"""The store's unit labels as a searchable index: `label_index(store) -> [Hit]`, `find_labels(hits, q)`.

Search (pages/search.py), the layer grid's label filter (grid.py) and the export's search
index read labels through here; `photo_histograms` is the index search by photo reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from microtome.store import Artifact, Store
from microtome.techniques.registry import Role, Technique, by_role
from microtome.web.present.artifacts import image_url, pick


@dataclass(frozen=True)
class Hit:
    """One label of one unit, as the search index holds it."""

    model: str
    layer: str
    unit: int
    label: str
    score: float  # the label's evidence (0.0 when the artifact gives none)
    source: str  # where the label came from ("examples", "classes", ...)

    @property
    def where(self) -> tuple[str, str, int]:
        return self.model, self.layer, self.unit


def labels_of(artifact: Artifact | None) -> list[dict[str, Any]]:
    """A labels artifact's `meta["labels"]`, best first, keeping well-formed entries only."""
    entries = artifact.meta.get("labels") if artifact is not None else None
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("label"), str)]


def by_unit(artifacts: Iterable[Artifact]) -> dict[tuple[str, str, int], Artifact]:
    """The best artifact of each unit (`artifacts.pick`: most expensive preset, then newest)."""
    groups: dict[tuple[str, str, int], list[Artifact]] = {}
    for art in artifacts:
        if art.key.unit is not None:
            groups.setdefault((art.key.model, art.key.layer, art.key.unit), []).append(art)
    return {key: best for key, arts in groups.items() for best in pick(arts).values()}


def label_index(store: Store) -> list[Hit]:
    """Every label of every unit in the store."""
    hits = []
    for (m, layer, unit), art in by_unit(store.find(technique=by_role(Role.UNIT_LABELS).id)).items():
        for e in labels_of(art):
            score = e.get("score")
            hits.append(Hit(m, layer, unit, e["label"], float(score) if isinstance(score, (int, float)) else 0.0,
                            str(e.get("source", ""))))
    return hits


def match(query: str, label: str) -> int | None:
    """How well `label` matches `query` (higher is better: 2 the same, 1 whole words, 0 inside
    words), or None when some word of the query is not in it."""
    words = query.lower().split()
    text = label.lower()
    if not words or not all(w in text for w in words):
        return None
    if " ".join(words) == " ".join(text.split()):
        return 2
    tokens = set(re.findall(r"[\w'-]+", text))
    return 1 if all(w in tokens for w in words) else 0


def find_labels(hits: Iterable[Hit], query: str) -> list[tuple[Hit, int]]:
    """The best-matching label of each unit that has one, best first."""
    best: dict[tuple[str, str, int], tuple[Hit, int]] = {}
    for hit in hits:
        rank = match(query, hit.label)
        if rank is None:
            continue
        key = hit.where
        if key not in best or (rank > 0, hit.score, rank) > (best[key][1] > 0, best[key][0].score, best[key][1]):
            best[key] = (hit, rank)
    return sorted(best.values(), key=lambda hr: (hr[1] == 0, -hr[0].score, -hr[1], hr[0].where))


def thumbnail(store: Store, model: str, layer: str, unit: int) -> str | None:
    """The unit's image (of the first variant) as a URL, or None."""
    image = by_role(Role.UNIT_IMAGE)
    return image_url(pick(store.find(model, layer, unit, image.id)).get(image.group({})))


def first_label(store: Store, model: str, layer: str, unit: int) -> str | None:
    labels = by_role(Role.UNIT_LABELS).id
    found = labels_of(pick(store.find(model, layer, unit, labels)).get(labels))
    return found[0]["label"] if found else None


def photo_histograms(store: Store) -> dict[str, dict[str, dict[int, tuple[list[float], list[float]]]]]:
    """{model: {layer: {unit: (edges, counts)}}} of every unit with a dataset-examples histogram."""
    out: dict[str, dict[str, dict[int, tuple[list[float], list[float]]]]] = {}
    for (m, layer, unit), art in by_unit(store.find(technique=by_role(Role.EXAMPLES).id)).items():
        hist = art.meta.get("histogram")
        if isinstance(hist, dict) and isinstance(hist.get("edges"), list) and isinstance(hist.get("counts"), list):
            out.setdefault(m, {}).setdefault(layer, {})[unit] = (hist["edges"], hist["counts"])
    return out


def labels_section(page: Any, t: Technique, data: Any) -> list[dict[str, Any]]:
    """The labels technique's section hook: the unit's labels themselves, best first."""
    return labels_of(page.here.get(t.id))
