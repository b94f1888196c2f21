"""The activation grid's objective: `(activations) -> scalar per image [B]`, to be maximized.

`direction_cossim(layer, vector)` is the mean over positions of `⟨a_p, v⟩ · max(0.1, cos(a_p, v))^pow`:
the `direction` objective weighted by how well the activation vector points along `v`, so that
an image cannot score by making every channel large (Lucid's `direction_neuron_cossim`, which
the activation grid of "The Building Blocks of Interpretability" used). The cosine's floor of
0.1 is Lucid's: clamped at zero, a start image pointing away from `v` everywhere gets no
gradient at all and stays grey.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from microtome.optvis.objectives import Acts, Objective

COS_FLOOR = 0.1  # Lucid's `tf.maximum(0.1, cossim)`


def direction_cossim(layer: str, vector: Sequence[float] | torch.Tensor, cossim_pow: float = 1.0
                     ) -> Objective:
    """Mean over positions of the dot product with `vector` `[C]`, times the cosine^pow."""
    vec = torch.as_tensor(vector, dtype=torch.float32)

    def fn(acts: Acts) -> torch.Tensor:
        t = acts[layer]  # [B, C, H, W] or [B, C]
        v = vec.to(t.device, t.dtype)
        t = t.flatten(2) if t.dim() == 4 else t.unsqueeze(2)  # [B, C, P]
        dot = torch.einsum("bcp,c->bp", t, v)  # [B, P]
        cos = dot / (t.norm(dim=1) * v.norm() + 1e-6)  # [B, P]
        return (dot * cos.clamp(min=COS_FLOOR) ** cossim_pow).mean(1)  # [B]

    where = "" if cossim_pow == 1 else f", pow={cossim_pow:g}"
    return Objective(fn, f"direction_cossim({layer}, [{len(vec)}]{where})", [layer])
