"""The ST-GCN spatial graph convolution written as a torch_geometric `MessagePassing` layer.

Same parameters (conv, A, PA) and same numbers as the dense `SpatialGraphConv`; it exists to check
the dense einsum against a message-passing reference and to measure the cost of sparse scatter
(benchmarks/graph_impl.py). The dense layer stays in the hot path: V ≤ 136 makes (K, V, V) tiny.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import MessagePassing

__all__ = ["PygSpatialGraphConv"]


class PygSpatialGraphConv(MessagePassing):
    """1×1 conv to K·C_out, then message passing along the nonzeros of A[k, src, dst].

    The K subsets become one bipartite graph: source node k·V + src (subset k's features of joint
    src) sends to target node dst with weight (A ⊙ PA)[k, src, dst]. Nodes sit on the last axis, so
    (N, C, T) are carried along without reshaping into a node list.
    (N, C_in, T, V) -> (N, C_out, T, V).
    """

    def __init__(self, in_channels: int, out_channels: int, A: np.ndarray, importance: bool = True) -> None:
        super().__init__(aggr="add", node_dim=-1)
        K, V, _ = A.shape
        self.num_subsets, self.num_joints = K, V
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels * K, 1)
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float32).clone())
        self.PA = nn.Parameter(torch.ones_like(self.A)) if importance else None
        k, src, dst = torch.nonzero(self.A, as_tuple=True)
        # Not persistent: derived from A, so state dicts match the dense layer's key for key.
        self.register_buffer("edge_index", torch.stack([k * V + src, dst]), persistent=False)
        self.register_buffer("_edge_k", k, persistent=False)
        self.register_buffer("_edge_src", src, persistent=False)

    def adjacency(self) -> torch.Tensor:
        """(K, V, V) effective adjacency A ⊙ PA."""
        return self.A if self.PA is None else self.A * self.PA

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, _, T, V = x.shape
        K, C = self.num_subsets, self.out_channels
        y = self.conv(x).view(N, K, C, T, V).permute(0, 2, 3, 1, 4).reshape(N, C, T, K * V)
        weight = self.adjacency()[self._edge_k, self._edge_src, self.edge_index[1]]
        return self.propagate(self.edge_index, x=y, edge_weight=weight, size=(K * V, V))

    def message(self, x_j: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        return x_j * edge_weight  # x_j: (N, C, T, E), weights broadcast over the edge axis
