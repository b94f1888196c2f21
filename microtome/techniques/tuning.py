"""Synthetic tuning curves: a unit's response to parameterized stimulus families.

Shape: a response is `(images [N, 3, S, S] in [0, 1]) -> [N, C]`, C units at once;
`tuning_curves(response, size, sweep) -> {family: {axes..., "response": [C, ...]}, ...}` runs
every stimulus of the sweep through it in chunks, so one pass gives a whole layer's units;
`tuning(model, spec, layer, units, params) -> [ArtifactResult]`, one per unit, each with a
plot, the preferred stimulus and the curves as JSON-ready meta.

Families (see stimuli.py for the geometry): gratings orientation × frequency × phase (the
curve averages over phase, and also keeps the max over phase), edges and lines polarity ×
orientation, curves polarity × orientation (over 360°) × curvature, hues kind (uniform patch,
centred disk) × hue.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from microtome.errors import MicrotomeError, close_names
from microtome.images import png_bytes
from microtome.techniques import stimuli
from microtome.techniques.base import ArtifactResult, Job
from microtome.techniques.builtin import TUNING, TUNING_PRESETS
from microtome.zoo.hooks import forward_to, layer_paths
from microtome.zoo.spec import ModelSpec

Response = Callable[[torch.Tensor], torch.Tensor]  # images [N, 3, S, S] -> [N, C]

# Orientation counts span 180° (gratings, edges, lines) and twice as many span 360° for
# curves, at the same step; phases and hues are counts over 360°. Frequencies are in cycles
# per pixel, curvatures in 1/pixel (1/radius), the line width in pixels. An optional "size"
# (pixels) overrides the model's input size.
FAMILIES = ("gratings", "edges", "lines", "curves", "hues")
POLARITIES = (1.0, -1.0)  # light on dark / white on the normal's side, then the reverse
HUE_KINDS = ("patch", "disk")


# ---- parameters ----------------------------------------------------------------------------
def check_sweep(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full sweep: `params` completed from the standard preset, with every value checked.

    A MicrotomeError names an unknown key or a bad value and what would be right."""
    sweep = dict(TUNING_PRESETS["standard"])
    valid = [*sweep, "size"]
    for key, value in (params or {}).items():
        if key not in valid:
            near = close_names(key, valid)
            hint = f"did you mean {', '.join(near)}?" if near else f"valid: {', '.join(valid)}"
            raise MicrotomeError(f"no tuning parameter {key!r}; {hint}", suggestions=near)
        sweep[key] = value
    for key in ("orientations", "phases", "hues"):
        if not isinstance(sweep[key], int) or isinstance(sweep[key], bool) or sweep[key] < 1:
            raise MicrotomeError(f"tuning parameter {key!r} must be a whole number ≥ 1, "
                                 f"not {sweep[key]!r}")
    for key, low, what in (("frequencies", 0.0, "cycles per pixel > 0"),
                           ("curvatures", None, "1/pixels ≥ 0")):
        values = sweep[key]
        ok = (isinstance(values, (list, tuple)) and len(values) > 0
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
              and all((v > low) if low is not None else (v >= 0) for v in values))
        if not ok:
            raise MicrotomeError(f"tuning parameter {key!r} must be a non-empty list of "
                                 f"{what}, not {values!r}")
        sweep[key] = [float(v) for v in values]
    if not isinstance(sweep["line_width"], (int, float)) or sweep["line_width"] <= 0:
        raise MicrotomeError(f"tuning parameter 'line_width' must be pixels > 0, "
                             f"not {sweep['line_width']!r}")
    sweep["line_width"] = float(sweep["line_width"])
    size = sweep.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 8):
        raise MicrotomeError(f"tuning parameter 'size' must be pixels ≥ 8, not {size!r}")
    return sweep


def sweep_tables(sweep: Mapping[str, Any]) -> dict[str, stimuli.Table]:
    """`{family: parameter table}` of every stimulus in a (checked) sweep, in product order."""
    n = sweep["orientations"]
    orientation = stimuli.even_angles(n, 180.0)
    return {
        "gratings": stimuli.product(orientation=orientation, frequency=sweep["frequencies"],
                                    phase=stimuli.even_angles(sweep["phases"], 360.0)),
        "edges": stimuli.product(polarity=POLARITIES, orientation=orientation),
        "lines": stimuli.product(polarity=POLARITIES, orientation=orientation),
        "curves": stimuli.product(polarity=POLARITIES,
                                  orientation=stimuli.even_angles(2 * n, 360.0),
                                  curvature=sweep["curvatures"]),
        "hues": stimuli.product(disk=(0.0, 1.0), hue=stimuli.even_angles(sweep["hues"], 360.0)),
    }


def _options(family: str, sweep: Mapping[str, Any]) -> dict[str, Any]:
    """A family's fixed drawing settings."""
    return {"width": sweep["line_width"]} if family in ("lines", "curves") else {}


# ---- responses -----------------------------------------------------------------------------
def centre(activation: torch.Tensor, layer: str = "") -> torch.Tensor:
    """A layer output's value at the spatial centre: `[B, C, H, W] -> [B, C]` (at row H//2,
    column W//2); a vector `[B, C]` is returned as is."""
    if activation.dim() == 4:
        _, _, h, w = activation.shape
        return activation[:, :, h // 2, w // 2]
    if activation.dim() == 2:
        return activation
    raise MicrotomeError(f"layer {layer!r} gives outputs of shape {tuple(activation.shape)}; "
                         "tuning curves read [B, C, H, W] or [B, C] outputs")


def unit_response(model: nn.Module, spec: ModelSpec, layer_id: str,
                  device: str | torch.device = "cpu") -> Response:
    """`(images [N, 3, S, S] in [0, 1]) -> [N, C]`: every unit of the layer at the spatial
    centre, after `spec.preprocess`, without gradients, stopping the forward pass at the layer.

    The model must be on `device` and in eval mode (batch norm in training mode would make a
    unit's response depend on the rest of the batch)."""
    paths = layer_paths(spec, [layer_id])  # {canonical id: module path}
    (layer,) = paths
    if model.training:
        raise MicrotomeError(f"{spec.id} is in training mode; call model.eval() before "
                             "measuring tuning curves")

    def response(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = spec.preprocess(images.to(device))
            return centre(forward_to(model, x, paths)[layer], layer)  # [N, C]
    return response


def _run(response: Response, family: str, size: int, table: stimuli.Table,
         options: Mapping[str, Any], device: str | torch.device, chunk: int) -> torch.Tensor:
    """Responses `[N, C]` (float, on the CPU) to a family's stimuli, drawn `chunk` at a time."""
    n = len(next(iter(table.values())))
    out = []
    for start in range(0, n, chunk):
        rows = {k: v[start:start + chunk] for k, v in table.items()}
        images = stimuli.draw(family, size, rows, device, **options)  # [n, 3, S, S]
        r = response(images)
        if r.dim() != 2 or r.shape[0] != images.shape[0]:
            raise ValueError(f"a response must map [N, 3, S, S] to [N, C]; got "
                             f"{tuple(r.shape)} for N = {images.shape[0]}")
        out.append(r.detach().float().cpu())
    return torch.cat(out)


def tuning_curves(response: Response, size: int, sweep: Mapping[str, Any] | None = None,
                  device: str | torch.device = "cpu", chunk: int = 64) -> dict[str, Any]:
    """Every unit's response to every stimulus of `sweep` (default: the standard preset).

    Returns `{"size", "sweep", "tables": {family: table}, "responses": {family: [N, C]},
    "families": {...}, "best": {...}}` with, in "families" (C units first):
    gratings `orientation [O], frequency [F], phase [P], response [C, O, F]` (mean over
    phase), `response_max [C, O, F]` (max over phase); edges and lines `polarity [2],
    orientation [O], response [C, 2, O]`; curves `polarity [2], orientation [2O] (over
    360°), curvature [K], response [C, 2, 2O, K]`; hues `kind ("patch", "disk"), hue [H],
    response [C, 2, H]`. "best" is each unit's strongest stimulus over all families:
    `family` (list of C names), `index [C]` (row of that family's table), `response [C]`."""
    if not isinstance(chunk, int) or chunk < 1:
        raise MicrotomeError(f"chunk must be a whole number of images ≥ 1, not {chunk!r}")
    sweep = check_sweep(sweep)
    tables = sweep_tables(sweep)
    responses = {f: _run(response, f, size, t, _options(f, sweep), device, chunk)
                 for f, t in tables.items()}
    c = responses["gratings"].shape[1]
    o, f, p = sweep["orientations"], len(sweep["frequencies"]), sweep["phases"]
    k, h = len(sweep["curvatures"]), sweep["hues"]

    def axis(family: str, name: str, stride: int, length: int) -> torch.Tensor:
        return tables[family][name][::stride][:length]  # float64: the exact sweep values

    g = responses["gratings"].reshape(o, f, p, c).permute(3, 0, 1, 2)  # [C, O, F, P]
    families = {
        "gratings": {"orientation": axis("gratings", "orientation", f * p, o),
                     "frequency": axis("gratings", "frequency", p, f),
                     "phase": axis("gratings", "phase", 1, p),
                     "response": g.mean(-1), "response_max": g.amax(-1)},
        "curves": {"polarity": torch.tensor(POLARITIES),
                   "orientation": axis("curves", "orientation", k, 2 * o),
                   "curvature": axis("curves", "curvature", 1, k),
                   "response": responses["curves"].reshape(2, 2 * o, k, c).permute(3, 0, 1, 2)},
        "hues": {"kind": HUE_KINDS, "hue": axis("hues", "hue", 1, h),
                 "response": responses["hues"].reshape(2, h, c).permute(2, 0, 1)},
    }
    for name in ("edges", "lines"):
        families[name] = {"polarity": torch.tensor(POLARITIES),
                          "orientation": axis(name, "orientation", 1, o),
                          "response": responses[name].reshape(2, o, c).permute(2, 0, 1)}
    peaks = [responses[name].max(0) for name in FAMILIES]  # per family: values [C], rows [C]
    values = torch.stack([v for v, _ in peaks])  # [5, C]
    which = values.argmax(0)  # [C]
    units = torch.arange(c)
    best = {"family": [FAMILIES[i] for i in which.tolist()],
            "index": torch.stack([i for _, i in peaks])[which, units],
            "response": values[which, units]}
    return {"size": size, "sweep": sweep, "tables": tables, "responses": responses,
            "families": families, "best": best}


def best_stimulus(curves: Mapping[str, Any], unit: int) -> tuple[str, dict[str, float]]:
    """(family, parameters) of the strongest stimulus of column `unit` of a `tuning_curves`
    result."""
    family = curves["best"]["family"][unit]
    row = int(curves["best"]["index"][unit])
    return family, {k: float(v[row]) for k, v in curves["tables"][family].items()}


def preferred_stimulus(curves: Mapping[str, Any], unit: int, device: str | torch.device = "cpu"
                       ) -> torch.Tensor:
    """The strongest stimulus of column `unit`, redrawn: `[1, 3, S, S]`."""
    family, params = best_stimulus(curves, unit)
    return stimuli.draw(family, curves["size"], {k: [v] for k, v in params.items()}, device,
                        **_options(family, curves["sweep"]))


# ---- per-unit summaries --------------------------------------------------------------------
def _argmax(t: torch.Tensor | np.ndarray) -> tuple[int, ...]:
    """Index of the largest entry of `t`, one int per dimension (the first on ties)."""
    return tuple(int(i) for i in np.unravel_index(int(t.argmax()), tuple(t.shape)))


def _json(t: torch.Tensor | Sequence) -> Any:
    """Nested lists of floats with 6 significant digits, from a tensor (any shape); a
    non-finite value (a broken model's NaN) becomes None, which JSON can hold."""
    if isinstance(t, torch.Tensor):
        t = t.tolist()
    if isinstance(t, (list, tuple)):
        return [_json(x) for x in t]
    if isinstance(t, str):
        return t
    return float(f"{t:.6g}") if math.isfinite(t) else None


def preferred(curves: Mapping[str, Any], unit: int) -> dict[str, float]:
    """Column `unit`'s preferred parameters: orientation (degrees) and frequency (cycles/px)
    of gratings; orientation and polarity of edges and of lines; orientation, curvature
    (1/px) and polarity of curves; hue (degrees) and the colour stimulus kind."""
    fam = curves["families"]
    out: dict[str, Any] = {}
    g = fam["gratings"]
    o, f = _argmax(g["response"][unit])
    out.update(orientation=float(g["orientation"][o]), frequency=float(g["frequency"][f]))
    for name in ("edges", "lines"):
        p, o = _argmax(fam[name]["response"][unit])
        out[f"{name[:-1]}_orientation"] = float(fam[name]["orientation"][o])
        out[f"{name[:-1]}_polarity"] = POLARITIES[p]
    c = fam["curves"]
    p, o, k = _argmax(c["response"][unit])
    out.update(curve_orientation=float(c["orientation"][o]),
               curvature=float(c["curvature"][k]), curve_polarity=POLARITIES[p])
    kind, h = _argmax(fam["hues"]["response"][unit])
    out.update(hue=float(fam["hues"]["hue"][h]), hue_kind=HUE_KINDS[kind])
    return out


def unit_meta(curves: Mapping[str, Any], unit: int) -> dict[str, Any]:
    """JSON-ready meta of column `unit`: preferred parameters, the strongest stimulus and
    every family's axes and curve (`families`, shaped as in `tuning_curves` minus C)."""
    families = {}
    for name, fam in curves["families"].items():
        families[name] = {key: _json(value[unit] if key.startswith("response") else value)
                          for key, value in fam.items()}
    family, params = best_stimulus(curves, unit)
    return {
        "size": curves["size"],
        "preferred": preferred(curves, unit),
        "preferred_stimulus": {"family": family,
                               "params": {k: _json(v) for k, v in params.items()},
                               "response": _json(float(curves["best"]["response"][unit]))},
        "families": families,
    }


# ---- the plot ------------------------------------------------------------------------------
def _plot_gratings(a_ori, a_freq, g: Mapping[str, Any], unit: int) -> None:
    """Orientation curve at the preferred frequency and frequency curve at the preferred orientation."""
    o, f = _argmax(g["response"][unit])
    a_ori.plot(g["orientation"], g["response"][unit][:, f], "o-", ms=3, label="mean over phase")
    a_ori.plot(g["orientation"], g["response_max"][unit][:, f], "--", label="max over phase")
    a_ori.set_title(f"gratings, {float(g['frequency'][f]):.3g} cycles/px", fontsize=9)
    a_ori.set_xlabel("orientation (°)", fontsize=8)
    a_freq.semilogx(g["frequency"], g["response"][unit][o], "o-", ms=3, label="mean over phase")
    a_freq.semilogx(g["frequency"], g["response_max"][unit][o], "--", label="max over phase")
    a_freq.set_title(f"gratings, {float(g['orientation'][o]):.0f}°", fontsize=9)
    a_freq.set_xlabel("spatial frequency (cycles/px)", fontsize=8)


def _plot_curves(fig, a_curv, c: Mapping[str, Any], unit: int) -> None:
    """Heat map of the response to curves (orientation x curvature) at the preferred polarity."""
    p, _, _ = _argmax(c["response"][unit])
    heat = c["response"][unit][p].T  # [K, 2O]
    step = float(c["orientation"][1] - c["orientation"][0]) if len(c["orientation"]) > 1 else 360.0
    shown = a_curv.imshow(heat, aspect="auto", origin="lower", cmap="viridis",
                          extent=(-step / 2, 360 - step / 2, -0.5, heat.shape[0] - 0.5))
    a_curv.set_yticks(range(heat.shape[0]), [f"{v:.3g}" for v in c["curvature"]])
    a_curv.set_title(f"curves ({'light' if p == 0 else 'dark'})", fontsize=9)
    a_curv.set_xlabel("orientation (°)", fontsize=8)
    a_curv.set_ylabel("curvature (1/px)", fontsize=8)
    fig.colorbar(shown, ax=a_curv, fraction=0.05)


def plot(curves: Mapping[str, Any], unit: int, stimulus: torch.Tensor, title: str = "") -> bytes:
    """PNG of column `unit`'s curves: grating orientation and frequency curves at the
    preferred frequency / orientation, edge and line orientation curves, the curvature heat
    map of the preferred polarity, the hue curve in hue colours, and `stimulus [3, S, S]`."""
    fam = {name: {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in f.items()}
           for name, f in curves["families"].items()}  # matplotlib wants arrays
    fig = Figure(figsize=(9.6, 5.6), dpi=80)
    FigureCanvasAgg(fig)
    (a_ori, a_freq, a_el), (a_curv, a_hue, a_img) = fig.subplots(2, 3)

    _plot_gratings(a_ori, a_freq, fam["gratings"], unit)

    for name, labels in (("edges", ("edge +", "edge −")), ("lines", ("light line", "dark line"))):
        for p, label in enumerate(labels):
            a_el.plot(fam[name]["orientation"], fam[name]["response"][unit][p],
                      "-" if name == "edges" else ":", marker=".", label=label)
    a_el.set_title("edges and lines", fontsize=9)
    a_el.set_xlabel("orientation (°)", fontsize=8)

    _plot_curves(fig, a_curv, fam["curves"], unit)

    hues = fam["hues"]
    colours = stimuli.hue_to_rgb(torch.from_numpy(hues["hue"])).numpy()
    for kind, (style, marker) in enumerate((("-", "o"), ("--", "s"))):
        a_hue.plot(hues["hue"], hues["response"][unit][kind], style, color="0.6", lw=1,
                   label=HUE_KINDS[kind])
        a_hue.scatter(hues["hue"], hues["response"][unit][kind], c=colours, marker=marker,
                      s=18, edgecolors="k", linewidths=0.3, zorder=3)
    a_hue.set_title("hue", fontsize=9)
    a_hue.set_xlabel("hue (°)", fontsize=8)

    for ax in (a_ori, a_freq, a_el, a_hue):
        ax.legend(fontsize=6)
    for ax in (a_ori, a_el):
        ax.set_xticks(range(0, 181, 45))
    a_hue.set_xticks(range(0, 361, 60))
    for ax in (a_ori, a_freq, a_el, a_curv, a_hue):
        ax.tick_params(labelsize=7)

    a_img.imshow(stimulus.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
    a_img.set_title(f"preferred: {curves['best']['family'][unit]}", fontsize=9)
    a_img.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ---- the technique -------------------------------------------------------------------------
def tuning(model: nn.Module, spec: ModelSpec, layer_id: str, units: Sequence[int],
           params: Mapping[str, Any] | None = None, device: str | torch.device = "cpu",
           chunk: int = 64) -> list[ArtifactResult]:
    """Tuning curves of `units` of one layer, one `ArtifactResult` each (technique "tuning").

    `params` are a preset's values (`TUNING_PRESETS[...]`, default "standard"; missing keys
    come from "standard" and the result records the completed set). All units are measured
    in one pass of the stimuli. Files: "plot.png" and "preferred.png"; meta: `unit_meta`."""
    units = list(units)
    layer, units = spec.units(layer_id, units) if units else (spec.layer(layer_id), [])
    if not units:
        return []
    sweep = check_sweep(params)
    size = sweep.get("size", spec.input_size)
    response = unit_response(model, spec, layer.id, device)
    index = torch.tensor(units)
    curves = tuning_curves(lambda images: response(images)[:, index.to(images.device)],
                           size, sweep, device, chunk)
    results = []
    for column, unit in enumerate(units):
        image = preferred_stimulus(curves, column, device)  # [1, 3, S, S]
        files = {"plot.png": plot(curves, column, image[0], f"{spec.id}/{layer.id}:{unit}"),
                 "preferred.png": png_bytes(image[0])}
        results.append(ArtifactResult(layer=layer.id, unit=unit, technique=TUNING,
                                      params=dict(sweep), files=files,
                                      meta=unit_meta(curves, column)))
    return results


def run_tuning(job: Job) -> list[ArtifactResult]:
    """The tuning runner: one layer's units in one pass of the stimuli."""
    results = tuning(job.model, job.spec, job.layers[0], job.units, job.items[0].params, device=job.device)
    job.tick(1.0)
    return results
