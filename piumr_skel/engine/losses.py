"""The training objective: one function from (model outputs, batch, epoch) to (loss, parts), used
by the trainer and by benchmarks/train_speed.py alike.

loss = classification term (cross-entropy, GIRL v1 or GIRL v2 after its warm-up)
       + λ_W · L_W + λ_C · L_C (TFAM's Wasserstein and consistency losses, when TFAM is on).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from piumr_skel.engine.config import TrainConfig


@dataclass
class Batch:
    """One training batch: x (N, C, T, V), labels y (N,), dataset indices (N,), and per sample the
    subject code and (GIRL v2, after warm-up) the epoch's pseudo-group id, both long (N,)."""

    x: Tensor
    y: Tensor
    index: Tensor
    subject: Tensor | None = None
    group: Tensor | None = None


def ramp(progress_epochs: float, ramp_epochs: int) -> float:
    """0 → 1 linearly over `ramp_epochs` epochs of progress (1 at once without a ramp).

    A pure function of (epoch, step in epoch), so a resumed run ramps exactly as an uninterrupted one.
    """
    if ramp_epochs <= 0:
        return 1.0
    return min(1.0, max(progress_epochs, 0.0) / ramp_epochs)


class TrainLoss:
    """`loss, parts = objective(outputs, batch, epoch)`; epoch is fractional (epoch index + the
    fraction of its steps done before this one), so int(epoch) is the epoch index. `parts` holds
    detached scalars for the history (ce, girl, girl_var, lambda_var, wasserstein, consistency)."""

    def __init__(self, cfg: TrainConfig, girl: torch.nn.Module | None) -> None:
        self.cfg = cfg
        self.girl = girl

    def girl_active(self, epoch: float) -> bool:
        return self.girl is not None and int(epoch) >= self.cfg.warmup_girl

    def __call__(self, outputs: tuple[Tensor, Tensor, dict], batch: Batch, epoch: float
                 ) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.cfg
        logits, feats, aux = outputs
        logits = logits.float()
        parts: dict[str, Tensor] = {}
        ce = F.cross_entropy(logits, batch.y, label_smoothing=cfg.label_smoothing)
        girl = self.girl if self.girl_active(epoch) else None
        if girl is not None:
            since = epoch - cfg.warmup_girl
            if cfg.girl_version == 1:
                from piumr_skel.method.girl import style_descriptor

                loss, stats = girl(logits, batch.y, style_descriptor(feats.float()), subject=batch.subject)
                parts["girl"] = loss.detach()
                mix = ramp(since, cfg.girl_ramp_epochs)
                if mix < 1:
                    loss = mix * loss + (1 - mix) * ce
            else:
                if batch.group is None:
                    raise ValueError("GIRL v2 needs the epoch's pseudo-group of every sample (batch.group)")
                lam = cfg.girl_lambda_var * ramp(since, cfg.girl_ramp_epochs)
                loss, stats = girl(logits, batch.y, batch.group, lambda_var=lam)
                parts["girl"] = loss.detach()
                parts["lambda_var"] = torch.as_tensor(lam)
            parts["girl_var"] = torch.as_tensor(float(stats["variance"]))
        else:
            loss = ce
        parts["ce"] = F.cross_entropy(logits.detach(), batch.y)
        if aux:
            loss = loss + cfg.lambda_w * aux["wasserstein"].float() + cfg.lambda_c * aux["consistency"].float()
            parts["wasserstein"] = aux["wasserstein"].detach()
            parts["consistency"] = aux["consistency"].detach()
        return loss, parts
