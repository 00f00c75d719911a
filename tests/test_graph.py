"""Graph: the A[k, src, dst] direction, normalisation, and the distance partition."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from piumr_skel.models.stgcn import SpatialGraphConv
from piumr_skel.skeleton.graph import Graph, hop_distance
from piumr_skel.skeleton.layouts import LAYOUTS, get_layout


def test_inward_signal_on_child_arrives_at_parent():
    lay = get_layout("mp_pose")
    A = Graph(lay, "spatial").A
    child, parent = lay.index("left_wrist"), lay.index("left_elbow")
    x = np.zeros(lay.num_joints, np.float32)
    x[child] = 1.0
    # y[dst] = Σ_src x[src] · A[k, src, dst]  (the convention in graph.py's docstring)
    y_in = np.einsum("v,vw->w", x, A[1])
    assert np.flatnonzero(y_in).tolist() == [parent]
    y_out = np.einsum("v,vw->w", x, A[2])  # outward: the wrist's children (pinky, index, thumb)
    assert sorted(np.flatnonzero(y_out).tolist()) == [lay.index(j) for j in ("left_pinky", "left_index", "left_thumb")]


def test_graph_conv_layer_sends_child_to_parent():
    """The same check through the backbone's layer: only the inward subset's weights are on."""
    lay = get_layout("coco17")
    conv = SpatialGraphConv(1, 1, Graph(lay).A)
    with torch.no_grad():
        conv.conv.weight.copy_(torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1, 1))
        conv.conv.bias.zero_()
    x = torch.zeros(1, 1, 2, lay.num_joints)
    x[..., lay.index("left_ankle")] = 1.0
    y = conv(x)
    assert y.shape == x.shape
    assert torch.nonzero(y[0, 0, 0]).flatten().tolist() == [lay.index("left_knee")]


@pytest.mark.parametrize("name", ["mp_holistic", "halpe136", "openpose18"])
def test_spatial_normalisation(name):
    lay = get_layout(name)
    A = Graph(lay, "spatial").A
    V = lay.num_joints
    assert A.shape == (3, V, V) and A.dtype == np.float32
    np.testing.assert_array_equal(A[0], np.eye(V))
    n_children = np.bincount(lay.parents[np.arange(V) != lay.center], minlength=V)
    # inward: each parent averages its children; leaves receive nothing
    np.testing.assert_allclose(A[1].sum(axis=0), (n_children > 0).astype(np.float32), atol=1e-6)
    # outward: every joint but the centre receives its parent's signal with weight 1
    expected = np.ones(V, np.float32)
    expected[lay.center] = 0
    np.testing.assert_allclose(A[2].sum(axis=0), expected, atol=1e-6)
    np.testing.assert_array_equal(A[1] > 0, A[2].T > 0)  # outward is inward reversed


@pytest.mark.parametrize("max_hop", [1, 2])
def test_distance_partition(max_hop):
    lay = get_layout("mp_pose")
    A = Graph(lay, "distance", max_hop=max_hop).A
    V = lay.num_joints
    assert A.shape == (max_hop + 1, V, V)
    assert (np.diag(A[0]) > 0).all() and np.count_nonzero(A[0]) == V
    edges = np.zeros((V, V), bool)
    for c, p in lay.edges:
        edges[c, p] = edges[p, c] = True
    np.testing.assert_array_equal(A[1] > 0, edges)
    np.testing.assert_allclose(A.sum(axis=(0, 1)), np.ones(V), atol=1e-6)  # one mean over the hop ball


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_hop_distance_is_a_tree_metric(name):
    lay = get_layout(name)
    d = hop_distance(lay)
    assert np.isfinite(d).all() and (d == d.T).all()
    for c, p in lay.edges:
        assert d[c, p] == 1
    assert (hop_distance(lay, max_hop=2) <= 2).sum() == (d <= 2).sum()


def test_bad_graph_arguments():
    with pytest.raises(ValueError, match="unknown graph mode 'uniform'"):
        Graph("coco17", "uniform")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_hop must be >= 1"):
        Graph("coco17", "distance", max_hop=0)
