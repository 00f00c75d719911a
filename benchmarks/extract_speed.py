"""Extraction speed: a bare decode + Holistic loop against `extract_videos` with 1 and 2 workers.

    python benchmarks/extract_speed.py [VIDEOS] [--repeat 2] [--max-side 0]

All runs see the same frames (the folder's clips, repeated ``--repeat`` times through symlinks).
The bare loop is the ceiling for one process: decode, BGR->RGB, Holistic on full-size frames, nothing
else. Targets: 1 worker / bare >= 0.9 (the store, checks and bookkeeping cost little) and
2 workers / 1 worker >= 1.7 on 2 free cores. Graph start-up is inside the library timings.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

# MediaPipe's C++ side logs a warning per graph and per model to stderr; keep the benchmark readable.
# Set before mediapipe is imported (worker processes inherit it). A user's own setting wins.
os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402

from pose_extract import ExtractSettings, extract_videos  # noqa: E402
from pose_extract.video import find_videos  # noqa: E402

DEFAULT_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "ma52" / "videos"


def bare_loop(paths: list[Path]) -> tuple[int, float]:
    """(frames, seconds) of decode + Holistic (video mode, complexity 1) on full-size frames."""
    import mediapipe as mp

    with mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=1) as holistic:
        n, start = 0, time.perf_counter()
        for p in paths:
            holistic.reset()
            cap = cv2.VideoCapture(str(p))
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                holistic.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                n += 1
            cap.release()
        return n, time.perf_counter() - start


def library(folder: Path, out: Path, workers: int, max_side: int) -> tuple[int, float]:
    start = time.perf_counter()
    report = extract_videos(folder, out, settings=ExtractSettings(max_side=max_side), workers=workers,
                            progress=False)
    if report.failed:
        raise SystemExit(f"extraction failed: {report.failed}")
    return report.frames, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="?", type=Path, default=DEFAULT_VIDEOS)
    ap.add_argument("--repeat", type=int, default=2, help="use every clip this many times")
    ap.add_argument("--max-side", type=int, default=0,
                    help="--max-side of the library runs (0 = full size, the bare loop's work)")
    args = ap.parse_args()
    clips = find_videos(args.videos)
    if not clips:
        raise SystemExit(f"no videos under {args.videos}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        for r in range(args.repeat):
            for c in clips:
                (folder / f"{c.stem}_r{r}{c.suffix}").symlink_to(c.resolve())
        paths = find_videos(folder)
        load = os.getloadavg()[0]
        print(f"{len(paths)} clips from {args.videos}; {os.cpu_count()} CPUs, "
              f"load average {load:.1f} before the runs; {platform.processor() or platform.machine()}")
        results = {}
        n, s = bare_loop(paths)
        results["bare"] = n / s
        print(f"bare loop (full-size frames):        {n} frames  {s:6.1f} s  {n / s:6.1f} fps")
        for w in (1, 2):
            n, s = library(folder, Path(tmp) / f"store{w}", w, args.max_side)
            results[w] = n / s
            print(f"extract_videos, {w} worker(s), max_side={args.max_side}: {n} frames  {s:6.1f} s  "
                  f"{n / s:6.1f} fps")
        print(f"ratio 1 worker / bare   = {results[1] / results['bare']:.2f}  (target >= 0.9)")
        print(f"ratio 2 workers / 1     = {results[2] / results[1]:.2f}  (target >= 1.7)")


if __name__ == "__main__":
    main()
