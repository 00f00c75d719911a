"""Every registered backbone × layout × stream × TFAM on/off, built by the trainer's own build_model.

One forward and backward each (timm's rule): logits shape, no NaN, and every parameter gets a
finite, non-zero gradient.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from piumr_skel.config import make_config
from piumr_skel.layouts import LAYOUTS, get_layout
from piumr_skel.models import BACKBONES
from piumr_skel.build import build_model
from piumr_skel.transforms import STREAMS, normalize_clip, to_stream

NUM_CLASSES = 5
T = 16  # two stride-2 stages leave T' = 4 frames for TFAM and the head
N = 4


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


CASES = [(b, lay, s, tfam) for b in sorted(BACKBONES) for lay in sorted(LAYOUTS) for s in STREAMS
         for tfam in (False, True)]


@pytest.mark.parametrize("backbone,layout_name,stream,tfam", CASES,
                         ids=[f"{b}-{lay}-{s}-{'tfam' if t else 'plain'}" for b, lay, s, t in CASES])
def test_forward_backward(backbone: str, layout_name: str, stream: str, tfam: bool) -> None:
    layout = get_layout(layout_name)
    cfg = make_config(dict(backbone=backbone, layout=layout_name, stream=stream, tfam=tfam, girl=False,
                           base_channels=8, num_blocks=3, clip_len=T, tfam_iters=5, tfam_anchors=4))
    with torch.random.fork_rng():  # model init and TFAM's perturbation draw from torch's generator
        torch.manual_seed(0)
        model = build_model(cfg, NUM_CLASSES, layout)
        opened = _open_zero_gates(model)
        if tfam:
            assert {"tfam.beta_t", "tfam.beta_f"} <= set(opened), "TFAM must start as the identity"
        x = _batch(layout, stream, seed=1)
        assert x.shape == (N, 3, T, layout.num_joints)
        assert torch.isfinite(x).all()
        # Train mode is the path that matters; but there a train-mode BatchNorm subtracts the batch
        # mean, so a conv bias feeding straight into it gets an exactly-zero gradient by construction.
        # An eval-mode pass (BN on running statistics) shows those biases are still connected.
        nonzero: set[str] = set()
        for train_mode in (True, False):
            model.train(train_mode)
            model.zero_grad(set_to_none=True)
            logits, feats, aux = model(x)
            assert logits.shape == (N, NUM_CLASSES)
            assert feats.dim() == 4 and feats.shape[0] == N and feats.shape[3] == layout.num_joints
            assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
            assert set(aux) == ({"wasserstein", "consistency"} if tfam else set())
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(N) % NUM_CLASSES)
            loss = loss + sum(aux.values(), torch.zeros(()))
            loss.backward()
            missing = [n for n, p in model.named_parameters() if p.grad is None]
            assert not missing, f"parameters without a gradient (train={train_mode}): {missing}"
            bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
            assert not bad, f"non-finite gradients (train={train_mode}): {bad}"
            nonzero |= {n for n, p in model.named_parameters() if float(p.grad.abs().sum()) > 0.0}
    zero = [n for n, _ in model.named_parameters() if n not in nonzero]
    assert not zero, f"parameters whose gradient is exactly zero in train and eval mode: {zero}"

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
