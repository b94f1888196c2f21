"""Image parameterizations: `() -> (params, make_image)`; `make_image() -> images [B, 3, H, W]`.

The optimizer's parameters are explicit (`params`, a list of leaf tensors); `make_image` maps
them to images. `image(...)` is the usual stack: FFT with 1/f^decay scaling (or pixels), then
decorrelated colour, then a sigmoid to valid RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from microtome.errors import MicrotomeError
from microtome.optvis.randomness import PerImage

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


def to_valid_rgb(make_image: MakeImage, decorrelated: bool = True) -> MakeImage:
    """Wrap `make_image` so its output is RGB in [0, 1]: optional colour decorrelation, then sigmoid."""
    matrices: dict[tuple, torch.Tensor] = {}  # the colour matrix, made once per device and dtype

    def make() -> torch.Tensor:
        x = make_image()
        if decorrelated:
            key = (x.device, x.dtype)
            if key not in matrices:
                matrices[key] = _color_matrix(x.device, x.dtype)
            x = decorrelate(x, matrices[key])
        return torch.sigmoid(x)

    return make


def image(size: int, batch: int = 1, fft: bool = True, decorrelated: bool = True,
          decay: float = 1.0, sd: float = 0.01, device=None,
          rng: PerImage | None = None) -> tuple[list[torch.Tensor], MakeImage]:
    """The standard parameterization: `batch` images `[batch, 3, size, size]` valid RGB.

    Image i draws its initial values from `rng`'s generator i (the renderer's), or without
    `rng` from torch's global generator."""
    shape = (batch, 3, size, size)
    params, make = (fft_image(shape, sd, decay, device, rng) if fft
                    else pixel_image(shape, sd, device, rng))
    return params, to_valid_rgb(make, decorrelated)
