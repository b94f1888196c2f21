"""The package outside the checkout: `python -m build` makes a wheel and an sdist (the wheel
built from the sdist) whose metadata is complete; installed into a fresh venv in a temporary
folder, `microtome --help`, `microtome models`, `microtome serve` of a store the checkout wrote
(a page and its CSS) and the tutorial's first cells work.

The fresh venv (`python -m venv --without-pip`) gets the heavy dependencies (torch, ...) through a `.pth`
naming a folder of links to this interpreter's site-packages minus microtome itself (its
dist-info and its editable finder), so nothing of the checkout is importable there; pip (from
that folder) then
installs the wheel with no index (every dependency must already be satisfied, which checks the
wheel's requirements) and no network. Installing torch afresh would cost minutes and gigabytes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.request
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import microtome
from tests.web_fixtures import LAYER, MODEL, free_port, make_store

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "*.whl",
                                    "microtome-store", "out", "site", "shots", "inspect-out", ".pytest_cache")
SETUP_CELLS = 2  # the tutorial's first code cells: setup, then render a unit

pytestmark = pytest.mark.slow


def run(args: list, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env=env)
    assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def clean_env() -> dict[str, str]:
    """The environment minus anything that would put the checkout on the path (and OpenMP's
    threads waiting passively, as in tests/test_notebook.py: a shared 2-core machine)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {"OMP_WAIT_POLICY": "PASSIVE", **env}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """`python -m build` on a copy of the checkout: {"wheel": ..., "sdist": ...}."""
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    # no isolation: setuptools and build come from the test extra, so no download is needed
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", src], tmp)
    wheels, sdists = list((tmp / "dist").glob("*.whl")), list((tmp / "dist").glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    return {"wheel": wheels[0], "sdist": sdists[0], "tmp": tmp}


@pytest.fixture(scope="module")
def venv(built) -> Path:
    """A fresh venv outside the checkout with the wheel installed; its bin folder."""
    tmp = built["tmp"]
    # without pip: its own pip and setuptools would shadow the dependencies' (torch needs a newer
    # setuptools than a fresh venv has); pip comes from the dependencies' folder like the rest
    run([sys.executable, "-m", "venv", "--without-pip", tmp / "venv"], tmp)
    python = tmp / "venv" / "bin" / "python"
    deps = tmp / "deps"
    deps.mkdir()
    for folder in {Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"])}:
        for entry in folder.iterdir():
            name = entry.name.lower()
            if name.startswith(("microtome", "__editable__", "_microtome")) or name.endswith(".pth"):
                continue
            if not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).stdout.strip())
    (site / "heavy_dependencies.pth").write_text(f"{deps}\n")
    run([python, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--quiet", built["wheel"]], tmp,
        env=clean_env())
    return tmp / "venv" / "bin"


def test_wheel_and_sdist_carry_data_files_and_complete_metadata(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(wheel.read(info).decode())
    for needed in ("microtome/py.typed", "microtome/web/templates/unit.html",
                   "microtome/web/templates/sections/feature_vis.html", "microtome/web/static/microtome.css",
                   "microtome/web/static/microtome.js", "microtome/zoo/imagenet_hierarchy.json",
                   "microtome/display.py", "microtome/notebook.py"):
        assert needed in names, needed
    # every template and static file of the checkout is in the wheel
    for path in (ROOT / "microtome" / "web").rglob("*"):
        if path.is_file() and path.suffix in (".html", ".css", ".js"):
            assert path.relative_to(ROOT).as_posix() in names, path
    assert not any(n.startswith("tests/") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["Name"] == "microtome" and meta["Version"] == microtome.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta.get_all("Project-URL") and len(meta.get_all("Classifier")) >= 5
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "pip install microtome" in meta.get_payload()  # the README is the long description
    assert any(r.startswith("torch") for r in meta.get_all("Requires-Dist"))
    assert any("extra == \"test\"" in r and r.startswith("nbclient") for r in meta.get_all("Requires-Dist"))
    assert {"notebook", "ray", "test"} <= set(meta.get_all("Provides-Extra"))
    with tarfile.open(built["sdist"]) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    assert {"LICENSE", "README.md", "pyproject.toml", "microtome/web/templates/unit.html",
            "microtome/web/static/microtome.css", "docs/tutorial.ipynb"} <= members


def test_installed_outside_the_checkout_the_commands_work(venv, built):
    tmp, env = built["tmp"], clean_env()
    where = run([venv / "python", "-c", "import microtome; print(microtome.__file__)"], tmp, env=env).stdout
    assert Path(where.strip()).is_relative_to(tmp / "venv"), where  # the wheel's copy, not the checkout
    assert not Path(where.strip()).is_relative_to(ROOT)
    assert "Usage: microtome" in run([venv / "microtome", "--help"], tmp, env=env).stdout
    models = run([venv / "microtome", "models"], tmp, env=env).stdout
    assert "efficientnet_lite0" in models and "googlenet" in models


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.status, answer.headers.get("content-type", ""), answer.read()


def test_installed_serve_shows_a_store_the_checkout_built(venv, built):
    tmp = built["tmp"]
    make_store(tmp / "store").close()  # written by the checkout's code
    port = free_port()
    server = subprocess.Popen([venv / "microtome", "serve", "--store", tmp / "store", "--port", str(port),
                               "--no-render"], cwd=tmp, env=clean_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                status, _, page = _get(f"{base}/models/{MODEL}/{LAYER}/0")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.1)
        else:
            raise AssertionError("the installed server did not answer in 60 s")
        html = page.decode()
        assert status == 200 and f"{MODEL}/{LAYER}:0" in html
        css = re.findall(r'href="([^"]+\.css)"', html)
        assert css, "the page links no stylesheet"
        status, kind, body = _get(base + css[0] if css[0].startswith("/") else f"{base}/{css[0]}")
        assert status == 200 and kind.startswith("text/css")
        assert body == (ROOT / "microtome" / "web" / "static" / Path(css[0]).name).read_bytes()
        status, kind, body = _get(f"{base}/models/{MODEL}/{LAYER}/0.json")
        assert json.loads(body)["shorthand"] == f"{MODEL}/{LAYER}:0"
    finally:
        server.terminate()
        server.wait(15)


def test_installed_runs_the_tutorials_first_cells(venv, built):
    notebook = json.loads((ROOT / "docs" / "tutorial.ipynb").read_text())
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"][:SETUP_CELLS]
    assert "render(" in cells[-1]
    *body, last = cells[-1].rstrip().splitlines()
    script = "\n\n".join(cells[:-1] + ["\n".join(body), f"shown = {last}",
                                       "png = shown._repr_png_()\nassert png.startswith(b'\\x89PNG')",
                                       "print('png', len(png), 'from', microtome.__file__)"])
    (built["tmp"] / "first_cells.py").write_text(script)
    out = run([venv / "python", built["tmp"] / "first_cells.py"], built["tmp"], env=clean_env()).stdout
    assert re.search(r"png \d+ from .*venv", out), out
