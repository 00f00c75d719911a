"""Tests for TFAM: Sinkhorn marginals, DCT, identity at init, gradients, train/eval, dtypes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from piumr_skel.method.tfam import TFAM, dct_matrix, interp_matrix, sinkhorn_log, std_mean_over_time


def _features(n: int = 2, c: int = 8, t: int = 16, v: int = 3, seed: int = 0) -> torch.Tensor:
    """Smooth random trajectories (N, C, T, V), like features after temporal convolutions."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, t, v, generator=g).cumsum(2) / t ** 0.5


def _tfam(c: int = 8, **kw) -> TFAM:
    torch.manual_seed(0)  # parameter init only
    return TFAM(c, **kw)


@pytest.mark.parametrize("smooth", [False, True])
def test_sinkhorn_marginals_hold_to_one_percent(smooth):
    # Realistic costs: layer-normed 128-channel features against the module's own anchors.
    tfam = _tfam(128)
    x = _features(n=4, c=128, t=32, v=5)
    if not smooth:
        x = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    cost = tfam.alignment_cost(x).reshape(-1, 32, 16)
    plan = sinkhorn_log(cost, eps=0.1, iters=20)
    assert plan.shape == (20, 32, 16) and (plan >= 0).all()
    rows, cols = plan.sum(2) * 32, plan.sum(1) * 16
    assert (rows - 1).abs().max() < 0.01
    assert (cols - 1).abs().max() < 1e-4


def test_sinkhorn_one_step_gradient_close_to_unrolled():
    # On realistic (layer-normed, 128-channel) costs the default one-step gradient of 20 iterations
    # points the same way as backpropagation through 200 unrolled iterations.
    cost = _tfam(128).alignment_cost(_features(n=2, c=128, t=32, v=3)).reshape(-1, 32, 16).detach()
    weights = torch.randn(cost.shape, generator=torch.Generator().manual_seed(1))
    grads = []
    for iters, unroll in ((20, False), (200, True)):
        c = cost.clone().requires_grad_()
        (sinkhorn_log(c, 0.1, iters, unroll=unroll) * weights).sum().backward()
        grads.append(c.grad.flatten())
    assert F.cosine_similarity(grads[0], grads[1], dim=0) > 0.98


def test_sinkhorn_plan_is_order_preserving_with_position_term_only():
    t, s = 20, 5
    tt = torch.arange(1, t + 1) / t
    ss = torch.arange(1, s + 1) / s
    cost = ((tt[:, None] - ss[None, :]) ** 2)[None] * 10
    plan = sinkhorn_log(cost, 0.01, 200)[0]
    assigned = plan.argmax(1)
    assert (assigned[1:] >= assigned[:-1]).all()


def test_dct_round_trip_and_orthonormal():
    for t in (1, 7, 32):
        d = dct_matrix(t, torch.device("cpu"), torch.float64)
        torch.testing.assert_close(d.T @ d, torch.eye(t, dtype=torch.float64))
        x = torch.randn(3, t, dtype=torch.float64)
        torch.testing.assert_close((d.T @ (d @ x.T)).T, x)
    d = dct_matrix(8, torch.device("cpu"), torch.float32)
    assert d is dct_matrix(8, torch.device("cpu"), torch.float32)  # cached
    # Row 0 is the (scaled) mean: a constant signal has only a DC coefficient.
    spec = d @ torch.ones(8)
    assert spec[0] == pytest.approx(8 ** 0.5) and spec[1:].abs().max() < 1e-6


def test_interp_matrix_matches_f_interpolate():
    z = torch.randn(2, 3, 5)
    expected = F.interpolate(z, size=11, mode="linear", align_corners=True)
    torch.testing.assert_close(z @ interp_matrix(11, 5, torch.device("cpu"), torch.float32).T, expected)


@pytest.mark.parametrize("train", [False, True])
def test_identity_at_init(train):
    tfam = _tfam(8, p=1.0)
    tfam.train(train)
    x = _features()
    y, aux = tfam(x)
    assert torch.equal(y, x)
    assert set(aux) == {"wasserstein", "consistency"}
    assert torch.isfinite(aux["wasserstein"]) and aux["wasserstein"] > 0
    assert 0 <= aux["consistency"] <= 2


class _TinyNet(nn.Module):
    """conv -> TFAM -> temporal conv -> global pool -> fc: TFAM followed by temporal processing."""

    def __init__(self, tfam: TFAM) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, 8, 1)
        self.tfam = tfam
        self.tcn = nn.Conv2d(8, 8, (5, 1), padding=(2, 0))
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y, aux = self.tfam(self.inp(x))
        return self.fc(F.relu(self.tcn(y)).mean((2, 3))), aux


def test_nonzero_beta_changes_backbone_output_and_gradients_reach_everything():
    net = _TinyNet(_tfam(8, p=1.0))
    net.tfam.generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, 5, generator=torch.Generator().manual_seed(2))
    net.eval()
    out0, _ = net(x)
    with torch.no_grad():
        net.tfam.beta_t.fill_(0.5)
        net.tfam.beta_f.fill_(0.5)
    out1, _ = net(x)
    assert (out1 - out0).abs().max() > 1e-3

    net.train()
    out, aux = net(x)
    loss = out.logsumexp(1).mean() + 0.1 * aux["wasserstein"] + 0.1 * aux["consistency"]
    loss.backward()
    for name, p in net.tfam.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_train_perturbation_uses_generator():
    tfam = _tfam(8, p=1.0)
    with torch.no_grad():
        tfam.beta_f.fill_(1.0)
    x = _features(n=4)
    tfam.eval()
    ya, _ = tfam(x)
    yb, _ = tfam(x)
    assert torch.equal(ya, yb)
    assert tfam.running_sigma.numel() == 0  # no statistics updated in eval

    tfam.train()
    tfam.generator = torch.Generator().manual_seed(7)
    y1, _ = tfam(x)
    tfam.generator = torch.Generator().manual_seed(7)
    y2, _ = tfam(x)
    y3, _ = tfam(x)
    assert torch.equal(y1, y2) and not torch.equal(y2, y3)
    assert not torch.allclose(y1, ya)
    assert tfam.running_sigma.shape == (16, 3)

    tfam.p = 0.0  # never perturbed: training output equals eval output
    y4, _ = tfam(x)
    torch.testing.assert_close(y4, ya)


def test_running_sigma_ema_and_state_dict_round_trip():
    tfam = _tfam(8, p=0.0)
    x1, x2 = _features(n=4, seed=1), _features(n=4, seed=2) * 3
    tfam(x1)
    first = tfam.running_sigma.clone()
    tfam(x2)
    sigma2 = torch.einsum("kt,nctv->nckv", dct_matrix(16, torch.device("cpu"), torch.float32),
                          x2).abs().mean(1).std(0, correction=0)
    torch.testing.assert_close(tfam.running_sigma, 0.9 * first + 0.1 * sigma2)
    fresh = _tfam(8)
    fresh.load_state_dict(tfam.state_dict())
    torch.testing.assert_close(fresh.running_sigma, tfam.running_sigma)


@pytest.mark.parametrize("t", [4, 16, 33])
def test_shapes_rgb_case_and_any_frame_count(t):
    tfam = _tfam(8, num_frames=16)
    with torch.no_grad():
        tfam.beta_t.fill_(1.0)
        tfam.beta_f.fill_(1.0)
    x = torch.randn(3, 8, t, 1, generator=torch.Generator().manual_seed(0))  # (N, C, T, V=1)
    y, aux = tfam(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert aux["wasserstein"].shape == () and aux["consistency"].shape == ()


def test_joint_anchors():
    tfam = _tfam(8, joint_anchors=True, num_joints=3)
    assert tfam.anchors.shape == (3, 16, 8)
    y, aux = tfam(_features())
    assert y.shape == (2, 8, 16, 3) and torch.isfinite(aux["wasserstein"])
    with pytest.raises(ValueError, match="num_joints"):
        tfam(_features(v=4))
    with pytest.raises(ValueError, match="num_joints"):
        TFAM(8, joint_anchors=True)


def test_autocast_bf16_cpu():
    tfam = _tfam(8, p=1.0)
    with torch.no_grad():
        tfam.beta_t.fill_(1.0)
        tfam.beta_f.fill_(1.0)
    x = _features().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, aux = tfam(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    assert aux["wasserstein"].dtype == torch.float32
    (y.float().sum() + aux["wasserstein"]).backward()
    assert torch.isfinite(tfam.anchors.grad).all() and torch.isfinite(x.grad.float()).all()


def test_bad_input_shape_raises():
    with pytest.raises(ValueError, match=r"\(N, 8, T, V\)"):
        _tfam(8)(torch.randn(2, 4, 16, 3))


def test_std_mean_over_time_is_torch_std_mean_on_slices() -> None:
    # TFAM feeds it non-contiguous halves of one (N, C, 2T, V) tensor; values and gradients agree.
    y = torch.randn(3, 5, 12, 7, dtype=torch.float64)
    y[0, 1, :6, 2] = 0.5                      # a constant trajectory: std 0, gradient 0 (not NaN)
    y.requires_grad_(True)
    z, _ = y.split(6, dim=2)
    ours = std_mean_over_time(z)
    ref = torch.std_mean(z, dim=2, correction=0)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    g_ours = torch.autograd.grad(sum(t.sum() for t in ours), y)[0]
    g_ref = torch.autograd.grad(sum(t.sum() for t in ref), y)[0]
    torch.testing.assert_close(g_ours, g_ref)
    assert torch.isfinite(g_ours).all() and ours[0][0, 1, 2] == 0
