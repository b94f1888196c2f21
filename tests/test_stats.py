"""Streaming top-k and histogram against brute force over everything at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microtome.techniques.stats import StreamingHistogram, StreamingMaps, StreamingTopK


def random_stream(n: int, channels: int, seed: int, kind: str = "normal"):
    """n items of `channels` values in random batch sizes: [(values [B, C], ids [B], pos [B, C, 2])]."""
    g = torch.Generator().manual_seed(seed)
    if kind == "normal":  # distinct values, negative and positive, per-channel scales
        scale = torch.logspace(-3, 3, channels)
        values = torch.randn(n, channels, generator=g) * scale - scale / 2
    elif kind == "equal":
        values = torch.full((n, channels), -2.5)
    else:  # "grow": the range widens with every batch, forcing many merges
        values = torch.randn(n, channels, generator=g) * torch.arange(1, n + 1)[:, None].float()
    positions = torch.randint(0, 50, (n, channels, 2), generator=g)
    ids = torch.randperm(n, generator=g) + 1000
    batches, start = [], 0
    while start < n:
        b = int(torch.randint(1, 9, (1,), generator=g))
        batches.append((values[start:start + b], ids[start:start + b], positions[start:start + b]))
        start += b
    return values, ids, positions, batches


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("n,k", [(100, 7), (5, 12), (1, 3)])
def test_topk_equals_sorting_everything(largest: bool, n: int, k: int) -> None:
    values, ids, positions, batches = random_stream(n, 6, seed=n + k)
    top = StreamingTopK(6, k, largest=largest)
    for v, i, p in batches:
        top.update(v, i, p)
    got = top.result()
    want = torch.topk(values.T, min(k, n), dim=1, largest=largest)  # [C, k]
    assert got.values.shape == (6, min(k, n))  # k larger than the items seen: all of them
    torch.testing.assert_close(got.values, want.values)
    assert torch.equal(got.ids, ids[want.indices])
    assert torch.equal(got.positions, positions.transpose(0, 1).gather(
        1, want.indices[:, :, None].expand(-1, -1, 2)))


def test_topk_ties_rank_first_seen_first() -> None:
    values, ids, positions, batches = random_stream(20, 3, seed=1, kind="equal")
    top = StreamingTopK(3, 5)
    for v, i, p in batches:
        top.update(v, i, p)
    got = top.result()
    assert torch.equal(got.ids, ids[:5].expand(3, 5))
    assert (got.values == -2.5).all()


@pytest.mark.parametrize("kind", ["normal", "equal", "grow"])
@pytest.mark.parametrize("bins", [2, 16, 50])
def test_histogram_equals_numpy_with_final_edges(kind: str, bins: int) -> None:
    values, ids, positions, batches = random_stream(300, 5, seed=bins, kind=kind)
    hist = StreamingHistogram(5, bins)
    for v, i, p in batches:
        hist.update(v, i, p)
    got = hist.result()
    assert got.counts.sum(dim=1).tolist() == [300] * 5
    data = values.double().numpy()
    for c in range(5):
        edges = got.edges[c].numpy()
        assert np.all(np.diff(edges) > 0)
        assert edges[0] <= data[:, c].min() and data[:, c].max() < edges[-1]
        want, _ = np.histogram(data[:, c], bins=edges)
        assert got.counts[c].tolist() == want.tolist()
        # Each non-empty bin's example is the smallest id among the items in it.
        which = np.searchsorted(edges, data[:, c], side="right") - 1
        for b in range(bins):
            members = np.flatnonzero(which == b)
            if len(members) == 0:
                assert got.example_ids[c, b] == -1
                continue
            best = members[np.argmin(ids.numpy()[members])]
            assert got.example_ids[c, b] == ids[best]
            assert got.example_values[c, b] == data[best, c]
            assert got.example_positions[c, b].tolist() == positions[best, c].tolist()


def test_histogram_resolution_uses_the_bins() -> None:
    """The range is not wasted: the data spans more than a quarter of the bins."""
    values, ids, positions, batches = random_stream(500, 4, seed=3, kind="grow")
    hist = StreamingHistogram(4, 32)
    for v, i, p in batches:
        hist.update(v, i, p)
    occupied = (hist.result().counts > 0).nonzero()[:, 1]
    assert occupied.max() - occupied.min() >= 8


def test_quantile_examples_come_from_the_quantile_bins() -> None:
    values, ids, positions, batches = random_stream(400, 3, seed=4)
    hist = StreamingHistogram(3, 40)
    for v, i, p in batches:
        hist.update(v, i, p)
    got = hist.result()
    qs = [0.1, 0.5, 0.9]
    q_ids, q_values, q_pos, q_bins = got.quantile_examples(qs)
    data = values.double()
    for c in range(3):
        for j, q in enumerate(qs):
            lo, hi = got.edges[c, q_bins[c, j]], got.edges[c, q_bins[c, j] + 1]
            assert lo <= torch.quantile(data[:, c], q) < hi + (hi - lo)  # the bin, or its edge
            assert lo <= q_values[c, j] < hi
            item = (ids == q_ids[c, j]).nonzero().item()
            assert data[item, c] == q_values[c, j]
            assert q_pos[c, j].tolist() == positions[item, c].tolist()


@pytest.mark.parametrize("largest", [True, False])
def test_streaming_maps_follow_the_top_k(largest):
    """The maps kept for a top-k's items are exactly the items' maps (brute force: keep all)."""
    gen = torch.Generator().manual_seed(3)
    channels, k, n = 5, 4, 23
    values = torch.rand(n, channels, generator=gen)  # [N, C]
    maps = torch.rand(n, channels, 3, 2, generator=gen)  # [N, C, H, W]
    ids = torch.randperm(100, generator=gen)[:n]  # arbitrary distinct dataset indices
    top = StreamingTopK(channels, k, largest=largest)
    kept = StreamingMaps(channels, k, (3, 2), dtype=torch.float32)
    for start in range(0, n, 3):  # batches of 3, the first smaller than k
        part = slice(start, start + 3)
        top.update(values[part], ids[part])
        kept.update(top.ids, ids[part], maps[part])
    result = top.result()
    row = {int(i): r for r, i in enumerate(ids)}
    want = torch.stack([torch.stack([maps[row[int(i)], c] for i in result.ids[c]]) for c in range(channels)])
    assert torch.equal(kept.result(result.ids), want)  # [C, k, H, W]
