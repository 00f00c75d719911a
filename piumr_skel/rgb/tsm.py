"""Temporal Shift Module (Lin et al., ICCV 2019): zero-cost temporal mixing for a 2D ResNet.

Frames of a clip travel through the 2D network as one batch of images (N·T, C, H, W). In every
residual block, before conv1 of the residual branch ("residual shift"), 1/shift_div of the channels
take their values from the next segment and another 1/shift_div from the previous one; the identity
path is left unshifted so per-frame spatial features survive.
"""
from __future__ import annotations

import torch
from torch import nn

from .resnet import ResNet


def temporal_shift(x: torch.Tensor, num_segments: int, shift_div: int = 8) -> torch.Tensor:
    """Shift channels along time, zero-padded at the clip ends.

    x: (N·T, C, H, W) with T = num_segments consecutive rows per clip. With fold = C // shift_div:
    channels [0, fold) at segment t take segment t+1's values (shift left / back in time),
    channels [fold, 2·fold) take segment t-1's (shift right), the rest are unchanged.
    """
    nt, c, h, w = x.shape
    if nt % num_segments:
        raise ValueError(f"temporal_shift: batch {nt} is not a multiple of num_segments {num_segments}")
    if shift_div < 2:
        raise ValueError(f"temporal_shift: shift_div must be >= 2, got {shift_div}")
    x = x.view(nt // num_segments, num_segments, c, h, w)
    fold = c // shift_div
    if fold == 0:  # too few channels to shift any (only in tiny test models)
        return x.view(nt, c, h, w)
    # Built with cat rather than in-place writes so autograd and inplace ReLU upstream stay safe.
    zero = x.new_zeros(x.shape[0], 1, fold, h, w)
    left = torch.cat([x[:, 1:, :fold], zero], dim=1)
    right = torch.cat([zero, x[:, :-1, fold:2 * fold]], dim=1)
    return torch.cat([left, right, x[:, :, 2 * fold:]], dim=2).view(nt, c, h, w)


class TemporalShift(nn.Module):
    """Parameter-free module wrapper of `temporal_shift`; (N·T, C, H, W) -> same shape."""

    def __init__(self, num_segments: int, shift_div: int = 8):
        super().__init__()
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        self.num_segments = num_segments
        self.shift_div = shift_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.num_segments, self.shift_div)

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, shift_div={self.shift_div}"


def make_temporal_shift(net: ResNet, num_segments: int, shift_div: int = 8) -> ResNet:
    """Put a residual temporal shift into every block of `net` (TSM's 'blockres' placement), in place.

    The shift sits in each block's `shift` slot, which has no parameters, so the state-dict keys
    (and ImageNet checkpoints) are unchanged.
    """
    for block in net.blocks():
        block.shift = TemporalShift(num_segments, shift_div)
    return net


def tsm_resnet(arch: str, num_segments: int, *, shift_div: int = 8, width: int = 64) -> ResNet:
    """A ResNet feature extractor (no fc) with temporal shift; arch 'resnet18' or 'resnet50' etc."""
    return make_temporal_shift(ResNet(arch, width=width, num_classes=None), num_segments, shift_div)
