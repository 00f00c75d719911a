"""Per-clip cost of the training augmentations, against a per-joint loop reference in this process.

Times, interleaved round by round on the same random clips of the layout (the cost does not
depend on what the clips show):

* `geometric`: `augment_clip` (crop-resize, flip, rotation, scale) on a sampled T-frame window;
* `person-style`: `person_style` (limb lengths, amplitude, posture, tempo) on the whole clip, as the
  dataset applies it before frame sampling, with our `scale_limbs` (one ancestry matmul);
* `person-style, loop reference`: the same, with the joints rebuilt one by one from the root in
  the layout's topological order (the straightforward way, written out below).

Prints ms per clip and the ratio reference/ours for the person-style augmentation, and checks that
the two give the same clips. Run from the repository root: `python benchmarks/augment_speed.py`.
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from typing import Iterator
from unittest import mock

import numpy as np

from piumr_skel.data import transforms
from piumr_skel.skeleton.layouts import get_layout


def loop_scale_limbs(x: np.ndarray, layout, factors: np.ndarray) -> np.ndarray:
    """Reference: every bone scaled, the joints rebuilt parent first (a Python loop over the joints)."""
    parents = np.asarray(layout.parents)
    out = np.array(x, dtype=np.float32, copy=True)
    bones = x[..., :2] - x[:, parents, :2]
    for v in transforms._topological_order(parents):
        if parents[v] != v:
            out[:, v, :2] = out[:, parents[v], :2] + bones[:, v] * factors[v]
    return out


@contextmanager
def reference_limbs() -> Iterator[None]:
    with mock.patch.object(transforms, "scale_limbs", loop_scale_limbs):
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layout", default="mp_pose")
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--frames", type=int, default=60, help="frames per clip (synthetic clips are 45-75)")
    ap.add_argument("--T", type=int, default=8, help="frames sampled per clip for the geometric augmentation")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke test: 20 clips, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.clips, args.repeats = 20, 2
    layout = get_layout(args.layout)
    rng0 = np.random.default_rng(0)
    clips = [rng0.normal(size=(args.frames, layout.num_joints, 3)).astype(np.float32) * 0.3
             for _ in range(args.clips)]
    geo = transforms.AugmentConfig()
    person = transforms.PersonStyleConfig()  # as training uses it: each part with probability 0.5

    def geometric() -> None:
        for i, c in enumerate(clips):
            transforms.augment_clip(c[: args.T], layout, geo, np.random.default_rng(i))

    def person_style() -> list[np.ndarray]:
        return [transforms.person_style(c, layout, np.random.default_rng(i), person) for i, c in enumerate(clips)]

    def person_style_loop() -> list[np.ndarray]:
        with reference_limbs():
            return person_style()

    ours, ref = person_style(), person_style_loop()
    worst = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref))
    times: dict[str, list[float]] = {"geometric": [], "person-style": [], "person-style, loop reference": []}
    for _ in range(args.repeats):
        for name, fn in (("geometric", geometric), ("person-style", person_style),
                         ("person-style, loop reference", person_style_loop)):
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) / len(clips) * 1e3)
    print(f"layout {args.layout} (V={layout.num_joints}), {args.clips} clips of {args.frames} frames, "
          f"{args.repeats} rounds; max |ours - loop reference| = {worst:.2e}")
    for name, ts in times.items():
        print(f"{name:30s} {np.median(ts):7.3f} ms/clip  (min {min(ts):.3f}, max {max(ts):.3f})")
    ratio = np.median(times["person-style, loop reference"]) / np.median(times["person-style"])
    print(f"ratio person-style loop reference/ours time per clip = {ratio:.2f}")


if __name__ == "__main__":
    main()
