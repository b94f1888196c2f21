"""ChannelReducer against planted factors; Lucid's interface (shapes, inverse, attributes)."""

from __future__ import annotations

import warnings

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
        ChannelReducer(2).no_such_thing  # noqa: B018 (reading the attribute is the test)


@pytest.mark.parametrize("kwargs", [dict(reduction_alg="wrong"), dict(n_components=None),
                                    dict(n_components="string"), dict(n_components=0)])
def test_bad_arguments_are_value_errors_as_in_lucent(kwargs):
    with pytest.raises(ValueError) as err:
        ChannelReducer(**kwargs)
    assert isinstance(err.value, MicrotomeError)  # and ours: exit code 2, a 4xx on the web


def _lucent_acts() -> np.ndarray:
    """Lucent's test data: `np.random.seed(42)`, then uniform `[4, 8, 8, 16]`."""
    return np.random.RandomState(42).uniform(size=(4, 8, 8, 16))


def test_fit_then_transform_agrees_with_fit_transform_under_sklearns_defaults():
    from sklearn.decomposition import NMF

    acts = _lucent_acts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NMF's defaults stop at max_iter here
        once = ChannelReducer(n_components=5)
        both = once.fit_transform(acts)
        fresh = ChannelReducer(n_components=5)
        fresh.fit(acts)
        then = fresh.transform(acts)
    assert both.shape == then.shape == (4, 8, 8, 5)
    assert np.abs(both - then).max() <= 1e-2  # Lucent's tolerance
    # scikit-learn's defaults, but for a fixed seed (its None draws from numpy's global state)
    assert once.reducer.get_params() == {**NMF().get_params(), "n_components": 5, "random_state": 0}
    assert ChannelReducer(5, random_state=7).reducer.random_state == 7


def test_calling_a_reducer_fits_it_once_then_transforms():
    acts = _lucent_acts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = ChannelReducer(n_components=5)
        called = reducer(acts)  # not yet fitted: fit_transform
        np.testing.assert_allclose(called, ChannelReducer(n_components=5).fit_transform(acts))
        components = reducer.components_.copy()
        half = acts[:2]
        again = reducer(half)  # fitted: transform, no refit on the new data
        np.testing.assert_allclose(reducer.components_, components)
        np.testing.assert_allclose(again, reducer.transform(half))
        assert again.shape == (2, 8, 8, 5)


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
