"""Labels of a unit, from what the store already holds: `run_labels(Job) -> [ArtifactResult]`.

Each label is `{"label", "score", "source", ...}`, best first; `score` in [0, 1] is how much
of the unit's evidence points at the label beyond chance:
- `examples` (dataset with class labels): over the unit's top examples, a class (or, when the
  classes are ImageNet's, a WordNet ancestor such as "dog" over many breeds) with share `p`
  of the examples and share `q` of the dataset scores `p · (1 - q)`; kept when it is
  over-represented (`lift = p / q` ≥ 1.5, at least 2 examples, hypergeometric p-value < 0.05).
- `predictions` (unlabelled dataset): the same with the model's mean class probabilities over
  the top examples (`p`) against its mean over the unit's quantile examples (`q`, a sample of
  the dataset's distribution).
- `connections`: the classes a unit supports (its connections' `classes`, score = weight
  relative to their sum), and for the logits layer its own class (score 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from microtome.techniques.base import ArtifactResult, Item, Job
from microtome.zoo.spec import ModelSpec

MIN_LIFT = 1.5
MIN_COUNT = 2
MAX_P_VALUE = 0.05
Share = dict[str, tuple[float, float, int]]  # label -> (share among top examples p, base rate q, count)


def run_labels(job: Job) -> list[ArtifactResult]:
    """Labels for every planned unit of one layer; the model runs only for `predictions`
    (once per distinct example image of the task)."""
    layer = job.layers[0]
    is_logits = job.spec.layer(layer).kind == "logits"
    predictor = _Predictor(job)
    results = []
    for item in job.items:
        examples = _examples_meta(job.input_metas("dataset_examples", layer, item.unit), item.params["dataset"])
        found = []
        if is_logits and item.unit < len(job.spec.labels):
            found.append({"label": job.spec.labels[item.unit], "score": 1.0, "source": "connections"})
        if examples is not None:
            found += _from_examples(examples, job, item) or _from_predictions(examples, predictor)
        for meta in job.input_metas("connections", layer, item.unit)[:1]:
            found += _from_connections(meta)
        results.append(ArtifactResult(layer, item.unit, "labels", item.params,
                                      meta={"labels": _best_first(found, item.params["top"])}))
        job.tick(1.0 / len(job.items))
    return results


def _examples_meta(metas: Sequence[Mapping[str, Any]], dataset: str) -> Mapping[str, Any] | None:
    """The unit's dataset examples on `dataset` with the most top examples (None if none)."""
    fits = [m for m in metas if m.get("dataset") == dataset and m.get("top")]
    return max(fits, key=lambda m: len(m["top"])) if fits else None


def _best_first(found: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """One entry per (label, source), the strongest; best score first; at most `top`."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in found:
        key = (entry["label"], entry["source"])
        if key not in best or entry["score"] > best[key]["score"]:
            best[key] = {**entry, "score": round(float(entry["score"]), 4)}
    return sorted(best.values(), key=lambda e: -e["score"])[:top]


# ---- from labelled examples -----------------------------------------------------------------
def _from_examples(meta: Mapping[str, Any], job: Job, item: Item) -> list[dict[str, Any]]:
    dataset = job.dataset(item.params["dataset"])
    labels = [lab for lab in getattr(dataset, "labels", []) if lab is not None]
    top = [e.get("label") for e in meta["top"] if e.get("label") is not None]
    if not labels or not top:
        return []
    groups = _class_groups(tuple(dataset.class_names), job.spec)
    dataset_counts = _group_counts(labels, groups)
    top_counts = _group_counts(top, groups)
    shares = {g: (n / len(top), dataset_counts[g] / len(labels), n) for g, n in top_counts.items()}
    return _significant(shares, len(labels), len(top), "examples")


def _class_groups(class_names: tuple[str, ...], spec: ModelSpec) -> list[list[str]]:
    """Per dataset class, the labels it counts for: its own name, and when the dataset's
    classes are the model's ImageNet classes, their WordNet ancestors too."""
    groups = [[name] for name in class_names]
    if len(spec.labels) != 1000 or not class_names:
        return groups
    index = {name: i for i, name in enumerate(spec.labels)}
    if sum(name in index for name in class_names) < 0.9 * len(class_names):
        return groups
    from microtome.zoo.imagenet import imagenet_hierarchy

    names, ancestors = imagenet_hierarchy()
    for group, name in zip(groups, class_names):
        if name in index:
            group += [names[a] for a in ancestors[index[name]]]
    return groups


def _group_counts(labels: Sequence[int], groups: list[list[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for lab in labels:
        for name in (groups[lab] if 0 <= lab < len(groups) else []):
            counts[name] = counts.get(name, 0) + 1
    return counts


def _significant(shares: Share, population: int, drawn: int, source: str) -> list[dict[str, Any]]:
    from scipy.stats import hypergeom

    out = []
    for label, (p, q, count) in shares.items():
        if q <= 0 or count < MIN_COUNT or p / q < MIN_LIFT:
            continue
        p_value = float(hypergeom.sf(count - 1, population, round(q * population), drawn))
        if p_value < MAX_P_VALUE:
            out.append({"label": label, "score": p * (1 - q), "source": source,
                        "lift": round(p / q, 3), "count": count, "p_value": p_value})
    return out


# ---- from the model's predictions -------------------------------------------------------------
class _Predictor:
    """The model's class probabilities `[K]` of dataset images, each image run once."""

    def __init__(self, job: Job):
        self.job = job
        self.cache: dict[tuple[str, int], torch.Tensor] = {}

    def probabilities(self, dataset_name: str, indices: Sequence[int]) -> torch.Tensor:
        """Mean class probabilities `[K]` over the images at `indices`."""
        from microtome.data import view

        missing = [i for i in dict.fromkeys(indices) if (dataset_name, i) not in self.cache]
        if missing:
            dataset, size = self.job.dataset(dataset_name), self.job.spec.input_size
            images = torch.stack([view(dataset.open(i, size), size) for i in missing])  # [N, 3, S, S]
            with torch.no_grad():
                logits = self.job.model(self.job.spec.preprocess(images.to(self.job.device)))  # [N, K]
            for i, row in zip(missing, torch.softmax(logits.float(), dim=1).cpu()):
                self.cache[(dataset_name, i)] = row
        return torch.stack([self.cache[(dataset_name, i)] for i in indices]).mean(0)


def _from_predictions(meta: Mapping[str, Any], predictor: _Predictor) -> list[dict[str, Any]]:
    top = [e["index"] for e in meta["top"] if "error" not in e]
    base = [e["index"] for e in meta.get("quantiles") or [] if "error" not in e]
    labels = predictor.job.spec.labels
    if not top or not base or not labels:
        return []
    p = predictor.probabilities(meta["dataset"], top)  # [K]
    q = predictor.probabilities(meta["dataset"], base)  # [K]
    shares = _prediction_shares(p, q, labels)
    out = []
    for label, (share, base_rate, _) in shares.items():
        if share >= 0.1 and share / max(base_rate, 1e-6) >= MIN_LIFT:
            out.append({"label": label, "score": share * (1 - base_rate), "source": "predictions",
                        "lift": round(share / max(base_rate, 1e-6), 3)})
    return out


def _prediction_shares(p: torch.Tensor, q: torch.Tensor, labels: Sequence[str]) -> Share:
    """Per class (and, for ImageNet's 1000 classes, per WordNet ancestor) the summed mean
    probability among top examples and among the baseline."""
    shares: Share = {labels[k]: (float(p[k]), float(q[k]), 0) for k in range(len(labels))}
    if len(labels) == 1000:
        from microtome.zoo.imagenet import imagenet_hierarchy

        names, ancestors = imagenet_hierarchy()
        sums: dict[int, list[float]] = {}
        for k, nodes in enumerate(ancestors):
            for a in nodes:
                acc = sums.setdefault(a, [0.0, 0.0])
                acc[0] += float(p[k])
                acc[1] += float(q[k])
        shares.update({names[a]: (s[0], s[1], 0) for a, s in sums.items()})
    return shares


# ---- from connections ---------------------------------------------------------------------------
def _from_connections(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    classes = [c for c in meta.get("classes") or [] if isinstance(c, dict) and c.get("label")]
    positive = [c for c in classes if isinstance(c.get("weight"), (int, float)) and c["weight"] > 0]
    total = sum(c["weight"] for c in positive)
    if not positive or not math.isfinite(total) or total <= 0:
        return []
    return [{"label": str(c["label"]), "score": c["weight"] / total, "source": "connections"}
            for c in positive]
