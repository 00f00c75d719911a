"""The model matrix: every registered backbone, layout, stream, graph mode and TFAM on/off, the RGB
architectures, and a GIRL v2 training step, all built by the trainer's own `build_model` / `build_loss`.

One forward and backward each (timm's rule): logits shape, no NaN, and every parameter gets a
finite gradient (non-zero too, where one backward can show it). The inner loop runs a covering set:
every backbone on every layout, every stream × TFAM on the layout with hands and face, the distance
graph, both RGB architectures and GIRL; the full product is marked slow.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from piumr_skel.data.transforms import STREAMS, normalize_clip, to_stream
from piumr_skel.engine.build import build_loss, build_model
from piumr_skel.engine.config import make_config
from piumr_skel.engine.losses import Batch
from piumr_skel.models import BACKBONES
from piumr_skel.rgb import RGB_ARCHS
from piumr_skel.skeleton.layouts import LAYOUTS, get_layout

NUM_CLASSES = 5
T = 16  # two stride-2 stages leave T' = 4 frames for TFAM and the head
N = 4
TINY = dict(base_channels=8, num_blocks=3, clip_len=T, tfam_iters=5, tfam_anchors=4)
STREAM_LAYOUT = "halpe44"  # the smallest layout with both hands and a face, so hand_local does work
RGB_TINY = dict(modality="rgb", base_channels=4, clip_len=4, image_size=32, tfam_iters=5, tfam_anchors=4)


def _random_clip(layout, rng: np.random.Generator) -> np.ndarray:
    """(T, V, 3) pixel coordinates + scores, with a few missing joints, then normalised as the cache does."""
    V = layout.num_joints
    base = rng.uniform(200.0, 800.0, size=(1, V, 2))
    xy = base + np.cumsum(rng.normal(0.0, 3.0, size=(T, V, 2)), axis=0)
    score = rng.uniform(0.3, 1.0, size=(T, V, 1))
    clip = np.concatenate([xy, score], axis=-1).astype(np.float32)
    clip[rng.random((T, V)) < 0.05] = np.nan  # missed detections, as layouts.assemble gives them
    clip[:, layout.center] = np.concatenate([base[0, layout.center], [0.9]])  # keep the centre seen
    return normalize_clip(clip, layout)


def _batch(layout, stream: str, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    clips = [to_stream(_random_clip(layout, rng), layout, stream, channels_last=True) for _ in range(N)]
    return torch.from_numpy(np.stack(clips)).permute(0, 3, 1, 2).contiguous()  # (N, C, T, V)


def _open_zero_gates(model: torch.nn.Module) -> list[str]:
    """Zero-initialised scalar gates (TFAM's β_T, β_F; CTR-GCN's α) start the model as the plain
    backbone, so the branches behind them get exactly zero gradient at step 0. Open them a little
    so the check covers those branches too; return their names so the test can say so."""
    opened = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() == 1 and float(p.abs().sum()) == 0.0:
                p.fill_(0.1)
                opened.append(name)
    return opened


def _assert_grads(model: torch.nn.Module, when: str) -> set[str]:
    """Every parameter has a finite gradient; returns the names of those whose gradient is non-zero."""
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient ({when}): {missing}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients ({when}): {bad}"
    return {n for n, p in model.named_parameters() if float(p.grad.abs().sum()) > 0.0}


def _check_forward_backward(model: torch.nn.Module, x: torch.Tensor, num_joints: int, tfam: bool) -> None:
    """Forward and backward in train and eval mode: shapes, finiteness, and every parameter reached.

    Train mode is the path that matters; but there a train-mode BatchNorm subtracts the batch mean,
    so a conv bias feeding straight into it gets an exactly-zero gradient by construction. An
    eval-mode pass (BN on running statistics) shows those biases are still connected.
    """
    nonzero: set[str] = set()
    for train_mode in (True, False):
        model.train(train_mode)
        model.zero_grad(set_to_none=True)
        logits, feats, aux = model(x)
        assert logits.shape == (N, NUM_CLASSES)
        assert feats.dim() == 4 and feats.shape[0] == N and feats.shape[3] == num_joints
        assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
        assert set(aux) == ({"wasserstein", "consistency"} if tfam else set())
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(N) % NUM_CLASSES)
        loss = loss + sum(aux.values(), torch.zeros(()))
        loss.backward()
        nonzero |= _assert_grads(model, f"train={train_mode}")
    zero = [n for n, _ in model.named_parameters() if n not in nonzero]
    assert not zero, f"parameters whose gradient is exactly zero in train and eval mode: {zero}"


def _build(cfg, layout) -> tuple[torch.nn.Module, list[str]]:
    """The trainer's model with its zero gates opened; model init draws from torch's generator, so
    callers wrap this in `torch.random.fork_rng()`."""
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES, layout)
    return model, _open_zero_gates(model)


# ------------------------------------------------------------------------------------ skeleton

def _is_covering(backbone: str, layout: str, stream: str, tfam: bool, graph_mode: str) -> bool:
    """The inner-loop subset: each layout (joint, plain), each stream × TFAM on one layout, and the
    distance graph once per backbone with TFAM."""
    if graph_mode == "distance":
        return layout == "coco17" and stream == "joint" and tfam
    return (stream == "joint" and not tfam) or layout == STREAM_LAYOUT


SKELETON = [(b, lay, s, t, "spatial") for b, lay, s, t in
            itertools.product(sorted(BACKBONES), sorted(LAYOUTS), STREAMS, (False, True))]
SKELETON += [(b, lay, "joint", True, "distance") for b in sorted(BACKBONES) for lay in sorted(LAYOUTS)]
SKELETON_PARAMS = [pytest.param(*case, id="-".join([*case[:3], "tfam" if case[3] else "plain", case[4]]),
                                marks=() if _is_covering(*case) else pytest.mark.slow)
                   for case in SKELETON]


@pytest.mark.parametrize("backbone,layout_name,stream,tfam,graph_mode", SKELETON_PARAMS)
def test_forward_backward(backbone: str, layout_name: str, stream: str, tfam: bool, graph_mode: str) -> None:
    layout = get_layout(layout_name)
    cfg = make_config(dict(backbone=backbone, layout=layout_name, stream=stream, tfam=tfam, girl=False,
                           graph_mode=graph_mode, **TINY))
    with torch.random.fork_rng():  # model init and TFAM's perturbation draw from torch's generator
        model, opened = _build(cfg, layout)
        if tfam:
            assert {"tfam.beta_t", "tfam.beta_f"} <= set(opened), "TFAM must start as the identity"
        backbone_mod = model.backbone
        assert backbone_mod.out_channels == 4 * cfg.base_channels == backbone_mod.block_out_channels[-1]
        k = backbone_mod.graph.A.shape[0]  # (K, V, V)
        assert k == (2 if graph_mode == "distance" else 3), f"{graph_mode} graph has K = {k}"
        x = _batch(layout, stream, seed=1)
        assert x.shape == (N, 3, T, layout.num_joints)
        assert torch.isfinite(x).all()
        _check_forward_backward(model, x, layout.num_joints, tfam)


def test_tfam_starts_as_identity() -> None:
    """With β = 0 (its init) the TFAM model computes exactly what the plain backbone computes."""
    layout = get_layout("mp_pose")
    x = _batch(layout, "joint", seed=2)
    outs = []
    for tfam in (False, True):
        cfg = make_config(dict(layout="mp_pose", tfam=tfam, base_channels=4, num_blocks=3, clip_len=T))
        with torch.random.fork_rng():
            torch.manual_seed(0)  # same backbone init: TFAM is built after the backbone
            model = build_model(cfg, NUM_CLASSES, layout).eval()
        outs.append(model(x)[0])
    torch.testing.assert_close(outs[0], outs[1])


# ------------------------------------------------------------------------------------ GIRL

@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_girl_v2_training_step(backbone: str) -> None:
    """The trainer's objective (GIRL v2 past its warm-up and ramp, + TFAM's losses) on fixed groups:
    one backward, finite gradients, every parameter reached."""
    layout = get_layout("coco17")
    cfg = make_config(dict(backbone=backbone, layout="coco17", tfam=True, girl=True, girl_version=2,
                           girl_num_groups=2, girl_warmup=0, girl_ramp=0, girl_eta=0.5, **TINY))
    objective = build_loss(cfg)
    x = _batch(layout, "joint", seed=3)
    y = torch.arange(N) % NUM_CLASSES
    batch = Batch(x=x, y=y, index=torch.arange(N), subject=torch.tensor([0, 0, 1, 1]),
                  group=torch.tensor([0, 1, 0, 1]))
    with torch.random.fork_rng():
        model, _ = _build(cfg, layout)
        model.train()
        loss, parts = objective(model(x), batch, epoch=1.0)
        assert objective.girl_active(1.0)
        assert {"ce", "girl", "girl_var", "lambda_var", "wasserstein", "consistency"} <= set(parts)
        assert float(parts["lambda_var"]) == cfg.girl_lambda_var
        assert torch.isfinite(loss) and all(torch.isfinite(v).all() for v in parts.values())
        loss.backward()
    _assert_grads(model, "GIRL v2 step")


# ------------------------------------------------------------------------------------ RGB

@pytest.mark.parametrize("tfam", [False, True], ids=["plain", "tfam"])
@pytest.mark.parametrize("arch", sorted(RGB_ARCHS))
def test_rgb_forward_backward(arch: str, tfam: bool) -> None:
    cfg = make_config(dict(backbone=arch, tfam=tfam, girl=False, **RGB_TINY))
    x = torch.randn(N, cfg.frames, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(4))
    with torch.random.fork_rng():
        model, opened = _build(cfg, None)
        if tfam:
            assert {"tfam.beta_t", "tfam.beta_f"} <= set(opened), "TFAM must start as the identity"
        assert model.feat_channels == cfg.base_channels * 8 * (1 if arch == "tsm_r18" else 4)
        _check_forward_backward(model, x, 1, tfam)
