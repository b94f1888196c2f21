"""Helpers and data for the web tests: a small store of fake artifacts, a live server, link
and image checks. (The pytest fixtures built on them live in tests/conftest.py.)

`make_store(root) -> Store` holds efficientnet_lite0 (its real spec summary) with solid-colour
PNG artifacts of every technique for a few units of block10, thumbnails of the units they
connect to in block9/block11, a second grid page of `head`, and an untrained googlenet;
`add_sae(root)` adds an SAE on block10 (meta only) to a copy of it.
`FakeRenderer` stands in for the build's `build_unit` in on-demand tests: it stores
feature-vis PNGs for the unit it is asked for, optionally waiting for a gate first.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import io
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from PIL import Image

from microtome.store import ArtifactKey, Store
from microtome.zoo.registry import registered_cards

MODEL = "efficientnet_lite0"
UNTRAINED = "googlenet"
LAYER = "block10"
BUILT_UNITS = range(16)  # block10 units with feature vis, deepdream, connections
FULL_UNITS = range(4)  # block10 units that also have dataset examples and tuning curves
HEAD_UNITS = (0, 1, 2, 3, 130)  # head has 1280 units: 130 sits on grid page 2
# labels of block10 units (best first), as techniques/labels.py writes them
LABELS = {0: [("golden retriever", 0.8, "examples"), ("dog", 0.6, "examples")],
          1: [("dog", 0.9, "examples"), ("wheel", 0.2, "predictions")],
          2: [("sports car", 0.7, "connections")],
          3: [("hotdog", 0.5, "predictions")],
          5: [("striped", 0.4, "examples")]}
QUALITY = {("block10", u): q for u, q in {0: 0.5, 1: 0.9, 2: 0.2, 3: 1.1}.items()}  # feature-vis quality
# the SAE that `add_sae` adds on block10: its figures, and feature 0's strongest block10 units
SAE_FACTS = {"features": 448, "k": 16, "explained_variance": 0.812, "l0": 15.5, "dead_fraction": 0.0625,
             "dataset": "samples"}
SAE_LOADINGS = [[64, -1.5], [68, 1.25], [2, 0.5]]
ARTIFACTS = Path(__file__).resolve().parents[1] / "ci-artifacts"  # screenshots the browser tests save


@functools.lru_cache(maxsize=1)
def registry_summaries() -> dict[str, dict[str, Any]]:
    """The real registry's cards as JSON (what the web app reads by default)."""
    return registered_cards()


def registry() -> dict[str, dict[str, Any]]:
    """A registry function for `create_app(registry=...)` that does not spawn a process each time."""
    return registry_summaries()


def png(*seed: object, size: int = 64) -> bytes:
    """A solid-colour PNG whose colour is derived from `seed` (distinct units look distinct)."""
    digest = hashlib.sha256(repr(seed).encode()).digest()
    buf = io.BytesIO()
    Image.new("RGB", (size, size), tuple(digest[:3])).save(buf, format="PNG")
    return buf.getvalue()


def provenance(trained: bool = True, preset: str = "quick") -> dict[str, Any]:
    return {"weights": "default" if trained else "random", "trained": trained, "weights_sha256": None,
            "code_version": "0.1.0", "seed": 0, "preset": preset, "created": 1_700_000_000.0}


def put(store: Store, model: str, layer: str, unit: int | None, technique: str, params: dict[str, Any],
        files: dict[str, bytes], meta: dict[str, Any] | None = None, trained: bool = True) -> None:
    params = {"preset": "quick", **params}
    key = ArtifactKey.for_params(model, layer, unit, technique, params)
    store.put(key, params, files, {**(meta or {}), "provenance": provenance(trained, params["preset"])})


def put_feature_vis(store: Store, model: str, layer: str, unit: int, variants=("positive", "negative", "neuron"),
                    trained: bool = True) -> None:
    for variant in variants:
        if variant == "diversity":
            files = {f"{i}.png": png(model, layer, unit, variant, i) for i in range(4)}
            meta = {"objective": f"channel({layer}, {unit}) diversity", "activation": [1.0, 0.9, 0.8, 0.7]}
        else:
            files = {"image.png": png(model, layer, unit, variant)}
            meta = {"objective": f"{variant}({layer}, {unit})", "activation": 1.5 + unit,
                    "quality": QUALITY.get((layer, unit))}
        put(store, model, layer, unit, "feature_vis", {"variant": variant, "steps": 16, "size": 64}, files, meta,
            trained)


def put_unit_extras(store: Store, model: str, layer: str, unit: int) -> None:
    """Dataset examples (`put_examples`) and tuning curves."""
    put_examples(store, model, layer, unit)
    put(store, model, layer, unit, "tuning", {"families": ["gratings", "hues"]},
        {"plot.png": png(model, layer, unit, "plot", size=160), "preferred.png": png(model, layer, unit, "pref")},
        {"preferred": {"gratings": {"orientation": 45.0, "frequency": 0.05}, "hues": {"hue": 120.0}},
         "preferred_stimulus": {"family": "gratings", "params": {"orientation": 45.0}, "response": 3.2}})


def put_examples(store: Store, model: str, layer: str, unit: int) -> None:
    """Dataset examples laid out as techniques/examples.py writes them (top/bottom with crop,
    whole image and heat map; quantile crops; histogram)."""
    files: dict[str, bytes] = {}
    meta: dict[str, Any] = {"dataset": "samples", "images": 40}

    def example(name: str, rank: int, value: float, heat: bool) -> dict[str, Any]:
        kinds = ("crop", "image", "heat") if heat else ("crop",)
        for kind in kinds:
            files[f"{name}_{kind}.png"] = png(model, layer, unit, name, kind, size=48)
        return {"index": rank, "path": f"samples/img{rank}.png", "value": value, "position": [3, 4],
                "box": [0, 0, 48, 48], "label": rank, "class_name": f"class {rank}",
                "files": {kind: f"{name}_{kind}.png" for kind in kinds}}
    meta["top"] = [example(f"top_{i}", i, 9.0 - i, True) for i in range(4)]
    meta["bottom"] = [example(f"bottom_{i}", 10 + i, -1.0 - i, True) for i in range(2)]
    meta["quantiles"] = [{"q": q, **example(f"quantile_{round(q * 100):02d}", 20 + j, q * 5, False)}
                         for j, q in enumerate((0.1, 0.5, 0.9))]
    meta["histogram"] = {"edges": [float(i) for i in range(11)], "counts": [5, 9, 14, 20, 14, 9, 5, 3, 2, 1]}
    files["histogram.png"] = png(model, layer, unit, "histogram", size=80)
    put(store, model, layer, unit, "dataset_examples", {"dataset": "samples", "k": 4, "size": 48}, files, meta)


def make_store(root: str | Path) -> Store:
    """The fixture store at `root` (created); see the module docstring for what it holds."""
    summaries = registry_summaries()
    store = Store(root)
    store.put_model(MODEL, summaries[MODEL])
    store.put_model(UNTRAINED, {**summaries[UNTRAINED], "trained": False, "weights": "random"})
    for layer in ("block9", LAYER, "block11"):
        put(store, MODEL, layer, None, "deepdream", {"steps": 16, "size": 64},
            {"image.png": png(MODEL, layer, "dream", size=96)}, {"objective": f"dream({layer})", "value": 2.0})
    for unit in BUILT_UNITS:
        put_feature_vis(store, MODEL, LAYER, unit, ("positive", "negative", "neuron", "diversity"))
        inputs = [{"layer": "block9", "unit": (unit + i) % 5, "weight": 0.9 - 0.4 * i} for i in range(4)]
        outputs = [{"layer": "block11", "unit": (unit + i) % 5, "weight": 0.7 - 0.5 * i} for i in range(3)]
        outputs.append({"layer": LAYER, "unit": (unit + 1) % len(BUILT_UNITS), "weight": 0.1})
        put(store, MODEL, LAYER, unit, "connections", {"top": 4},
            meta={"inputs": inputs, "outputs": outputs, "method": "weights",
                  "classes": [{"index": 817, "label": "sports car", "weight": 0.4}]}, files={})
    for unit in FULL_UNITS:
        put_unit_extras(store, MODEL, LAYER, unit)
    for unit, labels in LABELS.items():
        put(store, MODEL, LAYER, unit, "labels", {"dataset": "samples", "top": 8}, {},
            {"labels": [{"label": lab, "score": score, "source": source} for lab, score, source in labels]})
    for layer in ("block9", "block11"):
        for unit in range(5):
            put_feature_vis(store, MODEL, layer, unit, ("positive",))
    for unit in range(5):  # block9's own inputs (block8, not rendered): circuits two layers deep
        inputs = [{"layer": "block8", "unit": (3 * unit + i) % 7, "weight": 0.6 - 0.45 * i} for i in range(3)]
        put(store, MODEL, "block9", unit, "connections", {"top": 4},
            meta={"inputs": inputs, "outputs": [], "method": "weights", "classes": []}, files={})
    for unit in HEAD_UNITS:
        put_feature_vis(store, MODEL, "head", unit, ("positive",))
    for unit in range(3):
        put_feature_vis(store, UNTRAINED, "inception4c", unit, ("positive",), trained=False)
    return store


def add_sae(root: Path) -> Store:
    """The web fixtures' store at `root` plus an SAE on block10 (meta only), its layer in the
    model summary, and feature-vis images of features 0-3."""
    from microtome.pipeline.dictionaries import spec_with_dictionaries  # torch: only where an SAE is added
    from microtome.techniques.builtin import sae_params
    from microtome.zoo import get_spec

    store = Store(root, create=False)
    params = sae_params("standard", "samples")
    meta = {"name": "sae", "base": LAYER, **SAE_FACTS, "epochs": 20, "weights_sha256": "0" * 64,
            "loadings": [SAE_LOADINGS] + [[[u, 0.1]] for u in range(1, 448)]}
    store.put(ArtifactKey.for_params(MODEL, LAYER, None, "sae", params), params, {"sae.pt": b"weights"}, meta)
    store.put_model(MODEL, spec_with_dictionaries(get_spec(MODEL), store).summary())
    for unit in range(4):
        put_feature_vis(store, MODEL, "block10.sae", unit)
    return store


@functools.lru_cache(maxsize=1)
def _master_store() -> Path:
    """The fixture store, built once per process in a temporary folder and closed (read-only use)."""
    root = Path(tempfile.mkdtemp(prefix="microtome-web-")) / "store"
    atexit.register(shutil.rmtree, root.parent, ignore_errors=True)
    make_store(root).close()
    return root


def store_copy(dest: str | Path) -> Path:
    """A private copy of the fixture store at `dest` (tests that write get their own)."""
    shutil.copytree(_master_store(), dest)
    return Path(dest)


class FakeRenderer:
    """A `render_job(model, layer, unit)` that stores what `build_unit` makes on demand: feature
    vis (every variant), dataset examples, connections and labels; `gate` (if set) must be
    opened before it finishes, so tests can hold a job in the running state."""

    def __init__(self, store: Store, gate: threading.Event | None = None, delay: float = 0.0):
        self.store = store
        self.gate = gate
        self.delay = delay
        self.calls: list[tuple[str, str, int]] = []
        self.started = threading.Event()

    def __call__(self, model: str, layer: str, unit: int) -> None:
        self.calls.append((model, layer, unit))
        self.started.set()
        if self.gate is not None and not self.gate.wait(30):
            raise TimeoutError("test gate never opened")
        time.sleep(self.delay)
        if model not in self.store.models():
            self.store.put_model(model, registry_summaries()[model])
        put_feature_vis(self.store, model, layer, unit, ("positive", "negative", "neuron", "diversity"))
        put_examples(self.store, model, layer, unit)
        put(self.store, model, layer, unit, "connections", {"top": 4},
            meta={"inputs": [], "outputs": [], "method": "weights", "classes": []}, files={})
        put(self.store, model, layer, unit, "labels", {"dataset": "samples", "top": 8}, {},
            {"labels": [{"label": f"fake label {unit}", "score": 0.5, "source": "examples"}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`app` served by uvicorn on a free loopback port in a thread, for browsers and raw HTTP.

    Use as a context manager; `url` is the base URL. Leaving it shuts the server (and with it
    the app's lifespan: the render queue) down."""

    def __init__(self, app: Any):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag in ("img", "image") and (a.get("src") or a.get("href")):
            self.srcs.append(a.get("src") or a["href"])


def links(html: str) -> tuple[list[str], list[str]]:
    """(link targets, image sources) of a page, in order (SVG `<image href>` included)."""
    parser = _Links()
    parser.feed(html)
    return parser.hrefs, parser.srcs


def broken_images(page: Any) -> list[str]:
    """Sources of the `<img>` elements of a Playwright `page` that did not load (after
    scrolling each into view)."""
    return page.evaluate("""async () => {
        const imgs = Array.from(document.querySelectorAll('img'));
        for (const img of imgs) { img.loading = 'eager'; img.scrollIntoView(); }
        await Promise.all(imgs.map(img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; })));
        window.scrollTo(0, 0);
        return imgs.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src);
    }""")


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """`python -m http.server` over `folder` on a free loopback port, answering when this yields
    its base URL (ending in "/"); stopped afterwards."""
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                               str(folder), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base, timeout=5).read()
                break
            except OSError:
                time.sleep(0.05)
        yield base
    finally:
        server.terminate()
        server.wait(10)


@contextlib.contextmanager
def served_export(tmp_path: Path, page: Any, first: str = "/") -> Iterator[str]:
    """The static export of a copy of the fixture store on a `static_server`; `page`
    (Playwright) has loaded `first` when this yields the site's base URL (no trailing "/")."""
    from microtome.web import export

    out = tmp_path / "site"
    export(store_copy(tmp_path / "store"), out, progress=False)
    with static_server(out) as base:
        page.goto(base.rstrip("/") + first)
        yield base.rstrip("/")
