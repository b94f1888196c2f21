"""The web microscope: `create_app(store) -> FastAPI` (serve) and `export(store, out_dir)` (static site).

Model -> layer graph -> layer grid -> unit page, every unit at `/models/M/L/U`, every page
with a `.json` twin. Importing this package does not import torch.
"""

from microtome.web.app import create_app
from microtome.web.export import export

__all__ = ["create_app", "export"]
