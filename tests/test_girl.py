"""Tests for GIRL: the properties docs/METHOD.md asks for, grouping modes and merging."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from piumr_skel.method.girl import GIRLoss, group_softmax, kmeans, margins, merge_small_groups, style_descriptor


def _batch(n: int = 24, k: int = 6, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, requires_grad=True)
    target = torch.randint(0, k, (n,), generator=g)
    style = torch.randn(n, d, generator=g)
    return logits, target, style


def test_single_group_infinite_tau_no_variance_is_mean_ce():
    logits, target, style = _batch()
    loss, stats = GIRLoss(num_groups=1, tau=1e6, lambda_var=0.0)(logits, target, style)
    expected = F.cross_entropy(logits, target)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert stats["group_sizes"] == [24]


def test_variance_is_zero_when_group_risks_are_equal():
    # Two subjects with identical samples: equal group risks, so V = 0 and L = mean R_g.
    logits, target, style = _batch(n=6)
    logits = torch.cat([logits, logits]).detach().requires_grad_()
    target, style = torch.cat([target, target]), torch.cat([style, style])
    subject = ["a"] * 6 + ["b"] * 6
    loss, stats = GIRLoss(grouping="subject", lambda_var=10.0)(logits, target, style, subject)
    assert stats["variance"] == pytest.approx(0.0, abs=1e-12)
    assert stats["group_risks"][0] == pytest.approx(stats["group_risks"][1], rel=1e-6)
    assert loss.item() == pytest.approx(stats["group_risks"][0], rel=1e-6)


def test_pairwise_variance_equals_population_variance_and_enters_loss():
    logits, target, style = _batch(n=32)
    crit = GIRLoss(num_groups=4, lambda_var=0.0, eta=0.0)
    gen = torch.Generator().manual_seed(3)
    loss0, stats = crit(logits, target, style, generator=gen)
    risks = torch.tensor(stats["group_risks"])
    assert len(risks) > 1
    assert stats["variance"] == pytest.approx(float(risks.var(correction=0)), rel=1e-5)
    assert loss0.item() == pytest.approx(float(risks.mean()), rel=1e-5)
    crit.lambda_var, crit.eta = 2.0, 0.5
    loss1, _ = crit(logits, target, style, generator=torch.Generator().manual_seed(3))
    expected = risks.mean() + 2.0 * risks.var(correction=0) + 0.5 * risks.max()
    assert loss1.item() == pytest.approx(float(expected), rel=1e-5)


def test_group_weights_sum_to_one_and_favour_small_margins():
    logits, target, _ = _batch(n=20)
    groups = torch.tensor([0, 1, 2] * 6 + [0, 1])
    m = margins(logits.detach(), target)
    w = group_softmax(-m, groups, 3)
    sums = torch.zeros(3).index_add_(0, groups, w)
    torch.testing.assert_close(sums, torch.ones(3))
    in0 = groups == 0
    assert w[in0].argmax() == m[in0].argmin()


def test_margins_definition():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    torch.testing.assert_close(margins(logits, torch.tensor([0, 2])), torch.tensor([1.0, -4.0]))


def test_finite_gradients_for_confident_correct_batch():
    n, k = 16, 5
    target = torch.arange(n) % k
    logits = (F.one_hot(target, k).float() * 80.0 - 40.0).requires_grad_()
    style = torch.randn(n, 4, generator=torch.Generator().manual_seed(1))
    loss, _ = GIRLoss(num_groups=4)(logits, target, style, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_subject_grouping_uses_ids_and_merges_singletons():
    logits, target, _ = _batch(n=9)
    # Style places subject "c"'s single sample next to subject "b"'s samples.
    style = torch.tensor([[0.0, 0.0]] * 4 + [[10.0, 10.0]] * 4 + [[9.0, 9.5]])
    subject = ["a"] * 4 + ["b"] * 4 + ["c"]
    crit = GIRLoss(grouping="subject")
    groups = crit.assign_groups(style, subject)
    assert groups[:4].unique().numel() == 1 and groups[4:].unique().numel() == 1
    assert groups[0] != groups[4]
    _, stats = crit(logits, target, style, subject)
    assert sorted(stats["group_sizes"]) == [4, 5]
    with pytest.raises(ValueError, match="subject ids"):
        crit(logits, target, style)


def test_merge_small_groups_all_singletons_become_one_group():
    labels = merge_small_groups(torch.arange(5), torch.randn(5, 3, generator=torch.Generator()))
    assert labels.tolist() == [0] * 5


def test_kmeans_separates_clusters_and_is_reproducible():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    x = (centres[:, None] + torch.randn(3, 10, 2, generator=g)).reshape(30, 2)
    lab1, _ = kmeans(x, 3, generator=torch.Generator().manual_seed(5))
    lab2, _ = kmeans(x, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(lab1, lab2)
    for c in range(3):
        assert lab1[c * 10:(c + 1) * 10].unique().numel() == 1
    assert lab1.unique().numel() == 3


@pytest.mark.parametrize("grouping", ["kmeans", "random"])
def test_every_group_has_two_samples_even_for_tiny_batches(grouping):
    logits, target, style = _batch(n=5)
    crit = GIRLoss(num_groups=4, grouping=grouping)
    _, stats = crit(logits, target, style, generator=torch.Generator().manual_seed(0))
    assert sum(stats["group_sizes"]) == 5 and min(stats["group_sizes"]) >= 2


def test_random_grouping_is_balanced_and_seeded():
    _, _, style = _batch(n=16)
    crit = GIRLoss(num_groups=4, grouping="random")
    a = crit.assign_groups(style, generator=torch.Generator().manual_seed(1))
    b = crit.assign_groups(style, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.bincount(a).tolist() == [4, 4, 4, 4]


def test_style_descriptor_shape_values_detached():
    feats = torch.randn(3, 5, 7, 4, requires_grad=True)
    s = style_descriptor(feats)
    assert s.shape == (3, 10) and not s.requires_grad
    torch.testing.assert_close(s[:, :5], feats.detach().mean((2, 3)))
    torch.testing.assert_close(s[:, 5:], feats.detach().flatten(2).std(2, correction=0))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="grouping"):
        GIRLoss(grouping="people")
    logits, target, style = _batch(n=4)
    with pytest.raises(ValueError, match="logits"):
        GIRLoss()(logits, target[:3], style)
