"""Common skeleton-backbone interface: data BN stem, a ModuleList of blocks, pooled linear head."""
from __future__ import annotations

from typing import cast

import torch
from torch import nn

from piumr_skel.skeleton.graph import Graph, GraphMode
from piumr_skel.skeleton.layouts import Layout

__all__ = ["Backbone", "stage_plan"]


def stage_plan(num_blocks: int, base_channels: int, in_channels: int) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Per-block (in, out, temporal stride) and the 1-based stage ends of a 3-stage GCN.

    Ten blocks give PYSKL's ST-GCN: widths base, 2·base, 4·base with the width doubling and stride 2
    at blocks 5 and 8, stage ends [4, 7, 10]. Fewer blocks keep the same proportions (the last two
    stages take about 30% of the blocks each), so tiny test models still have three stages.
    """
    if num_blocks < 3:
        raise ValueError(f"num_blocks must be >= 3 (three stages), got {num_blocks}")
    if base_channels < 1:
        raise ValueError(f"base_channels must be >= 1, got {base_channels}")
    per_stage = max(1, round(0.3 * num_blocks))
    starts = (num_blocks - 2 * per_stage + 1, num_blocks - per_stage + 1)  # (5, 8) for 10 blocks
    plan: list[tuple[int, int, int]] = []
    cin, width = in_channels, base_channels
    for b in range(1, num_blocks + 1):
        stride = 1
        if b in starts:
            width, stride = width * 2, 2
        plan.append((cin, width, stride))
        cin = width
    return plan, [starts[0] - 1, starts[1] - 1, num_blocks]


class Backbone(nn.Module):
    """Base class. Subclasses fill `self.blocks` and call `_finish(num_classes)`.

    Input (N, C_in, T, V), one person. `forward_features` -> (N, C, T', V); `forward_head` -> (N, classes).
    Attributes: `out_channels`, `blocks`, `stage_ends` (1-based block index ending each stage),
    `block_out_channels` (channels after each block), `graph`, `layout`.
    """

    out_channels: int
    blocks: nn.ModuleList
    stage_ends: list[int]
    block_out_channels: list[int]

    def __init__(self, *, in_channels: int, layout: Layout, graph_mode: GraphMode = "spatial",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(layout, Layout):
            raise TypeError(f"a backbone takes a Layout, got {layout!r} (resolve a name with "
                            f"piumr_skel.skeleton.layouts.get_layout)")
        self.layout = layout
        self.graph = Graph(self.layout, graph_mode)
        self.in_channels = in_channels
        V = self.layout.num_joints
        # One BN per (joint, channel): joints have very different ranges (hips near 0, hands far out).
        self.data_bn = nn.BatchNorm1d(in_channels * V)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def _finish(self, num_classes: int) -> None:
        self.block_out_channels = [self._block_out(b) for b in self.blocks]
        self.out_channels = self.block_out_channels[-1]
        self.fc = nn.Linear(self.out_channels, num_classes)

    @staticmethod
    def _block_out(block: nn.Module) -> int:
        return int(cast(int, block.out_channels))  # set by every block class; nn.Module's stubs cannot say

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, T, V) -> (N, C_in, T, V) normalised by the data BN over V·C."""
        V = self.layout.num_joints
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[3] != V:
            raise ValueError(f"{type(self).__name__} for layout {self.layout.name!r} expects "
                             f"(N, {self.in_channels}, T, {V}), got {tuple(x.shape)}")
        N, C, T, _ = x.shape
        x = self.data_bn(x.permute(0, 3, 1, 2).reshape(N, V * C, T))
        return x.reshape(N, V, C, T).permute(0, 2, 3, 1).contiguous()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, T, V) -> (N, out_channels, T', V)."""
        x = self.forward_stem(x)
        for block in self.blocks:
            x = block(x)
        return x

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, C, T', V) -> (N, num_classes): mean over time and joints, dropout, linear."""
        return self.fc(self.dropout(feats.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
