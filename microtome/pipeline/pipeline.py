"""The build in three steps: `resolve` (model, weights) → `plan` (missing artifacts) → `run`.

`build(store, model, ...) -> BuildSummary` chains them. Every user error is raised before the
store is touched; each task's keys are claimed just before it runs, so two builds on one
store never compute the same artifact; results are recorded by this process only (the
driver), so a build killed at any instant loses at most the task in flight and a rerun redoes
only that.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from microtome import __version__
from microtome.errors import MicrotomeError
from microtome.pipeline.executors import EXECUTORS, Execution, Prepared, open_executor
from microtome.pipeline.models import ModelService, model_id
from microtome.pipeline.plan import Selection, Task, plan, select
from microtome.runtime import torch_threads
from microtome.store import ArtifactKey, PutEntry, Store
from microtome.techniques.base import Inputs
from microtome.techniques.registry import Role, technique
from microtome.zoo.spec import ModelSpec


@dataclass
class BuildSummary:
    planned: int = 0  # artifacts missing when the build started
    recorded: int = 0
    elsewhere: int = 0  # claimed by another build running on the same store
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) from workers

    def lines(self) -> list[str]:
        out = [f"{self.recorded} of {self.planned} missing artifacts recorded in {self.seconds:.1f} s"]
        if self.elsewhere:
            out.append(f"{self.elsewhere} left to another build running on this store")
        if self.failed:
            out.append(f"{len(self.failed)} tasks failed: " + "; ".join(self.failed[:5]))
        if self.skipped_files:
            out.append(f"{len(self.skipped_files)} unreadable dataset files skipped: "
                       + ", ".join(p for p, _ in self.skipped_files[:5]))
        if self.interrupted:
            out.append("interrupted: rerun the same command to finish the rest")
        return out


@dataclass(frozen=True)
class Resolved:
    """A model as the build uses it: the name workers load (a registry id or a
    `module:function` entry point), the weights asked for, and the spec with their identity."""

    name: str
    weights: str
    spec: ModelSpec
    dictionaries: tuple = ()  # (base, name, sae.pt bytes) of the store's SAEs (pipeline/dictionaries.py)


def resolve(model: str, weights: str = "default", store: Store | None = None) -> Resolved:
    """The model's spec with the identity (source, sha256, trained) of `weights`; the zoo's own
    loading code decides, and a registered model is not built to find out. With a `store`, the
    spec has a layer for each SAE the store holds for the model, and workers attach them."""
    from microtome.pipeline.dictionaries import dictionary_payloads, spec_with_dictionaries
    from microtome.zoo import get_spec
    from microtome.zoo.loading import spec_with_weights

    spec = spec_with_weights(get_spec(model), weights)  # an entry point's too: "random" is untrained
    return Resolved(model, str(weights), spec_with_dictionaries(spec, store),
                    dictionary_payloads(store, spec.id))


def provenance(spec: ModelSpec, preset: str, seed: int) -> dict[str, Any]:
    return {"weights": spec.weights, "trained": spec.trained, "weights_sha256": spec.weights_sha256,
            "code_version": __version__, "seed": seed, "preset": preset, "created": time.time()}


def check_weights(store: Store, spec: ModelSpec) -> None:
    """A store holds one set of weights per model: mixing them would mix their artifacts."""
    held = store.model(spec.id)
    if held and (held.get("weights_sha256"), held.get("trained")) != (spec.weights_sha256, spec.trained):
        raise MicrotomeError(
            f"the store at {store.root} holds {spec.id} built with weights {held.get('weights')!r} "
            f"(sha256 {held.get('weights_sha256')}); these are {spec.weights!r}: use another --store")


def stored_inputs(store: Store, model: str, task: Task) -> Inputs:
    """The metas of the stored artifacts that `task`'s technique reads, for its units."""
    wanted = {(item.layer, item.unit) for item in task.items}
    inputs: Inputs = {}
    for read in technique(task.technique).reads:
        found = inputs.setdefault(read, {})
        for layer in task.layers:
            for art in store.find(model=model, layer=layer, technique=read):
                if (layer, art.key.unit) in wanted:
                    found.setdefault((layer, art.key.unit), []).append(art.meta)
    return inputs


def build(store: Store | str, model: str, *, layers: str | Sequence[str] = "all",
          units: str | Sequence[int] | None = None, techniques: str | Sequence[str] = "all",
          preset: str = "standard", dataset: str = "samples", seed: int = 0,
          weights: str = "default", execution: Execution | None = None, worker=None,
          compare: Sequence[str] = (), variants: str | Sequence[str] = ()) -> BuildSummary:
    """Compute every missing artifact of `model` for the selection and record it in `store`.

    `worker` (a loaded `microtome.pipeline.worker.Worker`) lets a long-lived caller, such as
    the web's render queue, load the model once for many local builds. `compare` names the
    other models of the `similar` technique (none: it plans nothing); `variants` limits the
    techniques that have variants to those (none: every variant)."""
    execution = execution or Execution()
    if execution.executor not in EXECUTORS:
        raise MicrotomeError(f"unknown executor {execution.executor!r}; valid: {', '.join(EXECUTORS)}")
    existing = store if isinstance(store, Store) else existing_store(store)
    resolved = resolve(model, weights, existing)
    selection = select(resolved.spec, layers, units, techniques, preset, dataset, seed, compare, variants)
    if any(technique(t).uses_dataset for t in selection.techniques):
        from microtome.data import get_dataset
        # bad paths fail before the store is touched; artifacts record the dataset's own name
        selection = dataclasses.replace(selection, dataset=get_dataset(dataset).name)
    store = existing or Store(store)
    check_weights(store, resolved.spec)
    tasks = plan(store, resolved.spec, selection)
    if any(_trains_saes(t) for t in selection.techniques):
        from microtome.pipeline.dictionaries import check_retrain
        for task in tasks:
            for item in task.items if _trains_saes(task.technique) else ():
                check_retrain(store, resolved.spec, item.layer, item.params)
    return run(store, resolved, selection, tasks, execution, worker)


def _trains_saes(technique_id: str) -> bool:
    """Whether the technique's artifacts are SAEs, whose features become layers of the model."""
    return Role.FEATURES in technique(technique_id).roles


def existing_store(root) -> Store | None:
    """The store at `root` if there is one (its SAEs are layers), else None: nothing is created
    before the selection has been checked."""
    from pathlib import Path

    return Store(root, create=False) if (Path(root) / "index.sqlite").is_file() else None


def run(store: Store, resolved: Resolved, selection: Selection, tasks: list[Task],
        execution: Execution, worker=None) -> BuildSummary:
    """Run `tasks` on the chosen executor and record their results with provenance."""
    started = time.time()
    spec = resolved.spec
    summary = BuildSummary(planned=sum(len(t.items) for t in tasks))
    if not tasks:
        return summary
    store.put_model(spec.id, spec.summary())
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def prepare(task: Task) -> Prepared:
        """Claim the task's keys just before it runs; skip it when another build holds them all."""
        _claim(store, spec.id, task, owner, summary)
        if not task.items:
            return Prepared(skip=True)
        return Prepared(skip=False, inputs=stored_inputs(store, spec.id, task))

    meta = provenance(spec, selection.preset, selection.seed)
    bar = _Bar(sum(t.cost for t in tasks), f"{spec.id} {selection.preset}", execution.progress)
    local = execution.executor == "local"
    with torch_threads(execution.threads if local else None):
        executor = open_executor(resolved.name, resolved.weights, execution, worker, resolved.dictionaries)
        try:
            for task, results in executor.run(tasks, prepare, bar.update):
                _record(store, spec.id, task, results, meta, summary)
                _release(store, spec.id, task, owner)
                bar.postfix(f"{summary.recorded}/{summary.planned} artifacts")
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            for task in tasks:
                _release(store, spec.id, task, owner)
            summary.skipped_files = executor.skipped_files()
            executor.close()
            bar.close()
    if any(_trains_saes(task.technique) for task in tasks) and summary.recorded:
        from microtome.pipeline.dictionaries import spec_with_dictionaries
        store.put_model(spec.id, spec_with_dictionaries(spec, store).summary())  # its new layers
    summary.seconds = time.time() - started
    return summary


def _record(store: Store, model: str, task: Task, results: list | BaseException,
            meta: dict[str, Any], summary: BuildSummary) -> None:
    if isinstance(results, BaseException):
        summary.failed.append(f"{task.describe()}: {type(results).__name__}: {results}")
        return
    store.put_many(PutEntry(ArtifactKey.for_params(model, r.layer, r.unit, r.technique, r.params),
                            r.params, r.files, {**r.meta, "provenance": meta}) for r in results)
    summary.recorded += len(results)


def build_unit(store: Store | str, model: str, layer: str, unit: int, preset: str = "quick",
               techniques: Sequence[str] | None = None, device: str = "cpu",
               weights: str | None = None, models: ModelService | None = None,
               threads: int | None = None, dataset: str | None = None) -> BuildSummary:
    """Build one unit's artifacts (the web's on-demand render job): by default the techniques
    declared `on_demand` (feature vis, and dataset examples, connections and labels).

    `weights` defaults to those the store already holds for the model (else "default");
    `dataset` to the one the store's artifacts were built with (`store_dataset`; "samples",
    the build's default, in a store that has none); `models` is the caller's cache of loaded
    models (pipeline/models.py; None: load the model for this unit only). When that dataset
    cannot be opened here, the techniques that need no dataset are built and then a
    MicrotomeError says what was not."""
    from microtome.data import get_dataset
    from microtome.techniques.registry import techniques as all_techniques

    store = store if isinstance(store, Store) else Store(store)
    if weights is None:
        weights = (store.model(model_id(model)) or {}).get("weights") or "default"
    if techniques is None:
        techniques = [t.id for t in all_techniques() if t.on_demand]
    needs_data = [t for t in techniques if technique(t).uses_dataset]
    unavailable = None
    if needs_data:
        dataset = dataset or store_dataset(store, model_id(model), layer) or "samples"
        try:
            get_dataset(dataset)
        except MicrotomeError as exc:
            unavailable, techniques = exc, [t for t in techniques if t not in needs_data]
    worker = models.get(model, weights, device) if models is not None and techniques else None
    summary = build(store, model, layers=[layer], units=[unit], techniques=list(techniques),
                    preset=preset, weights=weights, worker=worker,
                    dataset=dataset or "samples", execution=Execution(device=device, threads=threads, progress=False)
                    ) if techniques else BuildSummary()
    if unavailable is not None:
        raise MicrotomeError(f"{', '.join(needs_data)} of {layer}:{unit} not built: they use the store's dataset "
                             f"{dataset!r}, which cannot be opened here ({unavailable.message})")
    return summary


def store_dataset(store: Store, model: str, layer: str | None = None) -> str | None:
    """The dataset the store's artifacts were built with: the name most artifacts of one
    (layer, technique that uses a dataset) give, looking first at `layer` of `model`, then at
    the model's other layers, then at other models (within each, the fewest artifacts first:
    one is read whole); None when the store holds no such artifact."""
    from collections import Counter

    from microtome.techniques.registry import techniques as all_techniques

    uses = {t.id for t in all_techniques() if t.uses_dataset}
    groups = [(m, lid, t, n) for (m, lid, t), n in store.stats().items() if t in uses]
    for m, lid, t, _ in sorted(groups, key=lambda g: (g[0] != model, g[1] != layer, g[3])):
        names = Counter(a.params.get("dataset") for a in store.find(m, lid, technique=t))
        names.pop(None, None)
        if names:
            return str(names.most_common(1)[0][0])
    return None


def _claim(store: Store, model: str, task: Task, owner: str, summary: BuildSummary) -> None:
    kept = [item for item, key in zip(task.items, task.keys(model)) if store.claim(key, owner)]
    summary.elsewhere += len(task.items) - len(kept)
    task.items = kept


def _release(store: Store, model: str, task: Task, owner: str) -> None:
    for key in task.keys(model):
        store.release(key, owner)


class _Bar:
    """A tqdm bar over the tasks' cost whose updates never pass the total (no "clamping"
    warning, no negative ETA)."""

    def __init__(self, total: float, desc: str, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="work", disable=not enabled, dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]", mininterval=0.5)

    def update(self, amount: float) -> None:
        left = max(0.0, float(self.bar.total) - float(self.bar.n))
        step = min(max(amount, 0.0), left)
        if step > 0:
            self.bar.update(step)

    def postfix(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def close(self) -> None:
        self.bar.close()
