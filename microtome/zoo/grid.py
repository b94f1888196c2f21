"""Token and channels-last outputs seen as maps: a `GridView` child reads `[B, D, gh, gw]`.

Shape: tokens `[B, N, D]` -> `[B, D, gh, gw]` (the first `prefix` tokens — class,
distillation, registers — left out, the `gh·gw = N - prefix` patch tokens on their square
grid); channels-last `[B, H, W, C]` -> `[B, C, H, W]`. Both are views (a slice, a transpose, a
permute), so gradients flow through them and every technique that reads `[B, C, H, W]` reads
a token layer unchanged.

`add_grid_view(model, path, layout, prefix) -> view path` makes the view a child of the module
at `path` (no parameters, so state dicts are unchanged) fed by a forward hook that the module
keeps: each forward of the module also runs the view. Hooks read the view's output at
`PATH.grid_view` (the layer card's module; `PATH` is an alias). A hook that *replaces* the
view's output (an ablation, an attribution's leaf) replaces the module's output with it mapped
back by `GridView.inverse` (prefix tokens kept), so writers act on the model as on any layer;
one that only reads (an SAE's dispatch) changes nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from microtome.errors import MicrotomeError

GRID = "grid_view"
TOKENS = "tokens"
CHANNELS_LAST = "channels_last"


class GridView(nn.Module):
    """`layout` "tokens" (`prefix` leading tokens dropped) or "channels_last"; see the module docstring."""

    def __init__(self, layout: str, prefix: int = 0):
        super().__init__()
        if layout not in (TOKENS, CHANNELS_LAST):
            raise ValueError(f"layout must be {TOKENS!r} or {CHANNELS_LAST!r}, got {layout!r}")
        self.layout, self.prefix = layout, int(prefix)

    def extra_repr(self) -> str:
        return f"{self.layout}, prefix={self.prefix}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == CHANNELS_LAST:
            out = x.permute(0, 3, 1, 2)  # [B, H, W, C] -> [B, C, H, W]
        else:
            patches = x[:, self.prefix:]  # [B, N, D] -> [B, gh*gw, D]
            side = math.isqrt(patches.shape[1])
            if side * side != patches.shape[1]:
                raise MicrotomeError(f"{patches.shape[1]} patch tokens (after {self.prefix} prefix "
                                     "tokens) are not a square grid; microtome reads square images only")
            out = patches.transpose(1, 2).unflatten(2, (side, side))  # [B, D, gh, gw]
        setattr(out, _MARK, True)
        return out

    def inverse(self, grid: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        """The module output whose view is `grid` `[B, D, gh, gw]`, with `original`'s prefix tokens."""
        if self.layout == CHANNELS_LAST:
            return grid.permute(0, 2, 3, 1)  # [B, C, H, W] -> [B, H, W, C]
        patches = grid.flatten(2).transpose(1, 2)  # [B, gh*gw, D]
        return torch.cat([original[:, :self.prefix], patches], dim=1)  # [B, N, D]


_MARK = "_microtome_grid_view"  # set on the view's own output: a replacement lacks it


def _feed_view(module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor | None:
    """Run the view (its hooks read it); if a hook replaced the view's output, the module's
    output becomes the replacement mapped back (`inverse`), so writers work on views too."""
    view = getattr(module, GRID)
    seen = view(output)
    return None if getattr(seen, _MARK, False) else view.inverse(seen, output)


def add_grid_view(model: nn.Module, path: str, layout: str, prefix: int = 0) -> str:
    """Attach a `GridView` under the module at `path` (once); returns the view's module path."""
    module = model.get_submodule(path)
    if not isinstance(getattr(module, GRID, None), GridView):
        module.add_module(GRID, GridView(layout, prefix))
        module.register_forward_hook(_feed_view)
    return f"{path}.{GRID}" if path else GRID


def is_grid_view(module: nn.Module) -> bool:
    return isinstance(module, GridView)
