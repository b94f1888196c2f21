"""Streaming per-channel statistics whose memory does not grow with the number of items.

Shapes: `update(values [B, C], ids [B], positions [B, C, 2])` for B items of C channels;
`StreamingTopK.result() -> (values [C, k], ids [C, k], positions [C, k, 2])`;
`StreamingHistogram.result() -> (edges [C, bins + 1], counts [C, bins])`;
`StreamingMaps.update(held ids [C, k], ids [B], maps [B, C, H, W])` keeps the maps `[C, k, H, W]`
of the items a top-k holds, so the examples' heat maps need no second forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NO_ID = torch.iinfo(torch.int64).max  # marks an empty example slot
_MAX_CELL_BITS = 52  # cells (value / width) and edges stay exact in float64


@dataclass
class TopK:
    """The k best items per channel, best first: values [C, k], ids [C, k], positions [C, k, 2].

    k is smaller than asked when fewer items were seen."""

    values: torch.Tensor
    ids: torch.Tensor
    positions: torch.Tensor


class StreamingTopK:
    """Per channel, the k items with the largest (or smallest) values seen so far.

    Ties are broken by arrival: the item seen first ranks first (a stable sort)."""

    def __init__(self, channels: int, k: int, largest: bool = True) -> None:
        if k < 1 or channels < 1:
            raise ValueError(f"need k >= 1 and channels >= 1, got k={k}, channels={channels}")
        self.channels, self.k, self.largest = channels, k, largest
        self.values = torch.empty(channels, 0)
        self.ids = torch.empty(channels, 0, dtype=torch.int64)
        self.positions = torch.empty(channels, 0, 2, dtype=torch.int64)

    def update(self, values: torch.Tensor, ids: torch.Tensor,
               positions: torch.Tensor | None = None) -> None:
        """Add B items: values [B, C], ids [B], positions [B, C, 2] (default zeros)."""
        values = values.detach().float().cpu()
        batch = values.shape[0]
        if positions is None:
            positions = torch.zeros(batch, self.channels, 2, dtype=torch.int64)
        values = torch.cat([self.values, values.T], dim=1)  # [C, k + B]
        ids = torch.cat([self.ids, ids.cpu().long().expand(self.channels, batch)], dim=1)
        positions = torch.cat([self.positions, positions.cpu().long().transpose(0, 1)], dim=1)
        order = torch.sort(values, dim=1, descending=self.largest, stable=True).indices
        order = order[:, :self.k]  # [C, k]
        self.values = values.gather(1, order)
        self.ids = ids.gather(1, order)
        self.positions = positions.gather(1, order[:, :, None].expand(-1, -1, 2))

    def result(self) -> TopK:
        return TopK(self.values.clone(), self.ids.clone(), self.positions.clone())


class StreamingMaps:
    """Per channel, the map `[H, W]` of each item a `StreamingTopK` holds, in k slots.

    An item keeps its slot while the top-k holds it (the top-k reorders ranks, never maps);
    an item entering takes a slot freed by one leaving. Memory `[C, k, H, W]` in `dtype`."""

    def __init__(self, channels: int, k: int, grid: tuple[int, int],
                 dtype: torch.dtype = torch.float16) -> None:
        self.slot_ids = torch.full((channels, k), NO_ID, dtype=torch.int64)  # [C, k]
        self.maps = torch.zeros(channels, k, *grid, dtype=dtype)  # [C, k, H, W]

    def update(self, held: torch.Tensor, ids: torch.Tensor, maps: torch.Tensor) -> None:
        """After a top-k update: `held [C, k']` its ids now (distinct per row), the batch's
        `ids [B]` and `maps [B, C, H, W]`. Items held but not yet kept are from this batch."""
        held, ids = held.cpu(), ids.cpu().long()
        kept = (self.slot_ids[:, :, None] == held[:, None, :]).any(dim=2)  # [C, k] slots in use
        new = ~(held[:, :, None] == self.slot_ids[:, None, :]).any(dim=2)  # [C, k'] to place
        if not bool(new.any()):
            return
        free = ~kept  # the j-th new item of a channel takes its j-th free slot
        take = free & (free.cumsum(dim=1) <= new.sum(dim=1, keepdim=True))  # [C, k]
        channel, rank = new.nonzero(as_tuple=True)  # both in channel-major order, equal counts
        slot_channel, slot = take.nonzero(as_tuple=True)
        item = held[channel, rank]  # [R]
        order = torch.argsort(ids)
        row = order[torch.searchsorted(ids[order], item)]  # [R] the item's row in the batch
        self.maps[slot_channel, slot] = maps[row.to(maps.device), channel.to(maps.device)].to(
            device="cpu", dtype=self.maps.dtype)  # [R, H, W]
        self.slot_ids[slot_channel, slot] = item

    def result(self, ids: torch.Tensor) -> torch.Tensor:
        """The maps of `ids [C, k']` (a top-k's final ids, all held): `[C, k', H, W]`."""
        match = ids[:, :, None] == self.slot_ids[:, None, :]  # [C, k', k]
        slot = match.float().argmax(dim=2)  # [C, k']
        return self.maps.gather(1, slot[:, :, None, None].expand(-1, -1, *self.maps.shape[2:]))


@dataclass
class Histogram:
    """Per-channel histogram: edges [C, bins + 1], counts [C, bins]; one example per bin:
    example_ids [C, bins] (-1 for an empty bin), example_values [C, bins],
    example_positions [C, bins, 2]."""

    edges: torch.Tensor
    counts: torch.Tensor
    example_ids: torch.Tensor
    example_values: torch.Tensor
    example_positions: torch.Tensor

    def quantile_examples(self, quantiles: list[float]) -> tuple[torch.Tensor, torch.Tensor,
                                                                 torch.Tensor, torch.Tensor]:
        """Per channel and quantile q, the example kept in the bin holding the q-quantile:
        ids [C, Q], values [C, Q], positions [C, Q, 2], bin indices [C, Q]."""
        q = torch.tensor(quantiles, dtype=torch.float64)
        cumulative = self.counts.cumsum(dim=1).double()  # [C, bins]
        total = cumulative[:, -1:]  # [C, 1]
        target = (q[None, :] * total).clamp(min=0.5)  # [C, Q]: the first bin with a count
        bins = torch.searchsorted(cumulative, target).clamp(max=self.counts.shape[1] - 1)
        positions = self.example_positions.gather(1, bins[:, :, None].expand(-1, -1, 2))
        return (self.example_ids.gather(1, bins), self.example_values.gather(1, bins),
                positions, bins)


class StreamingHistogram:
    """Exact per-channel counts over a range that grows with the values seen.

    Channel c's bins are the cells [j w, (j + 1) w) of a grid of width w = 2**e_c, bins
    j = offset_c ... offset_c + bins - 1. When values fall outside, e_c grows: cell j at width
    w becomes cell floor(j / 2) at 2w, so adjacent pairs merge, edges stay aligned and counts
    stay exact (a power of two divides floats exactly). Each bin keeps one example: the item
    with the smallest id in it, with its value and position."""

    def __init__(self, channels: int, bins: int = 64) -> None:
        if bins < 2 or channels < 1:
            raise ValueError(f"need bins >= 2 and channels >= 1, got bins={bins}, "
                             f"channels={channels}")
        self.channels, self.bins = channels, bins
        self.exponent = torch.zeros(channels, dtype=torch.int64)  # width = 2 ** exponent
        self.offset = torch.zeros(channels, dtype=torch.int64)  # cell of bin 0
        self.counts = torch.zeros(channels, bins, dtype=torch.int64)
        self.lo = torch.full((channels,), float("inf"), dtype=torch.float64)
        self.hi = torch.full((channels,), float("-inf"), dtype=torch.float64)
        self.example_ids = torch.full((channels, bins), NO_ID, dtype=torch.int64)
        self.example_values = torch.full((channels, bins), float("nan"), dtype=torch.float64)
        self.example_positions = torch.zeros(channels, bins, 2, dtype=torch.int64)

    @property
    def seen(self) -> bool:
        return bool(torch.isfinite(self.lo).any())

    def update(self, values: torch.Tensor, ids: torch.Tensor,
               positions: torch.Tensor | None = None) -> None:
        """Count B items: values [B, C] (finite), ids [B], positions [B, C, 2] (default zeros)."""
        values = values.detach().cpu().double().T  # [B, C] -> [C, B]
        batch = values.shape[1]
        if batch == 0:
            return
        if not bool(torch.isfinite(values).all()):
            raise ValueError("StreamingHistogram got a NaN or infinite value")
        if positions is None:
            positions = torch.zeros(batch, self.channels, 2, dtype=torch.int64)
        lo = torch.minimum(self.lo, values.amin(dim=1))  # [C]
        hi = torch.maximum(self.hi, values.amax(dim=1))
        self._regrid(lo, hi)
        cells = self._cells(values) - self.offset[:, None]  # [C, B], in [0, bins)
        self.counts.scatter_add_(1, cells, torch.ones_like(cells))
        self._keep_examples(cells, ids.cpu().long().expand(self.channels, batch), values,
                            positions.cpu().long().transpose(0, 1))

    def _cells(self, values: torch.Tensor) -> torch.Tensor:
        """Grid cell of each value at each channel's width: [C, N] float -> [C, N] int64."""
        return torch.floor(torch.ldexp(values, -self.exponent[:, None])).long()

    def _regrid(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Widen and shift channels' grids so that [lo, hi] fits in `bins` cells ([C] each)."""
        fresh = ~torch.isfinite(self.lo)  # channels that had no value yet
        span = (hi - lo).clamp(min=torch.finfo(torch.float64).tiny)
        magnitude = torch.maximum(lo.abs(), hi.abs()).clamp(min=1e-30)
        need = torch.ceil(torch.log2(span / self.bins)).long()  # a lower bound on the exponent
        need = torch.maximum(need, torch.ceil(torch.log2(magnitude)).long() - _MAX_CELL_BITS)
        exponent = torch.where(fresh, need, torch.maximum(self.exponent, need))
        while True:  # one or two more steps at most: floor() may cost a cell at each end
            width = torch.ldexp(torch.ones_like(lo), exponent)
            fits = torch.floor(hi / width) - torch.floor(lo / width) < self.bins
            if bool(fits.all()):
                break
            exponent = torch.where(fits, exponent, exponent + 1)
        offset = torch.floor(torch.ldexp(lo, -exponent)).long()
        changed = (exponent != self.exponent) | (offset != self.offset)
        changed &= ~fresh
        if bool(changed.any()):
            self._merge(changed.nonzero().squeeze(1), exponent, offset)
        self.exponent, self.offset, self.lo, self.hi = exponent, offset, lo, hi

    def _merge(self, rows: torch.Tensor, exponent: torch.Tensor, offset: torch.Tensor) -> None:
        """Move the counts (and examples) of channels `rows` onto their new grids."""
        shift = (exponent[rows] - self.exponent[rows])[:, None].clamp(max=63)  # [R, 1], >= 0
        # (|cell| < 2**63, so a shift by 63 already gives floor(cell / 2**s) for any s >= 63)
        old_cells = self.offset[rows, None] + torch.arange(self.bins)  # [R, bins]
        target = (old_cells >> shift) - offset[rows, None]  # floor division by 2 ** shift
        # Cells outside the old [lo, hi] are empty; clamping keeps their index in range.
        target = target.clamp(0, self.bins - 1)
        counts = torch.zeros(len(rows), self.bins, dtype=torch.int64)
        counts.scatter_add_(1, target, self.counts[rows])
        ids = torch.full_like(counts, NO_ID)
        vals = torch.full(counts.shape, float("nan"), dtype=torch.float64)
        pos = torch.zeros(len(rows), self.bins, 2, dtype=torch.int64)
        _keep_smallest_id(ids, vals, pos, target, self.example_ids[rows],
                          self.example_values[rows], self.example_positions[rows])
        self.counts[rows] = counts
        self.example_ids[rows], self.example_values[rows] = ids, vals
        self.example_positions[rows] = pos

    def _keep_examples(self, cells: torch.Tensor, ids: torch.Tensor, values: torch.Tensor,
                       positions: torch.Tensor) -> None:
        _keep_smallest_id(self.example_ids, self.example_values, self.example_positions,
                          cells, ids, values, positions)

    def result(self) -> Histogram:
        """Edges [C, bins + 1] (float64, exact) and counts [C, bins]; empty before any update."""
        width = torch.ldexp(torch.ones(self.channels, dtype=torch.float64), self.exponent)
        edges = (self.offset[:, None] + torch.arange(self.bins + 1)).double() * width[:, None]
        ids = torch.where(self.example_ids == NO_ID, -1, self.example_ids)
        return Histogram(edges, self.counts.clone(), ids, self.example_values.clone(),
                         self.example_positions.clone())


def _keep_smallest_id(ids: torch.Tensor, values: torch.Tensor, positions: torch.Tensor,
                      cells: torch.Tensor, src_ids: torch.Tensor, src_values: torch.Tensor,
                      src_positions: torch.Tensor) -> None:
    """In place, per row and bin: keep the example with the smallest id among the current one
    and the sources landing in that bin. ids/values [R, bins], positions [R, bins, 2];
    cells/src_ids/src_values [R, N], src_positions [R, N, 2]."""
    before = ids.clone()
    ids.scatter_reduce_(1, cells, src_ids, "amin", include_self=True)
    winner = (ids.gather(1, cells) == src_ids) & (src_ids != NO_ID)  # [R, N]
    winner &= (ids != before).gather(1, cells)  # only bins whose example changed
    # Each bin has at most one winner (ids are distinct within a row), so the scatters
    # below write each target once.
    rows, cols = winner.nonzero(as_tuple=True)
    bins = cells[rows, cols]
    values[rows, bins] = src_values[rows, cols]
    positions[rows, bins] = src_positions[rows, cols]
