"""What every view reads: `AppState(store, catalog, renderer, cache, queue, exported, photo, notes_token)`, one per app.

Views are functions of this state and a URL's values (pages/); the app (server/app.py) makes one
state and hands it to every route instead of closing over its parts. A static export makes
one too, with no queue and `exported` set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from microtome.store import Store
from microtome.techniques.registry import techniques
from microtome.web.jobs.inspect_jobs import InspectJobs
from microtome.web.jobs.photo import PhotoSearcher
from microtome.web.jobs.render_queue import RenderQueue
from microtome.web.present.cache import StoreCache
from microtome.web.present.catalog import Catalog, Registry
from microtome.web.present.links import Exported
from microtome.web.present.templating import Renderer

PAGE_CACHE_SIZE = 512
INDEX_TTL_S = 3600.0  # store-wide indexes (labels, histograms) cost seconds to read: kept until the store changes


@dataclass
class AppState:
    """The store and what is derived from it. `queue` renders missing units on demand (None:
    serve only what is built); `render_techniques` are the techniques whose absence queues a
    unit (None: those the registry declares `on_demand`, read at each request); `exported`
    limits unit links to a static export's units."""

    store: Store
    catalog: Catalog
    renderer: Renderer = field(default_factory=Renderer)
    cache: StoreCache | None = None  # rendered pages, until the store changes
    queue: RenderQueue | None = None
    inspector: InspectJobs = field(default_factory=InspectJobs)  # inspect a photo, one at a time
    exported: Exported | None = None
    render_techniques: tuple[str, ...] | None = None
    photo: PhotoSearcher = field(default_factory=PhotoSearcher)  # search by photo, one at a time
    notes_token: str | None = None  # `Authorization: Bearer` token that may write notes (None: read-only)
    indexes: StoreCache | None = None  # store-wide indexes for search, until the store changes

    def __post_init__(self) -> None:
        if self.cache is None:
            self.cache = StoreCache(self.store.root, maxsize=PAGE_CACHE_SIZE)
        if self.indexes is None:
            self.indexes = StoreCache(self.store.root, maxsize=8, ttl=INDEX_TTL_S)

    @classmethod
    def over(cls, store: Store, registry: Registry | None = None, **kw: object) -> AppState:
        """The state of `store`, with a catalog of its models (and `registry`'s, if given)."""
        return cls(store, Catalog(store, registry), **kw)  # type: ignore[arg-type]

    def on_demand(self) -> tuple[str, ...]:
        """The techniques whose absence from a unit page queues the unit for rendering."""
        if self.render_techniques is not None:
            return self.render_techniques
        return tuple(t.id for t in techniques() if t.on_demand)

    async def ready(self, model: str | None) -> None:
        """Load the model registry (off the event loop) if answering about `model` needs it."""
        if self.catalog.needs_registry(model):
            await anyio.to_thread.run_sync(self.catalog.registry)
