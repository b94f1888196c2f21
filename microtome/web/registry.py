"""The model registry's summaries, computed in a child process: `load_registry() -> {id: summary}`.

`microtome.zoo` imports torch (seconds and hundreds of MB); the web server only needs the
registered models' summaries (layers, edges, title), so it asks a short-lived child process
for them once instead of importing torch itself. Run as `python -m microtome.web.registry`,
this module prints `{model id: spec.summary()}` as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from microtome.errors import MicrotomeError

TIMEOUT_S = 300.0


def load_registry(timeout: float = TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """Summaries of every registered model, by id; MicrotomeError if the zoo cannot be read."""
    cmd = [sys.executable, "-m", "microtome.web.registry"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MicrotomeError(f"could not list the model registry ({' '.join(cmd)}): {exc}") from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise MicrotomeError(f"could not list the model registry: {' / '.join(tail) or 'no output'}")
    try:
        summaries = json.loads(done.stdout)
    except ValueError as exc:
        raise MicrotomeError(f"the model registry printed something that is not JSON: {exc}") from None
    return {str(k): v for k, v in summaries.items() if isinstance(v, dict)}


def main() -> None:
    """Print the registry's summaries as JSON (a model whose spec fails is reported and skipped)."""
    from microtome.zoo import get_spec, list_models

    out = {}
    for name in list_models():
        try:
            out[name] = get_spec(name).summary()
        except Exception as exc:  # noqa: BLE001 - one broken spec must not hide the others
            print(f"skipping {name}: {exc}", file=sys.stderr)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
