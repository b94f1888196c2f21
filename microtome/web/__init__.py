"""The web microscope: `create_app(store) -> FastAPI` (serve) and `export(store, out_dir)` (static site).

Model -> layer graph -> layer grid -> unit page, every unit at `/models/M/L/U`, every page
with a `.json` twin. Pages are view functions (views.py) of one `AppState` (state.py) in a
flat route table (routes.py); the static export calls the same views. Importing this package
does not import torch.
"""

from microtome.web.server.app import create_app
from microtome.web.server.export import export

__all__ = ["create_app", "export"]
