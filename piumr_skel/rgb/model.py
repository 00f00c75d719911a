"""RGB recogniser: TSM-ResNet per-frame features -> TFAM (V = 1) -> temporal head -> consensus -> fc.

Same interface as the skeleton `piumr_skel.models.recognizer.Recognizer`: `forward(x) -> (logits, feats, aux)`,
so the trainer, GIRL and the metrics work unchanged on either modality.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .resnet import load_pretrained
from .tsm import tsm_resnet

RGB_ARCHS: dict[str, str] = {"tsm_r18": "resnet18", "tsm_r50": "resnet50"}


class TemporalHead(nn.Module):
    """Two temporal convolutions (kernel 3 over T) in a residual bottleneck; (N, C, T, 1) -> same.

    docs/METHOD.md: TFAM must be followed by temporal processing before any pooling, otherwise the
    time-mean of its output equals (almost) that of its input. The residual keeps the per-frame
    TSM features intact at start, so a pretrained backbone is not disturbed by a random head.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=(3, 1), padding=(1, 0), bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, kernel_size=(3, 1), padding=(1, 0), bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(x + self.bn2(self.conv2(out)))


class RGBRecognizer(nn.Module):
    """TSM ResNet-18/50 on TSN-sampled frames with optional TFAM, for MA-52.

    arch: "tsm_r18" | "tsm_r50". num_segments: T, fixed by the temporal shift.
    tfam: a TFAM module (built for `feat_channels` channels and V = 1), True to build
    `piumr_skel.method.tfam.TFAM(feat_channels, num_joints=1, num_frames=num_segments, **tfam_kwargs)`,
    or None/False for none.
    The temporal head is present either way, so ERM and +TFAM differ only by TFAM.
    pretrained: path of an ImageNet ResNet state dict in torchvision's key layout (fc skipped).
    width: ResNet base channels (64 for ImageNet weights; small for tests).
    head_hidden: hidden channels of the temporal head (default: out_channels // 4).
    """

    def __init__(self, arch: str = "tsm_r50", num_classes: int = 52, num_segments: int = 8,
                 tfam: nn.Module | bool | None = None, *, tfam_kwargs: dict[str, Any] | None = None,
                 pretrained: str | Path | None = None, dropout: float = 0.5, width: int = 64,
                 shift_div: int = 8, head_hidden: int | None = None):
        super().__init__()
        if arch not in RGB_ARCHS:
            raise ValueError(f"unknown RGB backbone {arch!r}; choices: {', '.join(RGB_ARCHS)}")
        self.arch = arch
        self.num_segments = num_segments
        self.backbone = tsm_resnet(RGB_ARCHS[arch], num_segments, shift_div=shift_div, width=width)
        if pretrained:
            load_pretrained(self.backbone, pretrained)
        self.feat_channels = c = self.backbone.out_channels
        if tfam is True:
            from piumr_skel.method.tfam import TFAM  # lazy: the skeleton-only path should not need it at import

            # The spectral gate is sized for T = num_segments frames (TFAM sits before any striding).
            tfam = TFAM(c, **{"num_joints": 1, "num_frames": num_segments, **(tfam_kwargs or {})})
        elif tfam is False:
            tfam = None
        self.tfam: nn.Module | None = tfam
        self.temporal_head = TemporalHead(c, head_hidden or max(c // 4, 1))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c, num_classes)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(N, T, 3, H, W) -> (feats (N, C, T, 1) after TFAM and the temporal head, TFAM losses)."""
        if x.ndim != 5 or x.shape[2] != 3:
            raise ValueError(f"RGBRecognizer expects (N, T, 3, H, W), got {tuple(x.shape)}")
        n, t = x.shape[:2]
        if t != self.num_segments:
            raise ValueError(f"RGBRecognizer built for {self.num_segments} segments, got T = {t}")
        f = self.backbone.forward_features(x.flatten(0, 1))          # (N·T, C, h, w)
        f = f.mean(dim=(2, 3)).view(n, t, -1).transpose(1, 2)       # (N, C, T)
        f = f.unsqueeze(-1)                                         # (N, C, T, V = 1)
        aux: dict[str, torch.Tensor] = {}
        if self.tfam is not None:
            f, aux = self.tfam(f)
        return self.temporal_head(f), aux

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, C, T, 1) -> logits (N, num_classes): segment consensus (mean over T), dropout, fc."""
        return self.fc(self.dropout(feats.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(N, T, 3, H, W) -> (logits (N, K), feats (N, C, T, 1), aux TFAM loss dict, empty without TFAM)."""
        feats, aux = self.forward_features(x)
        return self.forward_head(feats), feats, aux

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, 3, H, W) -> softmax scores (N, classes); one TSN clip per video."""
        return self(x)[0].float().softmax(-1)
