"""GIRL v2 (docs/METHOD.md): bounded boundary weights, epoch groups, annealed variance, GroupDRO,
and the training objective that switches it on after the warm-up."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from piumr_skel.engine.config import make_config
from piumr_skel.engine.losses import Batch, TrainLoss, ramp
from piumr_skel.method.girl import GIRLossV2, assign_epoch_groups, boundary_weights, input_descriptors, margins


def _batch(n: int = 24, k: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 3
    target = torch.randint(0, k, (n,), generator=g)
    groups = torch.arange(n) % 4
    return logits, target, groups


def test_beta_zero_no_variance_is_mean_ce_for_any_number_of_groups():
    logits, target, groups = _batch()
    for g, ids in ((1, torch.zeros_like(groups)), (4, groups)):
        loss, _ = GIRLossV2(num_groups=g, beta=0.0, lambda_var=0.0)(logits, target, ids)
        torch.testing.assert_close(loss, F.cross_entropy(logits, target))


def test_weights_sum_to_one_per_group_and_are_bounded():
    logits, target, groups = _batch(n=64)
    for beta in (0.5, 1.0, 3.0):
        w = boundary_weights(margins(logits, target), groups, 4, tau=1.0, beta=beta)
        sums = torch.zeros(4).index_add_(0, groups, w)
        torch.testing.assert_close(sums, torch.ones(4))
        for g in range(4):
            wg = w[groups == g]
            assert float(wg.max() / wg.min()) <= 1 + beta + 1e-5


def test_boundary_sample_weighs_more_than_confident_one():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0], [-10.0, 10.0]])
    target = torch.tensor([0, 0, 0])
    w = boundary_weights(margins(logits, target), torch.zeros(3, dtype=torch.long), 1)
    assert w[0] > w[1] and w[0] > w[2]


def test_variance_zero_when_group_risks_equal():
    logits = torch.randn(4, 3).repeat(2, 1)
    target = torch.tensor([0, 1, 2, 0]).repeat(2)
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    _, stats = GIRLossV2(num_groups=2)(logits, target, groups)
    assert stats["variance"] == pytest.approx(0.0, abs=1e-10)


def test_finite_gradients_when_everything_is_right_by_a_large_margin():
    target = torch.arange(8) % 4
    logits = (F.one_hot(target, 4).float() * 200.0).requires_grad_()
    loss, _ = GIRLossV2(num_groups=2, eta=1.0)(logits, target, torch.arange(8) % 2)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_groupdro_weights_move_towards_the_worse_group_and_persist_in_state_dict():
    logits, target, _ = _batch(n=16)
    groups = torch.tensor([0] * 8 + [1] * 8)
    logits = logits.clone()
    logits[:8] = F.one_hot(target[:8], 5).float() * 10   # group 0 easy, group 1 random
    crit = GIRLossV2(num_groups=2, eta=1.0, eta_q=0.5).train()
    for _ in range(5):
        crit(logits, target, groups)
    assert crit.q[1] > crit.q[0]
    other = GIRLossV2(num_groups=2, eta=1.0)
    other.load_state_dict(crit.state_dict())
    torch.testing.assert_close(other.q, crit.q)


def test_epoch_groups_are_a_pure_function_of_descriptors_seed_and_epoch():
    d = torch.randn(50, 6, generator=torch.Generator().manual_seed(1))
    a = assign_epoch_groups("input", 4, seed=3, epoch=5, descriptors=d)
    b = assign_epoch_groups("input", 4, seed=3, epoch=5, descriptors=d.clone())
    assert torch.equal(a, b) and a.shape == (50,) and int(a.max()) < 4
    r = assign_epoch_groups("random", 4, seed=3, epoch=5, n=50)
    assert torch.equal(r, assign_epoch_groups("random", 4, seed=3, epoch=5, n=50))
    assert torch.bincount(r).tolist() == [13, 13, 12, 12]
    s = assign_epoch_groups("subject", 4, seed=0, epoch=0, subjects=np.array(["b", "a", "b"]))
    assert s.tolist() == [1, 0, 1]


def test_input_descriptors_separate_people_by_physique():
    from piumr_skel.skeleton.layouts import get_layout

    layout = get_layout("coco17")
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, layout.num_joints, 3)).astype(np.float32)
    clips = []
    for person_scale in (1.0, 1.6):
        for _ in range(5):
            clip = np.repeat(base, 20, axis=0) * person_scale
            clip[..., :2] += rng.normal(scale=0.01, size=clip[..., :2].shape)
            clips.append(clip)
    d = input_descriptors(clips, layout)
    labels = assign_epoch_groups("input", 2, seed=0, epoch=0, descriptors=torch.from_numpy(d))
    assert len(set(labels[:5].tolist())) == 1 and len(set(labels[5:].tolist())) == 1
    assert labels[0] != labels[5]


def test_objective_is_plain_ce_in_warmup_then_ramps_lambda():
    cfg = make_config({"girl": True, "tfam": False, "girl_version": 2, "girl_warmup": 2, "girl_ramp": 4,
                       "epochs": 10, "girl_num_groups": 4})
    from piumr_skel.engine.build import build_loss

    objective = build_loss(cfg)
    assert isinstance(objective, TrainLoss)
    logits, target, groups = _batch()
    batch = Batch(x=torch.zeros(1), y=target, index=torch.arange(24), group=groups)
    loss, parts = objective((logits, torch.zeros(24, 2, 3, 1), {}), batch, 1.5)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))
    assert "girl" not in parts
    _, parts = objective((logits, torch.zeros(24, 2, 3, 1), {}), batch, 4.0)
    assert float(parts["lambda_var"]) == pytest.approx(0.5)        # 2 of 4 ramp epochs done
    assert ramp(10.0, 4) == 1.0


def test_v1_groupings_are_refused_for_v2_and_back():
    from piumr_skel.engine.config import ConfigError

    with pytest.raises(ConfigError, match="girl_groups"):
        make_config({"girl_version": 2, "girl_groups": "kmeans"})
    with pytest.raises(ConfigError, match="girl_groups"):
        make_config({"girl_version": 1, "girl_groups": "input"})
