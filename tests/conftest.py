"""Test setup: the repository root on `sys.path`, so that tests can name the custom model
entry point `tests.toy_models:tiny_net` however pytest was started (`pytest` or `python -m pytest`)."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
