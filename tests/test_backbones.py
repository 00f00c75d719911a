"""Backbones: stage plan, registry errors, dense vs torch_geometric graph conv, Recognizer.

Every backbone on every layout and graph mode is in tests/test_models_matrix.py."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from piumr_skel.method.tfam import TFAM
from piumr_skel.models import PygSpatialGraphConv, SpatialGraphConv, create_backbone, register_backbone, stage_plan
from piumr_skel.models.recognizer import Recognizer
from piumr_skel.skeleton.graph import Graph
from piumr_skel.skeleton.layouts import get_layout

TINY = dict(base_channels=8, num_blocks=3)
COCO17, OPENPOSE18 = get_layout("coco17"), get_layout("openpose18")


def _input(V: int, N: int = 2, T: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(N, 3, T, V, generator=torch.Generator().manual_seed(seed))


def test_backbones_take_a_layout_not_its_name():
    """The engine resolves the layout name once (engine.data_setup, engine.evaluate); below it, a
    backbone is built from the Layout object only."""
    with pytest.raises(TypeError, match="takes a Layout"):
        create_backbone("stgcn", in_channels=3, num_classes=2, layout="coco17", **TINY)  # type: ignore[arg-type]


def test_stage_plan_matches_pyskl_stgcn():
    plan, ends = stage_plan(10, 64, 3)
    assert ends == [4, 7, 10]
    assert [c for _, c, _ in plan] == [64] * 4 + [128] * 3 + [256] * 3
    assert [b for b, (_, _, s) in enumerate(plan, 1) if s == 2] == [5, 8]
    assert stage_plan(4, 8, 3)[1] == [2, 3, 4]
    with pytest.raises(ValueError, match="num_blocks must be >= 3"):
        stage_plan(2, 8, 3)


def test_full_stgcn_structure():
    torch.manual_seed(0)
    model = create_backbone("stgcn", in_channels=3, num_classes=52, layout=COCO17)
    assert len(model.blocks) == 10 and model.stage_ends == [4, 7, 10] and model.out_channels == 256
    n_params = sum(p.numel() for p in model.parameters())
    assert 3.0e6 < n_params < 3.2e6  # PYSKL's ST-GCN on a 17-joint graph has about 3.1 M
    assert Recognizer(model).tfam_after == 7


def test_registry_errors_and_wrong_input():
    with pytest.raises(ValueError, match="unknown backbone 'resnet'; choices: ctrgcn, stgcn"):
        create_backbone("resnet", in_channels=3, num_classes=2, layout=COCO17)
    with pytest.raises(ValueError, match="'stgcn' is already registered"):
        register_backbone("stgcn")(lambda **kw: None)
    model = create_backbone("stgcn", in_channels=3, num_classes=2, layout=COCO17, **TINY)
    with pytest.raises(ValueError, match=r"layout 'coco17' expects \(N, 3, T, 17\), got \(2, 3, 8, 18\)"):
        model(_input(18))


def test_pyg_graph_conv_equals_dense():
    A = Graph("mp_holistic").A
    torch.manual_seed(0)
    dense = SpatialGraphConv(4, 6, A)
    pyg = PygSpatialGraphConv(4, 6, A)
    with torch.no_grad():  # a non-trivial edge importance, so PA's path is compared too
        dense.PA.uniform_(0.5, 1.5)
    pyg.load_state_dict(dense.state_dict())
    x = torch.randn(2, 4, 5, 77, generator=torch.Generator().manual_seed(2))
    xd, xp = x.clone().requires_grad_(), x.clone().requires_grad_()
    yd, yp = dense(xd), pyg(xp)
    torch.testing.assert_close(yp, yd, atol=1e-5, rtol=1e-5)
    w = torch.randn(yd.shape, generator=torch.Generator().manual_seed(3))
    (yd * w).sum().backward()
    (yp * w).sum().backward()
    torch.testing.assert_close(xp.grad, xd.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pyg.PA.grad, dense.PA.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pyg.conv.weight.grad, dense.conv.weight.grad, atol=1e-5, rtol=1e-5)


def test_stgcn_pyg_impl_same_logits():
    torch.manual_seed(0)
    dense = create_backbone("stgcn", in_channels=3, num_classes=3, layout=OPENPOSE18, **TINY).eval()
    pyg = create_backbone("stgcn", in_channels=3, num_classes=3, layout=OPENPOSE18, impl="pyg", **TINY).eval()
    pyg.load_state_dict(dense.state_dict())
    x = _input(18)
    torch.testing.assert_close(pyg(x), dense(x), atol=1e-5, rtol=1e-5)


class StandInTFAM(nn.Module):
    """Same forward signature as piumr_skel.method.tfam.TFAM: (N, C, T, V) -> (y, loss dict)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.channels = channels
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert x.shape[1] == self.channels
        self.seen.append(tuple(x.shape))
        return x * self.scale, {"wasserstein": x.pow(2).mean(), "consistency": x.new_zeros(())}


def test_recognizer_without_tfam_is_the_backbone():
    torch.manual_seed(0)
    bb = create_backbone("ctrgcn", in_channels=3, num_classes=4, layout=COCO17, base_channels=8, num_blocks=4).eval()
    rec = Recognizer(bb).eval()
    x = _input(17)
    logits, feats, aux = rec(x)
    assert aux == {} and rec.tfam_after == bb.stage_ends[-2] == 3
    torch.testing.assert_close(logits, bb(x))
    torch.testing.assert_close(feats, bb.forward_features(x))


def test_recognizer_applies_tfam_after_the_chosen_block():
    torch.manual_seed(0)
    bb = create_backbone("stgcn", in_channels=3, num_classes=4, layout=COCO17, base_channels=8, num_blocks=4)
    default_after = bb.stage_ends[-2]  # 3: before the last stage
    tfam = StandInTFAM(bb.block_out_channels[default_after - 1])
    rec = Recognizer(bb, tfam=tfam)
    x = _input(17, T=16)
    logits, feats, aux = rec(x)
    assert tfam.seen == [(2, 16, 8, 17)]  # after block 3 of 4: 16 channels, one stride-2 so far
    assert set(aux) == {"wasserstein", "consistency"} and feats.shape == (2, 32, 4, 17)
    (logits.sum() + aux["wasserstein"]).backward()
    assert tfam.scale.grad is not None and tfam.scale.grad != 0
    # Without the stand-in the logits differ: TFAM is really in the path.
    bb.eval()
    rec.eval()
    with torch.no_grad():
        assert not torch.allclose(rec(x)[0], bb(x))
    with pytest.raises(ValueError, match=r"tfam_after must be a block index in 1..4, got 5"):
        Recognizer(bb, tfam=tfam, tfam_after=5)
    with pytest.warns(UserWarning, match="followed only by pooling"):
        Recognizer(bb, tfam=StandInTFAM(32), tfam_after=4)


def test_recognizer_with_the_real_tfam():
    torch.manual_seed(0)
    bb = create_backbone("stgcn", in_channels=3, num_classes=4, layout=COCO17, base_channels=8, num_blocks=4)
    after = bb.stage_ends[-2]
    rec = Recognizer(bb, tfam=TFAM(bb.block_out_channels[after - 1], num_anchors=4,
                                            num_joints=17))
    logits, feats, aux = rec(_input(17, T=16))
    assert logits.shape == (2, 4) and feats.shape == (2, 32, 4, 17)
    assert set(aux) == {"wasserstein", "consistency"}
    loss = logits.logsumexp(1).sum() + sum(aux.values())
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in bb.parameters())
