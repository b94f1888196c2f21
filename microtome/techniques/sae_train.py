"""Training a TopK SAE on a layer's activation vectors: `collect` then `train`.

`collect(model, spec, layer, dataset, max_vectors) -> vectors [N, C]`: one streamed pass over the
dataset; every spatial position of every image is a vector, and when the dataset has more
than `max_vectors` positions in all, each image keeps the same random fraction of its
positions (seeded), so memory stays at `max_vectors × C` floats whatever the dataset's size.

`train(vectors, features, k, epochs, ...) -> (TopKSAE, Figures)`: Adam on the normalised MSE
plus the AuxK loss (Gao et al. 2024): features that have not fired for `dead_after` vectors
reconstruct the residual with their own top `k_aux`, which revives them; the decoder's
columns are put back to unit norm after every step. A `Checkpoint` saves the state after every
epoch and `train` resumes from it, ending with the same result as an uninterrupted run.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from microtome.errors import MicrotomeError
from microtome.zoo.hooks import forward_to
from microtome.zoo.sae import TopKSAE

Tick = Callable[[float], None]
AUX_COEFF = 1 / 32
BATCH = 256


@dataclass(frozen=True)
class Figures:
    """How good an SAE is, on the vectors it was trained on: the fraction of their variance it
    explains, mean active features per vector, the fraction of features that never fire."""

    explained_variance: float
    l0: float
    dead_fraction: float
    vectors: int

    def as_dict(self) -> dict:
        return asdict(self)


def collect(model, spec, layer_id: str, dataset, max_vectors: int, seed: int = 0,
            batch_size: int = 16, device: str = "cpu", tick: Tick = lambda f: None) -> torch.Tensor:
    """The activation vectors `[N, C]` of `layer_id` over `dataset` (float32, on the CPU)."""
    layer = spec.layer(layer_id)
    positions = layer.size[0] * layer.size[1]
    count = len(dataset)
    if count == 0:
        raise MicrotomeError(f"dataset {dataset.name} has no images")
    keep = max(1, min(positions, max_vectors // count))  # positions kept per image
    generator = torch.Generator().manual_seed(seed)
    chunks = []
    with torch.no_grad():
        for batch in dataset.batches(spec.input_size, batch_size):
            x = spec.preprocess(batch.images.to(device))
            acts = forward_to(model, x, {layer.id: layer.module})[layer.id]  # [B, C, H, W]
            acts = acts.flatten(2).transpose(1, 2).float().cpu()  # [B, H*W, C]
            if keep < acts.shape[1]:
                order = torch.rand(acts.shape[0], acts.shape[1], generator=generator).argsort(dim=1)
                acts = acts.gather(1, order[:, :keep, None].expand(-1, -1, acts.shape[2]))
            chunks.append(acts.reshape(-1, acts.shape[2]))  # [B*keep, C]
            tick(len(batch.indices) / count)
    return torch.cat(chunks)


class Checkpoint:
    """A training state file, written atomically (temp file, fsync, rename)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(buffer.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def _losses(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor, k_aux: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised MSE, AuxK loss) on standardised vectors `x [N, C]`, and the codes `[N, F]`."""
    pre = (x - sae.b_dec) @ sae.W_enc.t() + sae.b_enc  # [N, F]
    codes = sae.topk(pre)
    recon = sae.decode_vectors(codes, standardised=True)  # [N, C]
    residual = x - recon
    base = (x - x.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
    loss = residual.pow(2).sum(-1).mean() / base
    n_dead = int(dead.sum())
    if n_dead and k_aux:
        aux_pre = pre.masked_fill(~dead, float("-inf"))
        values, indices = aux_pre.topk(min(k_aux, n_dead), dim=-1)
        aux_codes = torch.zeros_like(pre).scatter(-1, indices, values.relu())
        aux_recon = aux_codes @ sae.W_dec.t()  # [N, C], the residual's reconstruction
        scale = residual.detach().pow(2).sum(-1).mean().clamp_min(1e-8)
        aux = (residual.detach() - aux_recon).pow(2).sum(-1).mean() / scale
        loss = loss + AUX_COEFF * aux
    return loss, codes


def train(vectors: torch.Tensor, features: int, k: int, epochs: int, seed: int = 0, lr: float = 3e-3,
          checkpoint: Checkpoint | None = None, tick: Tick = lambda f: None,
          dead_after: int | None = None, batch_size: int = BATCH) -> tuple[TopKSAE, Figures]:
    """A TopK SAE trained on `vectors [N, C]` for `epochs` passes (seeded order of batches).

    `dead_after` (default: one epoch's vectors, at most 10M) is how long a feature may stay
    silent before AuxK trains it on the residual."""
    if epochs < 1:
        raise MicrotomeError(f"epochs must be at least 1, got {epochs}")
    n, channels = vectors.shape
    torch.manual_seed(seed)
    sae = TopKSAE(channels, features, k)
    sae.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.scale.copy_(vectors.pow(2).mean().sqrt().clamp_min(1e-8))
        sae.b_dec.copy_((vectors / sae.scale).mean(0))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    silent = torch.zeros(features, dtype=torch.long)  # vectors since each feature last fired
    dead_after = dead_after or min(n, 10_000_000)
    k_aux = min(features, max(1, channels // 2))
    start = 0
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        sae.load_state_dict(state["sae"])
        optimizer.load_state_dict(state["optimizer"])
        silent, start = state["silent"], int(state["epoch"])
        tick(start / epochs)
    steps = max(1, -(-n // batch_size))
    for epoch in range(start, epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for step in range(steps):
            x = vectors[order[step * batch_size:(step + 1) * batch_size]] / sae.scale  # [b, C]
            loss, codes = _losses(sae, x, silent >= dead_after, k_aux)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sae.normalize_decoder()
            fired = (codes > 0).any(0)
            silent = torch.where(fired, torch.zeros_like(silent), silent + x.shape[0])
            tick(1 / (epochs * steps))
        if checkpoint:
            checkpoint.save({"sae": sae.state_dict(), "optimizer": optimizer.state_dict(),
                             "silent": silent, "epoch": epoch + 1})
    return sae, evaluate(sae, vectors)


@torch.no_grad()
def evaluate(sae: TopKSAE, vectors: torch.Tensor) -> Figures:
    """Explained variance `1 - Σ|x - x̂|² / Σ|x - x̄|²`, mean L0 and the dead fraction on `vectors`."""
    error = total = active = 0.0
    fired = torch.zeros(sae.features, dtype=torch.bool)
    mean = vectors.mean(0)
    for chunk in vectors.split(8192):
        codes = sae.encode_vectors(chunk)
        error += float((chunk - sae.decode_vectors(codes)).pow(2).sum())
        total += float((chunk - mean).pow(2).sum())
        active += float((codes > 0).sum())
        fired |= (codes > 0).any(0)
    return Figures(explained_variance=1 - error / max(total, 1e-12), l0=active / len(vectors),
                   dead_fraction=1 - float(fired.float().mean()), vectors=len(vectors))
