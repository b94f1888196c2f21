"""Schedules: `Schedule`, what changes over a render's steps (`render(schedule=...)`), and in it
`LayerSchedule.kind(receptive-field extent) -> "early" | "local" | None`, what each kind of layer
changes in a render (`render_kwargs`).

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
field of the layers its objectives read and applies it (`Schedule(layers=None)` turns it off);
the build's feature-vis params store the same numbers, so a render at a preset and seed gives
the build's image.

`Schedule` is a sibling of `LayerSchedule`, not more fields of it: a `LayerSchedule` is stored,
field by field, in every feature-vis artifact's params (`as_params`), so a new field would
change every stored param hash; and it holds rules by layer, where `Schedule` holds one
render's settings (the build's come from the stored params, `techniques.feature_vis`).
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
REDIRECT_STEPS = 16  # Lucid's: the redirected gradient for the first 16 steps


@dataclass(frozen=True)
class Schedule:
    """What changes over a render's steps, step 1 to `steps`:

    - the default optimizer's learning rate goes from `render`'s `lr` to `lr_final` along half
      a cosine (`cosine_lr`) until the polish; None: constant (a caller's optimizer keeps its
      own rate either way);
    - during the first `redirect_steps` steps, and after them for an image whose value is still
      exactly 0, ReLU-family activations backpropagate Lucid's redirected gradient (0: never);
    - the last `sharpen_steps` steps use `transforms.sharp_transforms()` (whole-pixel shifts, no
      resampling) in place of the render's transforms;
    - the last `polish_steps` (counted within them) optimize the image's pixels themselves
      (`param.pixel_logits`), untransformed, at `polish_lr` (None: `lr`): the image is then
      optimized exactly as it is measured;
    - `layers` (with a `spec`): the receptive field of the layers the objectives read picks a
      kind of layer, whose settings (`LayerSchedule.render_kwargs`: steps, polish, and the
      standard image's fft, decorrelated and saturation, the transforms) replace these and the
      render's; None renders exactly as asked."""

    lr_final: float | None = None
    redirect_steps: int = REDIRECT_STEPS
    sharpen_steps: int = 0
    polish_steps: int = 0
    polish_lr: float | None = None
    layers: LayerSchedule | None = LAYER_SCHEDULE


SCHEDULE = Schedule()  # `render`'s default: Lucid's redirection, the build's layer schedule
