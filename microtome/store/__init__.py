"""The artifact store: `(model, layer, unit, technique, params_hash)` -> params, meta and files.

A directory with `index.sqlite` (WAL) and content-addressed blobs `blobs/ab/cdef...`; see
`Store`. The build writes it, the web app reads it, `pack`/`unpack` move it as one archive.
"""

from microtome.store.batch import PutEntry
from microtome.store.keys import ANY, Artifact, ArtifactKey, param_hash
from microtome.store.store import DEFAULT_ROOT, GcReport, Store, VerifyReport

__all__ = ["ANY", "DEFAULT_ROOT", "Artifact", "ArtifactKey", "GcReport", "PutEntry", "Store", "VerifyReport",
           "param_hash"]
