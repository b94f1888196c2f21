"""Per-layer schedules: `LayerSchedule.kind(receptive-field extent) -> "early" | "local" | None`,
and what each kind changes in a render (`render_kwargs`).

A layer whose receptive field is a few pixels wide has its optimum at the highest frequencies,
which the standard transforms' resampling and the FFT's 1/f scaling hold back. So:
- "early" layers (field <= `early_field` px at the render size: efficientnet_lite0's stem and
  block0, googlenet's conv1) take `early_step_factor` times the steps; with `early_image`
  "pixels" every step optimizes the pixels themselves (no FFT, no colour decorrelation, no
  transforms), with logits bounded softly (`saturation`) so that the image saturates without
  clipping. Such a unit is nearly a linear filter on a few pixels: its optimum is a pattern of
  the highest frequency, or a flat colour, that the transforms and the FFT's 1/f scale hold back
  (stem units reached 0.57-0.91 of their best photo's spatial mean with them, 1.06-1.87 without).
  With `early_image` "fft" (params stored before it) only the last `steps // polish_every`
  steps did;
- "local" layers (field <= `local_field` px: lite0's block1 to block4 at 128 px) polish the same
  way at `local_polish_lr`, with the usual unbounded logits;
- other layers keep the transforms to the end.
The schedule follows the layer wherever a unit is rendered: `render(spec=...)` measures the
field of the layers its objectives read and applies it (`schedule=None` turns it off); the
build's feature-vis params store the same numbers, so a render at a preset and seed gives the
build's image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class LayerSchedule:
    """The thresholds (receptive-field extent in pixels, longer side) and the polish settings."""

    early_field: int = 8
    polish_every: int = 8
    polish_lr: float = 0.2
    saturation: float = 5.0
    early_step_factor: int = 2
    local_field: int | None = 72
    local_polish_lr: float = 0.1
    early_image: str = "pixels"  # "pixels": every step in pixel space; "fft": a polish only

    def kind(self, extent: int) -> str | None:
        """"early", "local" or None for a layer whose field is `extent` pixels wide."""
        if extent <= self.early_field:
            return "early"
        if self.local_field is not None and extent <= self.local_field:
            return "local"
        return None

    def render_kwargs(self, kind: str | None, steps: int) -> dict[str, Any]:
        """The `render` arguments a layer of `kind` changes, for a render of `steps` steps."""
        if kind == "early" and self.early_image == "pixels":
            return {"steps": steps * self.early_step_factor, "polish_steps": 0,
                    "saturation": self.saturation, "fft": False, "decorrelated": False,
                    "transforms": []}
        if kind == "early":
            total = steps * self.early_step_factor
            return {"steps": total, "polish_steps": total // self.polish_every,
                    "polish_lr": self.polish_lr, "saturation": self.saturation}
        if kind == "local":
            return {"steps": steps, "polish_steps": steps // self.polish_every,
                    "polish_lr": self.local_polish_lr}
        return {"steps": steps}

    def as_params(self) -> dict[str, Any]:
        """The schedule as stored params (the build's feature-vis params hold these keys)."""
        return asdict(self)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "LayerSchedule | None":
        """The schedule stored in `params`; None for params stored before schedules existed
        (no `early_field`): those images were rendered without one."""
        if params.get("early_field") is None:
            return None
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in params.items() if k in names}
        values.setdefault("early_step_factor", 1)  # stored before early layers took more steps
        values.setdefault("local_field", None)  # stored before local layers existed
        values.setdefault("early_image", "fft")  # stored before early layers' pixel images
        return cls(**values)


LAYER_SCHEDULE = LayerSchedule()  # the build's schedule, and `render`'s default
