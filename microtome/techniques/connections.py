"""Connections between units of adjacent layers: a matrix `A [C2, C1]` per edge (L1 -> L2) of
the spec, read by rows (a unit's `inputs`) and by columns (a unit's `outputs`, and `classes`).

`connections(model, spec, layer, units, params, dataset) -> [ArtifactResult]`, one per unit.

Two ways to get `A`, chosen per edge and recorded in `meta["method"]`:
- "weights": when one forward pass shows the modules between L1's and L2's outputs to be one
  `nn.Conv2d` (groups 1) or `nn.Linear`, optionally preceded (for a linear layer) by global
  average pooling / flatten / dropout and followed by one batch norm and elementwise
  activations, *and* replaying that chain on L1's output (then maybe a ReLU, which models often
  apply functionally) reproduces L2's output exactly, so no hidden functional op (a residual
  add, a pooling) is missed. Then `A[j, i]` is the weight from i to
  j summed over the kernel, times j's batch-norm scale `gamma / sqrt(var + eps)`. Free.
- "gradient": otherwise (blocks, inception modules, pooling in between). Gradient × input,
  averaged over N dataset images: `A[j, i] = mean_n sum_p a1[n, i, p] * d g[n, j] / d a1[n, i, p]`
  with `g[n, j]` the mean over positions of L2's channel j. This is the brief's "mean over
  positions" times L1's number of positions, so that for a linear segment a unit's inputs add
  up to its mean activation (the weights are contributions to it). Rows (inputs of R units)
  come from reverse mode, `vmap(vjp)` with one-hot cotangents; columns (outputs of K units)
  from forward mode, `vmap(jvp)` with tangents `a1` masked to one channel, so a call costs
  in proportion to the units asked for, not to the next layer's width. Per batch of B images:
  one forward to L1, one to L2 for the rows plus (R backward segments, batched), and one
  forward to L2 per chunk of K tangents (K segment forwards, batched); chunks keep
  `chunk × B × |a1 per image|` under `CHUNK_ELEMENTS`. (Double backward was measured ~10×
  slower on depthwise convolutions, hence forward mode for the columns.) Attention runs on
  torch's math kernel meanwhile: the fused ones have no forward mode (and no vmap rule).
  Token layers (transformer blocks: no direct weight path between them) always take this way,
  on their patch grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import jvp, vjp, vmap

from microtome.data.datasets import Dataset
from microtome.data.registry import get_dataset
from microtome.errors import MicrotomeError, close_names
from microtome.techniques.base import ArtifactResult, Job
from microtome.techniques.builtin import CONNECTIONS, CONNECTIONS_PRESETS
from microtome.zoo.hooks import StopForward, forward_to, hooked, resolve_modules, run
from microtome.zoo.spec import ModelSpec

DEFAULT_DATASET = "samples"
CHUNK_ELEMENTS = 2 ** 23  # per chunk of units: units × images × L1 activation elements
WEIGHTS, GRADIENT = "weights", "gradient"

# Modules allowed around the single weighted module of a "weights" edge.
_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU,
                nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Softplus,
                nn.Identity, nn.Dropout)
_BEFORE_LINEAR = (nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)
_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d)

Pair = tuple[str, str]  # (earlier layer id, later layer id)


# ---- parameters ----------------------------------------------------------------------------
def check_params(params: Mapping[str, Any] | None, dataset: Dataset | None = None
                 ) -> dict[str, Any]:
    """`params` completed from their preset (`params["preset"]`, default "standard") with the
    dataset name; a MicrotomeError names an unknown key or a bad value."""
    params = dict(params or {})
    preset = params.get("preset", "standard")
    if preset not in CONNECTIONS_PRESETS:
        raise MicrotomeError(f"no connections preset {preset!r}; valid: "
                             + ", ".join(CONNECTIONS_PRESETS))
    out = {**CONNECTIONS_PRESETS[preset],
           "dataset": dataset.name if dataset is not None else DEFAULT_DATASET}
    valid = [*out, "preset"]
    for key, value in params.items():
        if key not in valid:
            near = close_names(key, valid)
            hint = f"did you mean {', '.join(near)}?" if near else f"valid: {', '.join(valid)}"
            raise MicrotomeError(f"no connections parameter {key!r}; {hint}", suggestions=near)
        out[key] = value
    for key in ("top", "images"):
        value = out[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MicrotomeError(f"connections parameter {key!r} must be a whole number ≥ 1, "
                                 f"not {value!r}")
    if not isinstance(out["dataset"], str) or not out["dataset"]:
        raise MicrotomeError(f"connections parameter 'dataset' must be a dataset name, "
                             f"not {out['dataset']!r}")
    if dataset is not None and out["dataset"] != dataset.name:
        raise MicrotomeError(f"params name dataset {out['dataset']!r} but the dataset passed "
                             f"is {dataset.name!r}; pass matching ones (or omit params['dataset'])")
    return out


# ---- "weights": edges that are one conv / linear layer ---------------------------------------
def _probe(model: nn.Module, spec: ModelSpec, layer_ids: Sequence[str], device: str | torch.device
           ) -> tuple[list[str], dict[str, torch.Tensor]]:
    """One forward pass of a seeded noise image: the names of the leaf and layer modules in the
    order they finished, and each layer's output `[1, C, H, W]` (or `[1, C]`)."""
    paths = {lid: spec.layer(lid).module for lid in layer_ids}
    layer_of = {path: lid for lid, path in paths.items()}
    modules = dict(model.named_modules())
    resolve_modules(model, paths)  # a wrong path is a NotFound naming close ones
    watched = {name for name, m in modules.items() if name and not any(m.children())}
    watched |= set(layer_of)
    events: list[str] = []
    outputs: dict[str, torch.Tensor] = {}

    def make_hook(name: str) -> Callable:
        def hook(_module, _inputs, output):
            events.append(name)
            if name in layer_of and torch.is_tensor(output):
                outputs[layer_of[name]] = output.detach().clone()  # safe from in-place ops
                if outputs.keys() >= paths.keys():
                    raise StopForward
        return hook

    handles = []
    noise = torch.rand(1, 3, spec.input_size, spec.input_size,
                       generator=torch.Generator().manual_seed(0))
    try:
        for name in watched:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        with torch.no_grad():
            try:
                model(spec.preprocess(noise.to(device)))
            except StopForward:
                pass
    finally:
        for handle in handles:
            handle.remove()
    missing = sorted(paths.keys() - outputs.keys())
    if missing:
        raise RuntimeError(f"layers {missing} of {spec.id} gave no tensor in a forward pass")
    return events, outputs


def _weight_matrix(model: nn.Module, events: list[str], src_path: str, dst_path: str,
                   a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor | None:
    """`A [C2, C1]` from the weights when the edge is one conv/linear layer (see the module
    docstring), else None."""
    if events.count(src_path) != 1 or events.count(dst_path) != 1:
        return None  # a module run twice: which call is the edge is ambiguous
    start, end = events.index(src_path), events.index(dst_path)
    modules = dict(model.named_modules())
    chain = [modules[n] for n in events[start + 1:end + 1] if not any(modules[n].children())]
    weighted = [k for k, m in enumerate(chain) if isinstance(m, (nn.Conv2d, nn.Linear))]
    if len(weighted) != 1 or end <= start:
        return None
    layer = chain[weighted[0]]
    before, after = chain[:weighted[0]], chain[weighted[0] + 1:]
    norms = after[:1] if after and isinstance(after[0], _BATCH_NORM) else []
    if (not all(isinstance(m, _ELEMENTWISE) for m in after[len(norms):])
            or any(norm.running_var is None for norm in norms)):
        return None
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or not all(isinstance(m, (nn.Identity, nn.Dropout)) for m in before):
            return None
    elif not all(isinstance(m, _BEFORE_LINEAR) for m in before):
        return None
    if layer.weight.shape[1] != a1.shape[1]:
        return None
    with torch.no_grad():  # replay: the chain must reproduce L2's output
        x = a1.flatten(2).mean(2) if isinstance(layer, nn.Linear) and a1.dim() > 2 else a1
        for module in [layer, *after]:
            x = module(x)
        scale = float(a2.abs().max()) + 1e-12
        if x.shape != a2.shape or not any(torch.allclose(y, a2, rtol=1e-4, atol=1e-5 * scale)
                                          for y in (x, torch.relu(x))):
            return None  # (a ReLU applied functionally, as in torchvision's BasicConv2d, is fine)
        weight = layer.weight.detach().float().cpu()  # [C2, C1, kh, kw] or [C2, C1]
        matrix = weight.flatten(2).sum(2) if weight.dim() > 2 else weight.clone()  # [C2, C1]
        for norm in norms:
            gamma = (norm.weight.detach().float().cpu() if norm.weight is not None
                     else torch.ones(norm.num_features))
            var = norm.running_var.detach().float().cpu()
            matrix *= (gamma / torch.sqrt(var + norm.eps))[:, None]
    return matrix


def weight_matrices(model: nn.Module, spec: ModelSpec, pairs: Sequence[Pair],
                    device: str | torch.device = "cpu") -> dict[Pair, torch.Tensor | None]:
    """`{(L1, L2): A [C2, C1] from the weights, or None where the edge needs gradients}`.

    An edge into a dictionary layer (kind "sae") is its features' decoder directions
    `[F, C1]` in the base layer's units (zoo/sae.py: `TopKSAE.loadings`)."""
    found = {(src, dst): resolve_modules(model, {dst: spec.layer(dst).module})[dst].loadings().to(device)
             for src, dst in pairs if spec.layer(dst).kind == "sae"}
    pairs = [pair for pair in pairs if pair not in found]
    if not pairs:
        return found
    events, outputs = _probe(model, spec, sorted({lid for pair in pairs for lid in pair}), device)
    return {**found, **{(src, dst): _weight_matrix(model, events, spec.layer(src).module,
                                                   spec.layer(dst).module, outputs[src], outputs[dst])
                        for src, dst in pairs}}


# ---- "gradient": gradient × input over dataset images ------------------------------------------
@contextmanager
def _output_replaced(module: nn.Module, value: Callable[[], torch.Tensor]) -> Iterator[None]:
    """Within the block, `module`'s output is replaced by `value()` at every forward."""
    handle = module.register_forward_hook(lambda _m, _i, _o: value())
    try:
        yield
    finally:
        handle.remove()


def _quiet_jvp_decompositions() -> None:
    """torch's forward-mode decompositions run `torch.jit.script` when first imported, which
    warns of its own deprecation (a torch-internal warning, nothing the user can act on):
    import them once with that one warning silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        import torch._decomp.decompositions_for_jvp  # noqa: F401


def attribution(model: nn.Module, spec: ModelSpec, src: str, dst: str, images: torch.Tensor,
                rows: Sequence[int] = (), cols: Sequence[int] = (),
                device: str | torch.device = "cpu", batch_size: int = 8
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient × input attribution `A [C2, C1]` of the edge src -> dst over `images`
    `[N, 3, S, S]` in [0, 1]: returns `(A[rows, :] [R, C1], A[:, cols].T [K, C2])`."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _quiet_jvp_decompositions()
    with sdpa_kernel(SDPBackend.MATH):  # fused attention has no forward-mode derivative
        return _attribution(model, spec, src, dst, images, rows, cols, device, batch_size)


def _attribution(model: nn.Module, spec: ModelSpec, src: str, dst: str, images: torch.Tensor,
                 rows: list[int] | Sequence[int], cols: Sequence[int], device: str | torch.device,
                 batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    s_layer, d_layer = spec.layer(src), spec.layer(dst)
    src, dst = s_layer.id, d_layer.id  # canonical ids
    modules = resolve_modules(model, {src: s_layer.module})
    rows, cols = list(rows), list(cols)
    row_sum = torch.zeros(len(rows), s_layer.channels, dtype=torch.float64)
    col_sum = torch.zeros(len(cols), d_layer.channels, dtype=torch.float64)
    per_image = s_layer.channels * s_layer.size[0] * s_layer.size[1]
    for start in range(0, images.shape[0], batch_size):
        x = spec.preprocess(images[start:start + batch_size].to(device))  # [B, 3, S, S]
        chunk = max(1, CHUNK_ELEMENTS // (x.shape[0] * per_image))
        with torch.no_grad():
            a1 = forward_to(model, x, {src: s_layer.module})[src].detach()  # [B, C1, ...]
        holder: dict[str, torch.Tensor] = {}
        with _output_replaced(modules[src], lambda: holder["a1"]), \
                hooked(model, {d_layer.id: d_layer.module}, stop=True) as captured:

            def segment(a: torch.Tensor) -> torch.Tensor:  # a1 [B, C1, ...] -> g [B, C2]
                holder["a1"] = a
                out = run(model, x, captured)[d_layer.id]
                return out.flatten(2).mean(2) if out.dim() > 2 else out

            if rows:
                with torch.enable_grad():
                    _, pullback = vjp(segment, a1)
                for at, part in _chunks(rows, chunk):
                    cotangent = torch.zeros(len(part), *a1.shape[:1], d_layer.channels,
                                            device=a1.device)  # [k, B, C2]
                    cotangent[torch.arange(len(part)), :, part] = 1.0
                    (grad,) = vmap(pullback)(cotangent)  # [k, B, C1, ...]
                    contribution = _positions_sum(grad * a1).sum(1)  # [k, C1]
                    row_sum[at] += contribution.double().cpu()
            for at, part in _chunks(cols, chunk):
                tangent = torch.zeros(len(part), *a1.shape, device=a1.device)  # [k, B, C1, ...]
                tangent[torch.arange(len(part)), :, part] = a1[:, part].transpose(0, 1)
                push = vmap(lambda t: jvp(segment, (a1,), (t,))[1])(tangent)  # [k, B, C2]
                col_sum[at] += push.sum(1).double().cpu()
    n = max(1, images.shape[0])
    return (row_sum / n).float(), (col_sum / n).float()


def _positions_sum(t: torch.Tensor) -> torch.Tensor:
    """`[k, B, C, H, W] -> [k, B, C]`; `[k, B, C]` as is."""
    return t.flatten(3).sum(3) if t.dim() > 3 else t


def _chunks(items: list[int], size: int) -> Iterator[tuple[slice, list[int]]]:
    """Consecutive runs of `items`: (where in `items`, the run)."""
    for i in range(0, len(items), size):
        yield slice(i, i + size), items[i:i + size]


def load_images(dataset: Dataset, count: int, size: int) -> torch.Tensor:
    """Up to `count` images spread evenly over the dataset: `[N, 3, size, size]` in [0, 1]."""
    count = min(count, len(dataset))
    indices = [i * len(dataset) // count for i in range(count)] if count else []
    batches = [batch.images for batch in dataset.batches(size, 16, indices)]
    if not batches:
        raise MicrotomeError(f"no readable images in dataset {dataset.name!r}, which the "
                             f"gradient connections need; pick another with --dataset")
    return torch.cat(batches)  # [N, 3, size, size]


# ---- the technique -------------------------------------------------------------------------
def _entries(values: torch.Tensor, layers: Sequence[str], top: int) -> list[dict[str, Any]]:
    """The `top` strongest of `values` (a list of `[C]` vectors, one per layer), |weight| first."""
    flat = [(layer, unit, float(w)) for layer, vector in zip(layers, values)
            for unit, w in enumerate(vector.tolist())]
    flat.sort(key=lambda e: -abs(e[2]))  # stable: ties keep layer, then unit order
    return [{"layer": layer, "unit": unit, "weight": w} for layer, unit, w in flat[:top]]


def _method(methods: Sequence[str]) -> str | None:
    kinds = sorted(set(methods))
    return None if not kinds else kinds[0] if len(kinds) == 1 else "mixed"


def connections(model: nn.Module, spec: ModelSpec, layer_id: str, units: Sequence[int],
                params: Mapping[str, Any] | None = None, dataset: Dataset | None = None,
                device: str | torch.device = "cpu", batch_size: int = 8
                ) -> list[ArtifactResult]:
    """Each unit's strongest `inputs` (edges into the layer), `outputs` (edges out of it) and,
    for a layer with an edge into a "logits" layer, `classes` (the logits it raises most).

    `params`: `top`, `images`, `dataset`, optionally `preset` (see `CONNECTIONS_PRESETS`);
    the dataset is read only when an edge needs gradients. The model must be on `device` and
    in eval mode. Meta: `inputs`/`outputs` `[{layer, unit, weight}]` (signed, strongest
    |weight| first), `classes` `[{index, label, weight}]` (largest weight first), `method`
    per list ("weights", "gradient", "mixed" or None for an empty list), `layer_methods`
    `{connected layer: method}`, `images` (used, 0 when none were needed)."""
    layer, units = spec.units(layer_id, list(units)) if units else (spec.layer(layer_id), [])
    params = check_params(params, dataset)
    if not units:
        return []
    if model.training:
        raise MicrotomeError(f"{spec.id} is in training mode; call model.eval() before "
                             "measuring connections")
    sources, targets = spec.inputs_of(layer.id), spec.outputs_of(layer.id)
    pairs = [(s, layer.id) for s in sources] + [(layer.id, t) for t in targets]
    matrices = weight_matrices(model, spec, pairs, device)
    images: list[torch.Tensor] = []  # loaded on first need

    def gradient(pair: Pair, rows: Sequence[int] = (), cols: Sequence[int] = ()):
        if not images:
            data = dataset if dataset is not None else get_dataset(params["dataset"])
            images.append(load_images(data, params["images"], spec.input_size))
        return attribution(model, spec, *pair, images[0], rows, cols, device, batch_size)

    methods: dict[str, str] = {}
    inputs: dict[str, torch.Tensor] = {}  # source layer -> [U, C1]
    for s in sources:
        matrix = matrices[(s, layer.id)]
        methods[s] = WEIGHTS if matrix is not None else GRADIENT
        inputs[s] = matrix[units] if matrix is not None else gradient((s, layer.id), rows=units)[0]
    outputs: dict[str, torch.Tensor] = {}  # target layer -> [U, C2]
    for t in targets:
        matrix = matrices[(layer.id, t)]
        methods[t] = WEIGHTS if matrix is not None else GRADIENT
        outputs[t] = (matrix[:, units].T if matrix is not None
                      else gradient((layer.id, t), cols=units)[1])
    logits = [t for t in targets if spec.layer(t).kind == "logits"]
    method = {"inputs": _method([methods[s] for s in sources]),
              "outputs": _method([methods[t] for t in targets]),
              "classes": _method([methods[t] for t in logits])}

    used = int(images[0].shape[0]) if images else 0
    return [ArtifactResult(layer=layer.id, unit=unit, technique=CONNECTIONS, params=dict(params),
                           meta={"inputs": _entries([inputs[s][row] for s in sources], sources, params["top"]),
                                 "outputs": _entries([outputs[t][row] for t in targets], targets, params["top"]),
                                 "classes": _classes(spec, [outputs[t][row] for t in logits], params["top"]),
                                 "method": method, "layer_methods": dict(methods), "images": used})
            for row, unit in enumerate(units)]


def _classes(spec: ModelSpec, rows: Sequence[torch.Tensor], top: int) -> list[dict[str, Any]]:
    """The `top` classes a unit raises most, from its rows `[K]` into logits layers."""
    classes = []
    for row in rows:
        for index, w in enumerate(row.tolist()):
            label = spec.labels[index] if index < len(spec.labels) else f"class {index}"
            classes.append({"index": index, "label": label, "weight": float(w)})
    classes.sort(key=lambda c: -c["weight"])
    return classes[:top]


def run_connections(job: Job) -> list[ArtifactResult]:
    """The connections runner: one layer's units; the dataset of its params for attribution."""
    params = job.items[0].params
    dataset = job.dataset(params["dataset"]) if params.get("dataset") else None
    results = connections(job.model, job.spec, job.layers[0], job.units, params, dataset=dataset,
                          device=job.device)
    job.tick(1.0)
    return results
