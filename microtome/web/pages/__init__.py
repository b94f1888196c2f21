"""The web microscope's pages: view functions `(state, path and query values) -> page data | Redirect`,
one module per page family. A view never sees a request; no page imports another (what pages
share is in present/)."""
