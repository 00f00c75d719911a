"""Data-loading speed at MA-52's size: clip-cache build, cache size, and loader clips/s against the
model's training samples/s.

    python benchmarks/load_speed.py                  # 22,422 synthetic clips of 45-75 frames, mp_holistic
    python benchmarks/load_speed.py --clips 2000     # scaled down
    python benchmarks/load_speed.py --gpu-samples-per-s 2400   # H100 rate from train_speed.py --device cuda --amp
    python benchmarks/load_speed.py --quick          # ~200 clips, tiny model: the smoke test

A synthetic MA-52-like store (`piumr_skel.tools.synth.generate_store`) is generated once into
`--workdir` and reused by later runs, as is its clip cache; generation and the first cache build
are timed when they happen and their times are recorded in `timings.json` there
(`--rebuild-cache` times a fresh build again).

Loader rate: `SkeletonDataset` (train mode: random uniform sampling of T frames, the trainer's
default augmentation, joint stream) through `make_loader`, batch 32, T = 64, measured in steady
state (the first batches, which include worker start-up, are timed separately) with 0 workers
(one process: the per-worker rate) and with `--workers` workers. Model rate: the full training step
(ST-GCN + TFAM + GIRL, batch 32, T = 64) of `train_speed.py`, timed alone on the same machine.
The two are measured one after the other, not together: in a real run on few cores they compete
for the CPU. Target on the CPU: loader / model >= 3.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from train_speed import build_steps, time_steps  # benchmarks/ is on sys.path when run as a script

from piumr_skel.data.dataset import CacheMismatchError, ClipCache, SkeletonDataset, make_loader
from piumr_skel.data.labels import read_labels
from piumr_skel.engine import runtime
from piumr_skel.engine.config import TrainConfig
from piumr_skel.engine.data_setup import augment_config
from piumr_skel.tools.synth import SYNTH_CLASSES, SynthConfig, generate_store

MA52_CLIPS = 22_422
MA52_CLIPS_PER_PERSON = 22_422 / 205   # MA-52: 22,422 clips from 205 people
QUICK_CLIPS = 200
TARGET_LOADER_OVER_MODEL = 3.0
# Full-model training samples/s on one H100 (train_speed.py --device cuda --amp, "ours full" row).
# Measured 2026-11-23: 875.9 samples/s (bf16, batch 32, T=64, V=77, base 64; docs/results/train_speed_cuda.txt).
GPU_SAMPLES_PER_S = 876.0


def store_shape(clips: int) -> tuple[int, int]:
    """(subjects, clips per subject) with MA-52's ~109 clips per person and a product of exactly
    `clips` when a divisor lies within 10% of that number of people (22,422 = 202 × 111)."""
    if clips < 1:
        raise ValueError(f"--clips must be >= 1, got {clips}")
    target = max(1, round(clips / MA52_CLIPS_PER_PERSON))
    lo, hi = max(1, math.floor(0.9 * target)), min(clips, 9999, math.ceil(1.1 * target))
    exact = [s for s in range(lo, hi + 1) if clips % s == 0]
    subjects = min(exact, key=lambda s: abs(s - target)) if exact else min(target, 9999)
    return subjects, math.ceil(clips / subjects)


def _read_timings(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); delete it to re-time generation and cache") from err


def _write_timings(path: Path, timings: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(timings, indent=1))
    os.replace(tmp, path)


def ensure_store(root: Path, clips: int, seed: int, timings: dict) -> tuple[Path, Path, bool]:
    """Generate the synthetic store under root/store (once) -> (store, labels.txt, generated now).

    The store counts as complete only when timings.json records its generation, so an interrupted
    generation is redone from scratch."""
    store, labels = root / "store", root / "labels" / "labels.txt"
    subjects, per_subject = store_shape(clips)
    wanted = {"clips": subjects * per_subject, "subjects": subjects, "clips_per_subject": per_subject,
              "seed": seed}
    gen = timings.get("generation")
    if gen and all(gen.get(k) == v for k, v in wanted.items()) and (store / "store.json").is_file() \
            and labels.is_file():
        return store, labels, False
    config = SynthConfig(num_subjects=subjects, clips_per_subject=per_subject, num_classes=len(SYNTH_CLASSES),
                         frames_range=(45, 75))
    total = subjects * per_subject
    step = max(1, total // 10)

    def progress(done: int, n: int) -> None:
        if done % step == 0 or done == n:
            print(f"  generated {done}/{n} clips", file=sys.stderr, flush=True)

    print(f"generating a synthetic store of {total} clips ({subjects} people × {per_subject}) into {store}",
          flush=True)
    timings.pop("cache_build", None)  # a new store needs a new cache
    t0 = time.perf_counter()
    generate_store(store, config=config, seed=seed, labels_dir=labels.parent, overwrite=True,
                   progress=progress)
    timings["generation"] = {**wanted, "seconds": time.perf_counter() - t0}
    return store, labels, True


def ensure_cache(store: Path, cache_dir: Path, layout: str, timings: dict, rebuild: bool) -> tuple[ClipCache, bool]:
    """The store's clip cache: reused when it matches the store, else built and timed."""
    if not rebuild and "cache_build" in timings:
        try:
            return ClipCache.load(cache_dir, layout=layout, store=store), False
        except (FileNotFoundError, CacheMismatchError, ValueError) as err:
            print(f"clip cache {cache_dir} not reusable ({err}); rebuilding")
    t0 = time.perf_counter()
    cache = ClipCache.build(store, layout, cache_dir, force=True)
    timings["cache_build"] = {"seconds": time.perf_counter() - t0, "layout": layout}
    return cache, True


def cache_sizes(cache: ClipCache) -> tuple[int, int]:
    """(bytes on disk of the cache folder, bytes in memory once the frames are fully paged in)."""
    disk = sum(p.stat().st_size for p in cache.cache_dir.iterdir() if p.is_file())
    memory = int(cache.frames.nbytes + cache.table.memory_usage(deep=True).sum())
    return disk, memory


def loader_rate(dataset: SkeletonDataset, *, batch: int, workers: int, batches: int, skip: int,
                seed: int) -> tuple[float, float, int]:
    """(steady clips/s, seconds to the first `skip` batches, batches timed) of make_loader in train mode.

    The first `skip` batches (worker start-up, first page-ins) are timed apart. When one epoch holds
    fewer batches than asked, the next epoch's loader continues (as the trainer does).
    """
    per_epoch = len(dataset) // batch
    if per_epoch < 1:
        raise ValueError(f"{len(dataset)} clips make no batch of {batch}; use more --clips or a smaller --batch")
    timed = clips = 0
    startup = 0.0
    epoch = 0
    t_start = None
    while timed < batches:
        t_epoch = time.perf_counter()
        loader = make_loader(dataset, batch_size=batch, shuffle=True, num_workers=workers, seed=seed,
                             epoch=epoch, drop_last=True)
        for i, (x, _, _) in enumerate(loader):
            if epoch == 0 and i < skip:
                if i == skip - 1:
                    startup = time.perf_counter() - t_epoch
                    t_start = time.perf_counter()
                continue
            if t_start is None:
                t_start = time.perf_counter()
            timed += 1
            clips += x.shape[0]
            if timed >= batches:
                break
        del loader  # shut the workers down before the next epoch's loader starts its own
        epoch += 1
    return clips / (time.perf_counter() - t_start), startup, timed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=None, help=f"store size (default {MA52_CLIPS}, MA-52's)")
    ap.add_argument("--workdir", type=Path, default=Path("artifacts/bench/load_speed"),
                    help="where the store, cache and timings.json are kept between runs")
    ap.add_argument("--layout", default="mp_holistic")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rebuild-cache", action="store_true", help="rebuild (and time) the clip cache")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=64, help="T, frames sampled per clip")
    ap.add_argument("--workers", type=int, default=2, help="loader workers of the multi-process measurement")
    ap.add_argument("--batches", type=int, default=100, help="timed batches with --workers workers")
    ap.add_argument("--single-batches", type=int, default=30, help="timed batches with 0 workers")
    ap.add_argument("--base-channels", type=int, default=64, help="model width for the model rate")
    ap.add_argument("--model-steps", type=int, default=5, help="timed full training steps")
    ap.add_argument("--device", default="cpu", help="device of the model rate: cpu or cuda")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast for the model rate (CUDA only)")
    ap.add_argument("--gpu-samples-per-s", type=float, default=GPU_SAMPLES_PER_S,
                    help="full-model training samples/s of the GPU to feed (default: %(default)s)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke-test defaults: ~{QUICK_CLIPS} clips, batch 8, T=16, base 4, few batches "
                         "(options given explicitly still win)")
    if ap.parse_known_args(argv)[0].quick:  # quick sizes are defaults: options given still win
        ap.set_defaults(clips=QUICK_CLIPS, batch=8, frames=16, base_channels=4, batches=6, single_batches=3,
                        model_steps=2)
    args = ap.parse_args(argv)
    args.clips = args.clips or MA52_CLIPS
    if args.batch < 2 or args.frames < 4 or args.workers < 1 or args.batches < 1 or args.single_batches < 1 \
            or args.model_steps < 1 or args.gpu_samples_per_s <= 0:
        ap.error("need --batch >= 2, --frames >= 4, --workers/--batches/--single-batches/--model-steps >= 1 "
                 "and --gpu-samples-per-s > 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print its report and ratio lines, return the measured figures."""
    args = parse_args(argv)
    root = args.workdir / f"{args.clips}clips_s{args.seed}"
    root.mkdir(parents=True, exist_ok=True)
    timings_path = root / "timings.json"
    timings = _read_timings(timings_path)

    store, labels_path, generated = ensure_store(root, args.clips, args.seed, timings)
    _write_timings(timings_path, timings)
    cache, built = ensure_cache(store, root / f"cache_{args.layout}", args.layout, timings, args.rebuild_cache)
    _write_timings(timings_path, timings)
    gen, build = timings["generation"], timings["cache_build"]
    n_clips, n_frames = len(cache), int(cache.meta["num_frames"])
    print(f"load_speed: {n_clips} clips, {n_frames} frames ({n_frames / n_clips:.1f} per clip; MA-52: 59.3), "
          f"layout {args.layout} (V={cache.meta['num_joints']}), {os.cpu_count()} CPU cores, workdir {root}")
    print(f"store generation: {gen['seconds']:.1f} s ({gen['clips'] / gen['seconds']:.1f} clips/s)"
          f"{'' if generated else ' (recorded when generated)'}")
    print(f"cache build: {build['seconds']:.1f} s ({n_clips / build['seconds']:.1f} clips/s)"
          f"{'' if built else ' (recorded; --rebuild-cache to time again)'}")
    disk, memory = cache_sizes(cache)
    print(f"cache size: {disk / 2**20:.1f} MiB on disk, {memory / 2**20:.1f} MiB in memory "
          f"({disk / n_clips / 1024:.1f} KiB per clip)")

    labels = read_labels(labels_path).set_index("clip_id")
    ids = [c for c in cache.clip_ids if c in labels.index]
    aug = augment_config(TrainConfig())  # the trainer's default augmentation
    dataset = SkeletonDataset(cache, ids, labels.loc[ids, "label"].to_numpy(), T=args.frames, train=True,
                              augment=aug, seed=args.seed)
    single, _, n1 = loader_rate(dataset, batch=args.batch, workers=0, batches=args.single_batches, skip=1,
                                seed=args.seed)
    multi, startup, nw = loader_rate(dataset, batch=args.batch, workers=args.workers, batches=args.batches,
                                     skip=2 * args.workers, seed=args.seed)
    print(f"loader, 0 workers (one process): {single:9.1f} clips/s ({n1} batches of {args.batch}, T={args.frames})")
    print(f"loader, {args.workers} workers:            {multi:9.1f} clips/s ({nw} batches; "
          f"first {2 * args.workers} batches incl. start-up {startup:.2f} s); "
          f"scaling {multi / (args.workers * single):.2f} of linear")

    device = runtime.resolve_device(args.device)
    amp = bool(args.amp and device.type == "cuda")
    gen_t = torch.Generator().manual_seed(args.seed)
    V = int(cache.meta["num_joints"])
    x = torch.randn(args.batch, 3, args.frames, V, generator=gen_t).to(device)
    y = torch.randint(52, (args.batch,), generator=gen_t).to(device)
    torch.manual_seed(args.seed)  # as the trainer: model init, TFAM perturbation, GIRL k-means
    steps = build_steps(x, y, base_channels=args.base_channels, num_classes=52, device=device, amp=amp,
                        names=("full",), layout_name=args.layout)
    step_s = statistics.median(time_steps(steps, device, warmup=1, repeats=args.model_steps)["full"])
    model = args.batch / step_s
    print(f"model, full training step (ST-GCN base {args.base_channels} + TFAM + GIRL) on {device}"
          f"{' bf16' if amp else ''}: {model:9.1f} samples/s ({step_s * 1e3:.0f} ms/step, "
          f"threads {torch.get_num_threads()})")

    ratio = multi / model
    print(f"ratio loader/model = {ratio:.2f} (loader {args.workers} workers over model on {device}; "
          f"target >= {TARGET_LOADER_OVER_MODEL}: {'met' if ratio >= TARGET_LOADER_OVER_MODEL else 'NOT met'})")
    gpu = args.gpu_samples_per_s
    need = math.ceil(gpu / single)
    keeps_up = multi >= gpu
    print(f"GPU estimate: {gpu:.0f} samples/s to feed, {single:.1f} clips/s per worker -> "
          f"required loader workers = {need} (gpu rate / per-worker rate = {gpu / single:.1f}); "
          f"this machine has {os.cpu_count()} cores; {args.workers} workers keep up: "
          f"{'yes' if keeps_up else 'no'} ({multi:.0f} vs {gpu:.0f} clips/s)")
    return {"clips": n_clips, "generation_s": gen["seconds"], "cache_build_s": build["seconds"],
            "cache_disk_bytes": disk, "cache_memory_bytes": memory, "loader_single": single,
            "loader_multi": multi, "model": model, "loader_over_model": ratio, "required_workers": need}


if __name__ == "__main__":
    main()
