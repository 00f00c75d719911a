"""ST-GCN (Yan et al. 2018) as in PYSKL: 10 blocks 64→128→256, data BN, residuals, edge importance."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from piumr_skel.skeleton.graph import GraphMode
from piumr_skel.skeleton.layouts import Layout

from .base import Backbone, stage_plan
from .gcn_pyg import PygSpatialGraphConv
from .registry import register_backbone

__all__ = ["SpatialGraphConv", "TemporalConv", "residual_path", "STGCNBlock", "STGCN"]


class SpatialGraphConv(nn.Module):
    """Dense spatial graph convolution: 1×1 conv to K·C_out, then one einsum with A (K, V, V).

    A follows the project convention A[k, src, dst] (see piumr_skel.skeleton.graph). With `importance`, a
    learnable mask PA (K, V, V), initialised to 1, scales every edge (ST-GCN's edge importance).
    (N, C_in, T, V) -> (N, C_out, T, V).
    """

    A: torch.Tensor  # (K, V, V), a buffer

    def __init__(self, in_channels: int, out_channels: int, A: np.ndarray, importance: bool = True) -> None:
        super().__init__()
        self.num_subsets = A.shape[0]
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels * self.num_subsets, 1)
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float32).clone())
        self.PA = nn.Parameter(torch.ones_like(self.A)) if importance else None

    def adjacency(self) -> torch.Tensor:
        """(K, V, V) effective adjacency A ⊙ PA."""
        return self.A if self.PA is None else self.A * self.PA

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, _, T, V = x.shape
        y = self.conv(x).view(N, self.num_subsets, self.out_channels, T, V)
        return torch.einsum("nkctv,kvw->nctw", y, self.adjacency())


class TemporalConv(nn.Module):
    """(k×1) temporal conv + BN (no activation): (N, C_in, T, V) -> (N, C_out, T/stride, V)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__()
        pad = (kernel_size - 1) * dilation // 2
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel_size, 1), padding=(pad, 0),
                              stride=(stride, 1), dilation=(dilation, 1))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def residual_path(in_channels: int, out_channels: int, stride: int, enabled: bool = True) -> nn.Module | None:
    """A block's shortcut: none, the identity, or a strided 1×1 conv + BN where the shape changes."""
    if not enabled:
        return None
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return TemporalConv(in_channels, out_channels, 1, stride)


class STGCNBlock(nn.Module):
    """GCN (graph conv, BN, ReLU) then TCN (9×1 conv, BN), plus a residual, then ReLU.

    (N, C_in, T, V) -> (N, C_out, T/stride, V).
    """

    def __init__(self, in_channels: int, out_channels: int, A: np.ndarray, stride: int = 1,
                 residual: bool = True, impl: Literal["dense", "pyg"] = "dense") -> None:
        super().__init__()
        self.out_channels = out_channels
        if impl == "dense":
            gconv: nn.Module = SpatialGraphConv(in_channels, out_channels, A)
        elif impl == "pyg":
            gconv = PygSpatialGraphConv(in_channels, out_channels, A)
        else:
            raise ValueError(f"unknown graph-conv impl {impl!r}; choices: dense, pyg")
        self.gcn = nn.Sequential(gconv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        self.tcn = TemporalConv(out_channels, out_channels, 9, stride)
        self.residual = residual_path(in_channels, out_channels, stride, residual)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class STGCN(Backbone):
    """PYSKL ST-GCN. (N, C_in, T, V) -> features (N, 4·base, T/4, V) -> logits.

    The first block has no residual (its input is raw coordinates), as in PYSKL.
    impl="pyg" swaps the dense graph conv for the torch_geometric one (same numbers, slower).
    """

    def __init__(self, *, in_channels: int, num_classes: int, layout: Layout, graph_mode: GraphMode = "spatial",
                 base_channels: int = 64, num_blocks: int = 10, dropout: float = 0.0,
                 impl: Literal["dense", "pyg"] = "dense") -> None:
        super().__init__(in_channels=in_channels, layout=layout, graph_mode=graph_mode, dropout=dropout)
        plan, self.stage_ends = stage_plan(num_blocks, base_channels, in_channels)
        A = self.graph.A
        self.blocks = nn.ModuleList(
            STGCNBlock(cin, cout, A, stride, residual=i > 0, impl=impl) for i, (cin, cout, stride) in enumerate(plan)
        )
        self._finish(num_classes)


@register_backbone("stgcn")
def stgcn(**kw) -> STGCN:
    """ST-GCN, PYSKL recipe (base_channels=64, num_blocks=10)."""
    return STGCN(**kw)
