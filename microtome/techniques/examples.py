"""Dataset examples: which images make each unit fire, from ONE pass over a dataset.

Shapes: a layer's output `[B, C, H, W]` -> per image and unit the maximum over positions and
its place, values `[B, C]` and positions `[B, C, 2]` (y, x); every selected layer's units are
concatenated into one `[B, sum C]` so the streaming top-k, bottom-k and histogram run once
per batch for all units. `collect(...) -> {layer id: LayerStats}`;
`dataset_examples(...) -> [ArtifactResult]` (one per unit) adds crops, heat maps and plots.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from microtome.data.datasets import Dataset, resize_size
from microtome.errors import MicrotomeError
from microtome.runtime import torch_threads
from microtome.images import png_bytes
from microtome.techniques.base import ArtifactResult, Job
from microtome.techniques.builtin import DATASET_EXAMPLES
from microtome.techniques.receptive import ReceptiveField, receptive_fields
from microtome.techniques.stats import Histogram, StreamingHistogram, StreamingTopK, TopK
from microtome.zoo.hooks import forward_to, layer_paths
from microtome.zoo.spec import ModelSpec

Progress = Callable[[str, int, int], None]  # (stage, images done, images in the stage)
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BINS = 64


@dataclass
class LayerStats:
    """One layer's statistics over a dataset: per unit, over images' max activations."""

    layer: str
    grid: tuple[int, int]  # the layer's (H, W) at the input size; (1, 1) for flat layers
    top: TopK  # values [C, k], ids [C, k] (dataset indices), positions [C, k, 2]
    bottom: TopK
    histogram: Histogram  # edges [C, bins + 1], counts [C, bins], one example per bin
    images: int  # images seen (skipped files excluded)
    size: int  # the input view's side
    k: int  # as asked (the lists are shorter when fewer images were seen)
    dataset: str

    @property
    def channels(self) -> int:
        return self.top.values.shape[0]


def spatial_max(act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`[B, C, H, W]` (or `[B, C]`) -> max over positions `[B, C]` and its (y, x) `[B, C, 2]`."""
    if act.dim() == 2:
        return act, torch.zeros(*act.shape, 2, dtype=torch.int64, device=act.device)
    width = act.shape[-1]
    values, flat = act.flatten(2).max(dim=2)  # [B, C, H*W] -> [B, C]
    return values, torch.stack([flat // width, flat % width], dim=2)  # [B, C, 2]


def collect(model: nn.Module, spec: ModelSpec, layer_ids: Sequence[str], dataset: Dataset,
            size: int | None = None, batch_size: int = 32, k: int = 16, bins: int = BINS,
            device: str | torch.device = "cpu", progress: Progress | None = None
            ) -> dict[str, LayerStats]:
    """One pass over `dataset` collecting, for every unit of every layer in `layer_ids`, the
    top-k and bottom-k images by max spatial activation and a histogram of those maxima."""
    size = size or spec.input_size
    paths = layer_paths(spec, layer_ids)
    if k < 1:
        raise MicrotomeError(f"k must be at least 1, got {k}")
    splits: list[int] = []  # channels per layer, in `paths` order, known after the 1st batch
    grids: dict[str, tuple[int, int]] = {}
    top = bottom = hist = None
    seen = 0
    with torch.no_grad():
        for batch in dataset.batches(size, batch_size):
            acts = forward_to(model, spec.preprocess(batch.images.to(device)), paths)
            with torch_threads(1):  # many small ops: a second thread only waits (0.92 s vs 0.046 s a batch)
                maxima = [spatial_max(acts[layer_id]) for layer_id in paths]
                values = torch.cat([v for v, _ in maxima], dim=1).float().cpu()  # [B, sum C]
                positions = torch.cat([p for _, p in maxima], dim=1).cpu()  # [B, sum C, 2]
                if top is None:
                    splits = [v.shape[1] for v, _ in maxima]
                    grids = {layer_id: tuple(acts[layer_id].shape[2:]) or (1, 1)
                             for layer_id in paths}
                    total = values.shape[1]
                    top, bottom = StreamingTopK(total, k), StreamingTopK(total, k, largest=False)
                    hist = StreamingHistogram(total, bins)
                top.update(values, batch.indices, positions)
                bottom.update(values, batch.indices, positions)
                hist.update(values, batch.indices, positions)
            seen += len(batch.indices)
            if progress:
                progress("collect", seen, len(dataset))
    if top is None:
        raise MicrotomeError(f"no readable image in {dataset.name}: "
                             f"{len(dataset.skipped)} files skipped, e.g. {dataset.skipped[:3]}")
    return _split(paths, splits, grids, top.result(), bottom.result(), hist.result(),
                  images=seen, size=size, k=k, dataset=dataset.name)


def _split(paths: dict[str, str], splits: list[int], grids: dict, top: TopK, bottom: TopK,
           hist: Histogram, **common) -> dict[str, LayerStats]:
    """Cut the concatenated channels `[sum C, ...]` back into layers."""
    out, start = {}, 0
    for layer_id, channels in zip(paths, splits):
        part = slice(start, start + channels)
        out[layer_id] = LayerStats(
            layer_id, grids[layer_id],
            TopK(top.values[part], top.ids[part], top.positions[part]),
            TopK(bottom.values[part], bottom.ids[part], bottom.positions[part]),
            Histogram(hist.edges[part], hist.counts[part], hist.example_ids[part],
                      hist.example_values[part], hist.example_positions[part]),
            **common)
        start += channels
    return out


# ---- artifacts -----------------------------------------------------------------------------

def dataset_examples(model: nn.Module, spec: ModelSpec, layer_ids: str | Sequence[str],
                     dataset: Dataset, units: Sequence[int] | None = None,
                     size: int | None = None, batch_size: int = 32, k: int = 16,
                     preset: str = "standard", device: str | torch.device = "cpu",
                     progress: Progress | None = None,
                     stats: dict[str, LayerStats] | None = None,
                     fields: dict[str, ReceptiveField] | None = None) -> list[ArtifactResult]:
    """Artifacts (technique "dataset_examples"), one per unit of each layer (or `units` of each).

    `stats` (from `collect`, e.g. one pass for all layers) and `fields` (from
    `receptive_fields`) are computed when not given. A second forward pass runs over just the
    images in some unit's top or bottom list, for their heat maps."""
    layer_ids = [layer_ids] if isinstance(layer_ids, str) else list(layer_ids)
    size = size or spec.input_size
    paths = layer_paths(spec, layer_ids)
    for layer_id in paths:  # before any pass, as far as the spec tells
        _units(units, spec.layer(layer_id).channels, layer_id)
    if stats is None:
        stats = collect(model, spec, list(paths), dataset, size, batch_size, k, device=device,
                        progress=progress)
    for layer_id in paths:
        got = stats.get(layer_id)
        if got is None or (got.size, got.k, got.dataset) != (size, k, dataset.name):
            raise MicrotomeError(f"the statistics given do not fit: they need layer {layer_id!r} "
                                 f"at size {size} with k={k} over {dataset.name}")
    fields = fields or receptive_fields(model, spec, list(paths), size, device)
    chosen = {layer_id: _units(units, stats[layer_id].channels, layer_id) for layer_id in paths}
    params = {"dataset": dataset.name, "k": k, "size": size, "preset": preset}
    render = _Renderer(dataset, size)
    heat = _second_pass(model, spec, paths, chosen, stats, fields, dataset, size, batch_size,
                        device, render, progress)
    results = []
    for layer_id, layer_units in chosen.items():
        layer, field = stats[layer_id], fields[layer_id]
        quantiles = layer.histogram.quantile_examples(list(QUANTILES))
        for unit in layer_units:
            files: dict[str, bytes] = {}
            meta = _unit_meta(render, files, layer, field, unit, quantiles, heat)
            meta["skipped"] = len(dataset.skipped)  # unreadable files (dataset.skipped lists them)
            results.append(ArtifactResult(layer_id, unit, DATASET_EXAMPLES, dict(params),
                                          files, meta))
    render.close()
    return results


def _unit_meta(render: "_Renderer", files: dict[str, bytes], layer: LayerStats,
               field: ReceptiveField, unit: int, quantiles: tuple[torch.Tensor, ...],
               heat: dict[tuple[str, int, int], bytes]) -> dict:
    """One unit's JSON description; its PNGs are added to `files`."""
    meta = {"layer": layer.layer, "unit": unit, "dataset": layer.dataset, "images": layer.images,
            "view": {"size": layer.size, "resize": resize_size(layer.size)},
            "receptive_field": field.summary(), "heat_scale": _scale(layer, unit)}
    width = len(str(layer.k - 1))
    for kind, lists in (("top", layer.top), ("bottom", layer.bottom)):
        meta[kind] = []
        for rank, index in enumerate(lists.ids[unit].tolist()):
            meta[kind].append(render.example(
                files, f"{kind}_{rank:0{width}d}", field, index, float(lists.values[unit, rank]),
                lists.positions[unit, rank].tolist(), heat.get((layer.layer, unit, index))))
    q_ids, q_values, q_positions, _ = quantiles
    meta["quantiles"] = [
        dict(q=q, **render.example(files, f"quantile_{round(q * 100):02d}", field,
                                   int(q_ids[unit, j]), float(q_values[unit, j]),
                                   q_positions[unit, j].tolist(), None))
        for j, q in enumerate(QUANTILES) if int(q_ids[unit, j]) >= 0]
    edges, counts = layer.histogram.edges[unit], layer.histogram.counts[unit]
    meta["histogram"] = {"edges": edges.tolist(), "counts": counts.tolist()}
    files["histogram.png"] = render.histogram(edges, counts, meta["quantiles"])
    return meta


def _units(units: Sequence[int] | None, channels: int, layer_id: str) -> list[int]:
    """The units asked for (all by default), each checked against the layer's channels."""
    if units is None:
        return list(range(channels))
    bad = [u for u in units if not 0 <= int(u) < channels]
    if bad:
        raise MicrotomeError(f"no unit {bad[0]} in layer {layer_id}: it has {channels} "
                             f"units (0..{channels - 1})")
    return [int(u) for u in units]


def _scale(layer: LayerStats, unit: int) -> float:
    """The activation that maps to full heat: the unit's best max activation over the dataset."""
    return max(float(layer.top.values[unit, 0]), 1e-12)


def _second_pass(model: nn.Module, spec: ModelSpec, paths: dict[str, str],
                 chosen: dict[str, list[int]], stats: dict[str, LayerStats],
                 fields: dict[str, ReceptiveField], dataset: Dataset, size: int,
                 batch_size: int, device, render: "_Renderer", progress: Progress | None
                 ) -> dict[tuple[str, int, int], bytes]:
    """Over just the images some unit shows: encode their crops (and whole views) once, and
    for top/bottom examples of spatial layers run the model again for the unit's heat map.
    Returns `{(layer, unit, image index): heat map PNG}`."""
    wanted: dict[str, torch.Tensor] = {}  # layer -> [R, 2] (unit, image index) heat requests
    boxes: dict[int, set[tuple[int, int, int, int]]] = {}  # image index -> crops to encode
    whole = (0, 0, size, size)
    for layer_id, layer_units in chosen.items():
        layer, field = stats[layer_id], fields[layer_id]
        u = torch.tensor(layer_units, dtype=torch.int64)
        q_ids, _, q_pos, _ = layer.histogram.quantile_examples(list(QUANTILES))
        ids = torch.cat([layer.top.ids[u], layer.bottom.ids[u], q_ids[u]], dim=1)  # [U, n]
        pos = torch.cat([layer.top.positions[u], layer.bottom.positions[u], q_pos[u]], dim=1)
        for index, (y, x) in zip(ids.flatten().tolist(), pos.reshape(-1, 2).tolist()):
            if index >= 0:
                boxes.setdefault(index, set()).add(field.box(y, x))
        if layer.grid == (1, 1):
            continue  # a flat layer has no map
        lists = torch.cat([layer.top.ids[u], layer.bottom.ids[u]], dim=1)  # [U, 2k]
        pairs = torch.stack([u[:, None].expand_as(lists), lists], dim=2).reshape(-1, 2)
        wanted[layer_id] = pairs = torch.unique(pairs, dim=0)
        for index in pairs[:, 1].tolist():
            boxes[index].add(whole)
    heat_images = torch.unique(torch.cat([p[:, 1] for p in wanted.values()])) \
        if wanted else torch.empty(0, dtype=torch.int64)
    out: dict[tuple[str, int, int], bytes] = {}
    done = 0
    with torch.no_grad():
        for batch in dataset.batches(size, batch_size, indices=sorted(boxes)):
            for index, image in zip(batch.indices.tolist(), batch.images):
                for box in boxes[index]:
                    render.encode(index, box, image)
            keep = torch.isin(batch.indices, heat_images)  # [B]
            if keep.any():
                indices = batch.indices[keep]
                images = batch.images[keep].to(device)
                acts = forward_to(model, spec.preprocess(images),
                                  {layer_id: paths[layer_id] for layer_id in wanted})
                row_of = {int(i): r for r, i in enumerate(indices)}
                for layer_id, pairs in wanted.items():
                    here = pairs[torch.isin(pairs[:, 1], indices)]  # [R, 2]
                    rows = torch.tensor([row_of[int(i)] for i in here[:, 1]], dtype=torch.int64)
                    maps = acts[layer_id][rows.to(device), here[:, 0].to(device)]  # [R, H, W]
                    for (unit, index), amap in zip(here.tolist(), maps.float().cpu()):
                        out[(layer_id, unit, index)] = heat_png(amap, _scale(stats[layer_id], unit))
            done += len(batch.indices)
            if progress:
                progress("examples", done, len(boxes))
    return out


def heat_png(amap: torch.Tensor, scale: float) -> bytes:
    """A unit's map `[H, W]` at the layer's resolution as an RGBA PNG: colour and opacity
    both grow with activation / scale (clipped to [0, 1]), to lay over the image."""
    from matplotlib import colormaps

    level = (amap / scale).clamp(0, 1).numpy()  # [H, W]
    rgba = colormaps["inferno"](level)  # [H, W, 4] in [0, 1]
    rgba[..., 3] = 0.15 + 0.85 * level
    return png_bytes((rgba * 255 + 0.5).astype(np.uint8))


class _Renderer:
    """Image, crop and plot PNGs, each encoded once (the same image serves many units)."""

    def __init__(self, dataset: Dataset, size: int) -> None:
        self.dataset, self.size = dataset, size
        self.pngs: dict[tuple[int, tuple[int, int, int, int]], bytes] = {}
        self.plot: _HistogramPlot | None = None

    def encode(self, index: int, box: tuple[int, int, int, int], image: torch.Tensor) -> None:
        """Encode the `box` (top, left, bottom, right) of `image [3, S, S]` once."""
        if (index, box) not in self.pngs:
            top, left, bottom, right = box
            self.pngs[(index, box)] = png_bytes(image[:, top:bottom, left:right])

    def example(self, files: dict[str, bytes], name: str, field: ReceptiveField, index: int,
                value: float, position: list[int], heat: bytes | None) -> dict:
        """Add one example's PNGs to `files` and return its JSON description."""
        box = field.box(*position)
        entry = {"index": index, "path": self.dataset.paths[index], "value": value,
                 "position": position, "box": list(box), "label": self.dataset.labels[index],
                 "class_name": self.dataset.label_name(index), "files": {}}
        if (index, box) not in self.pngs:  # unreadable now, though it was read in the pass
            entry["error"] = "the image could not be read again"
            return entry
        files[f"{name}_crop.png"] = self.pngs[(index, box)]
        if heat is not None:
            files[f"{name}_image.png"] = self.pngs[(index, (0, 0, self.size, self.size))]
            files[f"{name}_heat.png"] = heat
        entry["files"] = {kind: f"{name}_{kind}.png" for kind in ("crop", "image", "heat")
                          if f"{name}_{kind}.png" in files}
        return entry

    def histogram(self, edges: torch.Tensor, counts: torch.Tensor, quantiles: list[dict]) -> bytes:
        """A small bar plot of the unit's max activations, with quantile examples marked."""
        if self.plot is None:
            self.plot = _HistogramPlot()
        return self.plot.png(edges, counts, [entry["value"] for entry in quantiles])

    def close(self) -> None:
        self.pngs.clear()
        self.plot = None


class _HistogramPlot:
    """One matplotlib figure (Agg, no pyplot state) whose artists are updated for each unit:
    about 3x faster than drawing a new figure, which matters at thousands of units."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.figure = Figure(figsize=(3.2, 1.6), dpi=80)
        FigureCanvasAgg(self.figure)
        self.ax = ax = self.figure.add_axes((0.12, 0.22, 0.84, 0.72))
        self.bars = ax.stairs([0], [0, 1], fill=True, color="#4c72b0")
        self.marks = ax.vlines([], 0, 1, color="#dd8452", linewidth=0.6,
                               transform=ax.get_xaxis_transform())  # quantile examples
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(3, integer=True))
        ax.tick_params(labelsize=6)
        ax.set_xlabel("max activation", fontsize=6, labelpad=1)

    def png(self, edges: torch.Tensor, counts: torch.Tensor, marks: list[float]) -> bytes:
        """edges [bins + 1], counts [bins] -> PNG, drawn over the occupied bins only."""
        nonzero = counts.nonzero().squeeze(1)
        lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
        counts, edges = counts[lo:hi].numpy(), edges[lo:hi + 1].numpy()
        self.bars.set_data(counts, edges)
        self.marks.set_segments([[(v, 0), (v, 1)] for v in marks])
        self.ax.set_xlim(edges[0], edges[-1])
        self.ax.set_ylim(0, counts.max() * 1.05)
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png")
        return buf.getvalue()


def run_dataset_examples(job: Job) -> list[ArtifactResult]:
    """The dataset-examples runner: one pass over the dataset for every layer of the job."""
    params = job.items[0].params
    results = dataset_examples(job.model, job.spec, list(job.layers), job.dataset(params["dataset"]),
                               size=params["size"], k=params["k"], preset=params["preset"],
                               device=job.device)
    job.tick(1.0)
    return results
