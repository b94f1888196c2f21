"""The HTTP side of the web microscope: the app (app.py), its one route table (routes.py), how a
view's answer is sent (HTML, JSON twin, redirect, error), request bodies (forms.py), templates
(templating.py) and the static export that walks the same table (export.py). Imports pages/,
present/ and jobs/; nothing below imports it."""
