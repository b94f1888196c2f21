"""Parameterized stimulus families: `(size, params [N] each) -> images [N, 3, S, S]` in [0, 1].

Geometry, shared by every family: pixel coordinates are centred on the image's geometric
centre `((S-1)/2, (S-1)/2)`, x points right and y points *up*; angles are in degrees,
counter-clockwise from the x axis. A stimulus "at orientation θ" runs along the direction
`(cos θ, sin θ)`; its normal is `n = (-sin θ, cos θ)` and `d = p · n` is a pixel's signed
distance from the line through the centre at that orientation.

Two layers of functions:
- `draw_*` draw one image per row of a parameter table (`[N]` tensors, one per parameter),
  so a caller can draw a long sweep in chunks;
- `gratings`, `edges`, `lines`, `curves`, `hue_patches` draw a whole factorial sweep and
  return `(images [N, 3, S, S], table {param: [N]})`, the table's rows in `product` order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

Table = dict[str, torch.Tensor]  # {parameter: [N]}, one row per stimulus
Device = str | torch.device


def product(**values: Sequence[float]) -> Table:
    """The factorial grid of parameter values, as a table `{name: [N]}`, N = prod of lengths.

    The first parameter varies slowest (like `itertools.product`), so responses `[N, ...]`
    reshape to `[len(first), len(second), ..., ...]`."""
    axes = [torch.as_tensor(list(v), dtype=torch.float64) for v in values.values()]
    grids = torch.meshgrid(*axes, indexing="ij")
    return {name: grid.reshape(-1) for name, grid in zip(values, grids)}


def even_angles(n: int, period: float = 180.0) -> list[float]:
    """`n` angles in degrees evenly spaced over `[0, period)`, starting at 0."""
    return [i * period / n for i in range(n)]


def coords(size: int, device: Device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates `(x, y)`, each `[S, S]`: centred, x right, y up, in pixels."""
    c = (size - 1) / 2
    i = torch.arange(size, device=device, dtype=torch.float32)
    rows, cols = torch.meshgrid(i, i, indexing="ij")
    return cols - c, c - rows


def _column(values: torch.Tensor | Sequence[float] | float, device: Device) -> torch.Tensor:
    """Parameter values `[N]` as a float32 column `[N, 1, 1]` on `device`, for broadcasting."""
    return torch.as_tensor(values, dtype=torch.float32, device=device).reshape(-1, 1, 1)


def _normal_distance(size: int, orientation: torch.Tensor, device: Device) -> torch.Tensor:
    """Signed distance `d = p · n` of every pixel from the line through the centre at each
    orientation (degrees `[N]`): `[N, S, S]`, positive on the left of the direction θ."""
    x, y = coords(size, device)
    theta = torch.deg2rad(_column(orientation, device))
    return -x * torch.sin(theta) + y * torch.cos(theta)  # [N, S, S]


def _rgb(gray: torch.Tensor) -> torch.Tensor:
    """`[N, S, S]` -> `[N, 3, S, S]` grey images."""
    return gray.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def _stroke(distance: torch.Tensor, polarity: torch.Tensor, width: float, device: Device
            ) -> torch.Tensor:
    """A stroke of `width` px along `|distance| = 0`, anti-aliased by pixel coverage:
    white on black for polarity +1, black on white for -1. `[N, S, S]` -> `[N, S, S]`."""
    cover = (width / 2 + 0.5 - distance.abs()).clamp(0, 1)
    return 0.5 + _column(polarity, device) * (cover - 0.5)


def draw_gratings(size: int, orientation, frequency, phase, device: Device = "cpu") -> torch.Tensor:
    """Full-field sinusoidal gratings `0.5 + 0.5 cos(2π f d + φ)`: stripes run along the
    orientation θ (degrees), `f` in cycles per pixel across the stripes, phase φ in degrees
    (0 puts a bright stripe through the centre). `[N]` each -> `[N, 3, S, S]`."""
    d = _normal_distance(size, orientation, device)  # [N, S, S]
    f = _column(frequency, device)
    phi = torch.deg2rad(_column(phase, device))
    return _rgb(0.5 + 0.5 * torch.cos(2 * math.pi * f * d + phi))


def draw_edges(size: int, orientation, polarity, device: Device = "cpu") -> torch.Tensor:
    """A black/white step edge through the centre along θ (degrees), anti-aliased: white on
    the left of the direction θ (the side of the normal n) for polarity +1, on the right
    for -1. `[N]` each -> `[N, 3, S, S]`."""
    d = _normal_distance(size, orientation, device)
    return _rgb((0.5 + _column(polarity, device) * d).clamp(0, 1))


def draw_lines(size: int, orientation, polarity, width: float = 2.0, device: Device = "cpu"
               ) -> torch.Tensor:
    """A straight bar `width` px thick through the centre along θ (degrees), across the whole
    image: light on dark for polarity +1, dark on light for -1. `[N]` each -> `[N, 3, S, S]`."""
    d = _normal_distance(size, orientation, device)
    return _rgb(_stroke(d, polarity, width, device))


def draw_curves(size: int, orientation, curvature, polarity, width: float = 2.0,
                device: Device = "cpu") -> torch.Tensor:
    """An arc of the circle of curvature κ ≥ 0 (1/radius, per pixel) through the centre: its
    tangent at the centre runs along θ (degrees, over [0, 360)) and it bends to the left,
    towards the circle's centre at `n/κ`. κ = 0 draws the straight line `draw_lines` draws.
    Stroke `width` px; light on dark for polarity +1, dark on light for -1.
    `[N]` each -> `[N, 3, S, S]`."""
    x, y = coords(size, device)  # [S, S]
    theta = torch.deg2rad(_column(orientation, device))
    k = _column(curvature, device)
    nx, ny = -torch.sin(theta), torch.cos(theta)  # [N, 1, 1]
    d = x * nx + y * ny  # [N, S, S]
    # distance to the circle |p - n/κ| - 1/κ, rewritten to stay finite as κ -> 0
    # (it tends to -d, the straight line's signed distance)
    reach = torch.sqrt((k * x - nx) ** 2 + (k * y - ny) ** 2)  # |κ p - n|
    distance = (k * (x * x + y * y) - 2 * d) / (reach + 1)
    return _rgb(_stroke(distance, polarity, width, device))


def hue_to_rgb(hue: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Fully saturated, full-value colours of hues in degrees (0 red, 120 green, 240 blue):
    `[N]` -> `[N, 3]` in [0, 1] (the HSV hexcone)."""
    h = torch.as_tensor(hue, dtype=torch.float32).reshape(-1, 1)
    n = torch.tensor([5.0, 3.0, 1.0], device=h.device)
    k = torch.remainder(n + h / 60, 6)  # [N, 3]
    return 1 - torch.clamp(torch.minimum(k, torch.clamp(4 - k, max=1)), min=0)


def draw_hues(size: int, hue, disk, radius: float | None = None, background: float = 0.5,
              device: Device = "cpu") -> torch.Tensor:
    """Colour of hue h (degrees) at full saturation: over the whole image where `disk` is 0,
    in a centred anti-aliased disk of `radius` px (default S/4) on a `background` grey where
    `disk` is 1. `[N]` each -> `[N, 3, S, S]`."""
    colour = hue_to_rgb(torch.as_tensor(hue)).to(device)[:, :, None, None]  # [N, 3, 1, 1]
    x, y = coords(size, device)
    r = size / 4 if radius is None else radius
    inside = (r + 0.5 - torch.sqrt(x * x + y * y)).clamp(0, 1)  # [S, S] pixel coverage
    mask = 1 - _column(disk, device).unsqueeze(1) * (1 - inside)  # [N, 1, S, S]
    return mask * colour + (1 - mask) * background


DRAW: Mapping[str, Callable[..., torch.Tensor]] = {
    "gratings": draw_gratings,
    "edges": draw_edges,
    "lines": draw_lines,
    "curves": draw_curves,
    "hues": draw_hues,
}


def draw(family: str, size: int, table: Mapping[str, torch.Tensor], device: Device = "cpu",
         **options) -> torch.Tensor:
    """Draw the rows of a parameter table of one family (a key of `DRAW`) -> `[N, 3, S, S]`.

    `options` are the family's fixed settings (`width` for lines and curves, `radius` for hues)."""
    return DRAW[family](size, **table, **options, device=device)


# ---- whole factorial sweeps ----------------------------------------------------------------
def gratings(size: int, orientations: Sequence[float], frequencies: Sequence[float],
             phases: Sequence[float], device: Device = "cpu") -> tuple[torch.Tensor, Table]:
    """All gratings orientation × frequency × phase -> (`[O*F*P, 3, S, S]`, table)."""
    table = product(orientation=orientations, frequency=frequencies, phase=phases)
    return draw_gratings(size, **table, device=device), table


def edges(size: int, orientations: Sequence[float], polarities: Sequence[float] = (1, -1),
          device: Device = "cpu") -> tuple[torch.Tensor, Table]:
    """All edges polarity × orientation -> (`[2*O, 3, S, S]`, table)."""
    table = product(polarity=polarities, orientation=orientations)
    return draw_edges(size, **table, device=device), table


def lines(size: int, orientations: Sequence[float], polarities: Sequence[float] = (1, -1),
          width: float = 2.0, device: Device = "cpu") -> tuple[torch.Tensor, Table]:
    """All lines polarity × orientation -> (`[2*O, 3, S, S]`, table)."""
    table = product(polarity=polarities, orientation=orientations)
    return draw_lines(size, **table, width=width, device=device), table


def curves(size: int, orientations: Sequence[float], curvatures: Sequence[float],
           polarities: Sequence[float] = (1, -1), width: float = 2.0, device: Device = "cpu"
           ) -> tuple[torch.Tensor, Table]:
    """All arcs polarity × orientation × curvature -> (`[2*O*K, 3, S, S]`, table)."""
    table = product(polarity=polarities, orientation=orientations, curvature=curvatures)
    return draw_curves(size, **table, width=width, device=device), table


def hue_patches(size: int, hues: Sequence[float], disks: Sequence[float] = (0, 1),
                device: Device = "cpu") -> tuple[torch.Tensor, Table]:
    """All colour stimuli kind × hue (kind 0 uniform patch, 1 centred disk) ->
    (`[2*H, 3, S, S]`, table)."""
    table = product(disk=disks, hue=hues)
    return draw_hues(size, **table, device=device), table
