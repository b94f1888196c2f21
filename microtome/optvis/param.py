"""Image parameterizations: `() -> (params, make_image)`; `make_image() -> images [B, 3, H, W]`.

The optimizer's parameters are explicit (`params`, a list of leaf tensors); `make_image` maps
them to images. `image(...)` is the usual stack: FFT with 1/f^decay scaling (or pixels), then
decorrelated colour, then a sigmoid to valid RGB in [0, 1]. `ImageParam(size, ...)` is the same
stack as the renderer's `param_f`, each image seeded on its own (`render`'s default). Lucent's
`lowres_tensor` and `cppn` keep its names and signatures, so they plug into `render(param_f=...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from microtome.errors import MicrotomeError
from microtome.optvis.randomness import PerImage, image_seeds

MakeImage = Callable[[], torch.Tensor]

# Square root of ImageNet's colour covariance (from its SVD), as Lucid measured it: a colour
# basis in which the channels are uncorrelated. `_color_matrix` divides it by its largest column
# norm.
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02),
                              (0.27, 0.00, -0.05),
                              (0.27, -0.09, 0.03))


def _color_matrix(device, dtype) -> torch.Tensor:
    m = torch.tensor(COLOR_CORRELATION_SVD_SQRT, device=device, dtype=dtype)
    return m / m.norm(dim=0).max()


def fft_frequencies(h: int, w: int, device=None) -> torch.Tensor:
    """Magnitude of each rfft2 frequency, in cycles per pixel: `[h, w // 2 + 1]`."""
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay: float = 1.0, device=None) -> torch.Tensor:
    """1/f^decay weights `[h, w // 2 + 1]`, with the DC term capped at 1/max(h, w)."""
    freqs = fft_frequencies(h, w, device)
    return 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay


def _normal(shape: tuple[int, ...], rng: PerImage | None, device) -> torch.Tensor:
    """Standard normal `shape` `[B, ...]`: image i from `rng`'s generator i, or from torch's
    global generator without `rng`."""
    if rng is None:
        return torch.randn(*shape, device=device)
    if len(rng) != shape[0]:
        raise MicrotomeError(f"{len(rng)} image generators for a batch of {shape[0]} images")
    return rng.normal(shape[1:]).to(device)


def fft_image(shape: tuple[int, int, int, int], sd: float = 0.01, decay: float = 1.0,
              device=None, rng: PerImage | None = None) -> tuple[list[torch.Tensor], MakeImage]:
    """Images as a 1/f-scaled spectrum: `params` `[B, C, H, W//2+1, 2]` (real, imaginary).

    `make_image() -> [B, C, H, W]`, unbounded; the inverse transform is orthonormal and the
    result divided by 4 so that typical values sit near unit scale before the sigmoid."""
    b, c, h, w = shape
    spectrum = (_normal((b, c, h, w // 2 + 1, 2), rng, device) * sd).requires_grad_(True)
    scale = spectrum_scale(h, w, decay, device) / 4.0  # [H, W//2+1]; the transform is linear

    def make_image() -> torch.Tensor:
        spec = torch.view_as_complex(spectrum) * scale  # [B, C, H, W//2+1]
        return torch.fft.irfft2(spec, s=(h, w), norm="ortho")

    return [spectrum], make_image


def pixel_image(shape: tuple[int, int, int, int], sd: float = 0.01,
                device=None, rng: PerImage | None = None) -> tuple[list[torch.Tensor], MakeImage]:
    """Images as free pixels: `params` `[B, C, H, W]`, `make_image` returns them as they are."""
    pixels = (_normal(tuple(shape), rng, device) * sd).requires_grad_(True)
    return [pixels], lambda: pixels


def decorrelate(images: torch.Tensor, matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Map images from the decorrelated colour basis to RGB: `[B, 3, H, W] -> [B, 3, H, W]`.

    `matrix` is `_color_matrix` for the images' device and dtype, when the caller has it."""
    m = _color_matrix(images.device, images.dtype) if matrix is None else matrix
    return torch.matmul(m, images.flatten(2)).view_as(images)  # [3, 3] @ [B, 3, HW]


def to_valid_rgb(make_image: MakeImage, decorrelated: bool = True,
                 saturation: float | None = None) -> MakeImage:
    """Wrap `make_image` so its output is RGB in [0, 1]: optional colour decorrelation, then sigmoid.

    With `saturation` s the logits are bounded softly before the sigmoid, `s·tanh(z / s)`: pixels
    stay within sigmoid(±s) of the range (s = 5: 0.7% of it, between 8-bit levels 2 and 253),
    and an image pushed towards black or white keeps a gradient instead of clipping."""
    matrices: dict[tuple, torch.Tensor] = {}  # the colour matrix, made once per device and dtype

    def make() -> torch.Tensor:
        x = make_image()
        if decorrelated:
            key = (x.device, x.dtype)
            if key not in matrices:
                matrices[key] = _color_matrix(x.device, x.dtype)
            x = decorrelate(x, matrices[key])
        if saturation is not None:
            x = torch.tanh(x / saturation) * saturation
        return torch.sigmoid(x)

    return make


def image(size: int, batch: int = 1, fft: bool = True, decorrelated: bool = True,
          decay: float = 1.0, sd: float = 0.01, device=None,
          rng: PerImage | None = None, saturation: float | None = None
          ) -> tuple[list[torch.Tensor], MakeImage]:
    """The standard parameterization: `batch` images `[batch, 3, size, size]` valid RGB.

    Image i draws its initial values from `rng`'s generator i (the renderer's), or without
    `rng` from torch's global generator."""
    shape = (batch, 3, size, size)
    params, make = (fft_image(shape, sd, decay, device, rng) if fft
                    else pixel_image(shape, sd, device, rng))
    return params, to_valid_rgb(make, decorrelated, saturation)


@dataclass(frozen=True)
class ImageParam:
    """The renderer's standard image as a `param_f`: `image(size, ...)`, one generator per image.

    Image i's generator is seeded by `seeds[i]`, or from (`seed`, its objective's description,
    its occurrence) (`randomness.image_seeds`); the renderer draws the image's initial values
    and then its transforms from it, so a unit's image is the same alone or anywhere in any
    batch. `batch=None`: one image per objective (one objective: one image; a number: that many
    of one objective, e.g. a diversity set). `saturation` bounds the logits (`to_valid_rgb`),
    the polishing phase's too. In `render` it is built on the render's device, and a layer
    schedule may change `fft`, `decorrelated` and `saturation`; called on its own, as any
    `param_f() -> (params, make_image)`, its images are those of objectives described by ""."""

    size: int = 128
    batch: int | None = None
    fft: bool = True
    decorrelated: bool = True
    decay: float = 1.0
    saturation: float | None = None
    seed: int = 0
    seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.seeds is not None:  # a tuple, so that equal images compare (and hash) equal
            object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))

    def image_seeds(self, names: Sequence[str]) -> list[int]:
        """Each image's seed `[N]`, for images whose objectives are described by `names` `[N]`."""
        own = list(self.seeds) if self.seeds is not None else image_seeds(self.seed, names)
        if len(own) != len(names):
            raise MicrotomeError(f"{len(own)} seeds for {len(names)} images")
        return own

    def make(self, rng: PerImage, device=None) -> tuple[list[torch.Tensor], MakeImage]:
        """`len(rng)` images `[N, 3, size, size]`, image i drawn from `rng`'s generator i."""
        return image(self.size, len(rng), fft=self.fft, decorrelated=self.decorrelated,
                     decay=self.decay, device=device, rng=rng, saturation=self.saturation)

    def __call__(self) -> tuple[list[torch.Tensor], MakeImage]:
        n = self.batch or (len(self.seeds) if self.seeds is not None else 1)
        return self.make(PerImage.from_seeds(self.image_seeds([""] * n)))


def pixel_logits(images: torch.Tensor, saturation: float | None = None
                 ) -> tuple[list[torch.Tensor], MakeImage]:
    """Free per-pixel logits starting at `images` `[B, 3, H, W]` in (0, 1): `make_image()` returns
    them through the sigmoid (bounded by `saturation` as in `to_valid_rgb`), equal to `images` at
    the start up to float rounding. The renderer's polishing phase: every pixel moves at the
    optimizer's own pace, where the FFT parameterization slows the highest frequencies by 1/f.
    `params` `[B, 3, H, W]`."""
    eps = 1e-6
    logits = torch.logit(images.clamp(eps, 1 - eps))
    if saturation is not None:
        bound = saturation * (1 - 1e-6)
        logits = torch.atanh(logits.clamp(-bound, bound) / saturation) * saturation
    logits = logits.detach().clone().requires_grad_(True)

    def make_image() -> torch.Tensor:
        x = logits if saturation is None else torch.tanh(logits / saturation) * saturation
        return torch.sigmoid(x)

    return [logits], make_image


# ---- Lucent's other parameterizations: `(...) -> (params, image_f)` ----------------------------
def resize_linear_nd(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Linear interpolation of `t` to `shape` (same rank), one dimension at a time (half-pixel
    centres, as `F.interpolate(align_corners=False)`); in linear interpolation the order of the
    dimensions does not matter."""
    for d, n in enumerate(shape):
        if t.shape[d] == n:
            continue
        moved = t.movedim(d, -1)  # [..., m]
        flat = F.interpolate(moved.reshape(-1, 1, moved.shape[-1]), size=n, mode="linear",
                             align_corners=False)  # [prod, 1, n]
        t = flat.reshape(*moved.shape[:-1], n).movedim(-1, d)
    return t


def _offsets(offset, shape: Sequence[int], underlying: Sequence[int]) -> list[int]:
    """Lucent's `offset`: None/False none, True half the upsampling ratio, a number or a list."""
    entries = list(offset) if isinstance(offset, (list, tuple)) else [offset] * len(shape)
    out = []
    for o, n, m in zip(entries, shape, underlying):
        if o is True:
            o = n / m / 2
        out.append(int(o or 0))
    return out


def lowres_tensor(shape: Sequence[int], underlying_shape: Sequence[int], offset=None,
                  sd: float | None = None) -> tuple[list[torch.Tensor], MakeImage]:
    """Lucent's `lowres_tensor`: a tensor of `shape` linearly interpolated from a parameter of
    `underlying_shape` (same rank), e.g. `[1, 3, 128, 128]` from `[1, 3, 16, 16]`; `offset`
    shifts the interpolation grid (padding by reflection at the start, cropping the excess).
    `params` `[underlying_shape]`; `image_f() -> [shape]`, unbounded (wrap it with
    `to_valid_rgb` for images). Initial values from torch's global generator, `sd` 0.01."""
    if len(shape) != len(underlying_shape):
        raise MicrotomeError(f"lowres_tensor: shape {tuple(shape)} and underlying_shape "
                             f"{tuple(underlying_shape)} must have the same rank")
    low = (torch.randn(*underlying_shape) * (sd or 0.01)).requires_grad_(True)
    offsets = _offsets(offset, shape, underlying_shape)

    def image_f() -> torch.Tensor:
        t = resize_linear_nd(low, shape)
        for d, o in enumerate(offsets):
            if o > 0:  # symmetric padding at the start of dimension d, then crop to shape
                head = t.narrow(d, 0, min(o, t.shape[d])).flip(d)
                t = torch.cat([head, t], dim=d).narrow(d, 0, shape[d])
        return t

    return [low], image_f


class CompositeActivation(nn.Module):
    """CPPN activation: `atan(x)` and its square, normalized: `[B, C, H, W] -> [B, 2C, H, W]`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.atan(x)
        return torch.cat([x / 0.67, (x * x) / 0.6], 1)


def cppn(size: int, num_output_channels: int = 3, num_hidden_channels: int = 24,
         num_layers: int = 8, activation_fn=CompositeActivation, normalize: bool = False,
         device=None) -> tuple[list[torch.Tensor], MakeImage]:
    """Lucent's `cppn`: an image `[1, C, size, size]` in (0, 1) drawn by a small network of 1x1
    convolutions from the pixels' coordinates (x, y in ±√3). `params`: the network's weights
    (normal, std 1/√in; the last layer zero, so the first image is grey 0.5). Lucent
    optimizes it with Adam at lr 0.005. Initial weights from torch's global generator."""
    r = 3 ** 0.5
    coords = torch.linspace(-r, r, size, device=device)
    grid = torch.stack(torch.meshgrid(coords, coords, indexing="ij"), 0)[None]  # [1, 2, S, S]
    layers: list[nn.Module] = []
    for i in range(num_layers):
        c_in = 2 if i == 0 else num_hidden_channels * 2  # composite activations double it
        c_out = num_output_channels if i == num_layers - 1 else num_hidden_channels
        conv = nn.Conv2d(c_in, c_out, 1)
        nn.init.normal_(conv.weight, 0.0, (1.0 / c_in) ** 0.5)
        nn.init.zeros_(conv.bias)
        layers.append(conv)
        if normalize:
            layers.append(nn.InstanceNorm2d(c_out))
        layers.append(activation_fn() if i < num_layers - 1 else nn.Sigmoid())
    nn.init.zeros_(layers[-2 - int(normalize)].weight)
    net = nn.Sequential(*layers).to(device)
    return list(net.parameters()), lambda: net(grid)
