"""An exponential moving average of a model's weights (`--ema`), the model that is validated and saved.

Averaging the weights along the training trajectory is a standard domain-generalisation baseline
(SWA/SWAD, mean teacher): the averaged model sits in a flatter region of the loss, which is what is
hoped to carry over to people never seen in training. Here it is a moving average with a time
constant given in epochs, so the same setting means the same thing on a 5-step and a 500-step epoch.

BatchNorm's running statistics are averaged with the weights (as timm's ModelEmaV2 does), so the
averaged model needs no extra pass over the data; integer buffers and lazily built caches are copied.
"""
from __future__ import annotations

import copy
import math

import torch


def ema_decay(time_constant_steps: float, step: int) -> float:
    """The per-step decay for a time constant in steps, warmed up as (1 + step) / (10 + step) so that
    the first steps do not keep the random initialisation for thousands of steps."""
    decay = math.exp(-1.0 / max(time_constant_steps, 1e-8))
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightEMA:
    """The averaged copy of `model` (same class, never trained by the optimiser)."""

    def __init__(self, model: torch.nn.Module, time_constant_steps: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.time_constant_steps = float(time_constant_steps)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Blend the weights after optimiser step number `step` (0-based) into the average."""
        decay = ema_decay(self.time_constant_steps, step)
        avg = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = avg[name]
            if target.dtype.is_floating_point and target.shape == value.shape:
                target.lerp_(value.detach(), 1.0 - decay)
            else:  # counters, and caches a module fills lazily (e.g. a buffer built on the first batch)
                target.resize_(value.shape).copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
