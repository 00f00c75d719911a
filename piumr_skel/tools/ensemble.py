"""`piumr ensemble`: weighted late fusion of runs that differ only in their stream (the 2:2:1:1
joint/bone/joint-motion/bone-motion ensemble of the skeleton literature), scored on one split."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from piumr_skel.engine.atomic import atomic_write_text
from piumr_skel.engine.metrics import format_metrics_table, score_split
from piumr_skel.tools.compare import CompareError, align_runs, check_compatible, load_run, weighted_fusion

# The classic multi-stream weights: joint and bone count twice, their motions once.
STREAM_WEIGHTS = {"joint": 2.0, "bone": 2.0, "hand_local": 2.0, "joint_motion": 1.0, "bone_motion": 1.0}


def ensemble_runs(runs: Sequence[str | Path], *, split: str = "test", weights: Sequence[float] | None = None,
                  out: str | Path | None = None, device: str = "auto",
                  echo: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """Metrics of each run and of their weighted late fusion on the clips they share.

    weights default to STREAM_WEIGHTS by each run's stream. Runs on different splits or class
    sets are refused (as `piumr compare` refuses them). Writes OUT/ensemble_<split>.json and .md.
    """
    if len(runs) < 2:
        raise CompareError("an ensemble needs at least two runs")
    loaded = [load_run(r, split, device=device) for r in runs]
    check_compatible(loaded)
    if weights is None:
        weights = [STREAM_WEIGHTS.get(r.config.stream, 1.0) for r in loaded]
    al = align_runs(loaded)
    names = loaded[0].class_names
    rows = {f"{r.name} ({r.config.stream}, w {w:g})": score_split(s, al.labels, al.subjects, class_names=names)
            for r, s, w in zip(loaded, al.scores, weights)}
    fused = weighted_fusion(al.scores, weights)
    rows["ensemble " + ":".join(f"{w:g}" for w in weights)] = score_split(fused, al.labels, al.subjects,
                                                                          class_names=names)
    table = format_metrics_table(rows)
    echo(table)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"ensemble_{split}.json", json.dumps(
            {"runs": [str(r) for r in runs], "weights": list(weights), "clips": int(len(al.labels)),
             "metrics": rows}, indent=1))
        atomic_write_text(out / f"ensemble_{split}.md", table + "\n")
        echo(f"saved to {out}/ensemble_{split}.json")
    return rows
