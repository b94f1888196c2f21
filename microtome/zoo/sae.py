"""Dictionary features: a TopK sparse autoencoder read as a layer of its own.

Shapes: `TopKSAE.encode_pre(x [B, C, H, W]) -> [B, F, H, W]` (every position's C-vector is
encoded alone, a 1x1 map), `encode(x) -> codes [B, F, H, W]` (k nonzero per position),
`decode(codes) -> [B, C, H, W]`; the `*_vectors` twins take `[N, C]`.

`attach_dictionary(model, spec, base, sae) -> (model, spec)` makes the features a layer:
the SAE becomes a submodule of the model, run from a forward hook on the base layer's module
whenever anything hooks the SAE (the model's forward values never change), and the spec gains
`LayerSpec("base.sae", kind "sae", channels F)` right after the base, with an edge base -> it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io

import torch
from torch import nn

from microtome.errors import MicrotomeError
from microtome.zoo.spec import LayerSpec, ModelSpec

CONTAINER = "microtome_dictionaries"  # the ModuleDict that holds a model's attached SAEs
KIND = "sae"


class TopKSAE(nn.Module):
    """x -> codes = TopK_k(ReLU(W_enc (x / scale - b_dec) + b_enc)) -> x̂ = (W_dec codes + b_dec) * scale.

    `scale` (a scalar buffer) standardises activations so that their mean squared entry is 1;
    `b_dec` is the tied pre-encoder bias; the columns of `W_dec [C, F]` have unit norm (in the
    standardised space), so a feature's direction is its decoder column."""

    def __init__(self, channels: int, features: int, k: int):
        super().__init__()
        if not 0 < k <= features:
            raise MicrotomeError(f"k must be in 1..{features} (the number of features), got {k}")
        self.channels, self.features, self.k = channels, features, k
        self.W_enc = nn.Parameter(torch.empty(features, channels))  # [F, C]
        self.b_enc = nn.Parameter(torch.zeros(features))  # [F]
        self.W_dec = nn.Parameter(torch.empty(channels, features))  # [C, F]
        self.b_dec = nn.Parameter(torch.zeros(channels))  # [C]
        self.register_buffer("scale", torch.ones(()))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self.W_dec.copy_(torch.randn(self.channels, self.features, generator=generator))
            self.normalize_decoder()
            self.W_enc.copy_(self.W_dec.t())
            self.b_enc.zero_()

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Unit-norm decoder columns (called after every optimizer step)."""
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-8))

    # ---- vectors [N, C] ------------------------------------------------------------
    def encode_pre_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, C]` activations (original units) -> encoder pre-activations `[N, F]`."""
        return (x / self.scale - self.b_dec) @ self.W_enc.t() + self.b_enc

    def topk(self, pre: torch.Tensor) -> torch.Tensor:
        """`[N, F]` pre-activations -> codes `[N, F]`: the k largest, ReLU'd, the rest zero."""
        values, indices = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, values.relu())

    def encode_vectors(self, x: torch.Tensor) -> torch.Tensor:
        return self.topk(self.encode_pre_vectors(x))

    def decode_vectors(self, codes: torch.Tensor, standardised: bool = False) -> torch.Tensor:
        """Codes `[N, F]` -> reconstructions `[N, C]` (original units unless `standardised`)."""
        out = codes @ self.W_dec.t() + self.b_dec
        return out if standardised else out * self.scale

    # ---- maps [B, C, H, W] -----------------------------------------------------------
    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        return _per_position(self.encode_pre_vectors, x)  # [B, C, H, W] -> [B, F, H, W]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return _per_position(self.encode_vectors, x)  # [B, C, H, W] -> [B, F, H, W]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return _per_position(self.decode_vectors, codes)  # [B, F, H, W] -> [B, C, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's value: the codes (feature activations) `[B, F, H, W]`, whose gradient is
        the encoder pre-activation's (straight through TopK and ReLU), so that optimizing a
        feature follows its encoder direction even where it is not (yet) among the top k."""
        pre = self.encode_pre(x)
        codes = _per_position(self.topk, pre)
        return pre + (codes - pre).detach()

    def loadings(self) -> torch.Tensor:
        """`[F, C]`: each feature's decoder direction in the base layer's units (original scale)."""
        return (self.W_dec * self.scale).t().detach()

    # ---- files -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"channels": self.channels, "features": self.features, "k": self.k,
                    "state": {n: t.detach().cpu() for n, t in self.state_dict().items()}}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "TopKSAE":
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        sae = cls(int(saved["channels"]), int(saved["features"]), int(saved["k"]))
        sae.load_state_dict(saved["state"])
        return sae


def _per_position(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply `fn: [N, C] -> [N, D]` at every position of `[B, C, H, W]` (or to `[B, C]`)."""
    if x.dim() == 2:
        return fn(x)
    b, _, h, w = x.shape
    out = fn(x.permute(0, 2, 3, 1).reshape(b * h * w, -1))  # [B*H*W, D]
    return out.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def weights_sha(sae: TopKSAE) -> str:
    return hashlib.sha256(sae.to_bytes()).hexdigest()


class _Dispatch:
    """The forward hook on the base module: runs the SAE on the base's output when something
    hooks the SAE. A callable object, not a closure, so that `copy.deepcopy(model)` (the
    renderer's private copy) points the copy's hook at the copy's SAE."""

    def __init__(self, sae: TopKSAE):
        self.sae = sae

    def __call__(self, _module, _inputs, output):
        if self.sae._forward_hooks or self.sae._forward_pre_hooks:
            self.sae(output)  # its hooks read it; the base's output is left as it is
        return None


def sae_layer_id(base_id: str, name: str = "sae") -> str:
    return f"{base_id}.{name}"


def attach_dictionary(model: nn.Module, spec: ModelSpec, base_layer_id: str, sae: TopKSAE,
                      name: str = "sae") -> tuple[nn.Module, ModelSpec]:
    """Make `sae`'s features the layer `BASE.NAME` of `model` (in place) and of the returned spec.

    The SAE is frozen, moved to the base's device, and held at
    `microtome_dictionaries.BASE_NAME` (a path hooks resolve); attaching the same name twice
    is an error."""
    base = spec.layer(base_layer_id)
    if sae.channels != base.channels:
        raise MicrotomeError(f"an SAE of {sae.channels} channels cannot read {base.id} of {spec.id}, "
                             f"which has {base.channels}")
    layer_id = sae_layer_id(base.id, name)
    if layer_id in spec.layer_ids:
        raise MicrotomeError(f"{spec.id} already has a layer {layer_id}")
    if not hasattr(model, CONTAINER):
        model.add_module(CONTAINER, nn.ModuleDict())
    key = layer_id.replace(".", "_")
    device = next(model.parameters()).device
    sae = sae.to(device).eval()
    for p in sae.parameters():
        p.requires_grad_(False)
    getattr(model, CONTAINER)[key] = sae
    dict(model.named_modules())[base.module].register_forward_hook(_Dispatch(sae))
    return model, with_dictionary_layer(spec, base.id, sae.features, name)


def with_dictionary_layer(spec: ModelSpec, base_layer_id: str, features: int,
                          name: str = "sae") -> ModelSpec:
    """`spec` with the layer `BASE.NAME` (kind "sae", `features` channels) after its base and an
    edge base -> it; nothing is loaded (for checking names before loading weights)."""
    base = spec.layer(base_layer_id)
    if base.kind == KIND:
        raise MicrotomeError(f"{base.id} is itself a dictionary layer; train an SAE on a unit layer")
    if not name.replace("_", "").isalnum():
        raise MicrotomeError(f"dictionary name {name!r} must be letters, digits or _, e.g. sae or sae448")
    layer_id = sae_layer_id(base.id, name)
    layer = LayerSpec(layer_id, f"{CONTAINER}.{layer_id.replace('.', '_')}", KIND, features, base.size)
    layers = list(spec.layers)
    at = spec.layer_ids.index(base.id) + 1
    while at < len(layers) and layers[at].id.startswith(base.id + "."):
        at += 1  # after the base's other dictionaries
    layers.insert(at, layer)
    return dataclasses.replace(spec, layers=tuple(layers), edges=(*spec.edges, (base.id, layer_id)))
