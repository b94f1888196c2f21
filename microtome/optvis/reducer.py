"""Channel factorization: `ChannelReducer(n, alg).fit_transform(acts [..., C]) -> [..., n]`.

Lucid's and Lucent's interface, so their code ports unchanged:
`ChannelReducer(n_components=3, reduction_alg="NMF", **kwargs)` wraps a scikit-learn
decomposition (any estimator class of `sklearn.decomposition` by name, "ICA" for FastICA, or
an estimator class), flattens every leading axis of `[..., C]` into samples, and gives back
`[..., n]`. Calling the reducer is Lucent's shorthand: `reducer(acts)` is `transform` once it
is fitted, `fit_transform` before. The estimator gets scikit-learn's defaults except
`random_state`, which is `SEED` unless given: with scikit-learn's `None` the fit draws from
numpy's global generator (NMF's default `nndsvda` start uses a randomized SVD), so two fits of
the same activations differ (by 0.3 on Lucent's test data) and `fit` then `transform` would
not reproduce `fit_transform`. The fitted
estimator's attributes are readable on the reducer, with or without their trailing underscore
(`reducer.components_` and Lucid's `reducer.components`: `[n, C]`, the channel directions).
Torch tensors go in and come out as torch tensors (on their device and dtype); numpy as numpy.
In a notebook a fitted reducer shows the factors' maps over what it transformed last.

`sparse_channels_to_rgb(x [..., K] >= 0) -> [..., 3]` colours K factor maps, one hue each.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from microtome.errors import MicrotomeError


def _algorithms() -> dict[str, type]:
    """`{name: estimator class}` of scikit-learn's decompositions (imported on first use)."""
    import sklearn.decomposition
    from sklearn.base import BaseEstimator

    found = {}
    for name in dir(sklearn.decomposition):
        obj = getattr(sklearn.decomposition, name)
        if isinstance(obj, type) and issubclass(obj, BaseEstimator):
            found[name] = obj
    return found


ALIASES = {"ICA": "FastICA"}  # the and the literature's short name
SEED = 0  # the estimator's random_state unless the caller gives one


def _resolve(reduction_alg: str | type) -> type:
    if isinstance(reduction_alg, type):
        return reduction_alg
    if not isinstance(reduction_alg, str):
        raise MicrotomeError(f"reduction_alg must be a scikit-learn decomposition name or "
                             f"estimator class, not {reduction_alg!r}")
    algorithms = _algorithms()
    reduction_alg = ALIASES.get(reduction_alg.upper(), reduction_alg)
    if reduction_alg not in algorithms:  # names are case-sensitive there; be kind about case
        by_lower = {name.lower(): name for name in algorithms}
        if reduction_alg.lower() not in by_lower:
            raise MicrotomeError(f"unknown reduction algorithm {reduction_alg!r}; valid: "
                                 + ", ".join(sorted(algorithms)))
        reduction_alg = by_lower[reduction_alg.lower()]
    return algorithms[reduction_alg]


class ChannelReducer:
    """A scikit-learn decomposition over the last axis of `[..., C]` activations."""

    def __init__(self, n_components: int = 3, reduction_alg: str | type = "NMF", **kwargs: Any):
        if not isinstance(n_components, int) or isinstance(n_components, bool) or n_components < 1:
            raise MicrotomeError(f"n_components must be a whole number ≥ 1, not {n_components!r}")
        self.n_components = n_components
        estimator = _resolve(reduction_alg)
        if "random_state" in inspect.signature(estimator).parameters:
            kwargs.setdefault("random_state", SEED)  # same activations, same factors
        self._reducer = estimator(n_components=n_components, **kwargs)
        self._is_fit = False
        self._last = None  # what fit_transform / transform gave back last, for notebooks' display

    def __call__(self, acts):
        """Lucent's call: `transform(acts)` once fitted, `fit_transform(acts)` before."""
        return self.transform(acts) if self._is_fit else self.fit_transform(acts)

    @property
    def reducer(self) -> Any:
        """The scikit-learn estimator."""
        return self._reducer

    # ---- flattening: [..., C] <-> [N, C] ------------------------------------------------
    @staticmethod
    def _apply_flat(f, acts):
        """`f` on `acts [..., C]` flattened to `[N, C]`; an array result is reshaped to
        `[..., K]` and given back in the input's kind (torch tensor or numpy array)."""
        like = None
        if hasattr(acts, "detach") and hasattr(acts, "cpu"):  # a torch tensor, without importing torch
            like = acts
            acts = acts.detach().cpu().numpy()
        acts = np.asarray(acts)
        if acts.ndim < 1:
            raise MicrotomeError("activations must have a channel axis: [..., C]")
        out = f(acts.reshape(-1, acts.shape[-1]))  # [N, C] -> [N, K] (or the estimator)
        if not isinstance(out, np.ndarray):
            return out
        out = out.reshape(*acts.shape[:-1], out.shape[-1])  # [..., K]
        if like is not None:
            import torch

            return torch.as_tensor(out).to(device=like.device, dtype=like.dtype)
        return out

    def fit(self, acts):
        self._is_fit = True
        return self._apply_flat(self._reducer.fit, acts)

    def fit_transform(self, acts):
        self._is_fit = True
        self._last = self._apply_flat(self._reducer.fit_transform, acts)
        return self._last

    def transform(self, acts):
        self._check_fit("transform")
        self._last = self._apply_flat(self._reducer.transform, acts)
        return self._last

    def inverse_transform(self, acts):
        self._check_fit("inverse_transform")
        return self._apply_flat(self._reducer.inverse_transform, acts)

    def _check_fit(self, what: str) -> None:
        if not self._is_fit:
            raise MicrotomeError(f"ChannelReducer.{what} before fit; call fit or fit_transform first")

    # ---- the estimator's attributes -------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_reducer", "_is_fit", "_last"):
            raise AttributeError(name)
        reducer = self.__dict__.get("_reducer")
        if reducer is not None:
            for candidate in (name, name + "_"):
                if not candidate.startswith("_") and hasattr(reducer, candidate):
                    return getattr(reducer, candidate)
        raise AttributeError(f"{type(self).__name__} (over {type(reducer).__name__}) has no "
                             f"attribute {name!r}" + ("" if self.__dict__.get("_is_fit")
                                                      else "; fitted ones exist after fit"))

    def __dir__(self) -> list[str]:
        fitted = [n for n in dir(self._reducer) if n.endswith("_") and not n.startswith("_")]
        return sorted(set(super().__dir__()) | set(fitted) | {n[:-1] for n in fitted})

    def __repr__(self) -> str:
        return f"ChannelReducer({self.n_components}, {type(self._reducer).__name__})"

    def _repr_html_(self) -> str:
        """Notebooks: the factors' maps over the activations last transformed (NMF's also in
        one picture, one hue per factor), or the components `[n, C]` for flat activations."""
        from microtome.display import reducer_html

        return reducer_html(self, self._is_fit, self._last, sparse_channels_to_rgb)


# ---- colouring factor maps --------------------------------------------------------------------
_PRIMARIES = np.asarray([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], float)


def hue_to_rgb(angle: float, warp: bool = True) -> np.ndarray:
    """A unit RGB vector `[3]` for a hue angle in degrees, interpolated between the six
    primaries and secondaries; `warp` pushes angles away from them, so that equally spaced
    hues look equally distinct."""
    colours = _PRIMARIES / np.linalg.norm(_PRIMARIES, axis=1, keepdims=True)
    angle = angle % 360.0
    span = 360.0 / len(colours)
    n = int(angle // span)
    d = (angle - n * span) / span
    if warp:
        bend = math.sin(d * math.pi / 2) if n % 2 == 0 else 1 - math.sin((1 - d) * math.pi / 2)
        d = bend
    v = (1 - d) * colours[n] + d * colours[(n + 1) % len(colours)]
    return v / np.linalg.norm(v)


def group_colours(k: int) -> np.ndarray:
    """The colours `sparse_channels_to_rgb` gives K channels: `[K, 3]`, unit vectors."""
    return np.stack([hue_to_rgb(360.0 * i / k) for i in range(k)]) if k else np.zeros((0, 3))


def sparse_channels_to_rgb(x) -> np.ndarray:
    """Non-negative `[..., K]` -> RGB `[..., 3]`: channel i in its own hue; overlapping
    channels whiten towards grey; the result's norm is the input's (so scale it for display)."""
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if (x < 0).any():
        raise MicrotomeError("sparse_channels_to_rgb needs non-negative channels; split signed "
                             "ones into their positive and negative parts first")
    rgb = x @ group_colours(x.shape[-1])  # [..., K] @ [K, 3] -> [..., 3]
    rgb = rgb + (x.sum(-1) - x.max(-1, initial=0.0))[..., None]
    rgb = rgb / (1e-4 + np.linalg.norm(rgb, axis=-1, keepdims=True))
    return rgb * np.linalg.norm(x, axis=-1, keepdims=True)
