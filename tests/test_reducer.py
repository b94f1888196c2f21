"""ChannelReducer against planted factors; Lucid's interface (shapes, inverse, attributes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from microtome.errors import MicrotomeError
from microtome.optvis.reducer import ChannelReducer, group_colours, sparse_channels_to_rgb


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`[K, C] x [K, C] -> [K, K]` cosine similarities."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def test_nmf_recovers_planted_nonnegative_factors():
    rng = np.random.default_rng(0)
    k, c = 4, 32
    directions = rng.gamma(0.3, 1.0, (k, c)) * (rng.random((k, c)) < 0.4)  # sparse, >= 0
    maps = rng.gamma(0.5, 1.0, (12, 12, k)) * (rng.random((12, 12, k)) < 0.5)
    acts = maps @ directions + 1e-3 * rng.random((12, 12, c))  # [12, 12, C]
    reducer = ChannelReducer(k, "NMF", random_state=0, max_iter=2000)
    found = reducer.fit_transform(acts)
    assert found.shape == (12, 12, k)
    cos = _cosine(directions, reducer.components_)
    rows, cols = linear_sum_assignment(-cos)
    assert cos[rows, cols].min() >= 0.95, cos[rows, cols]
    # the maps are matched too, through the same assignment
    map_cos = _cosine(maps.reshape(-1, k).T, found.reshape(-1, k).T)
    assert map_cos[rows, cols].min() >= 0.95, map_cos[rows, cols]


def test_shapes_round_trip_and_lucid_attribute_names():
    array = np.zeros((10, 10, 10))
    for d in range(10):
        array[:, :, d] = np.eye(10)
    reducer = ChannelReducer(n_components=2)
    reducer.fit(array)
    assert reducer.transform(array).shape == (10, 10, 2)
    assert reducer.components.shape == (2, 10)  # Lucid's name ...
    assert reducer.components_ is reducer.components  # ... and scikit-learn's
    assert "components" in dir(reducer) and "components_" in dir(reducer)

    rng = np.random.default_rng(1)
    acts = rng.random((3, 5, 7, 16)) @ rng.random((16, 16))  # [3, 5, 7, C]
    pca = ChannelReducer(16, "PCA")
    back = pca.inverse_transform(pca.fit_transform(acts))  # full rank: exact round trip
    assert back.shape == acts.shape
    np.testing.assert_allclose(back, acts, atol=1e-8)
    low = ChannelReducer(3, "PCA")
    assert low.fit_transform(acts).shape == (3, 5, 7, 3)
    assert low.inverse_transform(low.transform(acts)).shape == acts.shape
    assert low.explained_variance_ratio_.shape == (3,)


def test_torch_in_torch_out_and_estimator_classes():
    from sklearn.decomposition import FastICA

    acts = torch.rand(4, 6, 6, 8, dtype=torch.float64)
    reducer = ChannelReducer(3, FastICA, random_state=0, max_iter=1000, tol=0.05)
    out = reducer.fit_transform(acts)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 6, 6, 3) and out.dtype == torch.float64
    assert isinstance(reducer.inverse_transform(out), torch.Tensor)
    assert ChannelReducer(2, "nmf").reducer.__class__.__name__ == "NMF"  # case forgiven
    assert ChannelReducer(2, "ICA").reducer.__class__.__name__ == "FastICA"


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(MicrotomeError) as err:
        ChannelReducer(3, "NFM")
    assert "NFM" in err.value.message and "NMF" in err.value.message and "PCA" in err.value.message
    with pytest.raises(MicrotomeError):
        ChannelReducer(0)
    with pytest.raises(MicrotomeError, match="before fit"):
        ChannelReducer(2).transform(np.ones((4, 3)))
    with pytest.raises(AttributeError):
        ChannelReducer(2).no_such_thing


def test_sparse_channels_to_rgb_colours_each_channel_its_hue():
    k = 6
    colours = group_colours(k)
    x = np.eye(k).reshape(k, 1, k) * 2.0  # [K, 1, K]: position i has only channel i
    rgb = sparse_channels_to_rgb(x)
    assert rgb.shape == (k, 1, 3)
    np.testing.assert_allclose(rgb[:, 0], 2.0 * colours, atol=1e-3)  # hue i, norm kept
    np.testing.assert_allclose(colours[0], [1, 0, 0])
    assert len({tuple(np.round(c, 3)) for c in colours}) == k  # distinct hues
    with pytest.raises(MicrotomeError):
        sparse_channels_to_rgb(-np.ones((2, 3)))
