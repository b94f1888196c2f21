"""Dataset examples: which images make each unit fire, from ONE pass over a dataset.

Shapes: a layer's output `[B, C, H, W]` -> per image and unit the maximum over positions and
its place, values `[B, C]` and positions `[B, C, 2]` (y, x); every selected layer's units are
concatenated into one `[B, sum C]` so the streaming top-k, bottom-k and histogram run once
per batch for all units, and (`maps=True`) the maps `[C, k, H, W]` of the images each unit's
top and bottom lists hold are kept along, so heat maps need no second forward pass.
`collect(...) -> {layer id: LayerStats}`; `dataset_examples(...) -> [ArtifactResult]` (one per
unit) adds crops and heat maps: a second pass only decodes the photos shown, and encodes each
(photo, box) once whatever the number of units showing it; a unit's heat maps are the tiles
of one PNG (`heat_sprite.png`, entries name their `heat_tile`). The histogram is data (counts
in meta), drawn by the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from microtome.data.datasets import Dataset, resize_size
from microtome.errors import MicrotomeError
from microtome.runtime import torch_threads
from microtome.techniques import example_files
from microtome.techniques.base import ArtifactResult, Job
from microtome.techniques.builtin import DATASET_EXAMPLES
from microtome.techniques.stats import Histogram, StreamingHistogram, StreamingMaps, StreamingTopK, TopK
from microtome.zoo.hooks import forward_to, layer_paths
from microtome.zoo.receptive import ReceptiveField, receptive_fields
from microtome.zoo.spec import ModelSpec

Progress = Callable[[str, int, int], None]  # (stage, images done, images in the stage)
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BINS = 64
HEAT_SPRITE = "heat_sprite.png"  # a unit's heat maps, one tile per top then bottom example


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
    top_maps: torch.Tensor | None = None  # [C, k, H, W] the maps of `top`'s images (float16)
    bottom_maps: torch.Tensor | None = None  # [C, k, H, W]; both None for flat layers

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
            device: str | torch.device = "cpu", progress: Progress | None = None,
            maps: bool = False) -> dict[str, LayerStats]:
    """One pass over `dataset` collecting, for every unit of every layer in `layer_ids`, the
    top-k and bottom-k images by max spatial activation and a histogram of those maxima; with
    `maps`, also those images' activation maps (for heat maps)."""
    size = size or spec.input_size
    paths = layer_paths(spec, layer_ids)
    if k < 1:
        raise MicrotomeError(f"k must be at least 1, got {k}")
    state: _Pass | None = None
    seen = 0
    with torch.no_grad():
        for batch in dataset.batches(size, batch_size):
            acts = forward_to(model, spec.preprocess(batch.images.to(device)), paths)
            with torch_threads(1):  # many small ops: a second thread only waits (0.92 s vs 0.046 s a batch)
                if state is None:  # channels and grids are known after the first batch
                    state = _Pass(list(paths), acts, k, bins, maps)
                state.update(acts, batch.indices)
            seen += len(batch.indices)
            if progress:
                progress("collect", seen, len(dataset))
    if state is None:
        raise MicrotomeError(f"no readable image in {dataset.name}: "
                             f"{len(dataset.skipped)} files skipped, e.g. {dataset.skipped[:3]}")
    with torch_threads(1):
        return state.result(images=seen, size=size, k=k, dataset=dataset.name)


class _Pass:
    """The streaming state of one pass: every layer's units concatenated, `[sum C]`."""

    def __init__(self, layers: list[str], acts: dict[str, torch.Tensor], k: int, bins: int,
                 maps: bool) -> None:
        self.layers = layers
        self.parts, start = {}, 0
        for layer_id in layers:
            channels = acts[layer_id].shape[1]
            self.parts[layer_id] = slice(start, start + channels)
            start += channels
        self.grids = {layer_id: tuple(acts[layer_id].shape[2:]) or (1, 1) for layer_id in layers}
        self.top, self.bottom = StreamingTopK(start, k), StreamingTopK(start, k, largest=False)
        self.hist = StreamingHistogram(start, bins)
        self.maps = {layer_id: tuple(StreamingMaps(acts[layer_id].shape[1], k, self.grids[layer_id])
                                     for _ in range(2))
                     for layer_id in layers if maps and acts[layer_id].dim() == 4}

    def update(self, acts: dict[str, torch.Tensor], ids: torch.Tensor) -> None:
        maxima = [spatial_max(acts[layer_id]) for layer_id in self.layers]
        values = torch.cat([v for v, _ in maxima], dim=1).float().cpu()  # [B, sum C]
        positions = torch.cat([p for _, p in maxima], dim=1).cpu()  # [B, sum C, 2]
        for stat in (self.top, self.bottom, self.hist):
            stat.update(values, ids, positions)
        for layer_id, (top, bottom) in self.maps.items():
            part = self.parts[layer_id]
            top.update(self.top.ids[part], ids, acts[layer_id])  # [B, C, H, W] kept where held
            bottom.update(self.bottom.ids[part], ids, acts[layer_id])

    def result(self, **common) -> dict[str, LayerStats]:
        """Cut the concatenated channels `[sum C, ...]` back into layers."""
        top, bottom, hist = self.top.result(), self.bottom.result(), self.hist.result()
        out = {}
        for layer_id, part in self.parts.items():
            lists = [TopK(t.values[part], t.ids[part], t.positions[part]) for t in (top, bottom)]
            kept = self.maps.get(layer_id)
            out[layer_id] = LayerStats(
                layer_id, self.grids[layer_id], lists[0], lists[1],
                Histogram(hist.edges[part], hist.counts[part], hist.example_ids[part],
                          hist.example_values[part], hist.example_positions[part]),
                **common,
                top_maps=kept[0].result(lists[0].ids) if kept else None,
                bottom_maps=kept[1].result(lists[1].ids) if kept else None)
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

    `stats` (from `collect(..., maps=True)`, e.g. one pass for all layers) and `fields` (from
    `receptive_fields`) are computed when not given. A second pass decodes just the photos
    some unit shows, for their crops."""
    layer_ids = [layer_ids] if isinstance(layer_ids, str) else list(layer_ids)
    size = size or spec.input_size
    paths = layer_paths(spec, layer_ids)
    for layer_id in paths:  # before any pass, as far as the spec tells
        _units(units, spec.layer(layer_id).channels, layer_id)
    if stats is None:
        stats = collect(model, spec, list(paths), dataset, size, batch_size, k, device=device,
                        progress=progress, maps=True)
    for layer_id in paths:
        got = stats.get(layer_id)
        if (got is None or (got.size, got.k, got.dataset) != (size, k, dataset.name)
                or (got.top_maps is None and got.grid != (1, 1))):
            raise MicrotomeError(f"the statistics given do not fit: they need layer {layer_id!r} "
                                 f"at size {size} with k={k} over {dataset.name}, collected "
                                 f"with maps=True")
    chosen = {layer_id: _units(units, stats[layer_id].channels, layer_id) for layer_id in paths}
    params = {"dataset": dataset.name, "k": k, "size": size, "preset": preset}
    # Batch-of-one passes and ops of ~1 ms from here on: a second thread only spins (receptive
    # fields of lite0 under load: 0.8 s with one thread, 10 s with two).
    with torch_threads(1):
        fields = fields or receptive_fields(model, spec, list(paths), size, device)
        quantiles = {layer_id: stats[layer_id].histogram.quantile_examples(list(QUANTILES))
                     for layer_id in paths}
        views = _views(chosen, stats, fields, quantiles, dataset, size, batch_size, progress)
        return _artifacts(chosen, stats, fields, quantiles, views, dataset, params)


def _artifacts(chosen: dict[str, list[int]], stats: dict[str, LayerStats],
               fields: dict[str, ReceptiveField], quantiles: dict[str, tuple[torch.Tensor, ...]],
               views: "_Views", dataset: Dataset, params: dict) -> list[ArtifactResult]:
    """One `ArtifactResult` per chosen unit: its meta, crops, views and heat sprite."""
    results = []
    table = example_files.inferno()
    for layer_id, layer_units in chosen.items():
        layer = _Lists(stats[layer_id], quantiles[layer_id])
        field, sprites = fields[layer_id], _heat_sprites(stats[layer_id], layer_units, table)
        common = {"layer": layer_id, "dataset": layer.stats.dataset, "images": layer.stats.images,
                  "view": {"size": layer.stats.size, "resize": resize_size(layer.stats.size)},
                  "receptive_field": field.summary()}
        for unit in layer_units:
            files: dict[str, bytes] = {}
            meta = _unit_meta(views, files, layer, field, unit, sprites.get(unit), common)
            meta["skipped"] = len(dataset.skipped)  # unreadable files (dataset.skipped lists them)
            results.append(ArtifactResult(layer_id, unit, DATASET_EXAMPLES, dict(params),
                                          files, meta))
    return results


class _Lists:
    """A layer's lists as Python values, converted once for all its units (indexing a tensor
    per value costs ~1 us each, 100+ per unit): per unit, top/bottom `[(id, value, [y, x])]`,
    quantiles `[(q, id, value, [y, x])]`, histogram edges and counts."""

    def __init__(self, stats: LayerStats, quantiles: tuple[torch.Tensor, ...]) -> None:
        self.stats = stats
        self.lists = {kind: (t.ids.tolist(), t.values.tolist(), t.positions.tolist())
                      for kind, t in (("top", stats.top), ("bottom", stats.bottom))}
        q_ids, q_values, q_positions, _ = quantiles
        self.quantiles = list(zip(q_ids.tolist(), q_values.tolist(), q_positions.tolist()))
        self.edges = stats.histogram.edges.tolist()
        self.counts = stats.histogram.counts.tolist()
        self.width = len(str(stats.k - 1))


def _unit_meta(views: "_Views", files: dict[str, bytes], layer: _Lists, field: ReceptiveField,
               unit: int, sprite: tuple[bytes, dict] | None, common: dict) -> dict:
    """One unit's JSON description; its image files are added to `files`. With a `sprite`
    (its heat maps, top then bottom, as tiles of one PNG), top/bottom entries name their tile."""
    meta = {**common, "unit": unit, "heat_scale": _scale(layer.stats, unit)}
    if sprite is not None:
        files[HEAT_SPRITE] = sprite[0]
        meta["heat_sprite"] = {"file": HEAT_SPRITE, **sprite[1]}
    tile = 0
    for kind in ("top", "bottom"):
        ids, values, positions = layer.lists[kind]
        meta[kind] = []
        for rank, (index, value, position) in enumerate(zip(ids[unit], values[unit], positions[unit])):
            meta[kind].append(views.example(files, f"{kind}_{rank:0{layer.width}d}", field, index,
                                            value, position, tile if sprite else None))
            tile += 1
    q_ids, q_values, q_positions = layer.quantiles[unit]
    meta["quantiles"] = [
        dict(q=q, **views.example(files, f"quantile_{round(q * 100):02d}", field,
                                  q_ids[j], q_values[j], q_positions[j], None))
        for j, q in enumerate(QUANTILES) if q_ids[j] >= 0]
    meta["histogram"] = {"edges": layer.edges[unit], "counts": layer.counts[unit]}
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


SPRITE_PIXELS = 1 << 22  # heat maps coloured per chunk of units: ~16 MB of RGBA at a time
HALF_TABLE_PIXELS = 1 << 18  # from this many pixels per unit on, colour through a table (5x faster)


def _heat_sprites(layer: LayerStats, units: list[int], table) -> dict[int, tuple[bytes, dict]]:
    """`{unit: (sprite PNG, layout)}`: each unit's top then bottom heat maps as tiles of one
    PNG, from the maps kept by the pass, coloured in chunks of units. Empty for a flat layer."""
    if layer.top_maps is None or layer.bottom_maps is None or not units:
        return {}
    height, width = layer.top_maps.shape[2:]
    count = layer.top_maps.shape[1] + layer.bottom_maps.shape[1]
    chunk = max(1, SPRITE_PIXELS // (count * height * width))
    sprites = {}
    for start in range(0, len(units), chunk):
        u = torch.tensor(units[start:start + chunk], dtype=torch.int64)
        maps = torch.cat([layer.top_maps[u], layer.bottom_maps[u]], dim=1)  # [U, 2k, H, W]
        scales = [_scale(layer, unit) for unit in u.tolist()]  # [U]
        if maps.dtype == torch.float16 and count * height * width >= HALF_TABLE_PIXELS:
            rgba = [example_files.heat_rgba_half(m, scale, table) for m, scale in zip(maps, scales)]
        else:  # [U * 2k, H, W] coloured in one batch
            rgba = example_files.heat_rgba(maps.flatten(0, 1), torch.tensor(scales).repeat_interleave(
                count), table).reshape(len(u), count, height, width, 4)
        for unit, tiles in zip(u.tolist(), rgba):
            sprites[unit] = example_files.heat_sprite(tiles)  # [2k, H, W, 4] -> 1 PNG
    return sprites


def _views(chosen: dict[str, list[int]], stats: dict[str, LayerStats],
           fields: dict[str, ReceptiveField], quantiles: dict[str, tuple[torch.Tensor, ...]],
           dataset: Dataset, size: int, batch_size: int, progress: Progress | None) -> "_Views":
    """The second pass, over just the photos some unit shows: decode each once and encode
    each of its small crops once, and its whole view once (under heat maps, and for crops too
    big for a file of their own)."""
    boxes: dict[int, set[tuple[int, int, int, int]]] = {}  # image index -> boxes to encode
    whole = (0, 0, size, size)
    for layer_id, layer_units in chosen.items():
        layer, field = stats[layer_id], fields[layer_id]
        u = torch.tensor(layer_units, dtype=torch.int64)
        q_ids, _, q_pos, _ = quantiles[layer_id]
        ids = torch.cat([layer.top.ids[u], layer.bottom.ids[u], q_ids[u]], dim=1)  # [U, n]
        pos = torch.cat([layer.top.positions[u], layer.bottom.positions[u], q_pos[u]], dim=1)
        for index, (y, x) in set(zip(ids.flatten().tolist(), map(tuple, pos.reshape(-1, 2).tolist()))):
            if index >= 0:  # a crop of its own, or a region of the whole view
                box = field.box(y, x)
                boxes.setdefault(index, set()).add(box if example_files.own_file(box, size) else whole)
        if layer.grid != (1, 1):  # heat maps lie over the whole view
            for index in torch.cat([layer.top.ids[u], layer.bottom.ids[u]], dim=1).unique().tolist():
                boxes[index].add(whole)
    views = _Views(dataset, size)
    done = 0
    for batch in dataset.batches(size, batch_size, indices=sorted(boxes)):
        batch_pixels = example_files.pixels(batch.images)  # [B, 3, S, S] -> [B, S, S, 3] uint8
        for index, view in zip(batch.indices.tolist(), batch_pixels):
            for box in boxes[index]:
                views.files[(index, box)] = example_files.encode_box(view, box)
        done += len(batch.indices)
        if progress:
            progress("examples", done, len(boxes))
    return views


class _Views:
    """The encoded boxes of photos, `{(image index, box): (extension, bytes)}`: a photo shown by
    many units is one bytes object, hence one blob in the store. An example's entry names its
    crop file (`files.crop`), or says `crop_from: "image"`: its crop is the region `box` of its
    whole view (`files.image`)."""

    def __init__(self, dataset: Dataset, size: int) -> None:
        self.dataset, self.size = dataset, size
        self.files: dict[tuple[int, tuple[int, int, int, int]], tuple[str, bytes]] = {}
        self.info: dict[int, tuple] = {}  # image index -> (path, label, class name)
        # (field, y, x) -> (box, whether its crop is a file of its own)
        self.boxes: dict[tuple[int, int, int], tuple[tuple[int, int, int, int], bool]] = {}

    def example(self, files: dict[str, bytes], name: str, field: ReceptiveField, index: int,
                value: float, position: list[int], tile: int | None) -> dict:
        """Add one example's files to `files` and return its JSON description; `tile`: its heat
        map's place in the unit's sprite (None: no heat map)."""
        known = self.boxes.get((id(field), *position))
        if known is None:  # the same few positions recur across units and photos
            box = field.box(*position)
            known = self.boxes[(id(field), *position)] = box, example_files.own_file(box, self.size)
        box, own = known
        info = self.info.get(index)
        if info is None:
            data = self.dataset
            info = self.info[index] = (data.paths[index], data.labels[index], data.label_name(index))
        entry = {"index": index, "path": info[0], "value": value, "position": position,
                 "box": list(box), "label": info[1], "class_name": info[2], "files": {}}
        whole = self.files.get((index, (0, 0, self.size, self.size)))
        crop = self.files.get((index, box)) if own else whole
        if crop is None:  # unreadable now, though it was read in the pass
            entry["error"] = "the image could not be read again"
            return entry
        if own:
            entry["files"]["crop"] = f"{name}_crop{crop[0]}"
            files[entry["files"]["crop"]] = crop[1]
        else:  # the crop is the region `box` of the whole view
            entry["crop_from"] = "image"
        if whole is not None and (tile is not None or not own):
            entry["files"]["image"] = f"{name}_image{whole[0]}"
            files[entry["files"]["image"]] = whole[1]
        if tile is not None and whole is not None:
            entry["heat_tile"] = tile
        return entry


def run_dataset_examples(job: Job) -> list[ArtifactResult]:
    """The dataset-examples runner: one pass over the dataset for every layer of the job."""
    params = job.items[0].params
    results = dataset_examples(job.model, job.spec, list(job.layers), job.dataset(params["dataset"]),
                               size=params["size"], k=params["k"], preset=params["preset"],
                               device=job.device)
    job.tick(1.0)
    return results
