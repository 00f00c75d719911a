"""CTR-GCN (Chen et al. ICCV 2021): channel-wise topology refinement and multi-scale temporal conv.

Follows the official code, with the K per-subset CTRGC modules fused into grouped convolutions so a
block runs one einsum instead of a Python loop over subsets, and with the adjacency in this project's
A[k, src, dst] convention (the official code indexes A[dst, src]).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from piumr_skel.skeleton.graph import GraphMode
from piumr_skel.skeleton.layouts import Layout

from .base import Backbone, stage_plan
from .registry import register_backbone
from .stgcn import TemporalConv, residual_path

__all__ = ["CTRGraphConv", "MultiScaleTemporalConv", "CTRGCNBlock", "CTRGCN"]


class CTRGraphConv(nn.Module):
    """Channel-wise topology refinement graph conv for all K subsets at once.

    For subset k: R_k[n, c, src, dst] = α · ξ(tanh(φ(x)[dst] − ψ(x)[src]))[c] + PA_k[src, dst], where φ, ψ
    are 1×1 convs averaged over time and ξ lifts the R relation channels to C_out; then
    y[n, c, t, dst] = Σ_k Σ_src ζ_k(x)[n, c, t, src] · R_k[n, c, src, dst]. PA starts at A and is learned;
    α starts at 0, so the block starts as a plain GCN with a learnable graph (official init).
    (N, C_in, T, V) -> (N, C_out, T, V).
    """

    def __init__(self, in_channels: int, out_channels: int, A: np.ndarray, rel_reduction: int = 8) -> None:
        super().__init__()
        K = A.shape[0]
        self.num_subsets, self.out_channels = K, out_channels
        # Official choice: raw coordinates (3 or 9 channels) get fixed small widths.
        rel = 8 if in_channels <= 9 else max(1, in_channels // rel_reduction)
        self.rel_channels = rel
        self.phi = nn.Conv2d(in_channels, K * rel, 1)
        self.psi = nn.Conv2d(in_channels, K * rel, 1)
        self.zeta = nn.Conv2d(in_channels, K * out_channels, 1)
        self.xi = nn.Conv2d(K * rel, K * out_channels, 1, groups=K)  # one ξ per subset
        self.tanh = nn.Tanh()
        self.PA = nn.Parameter(torch.as_tensor(A, dtype=torch.float32).clone())
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, _, T, V = x.shape
        K, C = self.num_subsets, self.out_channels
        q = self.phi(x).mean(dim=2)  # (N, K·R, V) time-pooled, topology is per clip
        k = self.psi(x).mean(dim=2)
        rel = self.tanh(q.unsqueeze(-2) - k.unsqueeze(-1))  # (N, K·R, src, dst) = φ[dst] − ψ[src]
        topo = self.xi(rel).view(N, K, C, V, V) * self.alpha + self.PA.view(1, K, 1, V, V)
        z = self.zeta(x).view(N, K, C, T, V)
        return torch.einsum("nkcts,nkcsd->nctd", z, topo)


class MultiScaleTemporalConv(nn.Module):
    """Four branches of C_out/4 channels: 5×1 convs with dilation 1 and 2, a 3×1 max-pool and a 1×1
    conv, concatenated. (N, C_in, T, V) -> (N, C_out, T/stride, V)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 1,
                 dilations: tuple[int, ...] = (1, 2)) -> None:
        super().__init__()
        nb = len(dilations) + 2
        if out_channels % nb:
            raise ValueError(f"MultiScaleTemporalConv: out_channels {out_channels} must be divisible by {nb} branches")
        bc = out_channels // nb
        self.out_channels = out_channels

        def entry() -> list[nn.Module]:
            return [nn.Conv2d(in_channels, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(inplace=True)]

        branches: list[nn.Module] = [nn.Sequential(*entry(), TemporalConv(bc, bc, kernel_size, stride, d))
                                     for d in dilations]
        branches.append(nn.Sequential(*entry(), nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0)),
                                      nn.BatchNorm2d(bc)))
        branches.append(nn.Sequential(nn.Conv2d(in_channels, bc, 1, stride=(stride, 1)), nn.BatchNorm2d(bc)))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class CTRGCNBlock(nn.Module):
    """CTR graph conv (+BN, inner residual, ReLU), multi-scale TCN, block residual, ReLU.

    (N, C_in, T, V) -> (N, C_out, T/stride, V).
    """

    def __init__(self, in_channels: int, out_channels: int, A: np.ndarray, stride: int = 1,
                 residual: bool = True) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.gconv = CTRGraphConv(in_channels, out_channels, A)
        self.gcn_bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(self.gcn_bn.weight, 1e-6)  # official: the GCN starts near its residual path
        self.gcn_down = (nn.Identity() if in_channels == out_channels
                         else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels)))
        self.tcn = MultiScaleTemporalConv(out_channels, out_channels, 5, stride)
        self.residual = residual_path(in_channels, out_channels, stride, residual)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.gcn_bn(self.gconv(x)) + self.gcn_down(x))
        y = self.tcn(y)
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class CTRGCN(Backbone):
    """CTR-GCN with the ST-GCN stage layout: (N, C_in, T, V) -> (N, 4·base, T/4, V) -> logits."""

    def __init__(self, *, in_channels: int, num_classes: int, layout: Layout, graph_mode: GraphMode = "spatial",
                 base_channels: int = 64, num_blocks: int = 10, dropout: float = 0.0) -> None:
        super().__init__(in_channels=in_channels, layout=layout, graph_mode=graph_mode, dropout=dropout)
        plan, self.stage_ends = stage_plan(num_blocks, base_channels, in_channels)
        A = self.graph.A
        self.blocks = nn.ModuleList(
            CTRGCNBlock(cin, cout, A, stride, residual=i > 0) for i, (cin, cout, stride) in enumerate(plan)
        )
        self._finish(num_classes)


@register_backbone("ctrgcn")
def ctrgcn(**kw) -> CTRGCN:
    """CTR-GCN, official widths (base_channels=64, num_blocks=10)."""
    return CTRGCN(**kw)
