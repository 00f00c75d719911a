"""Recognizer: a GCN backbone with TFAM plugged in between two blocks, returning logits and features."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # TFAM lives in piumr_skel.method.tfam; only its forward signature is used here
    from piumr_skel.method.tfam import TFAM
    from piumr_skel.models.base import Backbone

__all__ = ["Recognizer"]


class Recognizer(nn.Module):
    """stem -> blocks (TFAM after block `tfam_after`, 1-based) -> head.

    forward(x (N, C_in, T, V)) -> (logits (N, classes), feats (N, C, T', V) final feature map,
    aux dict of TFAM losses, {} without TFAM). `tfam_after` defaults to the end of the second-to-last
    stage (block 7 of the 10-block ST-GCN), so the last stage's temporal convs consume the aligned
    features: TFAM straight before pooling would do almost nothing (docs/METHOD.md).
    """

    def __init__(self, backbone: "Backbone", tfam: "TFAM | nn.Module | None" = None,
                 tfam_after: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.tfam = tfam
        n = len(backbone.blocks)
        self.tfam_after = backbone.stage_ends[-2] if tfam_after is None else int(tfam_after)
        if not 1 <= self.tfam_after <= n:
            raise ValueError(f"tfam_after must be a block index in 1..{n}, got {self.tfam_after}")
        if tfam is not None and self.tfam_after == n:
            warnings.warn(f"TFAM after the last block ({n}) is followed only by pooling, where it has "
                          "almost no effect; choose an earlier block", stacklevel=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        aux: dict[str, torch.Tensor] = {}
        x = self.backbone.forward_stem(x)
        for i, block in enumerate(self.backbone.blocks, start=1):
            x = block(x)
            if self.tfam is not None and i == self.tfam_after:
                x, aux = self.tfam(x)
        return self.backbone.forward_head(x), x, dict(aux)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax scores (N, classes), averaged over test clips when x is (N, clips, C, T, V)."""
        clips = x.shape[1] if x.dim() == 5 else 1
        probs = self(x.flatten(0, 1) if clips > 1 else x)[0].float().softmax(-1)
        return probs.view(-1, clips, probs.shape[-1]).mean(1)
