"""GIRL, the Group-Invariant Regularized Loss: margin-weighted risks of style pseudo-groups with a
penalty on their spread (docs/METHOD.md, our reconstruction of PIUmr's loss).

Two versions: `GIRLoss` (v1: per-batch k-means, softmax boundary weights) and `GIRLossV2` (v2:
groups fixed over an epoch from person-style descriptors of the whole training set, bounded
near-boundary weights, an annealed variance term, an optional online GroupDRO term).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GIRLoss", "GIRLossV2", "boundary_weights", "assign_epoch_groups", "input_descriptors",
           "style_descriptor", "kmeans", "merge_small_groups", "group_softmax", "margins",
           "pairwise_variance"]

from piumr_skel.method.groupings import GROUPINGS, GROUPINGS_V2, GroupingV1


def style_descriptor(feats: Tensor) -> Tensor:
    """Per-sample style: mean and std over (T, V) of each channel, detached. (N, C, T, V) -> (N, 2C).

    First- and second-order feature statistics are what AdaIN/DSU treat as "style"; they carry who
    performs the action more than what is performed.
    """
    if feats.dim() != 4:
        raise ValueError(f"style_descriptor: expected features (N, C, T, V), got {tuple(feats.shape)}")
    with torch.no_grad():
        flat = feats.detach().float().flatten(2)                           # (N, C, T·V)
        std, mean = torch.std_mean(flat, dim=2, correction=0)
        return torch.cat([mean, std], dim=1)


def _draw_index(prob: Tensor, generator: torch.Generator | None) -> Tensor:
    """One index drawn with probabilities ∝ prob (1-D), on the generator's device; returns a 0-d long."""
    where = generator.device if generator is not None else prob.device
    return torch.multinomial(prob.to(where), 1, generator=generator)[0].to(prob.device)


@torch.no_grad()
def kmeans(x: Tensor, k: int, *, iters: int = 5, generator: torch.Generator | None = None
           ) -> tuple[Tensor, Tensor]:
    """k-means with k-means++ seeding on x (N, D). Returns (labels (N,) long, centres (k, D)).

    Seeding loops over the k centres (k is small); Lloyd iterations are batched tensor ops. A
    centre that loses all its points keeps its previous position. Randomness comes from
    `generator` only (None: torch's default generator).
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: need 1 <= k <= N, got k={k}, N={n}")
    x = x.float()
    idx = _draw_index(torch.ones(n, device=x.device), generator)
    centres = x[idx][None]                                                 # (1, D)
    d2 = torch.cdist(x, centres).squeeze(1).pow(2)                        # (N,)
    for _ in range(1, k):
        # Identical points give d2 = 0 everywhere; fall back to a uniform draw then.
        prob = d2 if bool(d2.sum() > 0) else torch.ones_like(d2)
        idx = _draw_index(prob, generator)
        centres = torch.cat([centres, x[idx][None]], dim=0)
        d2 = torch.minimum(d2, (x - x[idx]).pow(2).sum(1))
    labels = torch.cdist(x, centres).argmin(1)
    for _ in range(iters):
        counts = torch.bincount(labels, minlength=k).to(x.dtype)          # (k,)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        labels = torch.cdist(x, centres).argmin(1)
    return labels, centres


@torch.no_grad()
def merge_small_groups(labels: Tensor, points: Tensor, min_size: int = 2) -> Tensor:
    """Merge every group with fewer than `min_size` samples into the nearest larger group.

    labels (N,) long, points (N, D) used for the group centroids. "Nearest" is the distance between
    centroids. When no group reaches `min_size` (e.g. every sample has its own subject), all
    samples form one group. Returns contiguous labels 0..G'-1 (N,), no loop over samples or groups.
    """
    _, labels = torch.unique(labels, return_inverse=True)                  # contiguous 0..G-1
    g = int(labels.max()) + 1
    points = points.float()
    counts = torch.bincount(labels, minlength=g)
    large = counts >= min_size
    if bool(large.all()):
        return labels
    if not bool(large.any()):
        return torch.zeros_like(labels)
    centroids = torch.zeros(g, points.shape[1], device=points.device).index_add_(0, labels, points)
    centroids = centroids / counts.clamp_min(1)[:, None]
    dist = torch.cdist(centroids, centroids)                              # (G, G)
    dist = dist.masked_fill(~large[None, :], float("inf"))
    target = torch.where(large, torch.arange(g, device=labels.device), dist.argmin(1))
    _, merged = torch.unique(target[labels], return_inverse=True)
    return merged


def pairwise_variance(risks: Tensor) -> Tensor:
    """V = 1/(2G²) Σ_{g,g'} (R_g − R_g')², the population variance of the group risks (G,).

    Its value is the variance; its gradient only ever lowers the higher risk of each pair: in every
    pair the lower risk is detached. With the plain variance, ∂V/∂R_g = 2(R_g − R̄)/G is negative for
    groups below the mean, so at λ_V = 1 and risks spread by a few nats the objective does gradient
    *ascent* on the easiest group's cross-entropy (2(0.9 − 3.1)/4 = −1.1 against +1/G = 0.25 from
    the mean term). On the synthetic benchmark that made every GIRL run diverge within ten steps
    of the warm-up's end. A spread must be closed by improving the worse group, never by making the
    better one worse; this is the same value, with that one-sided gradient.
    """
    diff = risks[:, None] - risks[None, :]                                 # (G, G): R_g − R_g'
    higher = diff > 0
    one_sided = torch.where(higher, risks[:, None] - risks.detach()[None, :],
                            risks.detach()[:, None] - risks[None, :])
    one_sided = torch.where(higher | (diff < 0), one_sided, torch.zeros_like(diff))
    g = risks.shape[0]
    return one_sided.pow(2).sum() / (2 * g * g)


def margins(logits: Tensor, target: Tensor) -> Tensor:
    """m_i = logit_y − max_{j≠y} logit_j, (N, K), (N,) -> (N,)."""
    true = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf"))
    return true - others.amax(1)


def group_softmax(scores: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """Softmax of scores (N,) within each group: weights (N,) that sum to 1 in every group."""
    gmax = torch.full((num_groups,), float("-inf"), device=scores.device, dtype=scores.dtype)
    gmax = gmax.scatter_reduce(0, groups, scores, reduce="amax")
    e = (scores - gmax[groups]).exp()
    denom = torch.zeros(num_groups, device=scores.device, dtype=scores.dtype).index_add_(0, groups, e)
    return e / denom[groups]


def _subject_ids(subject: Sequence | Tensor | np.ndarray, n: int, device: torch.device) -> Tensor:
    """Subject ids (strings or ints) -> contiguous long tensor (N,)."""
    if isinstance(subject, Tensor):
        ids = subject.to(device).flatten()
    else:
        _, inverse = np.unique(np.asarray(subject), return_inverse=True)
        ids = torch.as_tensor(inverse.reshape(-1), device=device)
    if ids.numel() != n:
        raise ValueError(f"GIRLoss: got {ids.numel()} subject ids for a batch of {n}")
    return torch.unique(ids, return_inverse=True)[1]


class GIRLoss(nn.Module):
    """Group-Invariant Regularized Loss (L_GIRL = mean_g R_g + λ_V V + η max_g R_g).

    1. Pseudo-groups: k-means (k-means++ seeding, `kmeans_iters` Lloyd steps) on the batch-
       standardised style descriptors; or `subject` (true ids, a GroupDRO-style oracle) or
       `random` (balanced random split). Groups with < 2 samples merge into the nearest group.
    2. Group risk R_g = Σ_{i∈g} w_i ℓ_i with w_i = softmax_{i∈g}(−m_i / τ), m_i the logit margin,
       weights detached: samples near or across the decision boundary dominate.
    3. V = 1/(2G²) Σ_{g,g'} (R_g − R_g')², the population variance of the group risks.

    Warm-up is the trainer's job: it uses plain cross-entropy for the first E_w epochs (no
    clustering of still-random features).
    """

    def __init__(self, num_groups: int = 4, tau: float = 1.0, lambda_var: float = 1.0,
                 eta: float = 0.0, grouping: GroupingV1 = "kmeans", kmeans_iters: int = 5) -> None:
        super().__init__()
        if num_groups < 1:
            raise ValueError(f"GIRLoss: num_groups must be >= 1, got {num_groups}")
        if tau <= 0:
            raise ValueError(f"GIRLoss: tau must be > 0, got {tau}")
        if grouping not in GROUPINGS:
            raise ValueError(f"GIRLoss: grouping must be one of {GROUPINGS}, got {grouping!r}")
        self.num_groups = num_groups
        self.tau = tau
        self.lambda_var = lambda_var
        self.eta = eta
        self.grouping = grouping
        self.kmeans_iters = kmeans_iters

    def extra_repr(self) -> str:
        return (f"num_groups={self.num_groups}, tau={self.tau}, lambda_var={self.lambda_var}, "
                f"eta={self.eta}, grouping={self.grouping!r}, kmeans_iters={self.kmeans_iters}")

    @torch.no_grad()
    def assign_groups(self, style: Tensor, subject: Sequence | Tensor | np.ndarray | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """Pseudo-group labels (N,), contiguous 0..G'-1, every group with >= 2 samples when N >= 2."""
        n = style.shape[0]
        s = style.detach().float()
        # Standardise each style dimension over the batch so no channel dominates the distances.
        s = (s - s.mean(0)) / (s.std(0, correction=0) + 1e-6)
        k = min(self.num_groups, n)
        if self.grouping == "kmeans":
            labels, _ = kmeans(s, k, iters=self.kmeans_iters, generator=generator)
        elif self.grouping == "subject":
            if subject is None:
                raise ValueError("GIRLoss: grouping='subject' needs the subject ids of the batch")
            labels = _subject_ids(subject, n, s.device)
        else:
            where = generator.device if generator is not None else s.device
            perm = torch.randperm(n, generator=generator, device=where).to(s.device)
            labels = torch.empty_like(perm).scatter_(0, perm, torch.arange(n, device=s.device) % k)
        return merge_small_groups(labels, s)

    def forward(self, logits: Tensor, target: Tensor, style: Tensor,
                subject: Sequence | Tensor | np.ndarray | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, dict]:
        """logits (N, K), target (N,), style (N, D) -> (loss, stats).

        stats (Python numbers, for logging): "ce" mean cross-entropy, "group_sizes" (list[int]),
        "group_risks" (list[float]), "variance" V, "num_groups" G'.
        """
        if logits.dim() != 2 or target.shape != logits.shape[:1] or style.shape[0] != logits.shape[0]:
            raise ValueError(f"GIRLoss: expected logits (N, K), target (N,), style (N, D); got "
                             f"{tuple(logits.shape)}, {tuple(target.shape)}, {tuple(style.shape)}")
        if logits.shape[1] < 2:
            raise ValueError(f"GIRLoss: margins need at least 2 classes, got {logits.shape[1]}")
        logits = logits.float()
        ce = F.cross_entropy(logits, target, reduction="none")            # (N,)
        groups = self.assign_groups(style, subject, generator)
        g = int(groups.max()) + 1
        with torch.no_grad():
            m = margins(logits, target)
            # τ in units of the batch's margin spread: a raw logit margin grows with the model's
            # confidence (±25 nats after a few epochs here), and softmax(−m/τ) at τ = 1 then puts the
            # whole group's weight on its single worst sample, which made the benchmark diverge.
            w = group_softmax(-m / (self.tau * m.std(correction=0).clamp_min(1e-3)), groups, g)
        risks = torch.zeros(g, device=ce.device, dtype=ce.dtype).index_add(0, groups, w * ce)
        variance = pairwise_variance(risks)
        loss = risks.mean() + self.lambda_var * variance
        if self.eta:
            loss = loss + self.eta * risks.max()
        stats = {
            "ce": float(ce.detach().mean()),
            "group_sizes": torch.bincount(groups, minlength=g).tolist(),
            "group_risks": risks.detach().tolist(),
            "variance": float(variance.detach()),
            "num_groups": g,
        }
        return loss, stats


# ============================================================================== GIRL v2
def boundary_weights(m: Tensor, groups: Tensor, num_groups: int, tau: float = 1.0, beta: float = 1.0) -> Tensor:
    """Bounded near-boundary weights, detached: h_i = exp(−m_i² / (2 τ² s²)) with s the batch's
    margin std, w_i = (1 + β h_i) / Σ_{j∈g} (1 + β h_j). (N,) margins, (N,) group ids -> (N,).

    A sample on the boundary (m = 0) weighs at most (1 + β) times one far on either side, so a
    group's risk can never collapse onto its one worst (often mislabelled) sample, as v1's did.
    """
    with torch.no_grad():
        m = m.detach().float()
        s = m.std(correction=0).clamp_min(1e-3) if m.numel() > 1 else m.new_tensor(1.0)
        u = 1.0 + beta * torch.exp(-m.pow(2) / (2 * tau * tau * s * s))
        denom = torch.zeros(num_groups, device=m.device, dtype=u.dtype).index_add_(0, groups, u)
        return u / denom[groups]


class GIRLossV2(nn.Module):
    """GIRL v2: L = Σ_g (n_g/n) R_g + λ_V(t) · Var_g(R_g) + η · Σ_g q_g R_g over the batch's groups.

    R_g = Σ_{i∈g} w_i ℓ_i with `boundary_weights`; the groups come from the trainer (fixed over
    an epoch, `assign_epoch_groups`). The mean over groups is weighted by the batch's share of each
    group, so with β = 0 and λ_V = η = 0 the loss is exactly the mean cross-entropy for any G (an
    unweighted mean would up-weight small groups, which is GroupDRO's job, the η term's here).
    V is the plain two-sided population variance over the groups with >= 2 samples in the batch,
    as V-REx uses it; its weight λ_V(t) is set by the trainer (annealed from 0). The online
    GroupDRO weights q (G,) follow q_g ← q_g · exp(η_q R_g), normalised, kept across steps (and
    saved in the checkpoint through `state_dict`).
    """

    q: Tensor  # the GroupDRO weights (G,), a buffer

    def __init__(self, num_groups: int, tau: float = 1.0, beta: float = 1.0, lambda_var: float = 1.0,
                 eta: float = 0.0, eta_q: float = 0.01) -> None:
        super().__init__()
        if num_groups < 1:
            raise ValueError(f"GIRLossV2: num_groups must be >= 1, got {num_groups}")
        if tau <= 0:
            raise ValueError(f"GIRLossV2: tau must be > 0, got {tau}")
        if beta < 0:
            raise ValueError(f"GIRLossV2: beta must be >= 0, got {beta}")
        self.num_groups, self.tau, self.beta = num_groups, tau, beta
        self.lambda_var, self.eta, self.eta_q = lambda_var, eta, eta_q
        self.register_buffer("q", torch.full((num_groups,), 1.0 / num_groups))

    def extra_repr(self) -> str:
        return (f"num_groups={self.num_groups}, tau={self.tau}, beta={self.beta}, "
                f"lambda_var={self.lambda_var}, eta={self.eta}, eta_q={self.eta_q}")

    def reset_dro(self) -> None:
        """Uniform GroupDRO weights (when the groups are redrawn, old weights mean nothing)."""
        self.q.fill_(1.0 / self.num_groups)

    def forward(self, logits: Tensor, target: Tensor, groups: Tensor, lambda_var: float | None = None
                ) -> tuple[Tensor, dict]:
        """logits (N, K), target (N,), groups (N,) long in 0..G-1 -> (loss, stats)."""
        if logits.dim() != 2 or target.shape != logits.shape[:1] or groups.shape != target.shape:
            raise ValueError(f"GIRLossV2: expected logits (N, K), target (N,), groups (N,); got "
                             f"{tuple(logits.shape)}, {tuple(target.shape)}, {tuple(groups.shape)}")
        if logits.shape[1] < 2:
            raise ValueError(f"GIRLossV2: margins need at least 2 classes, got {logits.shape[1]}")
        if int(groups.min()) < 0 or int(groups.max()) >= self.num_groups:
            raise ValueError(f"GIRLossV2: group ids must be in 0..{self.num_groups - 1}")
        lam = self.lambda_var if lambda_var is None else lambda_var
        logits = logits.float()
        g = self.num_groups
        ce = F.cross_entropy(logits, target, reduction="none")                     # (N,)
        w = boundary_weights(margins(logits.detach(), target), groups, g, self.tau, self.beta)
        risks = torch.zeros(g, device=ce.device, dtype=ce.dtype).index_add(0, groups, w * ce)  # (G,)
        counts = torch.bincount(groups, minlength=g)
        share = counts.to(ce.dtype) / counts.sum()
        loss = (share * risks).sum()
        multi = counts >= 2
        variance = risks[multi].var(correction=0) if int(multi.sum()) >= 2 else risks.sum() * 0.0
        if lam:
            loss = loss + lam * variance
        if self.eta:
            present = counts > 0
            if self.training:
                with torch.no_grad():
                    q = self.q * torch.exp(self.eta_q * risks.detach() * present)
                    self.q.copy_(q / q.sum())
            loss = loss + self.eta * (self.q * risks * present).sum() / (self.q * present).sum()
        stats = {"ce": float(ce.detach().mean()), "variance": float(variance.detach()),
                 "num_groups": int((counts > 0).sum()), "lambda_var": float(lam)}
        return loss, stats


# ------------------------------------------------------------------ person-style descriptors
def input_descriptors(clips: Sequence[np.ndarray], layout) -> np.ndarray:
    """Person-style descriptor of each normalised clip (T, V, 3), from the skeleton itself.

    What differs between people rather than between actions: bone lengths (physique, median over
    time), the rest posture (median joint positions), and per body part the mean speed, the
    dominant temporal frequency (tempo) and the range of motion (amplitude). Returns (N, D)
    float32, standardised over the clips given (the training set).
    """
    parents = np.asarray(layout.parents)
    part_idx = [np.asarray(v) for v in layout.parts.values()]
    rows = []
    for x in clips:
        xy = np.asarray(x, dtype=np.float32)[..., :2]                              # (T, V, 2)
        bones = np.linalg.norm(xy - xy[:, parents], axis=-1)                       # (T, V)
        rest = np.median(xy, axis=0)                                               # (V, 2)
        speed = np.linalg.norm(np.diff(xy, axis=0), axis=-1) if len(xy) > 1 else np.zeros((1, xy.shape[1]))
        feats = [np.median(bones, axis=0), rest.ravel()]
        for idx in part_idx:
            traj = xy[:, idx].reshape(len(xy), -1)                                 # (T, 2P)
            feats.append([speed[:, idx].mean(), np.ptp(traj, axis=0).mean(), _dominant_frequency(traj)])
        rows.append(np.concatenate([np.ravel(f) for f in feats]))
    d = np.stack(rows).astype(np.float64)
    d = (d - d.mean(0)) / (d.std(0) + 1e-6)
    return d.astype(np.float32)


def _dominant_frequency(traj: np.ndarray) -> float:
    """Frequency (cycles per clip) of the largest non-DC spectral peak of a (T, D) trajectory."""
    if len(traj) < 3:
        return 0.0
    spec = np.abs(np.fft.rfft(traj - traj.mean(0), axis=0)).sum(1)
    return float(np.argmax(spec[1:]) + 1)


def assign_epoch_groups(mode: str, num_groups: int, *, seed: int, epoch: int,
                        descriptors: Tensor | None = None, subjects: np.ndarray | None = None,
                        n: int | None = None) -> Tensor:
    """Pseudo-group id of every training clip for one epoch, (N,) long in 0..G-1.

    A pure function of (mode, descriptors or subjects, seed, epoch), so a resumed run regroups
    identically. `input` / `features`: k-means++ on the descriptors (N, D) with a generator
    seeded from (seed, epoch); `subject`: the true person ids; `random`: a balanced random split.
    """
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), int(epoch), 7]).generate_state(1)[0]))
    if mode == "subject":
        if subjects is None:
            raise ValueError("assign_epoch_groups: grouping 'subject' needs the subject ids")
        _, inv = np.unique(np.asarray(subjects).astype(str), return_inverse=True)
        return torch.as_tensor(inv.reshape(-1), dtype=torch.long)
    if mode == "random":
        if n is None:
            raise ValueError("assign_epoch_groups: grouping 'random' needs n")
        perm = torch.randperm(n, generator=gen)
        return torch.empty(n, dtype=torch.long).scatter_(0, perm, torch.arange(n) % num_groups)
    if mode not in ("input", "features"):
        raise ValueError(f"unknown v2 grouping {mode!r}; expected one of {GROUPINGS_V2}")
    if descriptors is None:
        raise ValueError(f"assign_epoch_groups: grouping {mode!r} needs descriptors")
    d = descriptors.float().cpu()
    d = (d - d.mean(0)) / (d.std(0, correction=0) + 1e-6)
    labels, _ = kmeans(d, min(num_groups, d.shape[0]), iters=20, generator=gen)
    return labels
