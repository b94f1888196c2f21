"""Objectives: `(activations) -> scalar per image [B]`, to be MAXIMIZED.

One sign convention, here and everywhere: the renderer maximizes. Penalties (`tv`, `l1`, `l2`,
`blur`, `alignment`) return a positive measure of what they penalize, so they are subtracted:
`channel("block10", 5) - 0.1 * tv()`. Objectives are values: they add, subtract, negate,
multiply and divide (by scalars or each other), `sum()` over a list, and describe themselves
("channel(block10, 5) - 0.1·tv()"). `parse("block10:5")` is `channel("block10", 5)`.
Lucent's objectives keep their names and signatures (`direction`, `direction_neuron`,
`channel_interpolate`, `alignment`, `deepdream`); port Lucent code by flipping the penalties'
sign: Lucent's `channel_interpolate(...) + 0.1 * alignment(...)` is ours with `- 0.1 * ...`.

Activations are a dict `{layer name: [B, C, H, W] or [B, C]}`; the special name "input"
holds the images `[B, 3, H, W]` in [0, 1] before any transform.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from microtome.errors import MicrotomeError

Acts = dict[str, torch.Tensor]
INPUT = "input"


class Objective:
    """A function of activations giving one value per image `[B]`, with the layers it reads."""

    def __init__(self, fn: Callable[[Acts], torch.Tensor], name: str, layers: Iterable[str]):
        self.fn = fn
        self.name = name
        self.layers = frozenset(layers)

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return self.name

    def _repr_html_(self) -> str:  # notebooks: the description and the layers it reads
        from microtome.display import objective_html
        return objective_html(self)

    # ---- arithmetic ----------------------------------------------------------------------
    def _combine(self, other, op, symbol: str, reverse: bool = False) -> "Objective":
        if isinstance(other, Objective):
            a, b = (other, self) if reverse else (self, other)
            return Objective(lambda acts: op(a(acts), b(acts)), f"{a.name} {symbol} {_paren(b, symbol)}",
                             a.layers | b.layers)
        if isinstance(other, (int, float)):
            k = float(other)
            if reverse:
                return Objective(lambda acts: op(k, self(acts)), f"{_num(k)} {symbol} {_paren(self, symbol)}",
                                 self.layers)
            return Objective(lambda acts: op(self(acts), k), f"{self.name} {symbol} {_num(k)}", self.layers)
        return NotImplemented

    def __add__(self, other):
        return self._combine(other, operator.add, "+")

    def __radd__(self, other):
        if isinstance(other, (int, float)) and other == 0:  # so that sum([...]) works
            return self
        return self._combine(other, operator.add, "+", reverse=True)

    def __sub__(self, other):
        return self._combine(other, operator.sub, "-")

    def __rsub__(self, other):
        return self._combine(other, operator.sub, "-", reverse=True)

    def __mul__(self, other):
        if isinstance(other, (int, float)):
            k = float(other)
            return Objective(lambda acts: self(acts) * k, f"{_num(k)}·{_paren(self, '·')}", self.layers)
        return self._combine(other, operator.mul, "·")

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self._combine(other, operator.truediv, "/")

    def __neg__(self) -> "Objective":
        return Objective(lambda acts: -self(acts), f"-{_paren(self, '-')}", self.layers)


def _num(k: float) -> str:
    return f"{k:g}"


def _paren(obj: Objective, symbol: str) -> str:
    compound = " + " in obj.name or " - " in obj.name
    return f"({obj.name})" if compound and symbol != "+" else obj.name


def _spatial_mean(t: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C]; [B, C] as is
    return t.mean(dim=(2, 3)) if t.dim() == 4 else t


# ---- activation objectives -------------------------------------------------------------------
def channel(layer: str, unit: int) -> Objective:
    """Mean activation of channel `unit` over all positions of `layer`."""
    return Objective(lambda acts: _spatial_mean(acts[layer][:, unit : unit + 1])[:, 0],
                     f"channel({layer}, {unit})", [layer])


def neuron(layer: str, unit: int, x: int | None = None, y: int | None = None) -> Objective:
    """Activation of channel `unit` at one position (x, y); the centre by default."""

    def fn(acts: Acts) -> torch.Tensor:
        t = acts[layer]
        if t.dim() == 2:
            return t[:, unit]
        h, w = t.shape[-2:]
        return t[:, unit, h // 2 if y is None else y, w // 2 if x is None else x]

    where = "" if x is None and y is None else f", x={x}, y={y}"
    return Objective(fn, f"neuron({layer}, {unit}{where})", [layer])


def _only(batch: int | None, fn: Callable[[Acts], torch.Tensor]) -> Callable[[Acts], torch.Tensor]:
    """`fn` on image `batch` alone (Lucent's `batch=`), 0 for the others; all images for None."""
    if batch is None:
        return fn

    def one(acts: Acts) -> torch.Tensor:
        sliced = {name: t[batch:batch + 1] for name, t in acts.items()}
        value = fn(sliced)  # [1]
        out = torch.zeros(next(iter(acts.values())).shape[0], device=value.device, dtype=value.dtype)
        return out.index_put((torch.tensor([batch], device=value.device),), value)

    return one


def _cosine(t: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each activation vector with `vec` `[C]`: `[B, C, ...] -> [B, ...]`."""
    v = vec.to(t.device, t.dtype).view(1, -1, *([1] * (t.dim() - 2)))
    return F.cosine_similarity(t, v, dim=1)


def direction(layer: str, direction: Sequence[float] | torch.Tensor,
              batch: int | None = None) -> Objective:
    """Lucent's `direction`: mean over positions of the cosine similarity between the activation
    vector `[C]` at each position and `direction` `[C]`."""
    vec = torch.as_tensor(direction, dtype=torch.float32).flatten()

    def fn(acts: Acts) -> torch.Tensor:
        sim = _cosine(acts[layer], vec)  # [B, H, W] or [B]
        return sim.flatten(1).mean(1) if sim.dim() > 1 else sim

    where = "" if batch is None else f", batch={batch}"
    return Objective(_only(batch, fn), f"direction({layer}, [{len(vec)}]{where})", [layer])


def direction_neuron(layer: str, direction: Sequence[float] | torch.Tensor, x: int | None = None,
                     y: int | None = None, batch: int | None = None) -> Objective:
    """Lucent's `direction_neuron`: the cosine similarity between the activation vector at one
    position (x, y; the centre by default) and `direction` `[C]`."""
    vec = torch.as_tensor(direction, dtype=torch.float32).flatten()

    def fn(acts: Acts) -> torch.Tensor:
        t = acts[layer]
        if t.dim() == 4:
            h, w = t.shape[-2:]
            t = t[:, :, h // 2 if y is None else y, w // 2 if x is None else x]  # [B, C]
        return _cosine(t, vec)

    where = "" if x is None and y is None else f", x={x}, y={y}"
    where += "" if batch is None else f", batch={batch}"
    return Objective(_only(batch, fn), f"direction_neuron({layer}, [{len(vec)}]{where})", [layer])


def direction_cossim(layer: str, direction: Sequence[float] | torch.Tensor,
                     reference: Sequence[float] | torch.Tensor | None = None,
                     cossim_pow: float = 2.0) -> Objective:
    """Lucid's activation-atlas objective (`direction_neuron_cossim`), on the mean activation
    vector over positions `m` `[C]` (patch tokens of a `[B, N, D]` layer) less `reference` `[C]`
    (the dataset's mean: otherwise every direction shares the layer's mean): `⟨m, d̂⟩·|cos(m, d)|^p`.
    A token layer's patch tokens are its last side² tokens: prefix tokens (class, registers) are left out.
    The dot product rewards strength along the direction, the cosine power keeps the
    vector pointed along it; `|cos|` keeps the sign of the dot product for any power."""
    vec = torch.as_tensor(direction, dtype=torch.float32).flatten()
    ref = torch.zeros_like(vec) if reference is None else torch.as_tensor(reference, dtype=torch.float32).flatten()
    unit_vec = vec / vec.norm().clamp_min(1e-8)

    def fn(acts: Acts) -> torch.Tensor:
        t = acts[layer]
        if t.dim() == 3:  # [B, N, D] -> its patch tokens
            t = t[:, t.shape[1] - math.isqrt(t.shape[1]) ** 2:]
        m = t.flatten(2).mean(2) if t.dim() == 4 else (t.mean(1) if t.dim() == 3 else t)  # [B, C]
        m = m - ref.to(m.device, m.dtype)
        dot = m @ unit_vec.to(m.device, m.dtype)  # [B]
        cos = dot / m.norm(dim=1).clamp_min(1e-8)
        return dot * cos.abs().pow(cossim_pow)

    return Objective(fn, f"direction_cossim({layer}, [{len(vec)}], pow={_num(float(cossim_pow))})", [layer])


def channel_interpolate(layer1: str, n_channel1: int, layer2: str, n_channel2: int) -> Objective:
    """Lucent's `channel_interpolate`: image i of a batch of B maximizes `(1 - w_i)·channel1 +
    w_i·channel2` with `w_i = i / (B - 1)`: a walk from one unit to the other. Use it as the
    single objective of a batch (`batch=B`), with `alignment` to keep neighbours alike."""

    def fn(acts: Acts) -> torch.Tensor:
        a = _spatial_mean(acts[layer1][:, n_channel1:n_channel1 + 1])[:, 0]  # [B]
        b = _spatial_mean(acts[layer2][:, n_channel2:n_channel2 + 1])[:, 0]
        n = a.shape[0]
        w = torch.arange(n, device=a.device, dtype=a.dtype) / max(n - 1, 1)
        return (1 - w) * a + w * b

    return Objective(fn, f"channel_interpolate({layer1}, {n_channel1}, {layer2}, {n_channel2})",
                     [layer1, layer2])


def alignment(layer: str, decay_ratio: float = 2) -> Objective:
    """Lucent's `alignment`, a penalty (positive; subtract it): the mean squared difference of
    `layer`'s activations between images d = 1..4 apart in the batch, weighted by
    `1 / decay_ratio^d`. Each pair's term is shared equally by its two images `[B]`, so the
    values sum to Lucent's scalar. Maximizing `-alignment(...)` pulls neighbours together.
    The standard parameterization starts images almost alike (penalty near 0), and Adam's
    first steps move every parameter by about `lr` whatever its gradient: from there the
    penalty rises for a few steps whichever its sign (far less with `-` than with `+`), and
    falls once the images differ, e.g. when the interpolated objective has pulled them apart."""

    def fn(acts: Acts) -> torch.Tensor:
        t = acts[layer]
        n = t.shape[0]
        out = torch.zeros(n, device=t.device, dtype=t.dtype)
        for d in range(1, 5):
            if n <= d:
                break
            term = (t[:-d] - t[d:]).pow(2).flatten(1).mean(1) / decay_ratio ** float(d)  # [B - d]
            out = out + F.pad(term, (0, d)) / 2 + F.pad(term, (d, 0)) / 2
        return out

    return Objective(fn, f"alignment({layer}, decay_ratio={_num(float(decay_ratio))})", [layer])


def layer(layer: str) -> Objective:
    """DeepDream: mean squared activation over all channels and positions of `layer`."""
    return Objective(lambda acts: acts[layer].pow(2).flatten(1).mean(1), f"layer({layer})", [layer])


deepdream = layer  # Lucid's and Lucent's name for it


def class_logit(label: int, layer: str = "logits") -> Objective:
    """The logit of class `label` (from the model's logits layer)."""
    return Objective(lambda acts: acts[layer][:, label], f"class_logit({label})", [layer])


def diversity(layer: str, group: int | None = None) -> Objective:
    """Minus the mean cosine similarity of each image's Gram matrix to the others' in its group.

    Groups are consecutive runs of `group` images (default: the whole batch), so several
    diversity sets can render in one batch. Maximizing it pushes a group's images apart in
    style; 0 for a group of one."""

    def fn(acts: Acts) -> torch.Tensor:
        t = acts[layer]
        b, c = t.shape[:2]
        g = group or b
        if b % g:
            raise MicrotomeError(f"diversity groups of {g} do not divide a batch of {b}")
        if g < 2:
            return torch.zeros(b, device=t.device, dtype=t.dtype)
        flat = t.reshape(b, c, -1)  # [B, C, HW]
        gram = F.normalize(torch.bmm(flat, flat.transpose(1, 2)).reshape(b // g, g, -1), dim=2)
        sim = gram @ gram.transpose(1, 2)  # [B/g, g, g]
        return (-(sim.sum(2) - sim.diagonal(dim1=1, dim2=2)) / (g - 1)).reshape(b)

    where = f", group={group}" if group else ""
    return Objective(fn, f"diversity({layer}{where})", [layer])


# ---- image penalties (positive; subtract them) ---------------------------------------------------
def total_variation() -> Objective:
    """Mean absolute difference between neighbouring pixels of the input image."""

    def fn(acts: Acts) -> torch.Tensor:
        x = acts[INPUT]
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
        return dx + dy

    return Objective(fn, "tv()", [INPUT])


tv = total_variation


def l1(constant: float = 0.5) -> Objective:
    """Mean absolute distance of the input's pixels from `constant`."""
    return Objective(lambda acts: (acts[INPUT] - constant).abs().flatten(1).mean(1),
                     f"l1({_num(constant)})", [INPUT])


def l2(constant: float = 0.5) -> Objective:
    """Root mean squared distance of the input's pixels from `constant`."""
    return Objective(lambda acts: (acts[INPUT] - constant).pow(2).flatten(1).mean(1).sqrt(),
                     f"l2({_num(constant)})", [INPUT])


def blur(sigma: float = 1.0) -> Objective:
    """Mean squared distance of the input from its own blurred copy (held fixed): penalizes
    high frequencies."""

    def fn(acts: Acts) -> torch.Tensor:
        x = acts[INPUT]
        radius = max(1, int(3 * sigma))
        k = torch.exp(-torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype) ** 2
                      / (2 * sigma * sigma))
        k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)  # [C, 1, 1, K]
        with torch.no_grad():
            y = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k, groups=x.shape[1])
            y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"),
                         k.transpose(2, 3), groups=x.shape[1])
        return (x - y).pow(2).flatten(1).mean(1)

    return Objective(fn, f"blur({_num(sigma)})", [INPUT])


# ---- parsing -----------------------------------------------------------------------------------
def parse(text: str) -> Objective:
    """Objective from shorthand: "layer:unit" is a channel, "-layer:unit" its negative,
    "layer:unit:neuron" the centre neuron, "layer" alone the DeepDream layer objective."""
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    parts = text.lstrip("-").split(":")
    if not parts[0]:
        raise MicrotomeError(f"empty layer in objective {text!r}; expected 'layer:unit'")
    if len(parts) == 1:
        obj = layer(parts[0])
    else:
        try:
            unit = int(parts[1])
        except ValueError:
            raise MicrotomeError(f"unit {parts[1]!r} in {text!r} is not an integer; expected "
                                 "'layer:unit', e.g. 'block10:5'") from None
        kind = parts[2] if len(parts) > 2 else "channel"
        makers = {"channel": channel, "neuron": neuron}
        if kind not in makers:
            raise MicrotomeError(f"unknown objective kind {kind!r} in {text!r}; valid: channel, neuron")
        obj = makers[kind](parts[0], unit)
    return -obj if sign < 0 else obj


def as_objective(obj: Objective | str) -> Objective:
    return parse(obj) if isinstance(obj, str) else obj
