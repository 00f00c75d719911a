"""TFAM, the Temporal-Frequency Alignment Module: Sinkhorn alignment to a learned timeline plus
variance-guided DCT perturbation, fused by trajectory consistency (docs/METHOD.md, our reconstruction).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TFAM", "sinkhorn_log", "dct_matrix", "interp_matrix"]


@functools.lru_cache(maxsize=64)
def dct_matrix(T: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Orthonormal DCT-II matrix D of shape (T, T): F = D x along time, x = Dᵀ F.

    D[k, t] = sqrt(2/T) · c_k · cos(π (t + 1/2) k / T), c_0 = 1/sqrt(2), c_k = 1 otherwise.
    Cached per (T, device, dtype) because TFAM calls it every step; built in float64 so the
    round trip DᵀD = I holds to the precision of `dtype`. The cached tensor must not be
    modified in place.
    """
    if T < 1:
        raise ValueError(f"dct_matrix: T must be >= 1, got {T}")
    t = torch.arange(T, dtype=torch.float64)
    k = t[:, None]
    d = torch.cos(math.pi * (t[None, :] + 0.5) * k / T) * math.sqrt(2.0 / T)
    d[0] /= math.sqrt(2.0)
    return d.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def interp_matrix(size_out: int, size_in: int, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Linear interpolation matrix I of shape (size_out, size_in), y = I x along time.

    Identical to `F.interpolate(mode="linear", align_corners=True)`: the first and last points of
    the canonical timeline map onto the first and last output frames. Cached like `dct_matrix`.
    """
    eye = torch.eye(size_in, dtype=torch.float64)[None]             # (1, size_in, size_in)
    mat = F.interpolate(eye, size=size_out, mode="linear", align_corners=True)[0]  # (in, out)
    return mat.t().contiguous().to(device=device, dtype=dtype)


def _sinkhorn_iterations(log_k: Tensor, log_a: float, log_b: float, iters: int,
                         v: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Log-domain Sinkhorn updates on log K (B, T, S); returns potentials u (B, T, 1), v (B, 1, S)."""
    if v is None:
        v = log_k.new_zeros(log_k.shape[0], 1, log_k.shape[2])
    u = log_k.new_zeros(log_k.shape[0], log_k.shape[1], 1)
    for _ in range(iters):
        u = log_a - torch.logsumexp(log_k + v, dim=2, keepdim=True)
        v = log_b - torch.logsumexp(log_k + u, dim=1, keepdim=True)
    return u, v


def sinkhorn_log(cost: Tensor, eps: float, iters: int, *, unroll: bool = False) -> Tensor:
    """Entropic OT plan with uniform marginals (1/T, 1/S) by log-domain Sinkhorn.

    cost: (B, T, S), every batch entry solved at once. Returns the plan Π (B, T, S), whose columns
    sum exactly to 1/S (the last update is the column one) and whose rows sum to 1/T up to the
    Sinkhorn residual (< 1% for layer-normed costs with eps = 0.1, iters = 20).

    Gradients: with `unroll=False` (default) the first `iters - 1` iterations run without autograd
    and only the last one is differentiated ("one-step differentiation", Bolte et al., NeurIPS
    2023). For a contractive fixed-point iteration such as Sinkhorn this approximates the implicit
    gradient at a fraction of the memory of unrolling: the (B, T, S) intermediates of 20 iterations
    would otherwise all be kept for backward. `unroll=True` backpropagates through every iteration.
    The computation runs in float32 (or float64 for float64 input) with autocast disabled, because
    exp/logsumexp of cost/eps in bf16 loses the marginals.
    """
    if cost.dim() != 3:
        raise ValueError(f"sinkhorn_log: cost must be (B, T, S), got shape {tuple(cost.shape)}")
    if eps <= 0 or iters < 1:
        raise ValueError(f"sinkhorn_log: need eps > 0 and iters >= 1, got eps={eps}, iters={iters}")
    dtype = torch.promote_types(cost.dtype, torch.float32)
    with torch.autocast(device_type=cost.device.type, enabled=False):
        log_k = -cost.to(dtype) / eps
        T, S = log_k.shape[1], log_k.shape[2]
        log_a, log_b = -math.log(T), -math.log(S)
        if unroll or not torch.is_grad_enabled():
            u, v = _sinkhorn_iterations(log_k, log_a, log_b, iters)
        else:
            with torch.no_grad():
                _, v = _sinkhorn_iterations(log_k.detach(), log_a, log_b, iters - 1)
            u, v = _sinkhorn_iterations(log_k, log_a, log_b, 1, v=v)
        return torch.exp(log_k + u + v)


def std_mean_over_time(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Population std and mean over dim 2 (time) of (N, C, T, V): torch.std_mean(x, 2, correction=0).

    Written as two passes because torch's CPU kernel for a short middle-dim reduction is ~20×
    slower at TFAM's sizes (24.6 against 1.1 ms for (16, 64, 8, 35) slices); same values to 1e-7.
    """
    mean = x.mean(2)
    var = (x - mean.unsqueeze(2)).pow(2).mean(2)
    # Where the variance is 0 the std is 0 with a zero gradient, as torch's (sqrt alone gives NaN).
    std = torch.where(var > 0, var.clamp_min(torch.finfo(var.dtype).tiny).sqrt(), torch.zeros_like(var))
    return std, mean


class TFAM(nn.Module):
    """Temporal-Frequency Alignment Module: (N, C, T, V) -> (N, C, T, V) plus auxiliary losses.

    Temporal branch: each joint trajectory x_t = X[n, :, t, v] is aligned to S learned, ordered
    anchors P by entropic OT with cost ||LN(x_t) - LN(p_s)||² / C + γ (t/T - s/S)², projected
    barycentrically onto the canonical timeline (Z = S · Πᵀ x, (N, C, S, V)) and interpolated back
    to T evenly spaced canonical times (Z_T). Frequency branch: DCT-II along time, amplitude
    a[n, k, v] = mean_c |F|, batch std σ[k, v] guides a random multiplicative perturbation of the
    spectrum during training, a learned gate sigmoid(w[k]) re-weights it, inverse DCT gives X_F.
    Fusion: per-(n, v) softmax weights from an MLP on trajectory descriptors, residual with learned
    scalars β_T = β_F = 0 at init, so TFAM starts as the exact identity.

    Args:
        channels: C.
        num_anchors: S, points of the canonical timeline.
        gamma: weight γ of the order-preserving position term.
        sinkhorn_eps, sinkhorn_iters: entropic regularisation ε and iterations L.
        alpha: perturbation strength α.
        p: probability that a training batch is perturbed.
        joint_anchors: one anchor sequence per joint, (V, S, C), instead of one shared (S, C).
        num_joints: V; required with `joint_anchors`.
        num_frames: T the spectral gate is built for; w has that many coefficients. The Recognizer
            only learns T at run time, so an input with another T uses w linearly resampled over
            the normalised frequency axis (align_corners=True: DC maps to DC, Nyquist to Nyquist).
            The default 32 is T = 64 after one stride-2 stage.

    The random perturbation (the Bernoulli(p) decision and ε) uses `self.generator` when set to a
    torch.Generator, else torch's default generator.
    """

    def __init__(self, channels: int, *, num_anchors: int = 16, gamma: float = 1.0,
                 sinkhorn_eps: float = 0.1, sinkhorn_iters: int = 20, alpha: float = 0.5,
                 p: float = 0.5, joint_anchors: bool = False, num_joints: int | None = None,
                 num_frames: int = 32) -> None:
        super().__init__()
        if channels < 1 or num_anchors < 1 or num_frames < 1:
            raise ValueError(f"TFAM: channels, num_anchors and num_frames must be >= 1, got "
                             f"{channels}, {num_anchors}, {num_frames}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"TFAM: p must be a probability in [0, 1], got {p}")
        if joint_anchors and not num_joints:
            raise ValueError("TFAM: joint_anchors=True needs num_joints (V)")
        self.channels = channels
        self.num_anchors = num_anchors
        self.gamma = gamma
        self.sinkhorn_eps = sinkhorn_eps
        self.sinkhorn_iters = sinkhorn_iters
        self.alpha = alpha
        self.p = p
        self.joint_anchors = joint_anchors
        self.num_joints = num_joints
        self.num_frames = num_frames
        self.generator: torch.Generator | None = None

        shape = (num_joints, num_anchors, channels) if joint_anchors and num_joints else (num_anchors, channels)
        # Only the direction of an anchor matters (it is layer-normed in the cost); the position
        # term, not the initial values, gives the anchors their order.
        self.anchors = nn.Parameter(torch.randn(shape))
        # w = +3: sigmoid(3) = 0.95, the gate starts almost open.
        self.gate = nn.Parameter(torch.full((num_frames,), 3.0))
        hidden = max(1, channels // 4)
        self.fusion = nn.Sequential(nn.Linear(4 * channels + 1, hidden), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, 2))
        self.beta_t = nn.Parameter(torch.zeros(()))
        self.beta_f = nn.Parameter(torch.zeros(()))
        # Running σ[k, v] for logging. Its shape (K, V) is known only from the first training batch,
        # so it starts empty and `_load_from_state_dict` accepts any saved shape.
        self.register_buffer("running_sigma", torch.zeros(0))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, num_anchors={self.num_anchors}, gamma={self.gamma}, "
                f"eps={self.sinkhorn_eps}, iters={self.sinkhorn_iters}, alpha={self.alpha}, "
                f"p={self.p}, joint_anchors={self.joint_anchors}, num_frames={self.num_frames}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        key = prefix + "running_sigma"
        if key in state_dict:
            self.running_sigma = torch.empty_like(state_dict[key], device=self.running_sigma.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----------------------------------------------------------------------------- temporal
    def alignment_cost(self, x: Tensor) -> Tensor:
        """Cost M (N, V, T, S) between layer-normed frames x_t and anchors p_s, plus position term.

        Uses ||a - b||² = |a|² + |b|² - 2 a·b so no (N, V, T, S, C) tensor is built.
        """
        N, C, T, V = x.shape
        xn = F.layer_norm(x.permute(0, 3, 2, 1), (C,))                   # (N, V, T, C)
        pn = F.layer_norm(self.anchors.to(x.dtype), (C,))                # (S, C) or (V, S, C)
        if self.joint_anchors:
            if V != self.num_joints:
                raise ValueError(f"TFAM: built with num_joints={self.num_joints} joint anchors, "
                                 f"got input with V={V}")
            cross = torch.einsum("nvtc,vsc->nvts", xn, pn)
            p_sq = pn.pow(2).sum(-1)[None, :, None, :]                  # (1, V, 1, S)
        else:
            cross = torch.einsum("nvtc,sc->nvts", xn, pn)
            p_sq = pn.pow(2).sum(-1)                                     # (S,)
        x_sq = xn.pow(2).sum(-1, keepdim=True)                           # (N, V, T, 1)
        feat = (x_sq + p_sq - 2.0 * cross).clamp_min(0.0) / C
        S = self.num_anchors
        t = torch.arange(1, T + 1, device=x.device, dtype=x.dtype) / T
        s = torch.arange(1, S + 1, device=x.device, dtype=x.dtype) / S
        return feat + self.gamma * (t[:, None] - s[None, :]).pow(2)

    def temporal_operator(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (N, C, T, V) -> time map A_T (N, V, T, T), plan Π (N, V, T, S), L_W (scalar).

        Z_T = A_T x along time, with A_T = I_{S→T} · S Πᵀ: barycentric projection onto the S
        anchors followed by linear interpolation back to T evenly spaced canonical times.
        """
        N, C, T, V = x.shape
        S = self.num_anchors
        cost = self.alignment_cost(x)                                     # (N, V, T, S)
        plan = sinkhorn_log(cost.reshape(N * V, T, S), self.sinkhorn_eps,
                            self.sinkhorn_iters).reshape(N, V, T, S)
        loss_w = (plan * cost).sum((2, 3)).mean()
        interp = interp_matrix(T, S, x.device, x.dtype)                  # (T_out, S)
        op = S * torch.einsum("us,nvts->nvut", interp, plan)            # (N, V, T_out, T_in)
        return op, plan, loss_w

    # ---------------------------------------------------------------------------- frequency
    def _gate(self, K: int, dtype: torch.dtype) -> Tensor:
        """Gate sigmoid(w) resampled to K coefficients: (K,)."""
        w = self.gate.to(dtype)
        if K != w.numel():
            w = F.interpolate(w[None, None], size=K, mode="linear", align_corners=True)[0, 0]
        return torch.sigmoid(w)

    def _coin(self) -> bool:
        """Bernoulli(p) decision for one batch, drawn on the generator's device (CPU by default,
        which avoids a device sync on GPU)."""
        g = self.generator
        where = g.device if g is not None else torch.device("cpu")
        return bool(torch.rand((), generator=g, device=where).item() < self.p)

    def _normal(self, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
        """Standard normal draw from `self.generator` (moved to `device`) or the default generator."""
        g = self.generator
        where = g.device if g is not None else device
        return torch.randn(shape, generator=g, device=where).to(device=device, dtype=dtype)

    def frequency_operator(self, x: Tensor) -> Tensor:
        """x (N, C, T, V) -> time map A_F (N, V, T, T), or (1, 1, T, T) when nothing is perturbed.

        X_F = Dᵀ (g ⊙ F̃) with F = D x and F̃ = F · (1 + α ε σ̂): the perturbation scales a whole
        coefficient (n, k, v) at once, shared over channels, so X_F = A_F x along time with
        A_F = Dᵀ diag(g · (1 + α ε σ̂)) D. The spectrum F itself is needed only for σ (no gradient).
        """
        N, C, T, V = x.shape
        d = dct_matrix(T, x.device, x.dtype)                              # (K, T), K = T
        scale = self._gate(T, x.dtype)[None, None, :]                    # (1, 1, K)
        if self.training:
            with torch.no_grad():
                amp = torch.einsum("kt,nctv->nckv", d, x).abs().mean(1)  # (N, K, V)
                # Population std so a batch of one gives σ = 0 (no perturbation), not NaN.
                sigma = amp.std(0, correction=0)                          # (K, V)
                self._update_running_sigma(sigma)
            if self.p > 0 and self._coin():
                sigma_hat = (sigma / (sigma.mean() + 1e-6)).t()           # (V, K)
                noise = self._normal((N, V, T), x.device, x.dtype)        # ε per (n, v, k)
                scale = scale * (1.0 + self.alpha * noise * sigma_hat)    # (N, V, K)
        return torch.einsum("ku,nvk,kt->nvut", d, scale, d)

    @torch.no_grad()
    def _update_running_sigma(self, sigma: Tensor) -> None:
        if self.running_sigma.shape != sigma.shape:
            # First batch, or T / V changed: restart the estimate from this batch.
            self.running_sigma = sigma.detach().clone().to(self.running_sigma.dtype)
        else:
            self.running_sigma.lerp_(sigma.to(self.running_sigma.dtype), 0.1)

    # ------------------------------------------------------------------------------- fusion
    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """x (N, C, T, V) -> (y (N, C, T, V) in x's dtype, {"wasserstein": L_W, "consistency": L_C}).

        Both branches are linear maps along time per (n, v), so Z_T and X_F come out of one batched
        matmul of x with the stacked (T, T) maps; the full-size feature tensor is touched a few
        times only. Runs in float32 with autocast off (float64 stays float64): the Sinkhorn needs
        it, and mixed precision would save little on this one layer.
        """
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"TFAM: expected input (N, {self.channels}, T, V), got {tuple(x.shape)}")
        in_dtype = x.dtype
        N, C, T, V = x.shape
        dtype = torch.promote_types(in_dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.to(dtype)
            op_t, _, loss_w = self.temporal_operator(xf)
            op_f = self.frequency_operator(xf).expand(N, V, T, T)
            ops = torch.cat([op_t, op_f], dim=2)                          # (N, V, 2T, T)
            z_t, x_f = torch.einsum("nvut,nctv->ncuv", ops, xf).split(T, dim=2)

            # Cosine over the whole (C, T) trajectory per (n, v); time-means would always agree.
            dot = (z_t * x_f).sum((1, 2))
            norms = z_t.pow(2).sum((1, 2)).sqrt() * x_f.pow(2).sum((1, 2)).sqrt()
            cons = dot / norms.clamp_min(1e-8)                            # (N, V)
            std_z, mean_z = std_mean_over_time(z_t)                      # (N, C, V)
            std_f, mean_f = std_mean_over_time(x_f)
            desc = torch.cat([mean_z, std_z, mean_f, std_f, cons[:, None]], dim=1)  # (N, 4C+1, V)
            weights = torch.softmax(self.fusion(desc.transpose(1, 2)), dim=-1)     # (N, V, 2)
            a = (weights[..., 0] * self.beta_t)[:, None, None, :]        # (N, 1, 1, V)
            b = (weights[..., 1] * self.beta_f)[:, None, None, :]
            # = X + w_T β_T (Z_T − X) + w_F β_F (X_F − X); exactly X when β_T = β_F = 0.
            y = xf * (1.0 - a - b) + z_t * a + x_f * b
            loss_c = (1.0 - cons).mean()
        return y.to(in_dtype), {"wasserstein": loss_w, "consistency": loss_c}
