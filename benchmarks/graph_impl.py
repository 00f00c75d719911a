"""Time the dense einsum graph conv against the torch_geometric MessagePassing one (forward + backward).

    python benchmarks/graph_impl.py                 # mp_holistic, batch 32, T=64, C=64
    python benchmarks/graph_impl.py --layout mp_pose --repeats 5

Both layers get the same weights and input in one process, are checked to agree, and are timed
alternately so that machine load affects both alike. Prints the median times and the pyg/dense ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from piumr_skel.models import PygSpatialGraphConv, SpatialGraphConv
from piumr_skel.skeleton.graph import Graph


def step_seconds(layer: torch.nn.Module, x: torch.Tensor) -> float:
    """Wall time of one forward + backward of `layer` on x (N, C, T, V)."""
    layer.zero_grad(set_to_none=True)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    layer(x).square().mean().backward()
    sync()  # CUDA kernels run asynchronously: wait before reading the clock
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layout", default="mp_holistic")
    ap.add_argument("--mode", default="spatial", choices=["spatial", "distance"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()

    graph = Graph(args.layout, args.mode)
    V, C = graph.layout.num_joints, args.channels
    torch.manual_seed(args.seed)  # layer init only
    dense = SpatialGraphConv(C, C, graph.A).to(args.device)
    pyg = PygSpatialGraphConv(C, C, graph.A).to(args.device)
    pyg.load_state_dict(dense.state_dict())
    x = torch.randn(args.batch, C, args.frames, V, generator=torch.Generator().manual_seed(args.seed)).to(args.device)
    with torch.no_grad():
        err = (dense(x) - pyg(x)).abs().max().item()
    times: dict[str, list[float]] = {"dense": [], "pyg": []}
    step_seconds(dense, x), step_seconds(pyg, x)  # warm-up: allocator and first-call costs
    for _ in range(args.repeats):
        times["dense"].append(step_seconds(dense, x))
        times["pyg"].append(step_seconds(pyg, x))
    td, tp = statistics.median(times["dense"]), statistics.median(times["pyg"])
    print(f"{graph!r} device={args.device} batch={args.batch} T={args.frames} C={C} threads={torch.get_num_threads()} "
          f"max|dense-pyg|={err:.2e}")
    print(f"dense einsum        {td * 1e3:8.1f} ms / fwd+bwd")
    print(f"pyg MessagePassing  {tp * 1e3:8.1f} ms / fwd+bwd")
    print(f"ratio pyg/dense = {tp / td:.2f}")


if __name__ == "__main__":
    main()
