"""Training speed of our ST-GCN against a plain reference ST-GCN, and the step-time cost of TFAM and GIRL.

    python benchmarks/train_speed.py                        # batch 32, T=64, mp_holistic (V=77), CPU
    python benchmarks/train_speed.py --device cuda --amp    # bf16 autocast, e.g. on an H100
    python benchmarks/train_speed.py --profile              # also print torch.profiler's top ops
    python benchmarks/train_speed.py --quick                # tiny sizes: the smoke test
    python benchmarks/train_speed.py --compile              # also ERM and full under torch.compile

Five training steps (forward, loss, backward, SGD update) are timed in one process on the same
fixed batch:

* `reference`: the published 10-block ST-GCN written out plainly below (data BN, per-subset 1×1
  convs looped over the K adjacency subsets with one matmul each, BN-ReLU-9×1 conv-BN temporal
  unit, residuals, edge importance), the same widths and graph as ours, cross-entropy;
* `erm`: our `stgcn` in `Recognizer`, cross-entropy;
* `tfam`, `girl`, `full`: ours with TFAM (placed as the trainer places it), with GIRL, with both,
  built by `piumr_skel.engine.build.build_model` / `build_loss` from a `TrainConfig`; the loss is the
  trainer's own objective (`piumr_skel.engine.losses.TrainLoss`).

With `--compile`, `erm+compile` and `full+compile` are the same two models wrapped in
`torch.compile` (inductor, default mode); their first steps (the compilation) are timed apart and
reported as the compile cost, and the ratio compiled/eager step time is printed for both.

After warm-up steps, each round runs every variant once, in an order rotated from round to round
(ABCDE, BCDEA, ...), so machine load and caches hit all variants alike; medians are reported.
Absolute times on a shared machine mean little; the ratios are the result. Targets: ours/reference
samples/s >= 1.0, full/ERM step time <= 1.25.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from piumr_skel.engine import runtime
from piumr_skel.engine.build import build_loss, build_model
from piumr_skel.engine.config import TrainConfig
from piumr_skel.engine.losses import Batch, TrainLoss
from piumr_skel.skeleton.graph import Graph
from piumr_skel.skeleton.layouts import get_layout

TARGET_RATIO = 1.0       # ours / reference samples per second
TARGET_OVERHEAD = 1.25   # full / ERM step time
VARIANTS = ("reference", "erm", "tfam", "girl", "full")


# ----------------------------------------------------------------------------- reference ST-GCN
class ReferenceGraphConv(nn.Module):
    """ST-GCN spatial graph conv written per subset: y = Σ_k (W_k x) A_k.

    One 1×1 conv per adjacency subset, each followed by a matmul with A_k (V, V) over the joint axis,
    summed over k. A[k, src, dst] as in piumr_skel.skeleton.graph. (N, C_in, T, V) -> (N, C_out, T, V).
    """

    def __init__(self, in_channels: int, out_channels: int, num_subsets: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1) for _ in range(num_subsets))

    def forward(self, x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        N, _, T, V = x.shape
        y = None
        for k, conv in enumerate(self.convs):
            z = conv(x)
            z = torch.matmul(z.reshape(N, -1, V), A[k]).view(N, -1, T, V)
            y = z if y is None else y + z
        return y


class ReferenceBlock(nn.Module):
    """st_gcn unit of the original code: gcn, then tcn = BN, ReLU, (9×1) conv, BN; + residual; ReLU.

    (N, C_in, T, V) -> (N, C_out, T/stride, V).
    """

    def __init__(self, in_channels: int, out_channels: int, num_subsets: int, stride: int = 1,
                 residual: bool = True) -> None:
        super().__init__()
        self.gcn = ReferenceGraphConv(in_channels, out_channels, num_subsets)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (9, 1), (stride, 1), (4, 0)),
            nn.BatchNorm2d(out_channels))
        if not residual:
            self.residual: nn.Module | None = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, (stride, 1)),
                                          nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x, A))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class ReferenceSTGCN(nn.Module):
    """The published ST-GCN (Yan et al. 2018): data BN, 10 blocks base→2·base→4·base with stride 2
    at blocks 5 and 8, no residual in block 1, one edge-importance mask per block, mean pool, linear.

    (N, C_in, T, V) -> logits (N, num_classes). A: (K, V, V) normalised adjacency.
    """

    def __init__(self, in_channels: int, num_classes: int, A: np.ndarray, base_channels: int = 64) -> None:
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float32).clone())
        K, V = self.A.shape[0], self.A.shape[1]
        b = base_channels
        plan = [(in_channels, b, 1), (b, b, 1), (b, b, 1), (b, b, 1), (b, 2 * b, 2), (2 * b, 2 * b, 1),
                (2 * b, 2 * b, 1), (2 * b, 4 * b, 2), (4 * b, 4 * b, 1), (4 * b, 4 * b, 1)]
        self.data_bn = nn.BatchNorm1d(in_channels * V)
        self.blocks = nn.ModuleList(ReferenceBlock(cin, cout, K, stride, residual=i > 0)
                                    for i, (cin, cout, stride) in enumerate(plan))
        self.edge_importance = nn.ParameterList(nn.Parameter(torch.ones_like(self.A)) for _ in plan)
        self.fc = nn.Linear(4 * b, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, T, V = x.shape
        x = self.data_bn(x.permute(0, 3, 1, 2).reshape(N, V * C, T))
        x = x.view(N, V, C, T).permute(0, 2, 3, 1).contiguous()
        for block, importance in zip(self.blocks, self.edge_importance):
            x = block(x, self.A * importance)
        return self.fc(x.mean(dim=(2, 3)))


@torch.no_grad()
def copy_weights_from_ours(ref: ReferenceSTGCN, backbone: nn.Module) -> None:
    """Load our 10-block `STGCN` backbone's weights into `ref`, so both compute the same function.

    Our fused conv has K·C_out output channels laid out subset-major (view(N, K, C_out, T, V)),
    so subset k's kernel is rows k·C_out ... (k+1)·C_out - 1.
    """
    ref.data_bn.load_state_dict(backbone.data_bn.state_dict())
    for i, (rb, ob) in enumerate(zip(ref.blocks, backbone.blocks)):
        gconv, bn = ob.gcn[0], ob.gcn[1]
        c_out = gconv.out_channels
        for k, conv in enumerate(rb.gcn.convs):
            conv.weight.copy_(gconv.conv.weight[k * c_out:(k + 1) * c_out])
            conv.bias.copy_(gconv.conv.bias[k * c_out:(k + 1) * c_out])
        ref.edge_importance[i].copy_(gconv.PA)
        rb.tcn[0].load_state_dict(bn.state_dict())
        rb.tcn[2].load_state_dict(ob.tcn.conv.state_dict())
        rb.tcn[3].load_state_dict(ob.tcn.bn.state_dict())
        if isinstance(ob.residual, nn.Module) and not isinstance(ob.residual, nn.Identity):
            rb.residual[0].load_state_dict(ob.residual.conv.state_dict())
            rb.residual[1].load_state_dict(ob.residual.bn.state_dict())
    ref.fc.load_state_dict(backbone.fc.state_dict())


# ----------------------------------------------------------------------------- training steps
@dataclass
class Step:
    """One timed variant: `run()` does forward, loss, backward and an SGD update on the fixed batch."""

    name: str
    model: nn.Module
    run: Callable[[], None]


def make_config(base_channels: int, layout_name: str, *, tfam: bool, girl: bool) -> TrainConfig:
    """The trainer's defaults for our model, sized by base_channels; GIRL on from the first step."""
    return TrainConfig(backbone="stgcn", layout=layout_name, base_channels=base_channels,
                       num_blocks=10, tfam=tfam, girl=girl, girl_warmup=0)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # The trainer's optimiser: SGD, nesterov momentum, no weight decay on 1-D parameters.
    return torch.optim.SGD(runtime.param_groups(model, cfg.weight_decay), lr=cfg.base_lr,
                           momentum=cfg.momentum, nesterov=True)


def build_steps(x: torch.Tensor, y: torch.Tensor, *, base_channels: int, num_classes: int,
                device: torch.device, amp: bool, names: tuple[str, ...] = VARIANTS,
                layout_name: str = "mp_holistic", compile: bool = False) -> list[Step]:
    """Models and step closures for the named variants on x (N, C, T, V) and labels y (N,).

    compile: our variants' models run under torch.compile (named `<variant>+compile`)."""
    layout = get_layout(layout_name)
    steps: list[Step] = []
    for name in names:
        cfg = make_config(base_channels, layout_name, tfam=name in ("tfam", "full"), girl=name in ("girl", "full"))
        if name == "reference":
            model = ReferenceSTGCN(x.shape[1], num_classes, Graph(layout, cfg.graph_mode).A,
                                   base_channels).to(device)
            steps.append(Step(name, model, _reference_step(model, _optimizer(model, cfg), x, y, device, amp)))
        else:
            model = build_model(cfg, num_classes, layout).to(device)
            objective = build_loss(cfg, num_groups=cfg.girl_num_groups)
            if objective.girl is not None:
                objective.girl.to(device)
            forward = torch.compile(model) if compile else model
            steps.append(Step(f"{name}+compile" if compile else name, model,
                              _our_step(forward, objective, _optimizer(model, cfg), x, y, device, amp)))
    return steps


def _reference_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    device: torch.device, amp: bool) -> Callable[[], None]:
    def run() -> None:
        with runtime.autocast(device, amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run


def _our_step(model: nn.Module, objective: TrainLoss, opt: torch.optim.Optimizer,
              x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool) -> Callable[[], None]:
    """The body of the trainer's inner loop (piumr_skel.engine.train), with the trainer's own objective
    (`piumr_skel.engine.losses.TrainLoss`), minus logging. GIRL v2's epoch groups: a fixed balanced split
    of the batch, with the variance term at full weight (past the ramp)."""
    n = y.shape[0]
    batch = Batch(x=x, y=y, index=torch.arange(n), subject=torch.arange(n, device=y.device) % 4,
                  group=torch.arange(n, device=y.device) % objective.cfg.girl_num_groups)
    late_epoch = float(objective.cfg.epochs - 1)

    def run() -> None:
        with runtime.autocast(device, amp):
            outputs = model(batch.x)
        loss, _ = objective(outputs, batch, late_epoch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run


def compile_first_steps(steps: list[Step], device: torch.device) -> dict[str, float]:
    """Run the first step of each compiled variant (inductor compiles there); its seconds by name."""
    first = {}
    for s in steps:
        _sync(device)
        t0 = time.perf_counter()
        s.run()
        _sync(device)
        first[s.name] = time.perf_counter() - t0
    return first


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels run asynchronously: wait before reading the clock


def time_steps(steps: list[Step], device: torch.device, *, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per step of each variant: `warmup` untimed steps each, then `repeats` rotated rounds."""
    for _ in range(warmup):  # allocator, cuDNN autotuning, first-call costs
        for s in steps:
            s.run()
    _sync(device)
    times: dict[str, list[float]] = {s.name: [] for s in steps}
    for r in range(repeats):
        for j in range(len(steps)):
            s = steps[(r + j) % len(steps)]
            _sync(device)
            t0 = time.perf_counter()
            s.run()
            _sync(device)
            times[s.name].append(time.perf_counter() - t0)
    return times


def profile_steps(steps: list[Step], device: torch.device, *, num_steps: int = 2, rows: int = 12) -> None:
    """Print torch.profiler's top ops (by self time) of a few steps of each variant."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for s in steps:
        with profile(activities=activities) as prof:
            for _ in range(num_steps):
                s.run()
            _sync(device)
        print(f"\n--- profile: {s.name} ({num_steps} steps), top ops by {key}")
        print(prof.key_averages().table(sort_by=key, row_limit=rows))


def reference_agreement(backbone: nn.Module, x: torch.Tensor) -> float:
    """max |logits| difference between our backbone and a ReferenceSTGCN given its weights (eval
    mode, fp32, CPU), on x (N, C, T, V): ~1e-6 when the reference is the same network."""
    ours = copy.deepcopy(backbone).cpu().eval()
    ref = ReferenceSTGCN(x.shape[1], ours.fc.out_features, ours.graph.A,
                         ours.block_out_channels[0]).eval()
    copy_weights_from_ours(ref, ours)
    with torch.no_grad():
        xc = x.detach().cpu().float()
        return (ref(xc) - ours(xc)).abs().max().item()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=64, help="T, frames per clip")
    ap.add_argument("--base-channels", type=int, default=64, help="width of the first stage")
    ap.add_argument("--classes", type=int, default=52)
    ap.add_argument("--layout", default="mp_holistic", help="skeleton layout (V joints)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    ap.add_argument("--repeats", type=int, default=10, help="timed rounds (one step of each variant each)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler top ops per variant")
    ap.add_argument("--compile", action="store_true",
                    help="also time ERM and full with the model under torch.compile (inductor)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke-test defaults: batch 4, T=16, base 4, 1 warm-up, 2 rounds "
                         "(options given explicitly still win)")
    if ap.parse_known_args(argv)[0].quick:  # quick sizes are defaults: options given still win
        ap.set_defaults(batch=4, frames=16, base_channels=4, warmup=1, repeats=2)
    args = ap.parse_args(argv)
    if args.batch < 2:
        ap.error("--batch must be >= 2 (batch norm and GIRL's groups need two samples)")
    if args.frames < 4 or args.base_channels < 1 or args.repeats < 1 or args.warmup < 0:
        ap.error("--frames must be >= 4, --base-channels and --repeats >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print its table and ratio lines, return the ratios."""
    args = parse_args(argv)
    device = runtime.resolve_device(args.device)
    amp = bool(args.amp and device.type == "cuda")
    if args.amp and not amp:
        print("note: --amp applies to CUDA only; timing fp32 on the CPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    layout = get_layout(args.layout)
    V = layout.num_joints
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.frames, V, generator=gen).to(device)
    y = torch.randint(args.classes, (args.batch,), generator=gen).to(device)
    # As in the trainer: model init, TFAM's perturbation and GIRL's k-means draw from torch's
    # default generator, seeded once here.
    torch.manual_seed(args.seed)
    steps = build_steps(x, y, base_channels=args.base_channels, num_classes=args.classes, device=device,
                        amp=amp, layout_name=args.layout)
    by_name = {s.name: s for s in steps}

    # The reference must be the same network as ours: same parameter count, same outputs on our weights.
    ref, ours = by_name["reference"].model, by_name["erm"].model
    n_ref, n_ours = count_params(ref), count_params(ours)
    diff = reference_agreement(ours.backbone, x)

    first: dict[str, float] = {}
    if args.compile:
        torch.manual_seed(args.seed)
        compiled = build_steps(x, y, base_channels=args.base_channels, num_classes=args.classes, device=device,
                               amp=amp, names=("erm", "full"), layout_name=args.layout, compile=True)
        for s in compiled:  # the same weights as the eager model of the same variant
            s.model.load_state_dict(by_name[s.name.removesuffix("+compile")].model.state_dict())
        first = compile_first_steps(compiled, device)
        steps = steps + compiled
    times = time_steps(steps, device, warmup=args.warmup, repeats=args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"train_speed: device={device}{' bf16-autocast' if amp else ''} threads={torch.get_num_threads()} "
          f"torch={torch.__version__} batch={args.batch} T={args.frames} V={V} ({args.layout}) "
          f"base={args.base_channels} blocks=10 warmup={args.warmup} rounds={args.repeats}")
    print(f"params: ours {n_ours / 1e6:.3f} M, reference {n_ref / 1e6:.3f} M; "
          f"max|ours - reference| on shared weights = {diff:.2e}")
    labels = {"reference": "reference ST-GCN", "erm": "ours ERM", "tfam": "ours +TFAM",
              "girl": "ours +GIRL", "full": "ours full (TFAM+GIRL)",
              "erm+compile": "ours ERM, compiled", "full+compile": "ours full, compiled"}
    for name in times:
        t = med[name]
        print(f"{labels[name]:<22} {t * 1e3:9.1f} ms/step  {args.batch / t:9.1f} samples/s  "
              f"(min {min(times[name]) * 1e3:.1f}, max {max(times[name]) * 1e3:.1f} ms)")

    ratio = med["reference"] / med["erm"]  # samples/s ours over reference = inverse step-time ratio
    over = {k: med[k] / med["erm"] for k in ("tfam", "girl", "full")}
    ok_ratio, ok_over = ratio >= TARGET_RATIO, over["full"] <= TARGET_OVERHEAD
    print(f"ratio ours/reference samples/s = {ratio:.3f} (target >= {TARGET_RATIO}: "
          f"{'met' if ok_ratio else 'NOT met'})")
    print(f"overhead +TFAM/ERM step time = {over['tfam']:.3f}")
    print(f"overhead +GIRL/ERM step time = {over['girl']:.3f}")
    print(f"overhead full/ERM step time = {over['full']:.3f} (target <= {TARGET_OVERHEAD}: "
          f"{'met' if ok_over else 'NOT met'})")
    compiled_over = {k: med[f"{k}+compile"] / med[k] for k in ("erm", "full") if f"{k}+compile" in med}
    for k, r in compiled_over.items():
        print(f"torch.compile {k}: compiled/eager step time = {r:.3f}; first step (compilation) "
              f"{first[f'{k}+compile']:.1f} s = {first[f'{k}+compile'] / med[k]:.0f} eager steps")
    if args.profile:
        profile_steps(steps, device)
    elif not (ok_ratio and ok_over):
        print("a target is not met: rerun with --profile for the top ops of each variant")
    return {"ours_over_reference": ratio, **{f"{k}_over_erm": v for k, v in over.items()},
            **{f"{k}_compiled_over_eager": v for k, v in compiled_over.items()},
            "full_samples_per_s": args.batch / med["full"], "max_abs_diff": diff}


if __name__ == "__main__":
    main()
