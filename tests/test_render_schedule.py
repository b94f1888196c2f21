"""The learning-rate schedule: `render(schedule=Schedule(lr_final=...))` anneals Adam's step
along half a cosine.

Oracle: with a constant gradient, Adam moves a parameter by exactly its learning rate per step
(its normalized step m/sqrt(v) is 1 after bias correction), so the distance a pixel travels is
the sum of the learning rates of the steps it took.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from microtome.optvis import objectives as O
from microtome.optvis.render import cosine_lr, render
from microtome.optvis.schedule import Schedule


class Identity(nn.Module):
    """`out`: the image itself, so channel 0's mean has the constant gradient 1 / (H W)."""

    def __init__(self):
        super().__init__()
        self.out = nn.Identity()

    def forward(self, x):
        return self.out(x)


def _travel(lr_final: float | None = None, **kwargs) -> float:
    start = torch.full((1, 3, 8, 8), 0.5)
    pixels = start.clone().requires_grad_(True)
    render(Identity(), O.channel("out", 0), param_f=lambda: ([pixels], lambda: pixels),
           steps=20, lr=0.1, transforms=[],
           schedule=Schedule(lr_final=lr_final, redirect_steps=0), **kwargs)
    moved = (pixels.detach() - start)[0]  # [3, 8, 8]
    assert torch.all(moved[1:] == 0)  # only channel 0 has a gradient
    return float(moved[0].mean())


def test_cosine_lr_runs_from_lr_to_lr_final():
    lr_at = cosine_lr(0.1, 0.01, 20)
    rates = [lr_at(s) for s in range(1, 21)]
    assert rates[0] == pytest.approx(0.1) and rates[-1] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert lr_at(10.5) == pytest.approx(0.055)  # the midpoint of the cosine


def test_render_takes_each_step_at_the_scheduled_rate():
    lr_at = cosine_lr(0.1, 0.01, 20)
    assert _travel() == pytest.approx(20 * 0.1, rel=1e-4)
    assert _travel(lr_final=0.01) == pytest.approx(sum(lr_at(s) for s in range(1, 21)), rel=1e-4)
    own = _travel(lr_final=0.01, optimizer=lambda params: torch.optim.SGD(params, lr=0.0))
    assert own == 0  # a caller's optimizer keeps its own rate
