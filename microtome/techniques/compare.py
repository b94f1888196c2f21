"""Two models on the same images: `compare(a, b, dataset, ...) -> Comparison`, holding per
paired layers `(A layer, B layer)` the Pearson correlations `r [Ca, Cb]` of their units and a
one-to-one matching, and linear CKA `[La, Lb]` for every pair of layers.

One streaming pass over the images (each model sees them at its own input size, through its
spec's preprocessing) keeps, per layer, the spatial maximum of every channel over each image
(`pooled [N, C]`: small, so kept whole), and per paired layers the running sums of a spatially
matched correlation (over images × positions: `n, Σa [Ca], Σb [Cb], Σa² , Σb², Σab [Ca, Cb]`),
never the maps themselves. Spatial matching: when the two layers' grids differ (lite0's 14×14
against lite1's 15×15), the finer map is area-averaged to the coarser grid (both cover the
whole image, so cells line up up to that averaging); a flat `[B, C]` output is a 1×1 grid.

- `r` ("pooled"): Pearson over images of the pooled values `[N, Ca] × [N, Cb]`.
- `r_spatial`: Pearson over images × positions of the matched maps.
- matching: Hungarian assignment (`scipy.optimize.linear_sum_assignment` on `-r`): each unit
  of the smaller layer gets its own partner, the sum of their r as large as possible.
- CKA (Kornblith et al. 2019, linear kernel) on the pooled `[N, C]` of every A layer against
  every B layer: `‖Bᵀ A‖²_F / (‖Aᵀ A‖_F ‖Bᵀ B‖_F)` with columns centred.
A unit constant over the images (a dead ReLU) correlates with nothing: its r is 0.

Layer pairing (`depth_pairing`): both models' layers are cut into stages of equal output size
(resolution); when both have as many stages, stage k pairs with stage k and a layer with the
layer at the same relative position inside its stage (EfficientNet-Lite0's block8, 4th of the
6 blocks at 14×14, pairs with Lite1's block11, 5th of 8 at 15×15); otherwise by relative
depth over all layers. `parse_pairs("block5=block7,...")` sets the pairs by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from microtome.data.datasets import Dataset
from microtome.errors import MicrotomeError
from microtome.zoo.hooks import hooked, run
from microtome.zoo.spec import ModelSpec

Pair = tuple[str, str]  # (A layer id, B layer id)
BATCH_SIZE = 16


# -- layer pairing --------------------------------------------------------------------------

def _stages(spec: ModelSpec, layers: Sequence[str]) -> list[list[str]]:
    """`layers` (in model order) cut into runs of equal output size."""
    out: list[list[str]] = []
    last = None
    for lid in layers:
        size = spec.layer(lid).size
        if size != last:
            out.append([])
            last = size
        out[-1].append(lid)
    return out


def _at(position: float, layers: Sequence[str]) -> str:
    """The layer at relative `position` (0 first, 1 last) of `layers`."""
    return layers[int(round(position * (len(layers) - 1)))]


def _position(index: int, count: int) -> float:
    return 1.0 if count == 1 else index / (count - 1)  # a lone layer is its stage's output


def unit_layers(spec: ModelSpec) -> list[str]:
    """The model's own layers, without dictionary-feature layers (`block10.sae`)."""
    return [lid for lid in spec.layer_ids if _base(spec, lid) is None]


def _base(spec: ModelSpec, lid: str) -> str | None:
    """The base layer of a dictionary-feature layer (`block10.sae` -> `block10`), else None."""
    base = lid.rsplit(".", 1)[0]
    return base if "." in lid and base in spec.layer_ids else None


def depth_pairing(spec_a: ModelSpec, spec_b: ModelSpec, layers_a: Sequence[str] | None = None) -> dict[str, str]:
    """`{A layer: B layer}` at matching depth for `layers_a` (default all): see the module doc.
    A dictionary-feature layer (`block10.sae`) pairs with its base's partner, a unit layer of
    B, so the answer never depends on which dictionaries B has ("is this feature a unit of
    the other model?"); `parse_pairs("block10.sae=block14.sae")` pairs features with features."""
    units_a, units_b = unit_layers(spec_a), unit_layers(spec_b)
    stages_a, stages_b = _stages(spec_a, units_a), _stages(spec_b, units_b)
    out: dict[str, str] = {}
    if len(stages_a) == len(stages_b):
        for stage_a, stage_b in zip(stages_a, stages_b):
            for i, lid in enumerate(stage_a):
                out[lid] = _at(_position(i, len(stage_a)), stage_b)
    else:
        for i, lid in enumerate(units_a):
            out[lid] = _at(_position(i, len(units_a)), units_b)
    for lid in spec_a.layer_ids:
        base = _base(spec_a, lid)
        if base is not None:
            out[lid] = out[base]
    wanted = layers_a if layers_a is not None else spec_a.layer_ids
    return {a: out[a] for a in wanted if a in out}


DEPTH = "depth"


def side_pairs(pairing: str, spec_x: ModelSpec, spec_y: ModelSpec,
               layers_x: Sequence[str] | None = None) -> dict[str, str]:
    """`{X layer: Y layer}` for the unit pages of X: `pairing` is "depth" or "a=b,..." pairs
    (X layer first; a layer named twice keeps its first partner), limited to `layers_x`."""
    if pairing == DEPTH:
        return depth_pairing(spec_x, spec_y, layers_x)
    out: dict[str, str] = {}
    for x, y in parse_pairs(pairing, spec_x, spec_y):
        out.setdefault(x, y)
    return {x: y for x, y in out.items() if layers_x is None or x in layers_x}


def swapped(pairing: str) -> str:
    """The same pairing seen from the other model ("a=b" -> "b=a"; "depth" stays)."""
    if pairing == DEPTH:
        return pairing
    return ",".join("=".join(reversed(p.split("=", 1))) for p in pairing.split(",") if p.strip())


def parse_pairs(text: str, spec_a: ModelSpec, spec_b: ModelSpec) -> list[Pair]:
    """`"block5=block7,head=head"` -> canonical pairs; a bad layer name is an error naming
    the close ones, a missing `=` says the form."""
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        a, sep, b = part.partition("=")
        if not sep or not a.strip() or not b.strip():
            raise MicrotomeError(f"layer pair {part!r} is not A_LAYER=B_LAYER, e.g. "
                                 f"block8=block11 ({spec_a.id} layer = {spec_b.id} layer)")
        pairs.append((spec_a.layer(a.strip()).id, spec_b.layer(b.strip()).id))
    if not pairs:
        raise MicrotomeError("no layer pairs given; write A_LAYER=B_LAYER[,...] or leave --layers out")
    return list(dict.fromkeys(pairs))


# -- statistics ------------------------------------------------------------------------------

def _flat_maps(x: torch.Tensor) -> torch.Tensor:
    """A layer output as maps: `[B, C]` -> `[B, C, 1, 1]`; `[B, C, H, W]` as it is."""
    return x[:, :, None, None] if x.dim() == 2 else x


def match_grids(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two maps `[B, Ca, Ha, Wa]`, `[B, Cb, Hb, Wb]` on one grid: the finer area-averaged to the
    coarser `(min H, min W)`."""
    size = (min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3]))
    a = a if tuple(a.shape[2:]) == size else F.adaptive_avg_pool2d(a, size)
    b = b if tuple(b.shape[2:]) == size else F.adaptive_avg_pool2d(b, size)
    return a, b


@dataclass
class Moments:
    """Running sums for the Pearson correlation of `a [M, Ca]` with `b [M, Cb]` over rows
    streamed in batches; values are shifted by the first batch's means (less cancellation)."""

    n: int = 0
    sums: list[torch.Tensor] = field(default_factory=list)  # Σa, Σb, Σa², Σb², Σab (float64)
    shift: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.float(), b.float()  # [M, Ca], [M, Cb]
        if self.shift is None:
            self.shift = (a.mean(0), b.mean(0))
            self.sums = [torch.zeros(a.shape[1], dtype=torch.float64), torch.zeros(b.shape[1], dtype=torch.float64),
                         torch.zeros(a.shape[1], dtype=torch.float64), torch.zeros(b.shape[1], dtype=torch.float64),
                         torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64)]
        a, b = a - self.shift[0], b - self.shift[1]
        for total, part in zip(self.sums, (a.sum(0), b.sum(0), (a * a).sum(0), (b * b).sum(0), a.T @ b)):
            total += part.double()
        self.n += a.shape[0]

    def corr(self) -> np.ndarray:
        """`r [Ca, Cb]`; 0 where a unit is constant."""
        sa, sb, saa, sbb, sab = (s.numpy() for s in self.sums)
        n = max(self.n, 1)
        cov = sab - np.outer(sa, sb) / n
        va, vb = saa - sa * sa / n, sbb - sb * sb / n
        return _normalise(cov, va, vb)


def _normalise(cov: np.ndarray, va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """cov / sqrt(va vb), 0 where either variance is (numerically) zero; clipped to [-1, 1]."""
    tiny = 1e-12
    ok_a = va > tiny * max(float(np.abs(va).max(initial=0.0)), tiny)
    ok_b = vb > tiny * max(float(np.abs(vb).max(initial=0.0)), tiny)
    denom = np.sqrt(np.outer(np.where(ok_a, va, 1.0), np.where(ok_b, vb, 1.0)))
    r = np.where(np.outer(ok_a, ok_b), cov / denom, 0.0)
    return np.clip(r, -1.0, 1.0)


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of every column of `a [N, Ca]` with every column of `b [N, Cb]` -> `[Ca, Cb]`."""
    a = a.astype(np.float64) - a.mean(0)
    b = b.astype(np.float64) - b.mean(0)
    return _normalise(a.T @ b, (a * a).sum(0), (b * b).sum(0))


def linear_cka(features_a: Sequence[np.ndarray], features_b: Sequence[np.ndarray]) -> np.ndarray:
    """Linear CKA of every `[N, Ca]` of `features_a` with every `[N, Cb]` of `features_b` -> `[La, Lb]`."""
    def centred(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        return x - x.mean(0)
    ca, cb = [centred(x) for x in features_a], [centred(x) for x in features_b]
    norm_a = [np.linalg.norm(x.T @ x) for x in ca]  # ‖AᵀA‖_F
    norm_b = [np.linalg.norm(x.T @ x) for x in cb]
    out = np.zeros((len(ca), len(cb)))
    for i, x in enumerate(ca):
        for j, y in enumerate(cb):
            denom = norm_a[i] * norm_b[j]
            out[i, j] = float(np.sum((y.T @ x) ** 2) / denom) if denom > 0 else 0.0
    return out


def one_to_one(r: np.ndarray) -> np.ndarray:
    """The Hungarian matching of `r [Ca, Cb]` (maximizing the summed r): `partner [Ca]`, the B
    unit of each A unit, -1 for A units left over when Ca > Cb."""
    rows, cols = linear_sum_assignment(-np.nan_to_num(r))
    partner = np.full(r.shape[0], -1, dtype=np.int64)
    partner[rows] = cols
    return partner


# -- the pass ----------------------------------------------------------------------------------

@dataclass
class Side:
    """One model of a comparison: the module, its spec, the layers read."""

    model: torch.nn.Module
    spec: ModelSpec
    layers: tuple[str, ...]


@dataclass
class PairResult:
    """One paired (A layer, B layer): pooled and spatial r `[Ca, Cb]`, the Hungarian partners
    both ways (`partner_a [Ca]` into B, `partner_b [Cb]` into A) and the matched grid."""

    r: np.ndarray
    r_spatial: np.ndarray
    partner_a: np.ndarray
    partner_b: np.ndarray
    grid: tuple[int, int]


@dataclass
class Comparison:
    """What `compare` found: paired layers, CKA of every A layer × B layer, image count."""

    a: ModelSpec
    b: ModelSpec
    layers_a: tuple[str, ...]
    layers_b: tuple[str, ...]
    pairs: dict[Pair, PairResult]
    cka: np.ndarray  # [len(layers_a), len(layers_b)]
    images: int
    dataset: str


def spread(count: int, wanted: int) -> list[int]:
    """`wanted` indices spread evenly over `range(count)` (all of them when there are fewer)."""
    if wanted >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, wanted)})


def _read(side: Side, images: torch.Tensor, captured: dict, device: str) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = run(side.model, side.spec.preprocess(images.to(device)), captured)
    return {lid: _flat_maps(out[lid].detach().float().cpu()) for lid in side.layers}


def collect(a: Side, b: Side, dataset: Dataset, indices: Sequence[int], pairs: Sequence[Pair],
            device: str = "cpu", progress: Callable[[int], None] = lambda n: None,
            batch_size: int = BATCH_SIZE) -> tuple[dict, dict, dict, dict, int]:
    """One pass: pooled `{layer: [N, C]}` of both sides, `Moments` and grid per pair, image count.

    `progress(n)` is called with the number of images each batch added."""
    paths_a = {lid: a.spec.layer(lid).module for lid in a.layers}
    paths_b = {lid: b.spec.layer(lid).module for lid in b.layers}
    pooled_a: dict[str, list] = {lid: [] for lid in a.layers}
    pooled_b: dict[str, list] = {lid: [] for lid in b.layers}
    moments = {pair: Moments() for pair in pairs}
    grids: dict[Pair, tuple[int, int]] = {}
    count = 0
    batches_a = dataset.batches(a.spec.input_size, batch_size, indices)
    batches_b = dataset.batches(b.spec.input_size, batch_size, indices)
    with hooked(a.model, paths_a, stop=True) as cap_a, hooked(b.model, paths_b, stop=True) as cap_b:
        for batch_a, batch_b in zip(batches_a, batches_b):
            if not torch.equal(batch_a.indices, batch_b.indices):  # pragma: no cover - same files, same skips
                raise MicrotomeError("the two passes over the dataset read different images")
            maps_a = _read(a, batch_a.images, cap_a, device)  # {layer: [B, C, H, W]}
            maps_b = _read(b, batch_b.images, cap_b, device)
            for lid, x in maps_a.items():
                pooled_a[lid].append(x.amax(dim=(2, 3)).numpy())  # [B, C]
            for lid, x in maps_b.items():
                pooled_b[lid].append(x.amax(dim=(2, 3)).numpy())
            for (la, lb), mom in moments.items():
                xa, xb = match_grids(maps_a[la], maps_b[lb])
                grids[(la, lb)] = tuple(xa.shape[2:])
                mom.update(xa.permute(0, 2, 3, 1).reshape(-1, xa.shape[1]),  # [B*H*W, Ca]
                           xb.permute(0, 2, 3, 1).reshape(-1, xb.shape[1]))
            count += len(batch_a.indices)
            progress(len(batch_a.indices))
    if count < 3:
        raise MicrotomeError(f"{dataset.name}: only {count} readable images; a correlation needs at least 3")
    stack = lambda lists: {lid: np.concatenate(v) for lid, v in lists.items()}  # noqa: E731
    return stack(pooled_a), stack(pooled_b), moments, grids, count


def compare(a: Side, b: Side, dataset: Dataset, images: int, pairs: Sequence[Pair],
            device: str = "cpu", progress: Callable[[int], None] = lambda n: None) -> Comparison:
    """Compare `a` and `b` over `images` images of `dataset` (spread evenly): see the module doc.

    `a.layers` / `b.layers` are the layers whose pooled values enter the CKA map; every layer
    named in `pairs` must be among them."""
    for la, lb in pairs:
        if la not in a.layers or lb not in b.layers:
            raise MicrotomeError(f"pair {la}={lb} names a layer the comparison does not read")
    if a.model is b.model:  # one module cannot carry two sets of stopping hooks
        import copy
        b = Side(copy.deepcopy(b.model), b.spec, b.layers)
    indices = spread(len(dataset), images)
    pooled_a, pooled_b, moments, grids, count = collect(a, b, dataset, indices, pairs, device, progress)
    results = {}
    for pair, mom in moments.items():
        r = pearson(pooled_a[pair[0]], pooled_b[pair[1]])
        results[pair] = PairResult(r=r, r_spatial=mom.corr(), partner_a=one_to_one(r),
                                   partner_b=one_to_one(r.T), grid=grids[pair])
    cka = linear_cka([pooled_a[lid] for lid in a.layers], [pooled_b[lid] for lid in b.layers])
    return Comparison(a.spec, b.spec, a.layers, b.layers, results, cka, count, dataset.name)


def best_per_unit(r: np.ndarray) -> np.ndarray:
    """The best r of each row unit `[Ca]` (for medians per layer)."""
    return r.max(axis=1) if r.shape[1] else np.zeros(r.shape[0])


def summary(result: PairResult) -> Mapping[str, float]:
    """Median best r (pooled, spatial) and mean matched r of the A side of a pair."""
    matched = [result.r[i, j] for i, j in enumerate(result.partner_a) if j >= 0]
    return {"median_best_r": float(np.median(best_per_unit(result.r))),
            "median_best_r_spatial": float(np.median(best_per_unit(result.r_spatial))),
            "mean_matched_r": float(np.mean(matched)) if matched else 0.0}
