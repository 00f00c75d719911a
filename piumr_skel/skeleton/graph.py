"""Adjacency tensors (K, V, V) for a skeleton layout: the ST-GCN/PYSKL spatial and distance partitions.

Convention, used everywhere in this project: **A[k, src, dst]**. A graph convolution computes

    y[n, c, t, dst] = Σ_k Σ_src x_k[n, c, t, src] · A[k, src, dst]      (einsum 'nkctv,kvw->nctw')

so with the `inward` subset a signal on a child joint arrives at its parent. Every subset is
normalised over its sources (ST-GCN's A·D⁻¹ with D the in-degree of dst): each joint takes the mean
of the messages it receives, Σ_src A[k, src, dst] ∈ {0, 1}.
"""
from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from piumr_skel.skeleton.layouts import Layout, get_layout

__all__ = ["Graph", "GRAPH_MODES", "hop_distance", "normalize_incoming"]

GraphMode = Literal["spatial", "distance"]
GRAPH_MODES: tuple[str, ...] = get_args(GraphMode)


def hop_distance(layout: Layout, max_hop: int | None = None) -> np.ndarray:
    """(V, V) float hop distance along the skeleton tree; np.inf beyond `max_hop` (None: no limit)."""
    V = layout.num_joints
    adj = np.eye(V, dtype=bool)
    for c, p in layout.edges:
        adj[c, p] = adj[p, c] = True
    limit = V if max_hop is None else max_hop
    dist = np.full((V, V), np.inf)
    reach = np.eye(V, dtype=bool)
    dist[reach] = 0
    # Boolean matrix powers: joints first reached at step d are d hops away.
    for d in range(1, limit + 1):
        new = (reach.astype(np.int64) @ adj.astype(np.int64)) > 0
        fresh = new & ~reach
        if not fresh.any():
            break
        dist[fresh] = d
        reach = new
    return dist


def normalize_incoming(adj: np.ndarray) -> np.ndarray:
    """Divide each column (dst) of a (V, V) [src, dst] matrix by its sum; empty columns stay 0."""
    deg = adj.sum(axis=0, keepdims=True)
    return np.divide(adj, deg, out=np.zeros_like(adj, dtype=np.float64), where=deg > 0)


class Graph:
    """Graph(layout, mode).A: (K, V, V) float32 adjacency in the A[k, src, dst] convention.

    spatial (K = 3, PYSKL): identity, inward (child -> parent), outward (parent -> child), each
        normalised on its own.
    distance (K = max_hop + 1, ST-GCN): subset d holds the pairs exactly d hops apart, all taken from
        one normalisation of the hop ≤ max_hop adjacency (self loops included), so Σ_k A[k] is a mean.
    """

    def __init__(self, layout: Layout | str, mode: GraphMode = "spatial",
                 max_hop: int = 1) -> None:
        self.layout = get_layout(layout)
        if mode not in GRAPH_MODES:
            raise ValueError(f"unknown graph mode {mode!r}; choices: {', '.join(GRAPH_MODES)}")
        if max_hop < 1:
            raise ValueError(f"max_hop must be >= 1, got {max_hop}")
        self.mode = mode
        self.max_hop = max_hop
        V = self.layout.num_joints
        if mode == "spatial":
            inward = np.zeros((V, V))
            for child, parent in self.layout.edges:
                inward[child, parent] = 1.0  # [src, dst]: child sends to parent
            A = np.stack([np.eye(V), normalize_incoming(inward), normalize_incoming(inward.T)])
        else:
            dist = hop_distance(self.layout, max_hop)
            norm = normalize_incoming((dist <= max_hop).astype(np.float64))
            A = np.stack([np.where(dist == d, norm, 0.0) for d in range(max_hop + 1)])
        self.A: np.ndarray = A.astype(np.float32)

    @property
    def num_subsets(self) -> int:
        """K, the number of adjacency subsets."""
        return self.A.shape[0]

    def __repr__(self) -> str:
        return f"Graph({self.layout.name!r}, mode={self.mode!r}, K={self.num_subsets}, V={self.layout.num_joints})"
