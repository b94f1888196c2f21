"""One photo's inspection written to a folder (`microtome inspect MODEL IMAGE`):
`inspect_into_folder(model, image, out, ...) -> InspectReport`.

`out` receives `inspect.json` (the result of `inspect_photo`, images named), the PNGs and
`index.html` (a self-contained page). The image is an image file or the name of one of
scikit-image's sample photos (`chelsea`, `astronaut`, ...). A bad model, layer or image is a
MicrotomeError before anything is loaded or written. Importing this module imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microtome.errors import MicrotomeError
from microtome.inspect.presets import DEFAULT_PRESET


@dataclass
class InspectReport:
    """What an inspection wrote: the result (`inspect.json`'s content), the page's path, the
    model's id, whether it has trained weights, and the layers inspected."""

    result: dict[str, Any]
    page: Path
    model: str
    trained: bool
    layer_ids: list[str]


def open_image(source: str):
    """A PIL RGB image from a file path or a scikit-image sample name (`samples:NAME` too)."""
    from PIL import Image, UnidentifiedImageError

    from microtome.data.datasets import SAMPLE_NAMES, SamplesDataset

    path = Path(source)
    if path.is_file():
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise MicrotomeError(f"cannot read {source!r} as an image ({exc}); pass a PNG, JPEG "
                                 "or other image file") from None
    name = source.removeprefix("samples:")
    if name in SAMPLE_NAMES:
        samples = SamplesDataset()
        return samples.open(samples.paths.index(name))
    raise MicrotomeError(f"no image file {source!r}; pass an image file or a scikit-image sample "
                         f"name ({', '.join(SAMPLE_NAMES[:6])}, ...)")


def write_result(result: dict, out: Path, inline: bool = False) -> Path:
    """`inspect.json`, the PNGs and `index.html` into `out`; returns the page's path. With
    `inline`, the page carries its images itself (one file to share)."""
    from microtome.images import write_atomic
    from microtome.inspect.html import inspect_html

    files = result.pop("files", {})
    for name, data in files.items():
        write_atomic(out / name, data)
    write_atomic(out / "inspect.json", json.dumps(result, indent=1).encode())
    return write_atomic(out / "index.html", inspect_html(result, files if inline else None).encode())


def inspect_into_folder(model: str, image: str, out: str | Path, *, layers: str | None = None,
                        groups: int = 6, preset: str = DEFAULT_PRESET, weights: str = "default",
                        device: str = "cpu", steps: int | None = None, size: int | None = None,
                        renders: bool = True, inline: bool = False,
                        progress: Callable[[int, int], None] | None = None,
                        started: Callable[[str, list[str], int], None] | None = None) -> InspectReport:
    """Inspect `image` with `model`'s `layers` (None: one ~60% up and the last spatial layer)
    and write it into `out`. `started(model id, layer ids, render steps)` is called once every
    name is checked and the model loaded; `progress(done, total)` counts render steps."""
    from microtome.inspect.photo import check_groups, check_layers, inspect_photo, render_steps
    from microtome.inspect.presets import inspect_params
    from microtome.zoo import get_spec, load_model

    params = inspect_params(preset, steps=steps, size=size)
    check_groups(groups)
    layer_ids = check_layers(get_spec(model), layers)  # names checked before loading weights
    photo = open_image(image)
    net, spec = load_model(model, weights=weights, device=device)
    if started is not None:
        started(spec.id, layer_ids, render_steps(len(layer_ids), params) if renders else 0)
    result = inspect_photo(net, spec, photo, layer_ids, groups, preset, device, renders=renders,
                           progress=progress or (lambda done, total: None), steps=steps, size=size)
    page = write_result(result, Path(out), inline)
    return InspectReport(result, Path(page), spec.id, spec.trained, layer_ids)
