"""`piumr compare`: runs side by side on their shared clips (skeleton vs RGB, ablation variants), with
McNemar tests, a late-fusion row and, on the official split, published MA-52 numbers; one Markdown report.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from piumr_skel.data.labels import BODY_CLASSES, NUM_ACTIONS, body_of_action
from piumr_skel.engine.atomic import atomic_to_csv, atomic_write_text
from piumr_skel.engine.checkpoint import CheckpointError, find_checkpoint, read_checkpoint
from piumr_skel.engine.config import ConfigError, TrainConfig, load_saved_config, saved_config
from piumr_skel.engine.metrics import (
    METRIC_ORDER,
    format_metrics_table,
    per_body_accuracy,
    per_class_accuracy,
    score_split,
)

SPLITS = ("train", "val", "test")
# Below this many discordant pairs the chi-square approximation is poor; the usual rule of thumb
# (Edwards 1948; statsmodels' default advice) is to use the exact binomial test then.
EXACT_BELOW = 25


class CompareError(ValueError):
    """Runs that cannot be compared (different split or classes, missing outputs), with the reason."""


# ----------------------------------------------------------------------------- published numbers
@dataclass(frozen=True)
class PublishedRow:
    """One published MA-52 result (official split): percent, None where the paper gives no value."""

    method: str
    input: str
    action_top1: float
    action_top5: float | None
    body_top1: float | None
    f1_mean: float


PUBLISHED_MA52: tuple[PublishedRow, ...] = (
    PublishedRow("C3D", "RGB", 52.22, 86.97, 74.04, 58.43),
    PublishedRow("I3D", "RGB", 57.07, 88.67, 78.16, 61.66),
    PublishedRow("TSM", "RGB", 56.75, 87.47, 77.64, 61.39),
    PublishedRow("SlowFast", "RGB", 59.60, 88.54, 77.18, 63.09),
    PublishedRow("MANet", "RGB", 61.33, 88.83, 78.95, 65.59),
    PublishedRow("PCAN", "RGB + pose", 66.74, None, None, 69.97),
    PublishedRow("CTR-GCN", "skeleton", 52.61, None, None, 56.48),
    PublishedRow("PoseConv3D", "skeleton", 63.52, None, None, 66.66),
)


def published_rows() -> dict[str, dict[str, float]]:
    """Published rows as {"<method> (<input>) [published]": metrics}, NaN where not reported."""
    out = {}
    for r in PUBLISHED_MA52:
        out[f"{r.method} ({r.input}) [published]"] = {
            k: (math.nan if getattr(r, k) is None else float(getattr(r, k)))
            for k in ("action_top1", "action_top5", "body_top1", "f1_mean")}
    return out


# ----------------------------------------------------------------------------- one run's outputs
@dataclass
class RunOutputs:
    """What `compare` reads from one run folder for one split.

    predictions: clip_id, subject, label, pred, correct (rows of predictions_<split>.csv);
    scores: (N, K) class probabilities in the same row order.
    """

    name: str
    path: Path
    config: TrainConfig
    class_names: list[str]
    class_names_source: str
    split_parts: dict[str, list[str]] | None   # run/split/split.json, None when the run has none
    predictions: pd.DataFrame
    scores: np.ndarray
    notes: list[str] = field(default_factory=list)


def _read_checkpoint(path: Path) -> dict:
    try:
        return read_checkpoint(path)
    except CheckpointError as err:
        raise CompareError(str(err)) from None


def _run_config(run: Path, ckpt: dict | None) -> TrainConfig:
    try:
        if (run / "config.yaml").is_file():
            return load_saved_config(run / "config.yaml")
        if ckpt is not None:
            return saved_config(ckpt["config"], source=f"{run} checkpoint")
    except ConfigError as err:
        raise CompareError(f"run {run}: {err}") from None
    raise CompareError(f"{run}: neither config.yaml nor a checkpoint (best.pt / last.pt); is this a run folder?")


def _as_probabilities(scores: np.ndarray) -> tuple[np.ndarray, bool]:
    """Scores as written by `evaluate_run` are softmax probabilities; other scores get a softmax.

    Fusion averages probabilities: averaging raw logits of differently scaled models would let the
    more confident model dominate. Returns (probabilities, whether a softmax was applied).
    """
    if (scores >= 0).all() and np.allclose(scores.sum(1), 1.0, atol=1e-3):
        return scores, False
    z = scores - scores.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True), True


def read_eval_outputs(run: Path, split: str, num_classes: int) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Read predictions_<split>.csv and scores_<split>.npy of a run and check they agree.

    Returns (predictions, scores (N, K) probabilities, notes). Errors name the file and the problem.
    """
    csv_path, npy_path = run / f"predictions_{split}.csv", run / f"scores_{split}.npy"
    # dtype=str: subject ids like "0030" and clip ids must keep their leading zeros.
    try:
        pred = pd.read_csv(csv_path, dtype={"clip_id": str, "subject": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CompareError(f"{csv_path}: not a readable CSV: {err}") from None
    missing = [c for c in ("clip_id", "subject", "label", "pred") if c not in pred.columns]
    if missing:
        raise CompareError(f"{csv_path}: missing column(s) {missing}; expected clip_id, subject, label, pred, correct")
    if len(pred) == 0:
        raise CompareError(f"{csv_path}: no rows")
    for col in ("label", "pred"):
        if not pd.api.types.is_integer_dtype(pred[col]):
            raise CompareError(f"{csv_path}: column {col!r} must hold integer class ids")
    dup = pred["clip_id"][pred["clip_id"].duplicated()]
    if len(dup):
        raise CompareError(f"{csv_path}: clip id {dup.iloc[0]!r} appears more than once")
    try:
        scores = np.load(npy_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CompareError(f"{npy_path}: cannot read the scores: {err}") from None
    if scores.ndim != 2 or scores.shape != (len(pred), num_classes):
        raise CompareError(f"{npy_path}: scores have shape {scores.shape}, expected ({len(pred)}, {num_classes}) "
                           f"= (rows of {csv_path.name}, classes of the run)")
    if not np.isfinite(scores).all():
        raise CompareError(f"{npy_path}: scores contain NaN or inf")
    bad = (pred["label"] < 0) | (pred["label"] >= num_classes)
    if bad.any():
        raise CompareError(f"{csv_path}: label {pred['label'][bad].iloc[0]} outside 0..{num_classes - 1}")
    if not (scores.argmax(1) == pred["pred"].to_numpy()).all():
        raise CompareError(f"{npy_path} does not match {csv_path.name}: its argmax differs from the 'pred' "
                           f"column; were they written by different evaluations?")
    probs, softmaxed = _as_probabilities(scores.astype(np.float64))
    notes = [f"{npy_path.name} did not hold probabilities; a softmax was applied"] if softmaxed else []
    pred = pred.assign(correct=pred["pred"] == pred["label"])
    return pred.reset_index(drop=True), probs, notes


def load_run(run: str | Path, split: str = "val", *, name: str | None = None, device: str = "auto",
             evaluate_missing: bool = True) -> RunOutputs:
    """Read a run folder's config, class names, split files and eval outputs for `split`.

    Class names come from the checkpoint (what the model was trained with), else from the config.
    When predictions_<split>.csv / scores_<split>.npy are missing and `evaluate_missing`, they are
    made with `piumr_skel.engine.evaluate.evaluate_run` (which needs the checkpoint and the data).
    """
    from piumr_skel.data.splits import SPLIT_JSON, read_split_file

    if split not in SPLITS:
        raise CompareError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    run = Path(run)
    if not run.is_dir():
        raise CompareError(f"{run}: not a run folder")
    ckpt_path = find_checkpoint(run)
    ckpt = _read_checkpoint(ckpt_path) if ckpt_path else None
    cfg = _run_config(run, ckpt)
    if ckpt_path is not None and ckpt is not None:
        class_names, source = [str(c) for c in ckpt["class_names"]], ckpt_path.name
    else:
        from piumr_skel.engine.data_setup import class_names_for

        try:
            class_names = class_names_for(cfg)
        except (OSError, ValueError) as err:
            raise CompareError(f"run {run}: no checkpoint, and the config's class names cannot be read: {err}") \
                from None
        source = f"config ({cfg.class_names or 'MA-52 names'})"
    have = (run / f"predictions_{split}.csv").is_file() and (run / f"scores_{split}.npy").is_file()
    notes: list[str] = []
    if not have:
        if not evaluate_missing or ckpt_path is None:
            raise CompareError(f"{run}: no predictions_{split}.csv + scores_{split}.npy"
                               + ("" if ckpt_path else " and no checkpoint to make them with")
                               + f"; run `piumr eval {run} --split {split}` first")
        from piumr_skel.engine.evaluate import evaluate_run

        try:
            evaluate_run(run, split=split, device=device, quiet=True)
        except (FileNotFoundError, ValueError) as err:
            raise CompareError(f"{run}: could not evaluate the {split} split: {err}") from None
        notes.append(f"evaluated {ckpt_path.name} on {split} to make its predictions")
    pred, scores, more = read_eval_outputs(run, split, len(class_names))
    split_parts = read_split_file(run / "split") if (run / "split" / SPLIT_JSON).is_file() else None
    return RunOutputs(name=name or run.name, path=run, config=cfg, class_names=class_names,
                      class_names_source=source, split_parts=split_parts, predictions=pred, scores=scores,
                      notes=notes + more)


# ----------------------------------------------------------------------------- compatibility
def _split_settings(cfg: TrainConfig) -> dict[str, object]:
    """The config fields that decide the split: fold and split seed only matter for the xsub protocol."""
    out: dict[str, object] = {"split": cfg.split}
    if cfg.split == "xsub":
        out.update(fold=cfg.fold, folds=cfg.folds, split_seed=cfg.split_seed)
    return out


def incompatibilities(runs: Sequence[RunOutputs]) -> list[str]:
    """Reasons why these runs cannot be compared (empty when they can); each run vs the first."""
    ref = runs[0]
    reasons: list[str] = []
    for r in runs[1:]:
        pair = f"{r.name!r} vs {ref.name!r}"
        if r.class_names != ref.class_names:
            if len(r.class_names) != len(ref.class_names):
                what = f"{len(r.class_names)} classes ({r.class_names_source}) vs {len(ref.class_names)}"
            else:
                i = next(i for i, (a, b) in enumerate(zip(r.class_names, ref.class_names)) if a != b)
                what = f"class {i} is {r.class_names[i]!r} vs {ref.class_names[i]!r}"
            reasons.append(f"{pair}: different class sets: {what}")
        a, b = _split_settings(r.config), _split_settings(ref.config)
        if a != b:
            keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            diff = ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in keys)
            reasons.append(f"{pair}: different splits in the configs: {diff}")
        if r.split_parts is not None and ref.split_parts is not None:
            for part in sorted(set(r.split_parts) | set(ref.split_parts)):
                sa, sb = set(r.split_parts.get(part, ())), set(ref.split_parts.get(part, ()))
                if sa != sb:
                    reasons.append(f"{pair}: the {part} part of split/split.json differs: {len(sa - sb)} clips only in "
                                   f"{r.name!r}, {len(sb - sa)} only in {ref.name!r}")
        shared = ref.predictions.merge(r.predictions, on="clip_id", suffixes=("_ref", "_run"))
        for col, what in (("label", "labels"), ("subject", "subject ids")):
            bad = shared[shared[f"{col}_ref"] != shared[f"{col}_run"]]
            if len(bad):
                c = bad.iloc[0]
                reasons.append(f"{pair}: different {what} on {len(bad)} shared clips (e.g. {c['clip_id']}: "
                               f"{c[f'{col}_run']!r} vs {c[f'{col}_ref']!r}); different label files?")
    return reasons


def check_compatible(runs: Sequence[RunOutputs]) -> None:
    """Raise CompareError listing every reason the runs cannot be compared."""
    reasons = incompatibilities(runs)
    if reasons:
        raise CompareError("these runs cannot be compared:\n  " + "\n  ".join(reasons))


@dataclass
class Aligned:
    """Runs restricted to the clips they all scored, in the first run's order.

    scores[i]: (N, K) probabilities of run i; labels (N,), subjects (N,) and clip_ids (N,).
    """

    clip_ids: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    scores: list[np.ndarray]


def align_runs(runs: Sequence[RunOutputs]) -> Aligned:
    """Keep the clip ids every run scored; a CompareError when there are none."""
    shared = set(runs[0].predictions["clip_id"])
    for r in runs[1:]:
        shared &= set(r.predictions["clip_id"])
    if not shared:
        raise CompareError("the runs share no scored clip: " + ", ".join(
            f"{r.name!r} scored {len(r.predictions)} clips (e.g. {r.predictions['clip_id'].iloc[0]})" for r in runs))
    ref = runs[0].predictions
    ids = ref["clip_id"][ref["clip_id"].isin(shared)].to_numpy()
    scores = []
    for r in runs:
        row = pd.Series(np.arange(len(r.predictions)), index=r.predictions["clip_id"])
        scores.append(r.scores[row.loc[ids].to_numpy()])
    keep = ref.set_index("clip_id").loc[ids]
    return Aligned(clip_ids=ids, labels=keep["label"].to_numpy(np.int64), subjects=keep["subject"].to_numpy(str),
                   scores=scores)


# ----------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class McNemar:
    """Paired test of two classifiers on the same clips.

    only_a: clips A gets right and B wrong; only_b: the reverse. The test only looks at these
    discordant clips: under H0 (equal accuracy) each is equally likely to favour A or B.
    """

    only_a: int
    only_b: int
    statistic: float        # chi-square with continuity correction, or the smaller count for the exact test
    p_value: float
    method: str             # "exact binomial" | "chi-square (continuity corrected)" | "none (no discordant clips)"


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, *, exact_below: int = EXACT_BELOW) -> McNemar:
    """McNemar's test on paired correctness (N,) bool arrays, two-sided.

    With n = only_a + only_b < exact_below discordant clips: exact binomial test of only_a ~ Bin(n, 1/2).
    Otherwise chi² = (|only_a − only_b| − 1)² / n with one degree of freedom (Edwards' correction).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"mcnemar: correct_a {a.shape} and correct_b {b.shape} must be equal-length 1-D arrays")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    if n == 0:
        return McNemar(only_a, only_b, 0.0, 1.0, "none (no discordant clips)")
    if n < exact_below:
        p = stats.binomtest(only_a, n, 0.5, alternative="two-sided").pvalue
        return McNemar(only_a, only_b, float(min(only_a, only_b)), float(min(1.0, p)), "exact binomial")
    chi2 = (abs(only_a - only_b) - 1.0) ** 2 / n
    return McNemar(only_a, only_b, float(chi2), float(stats.chi2.sf(chi2, df=1)),
                   "chi-square (continuity corrected)")


def weighted_fusion(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Σ_r w_r p_r / Σ_r w_r over runs' softmax probabilities, each (N, K) on the same clips."""
    if len(scores) < 2:
        raise ValueError("late fusion needs at least two runs")
    if len(scores) != len(weights):
        raise ValueError(f"{len(scores)} runs but {len(weights)} weights")
    shapes = {s.shape for s in scores}
    if len(shapes) != 1:
        raise ValueError(f"late fusion: score shapes differ: {sorted(shapes)}")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"fusion weights must be >= 0 and not all 0, got {list(weights)}")
    return np.tensordot(w / w.sum(), np.stack(scores), axes=1)


def late_fusion(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Late fusion: the mean of the runs' softmax probabilities, each (N, K) on the same clips."""
    return weighted_fusion(scores, [1.0] * len(scores))


# ----------------------------------------------------------------------------- the report
@dataclass
class CompareReport:
    """The tables of a comparison (also written as CSV) and the files written."""

    out_dir: Path
    report: Path
    metrics: pd.DataFrame          # rows: runs, fusion, published; columns METRIC_ORDER + clips
    per_body: pd.DataFrame         # rows: runs, fusion; columns BODY_CLASSES (recall %)
    per_class: pd.DataFrame        # one row per class: support and recall per run
    significance: pd.DataFrame     # one row per tested pair
    figures: list[Path]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def _unique_names(paths: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(paths):
            raise CompareError(f"{len(names)} names given for {len(paths)} runs")
        out = [str(n) for n in names]
    else:
        out = [p.name or str(p) for p in paths]
    seen: dict[str, int] = {}
    for i, n in enumerate(out):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            out[i] = f"{n} #{seen[n]}"
    return out


def _describe(r: RunOutputs) -> str:
    c = r.config
    if c.modality == "rgb":
        model = f"RGB {c.backbone}"
    else:
        model = f"skeleton {c.backbone} ({c.layout}, {c.stream})"
    parts = [p for p, on in (("TFAM", c.tfam), ("GIRL", c.girl)) if on]
    variant = " + ".join(parts) if parts else "ERM"
    split = c.split + (f" fold {c.fold}/{c.folds} seed {c.seed}" if c.split == "xsub" else "")
    return (f"`{_md(str(r.path))}`: {model}, {variant}; split {split}; {len(r.predictions)} clips scored; "
            f"classes from {r.class_names_source}")


def compare_runs(runs: Sequence[str | Path], out_dir: str | Path, *, split: str = "val",
                 names: Sequence[str] | None = None, fuse: Sequence[int] | None = (0, 1),
                 published: bool | None = None, device: str = "auto", evaluate_missing: bool = True,
                 exact_below: int = EXACT_BELOW, echo: Callable[[str], None] | None = None) -> CompareReport:
    """Compare runs on the clips they share and write report.md, CSV tables and PNGs into out_dir.

    fuse: 0-based positions of the runs whose softmax scores are averaged into a late-fusion row
    (default the first two; None or fewer than two runs: no fusion). published: add the
    published MA-52 rows, `PUBLISHED_MA52` (None: only when the runs use the official split).
    McNemar tests cover every pair of runs and the fusion against each run it fuses.
    """
    if not runs:
        raise CompareError("no runs to compare")
    paths = [Path(r) for r in runs]
    labels_ = _unique_names(paths, names)
    loaded = [load_run(p, split, name=n, device=device, evaluate_missing=evaluate_missing)
              for p, n in zip(paths, labels_)]
    check_compatible(loaded)
    al = align_runs(loaded)
    n_clips = len(al.clip_ids)
    class_names = loaded[0].class_names
    k = len(class_names)
    if k > NUM_ACTIONS:
        raise CompareError(f"{k} classes: the MA-52 body metrics need at most {NUM_ACTIONS}")

    rows: dict[str, np.ndarray] = {r.name: s for r, s in zip(loaded, al.scores)}
    fusion_name, fused_members = None, []
    if fuse is not None and len(loaded) >= 2:
        members = list(dict.fromkeys(int(i) for i in fuse))
        bad = [i for i in members if not 0 <= i < len(loaded)]
        if len(members) < 2 or bad:
            raise CompareError(f"fuse needs at least two distinct run positions in 1..{len(loaded)}, "
                               f"got {[i + 1 for i in fuse]}")
        fused_members = [loaded[i].name for i in members]
        fusion_name = "late fusion: " + " + ".join(fused_members)
        rows[fusion_name] = late_fusion([al.scores[i] for i in members])

    metrics = {name: {**score_split(s, al.labels, al.subjects, class_names=class_names), "clips": n_clips}
               for name, s in rows.items()}
    protocols = {r.config.split for r in loaded}
    if published is None:
        published = protocols == {"official"}
    if published:
        metrics.update({name: {**m, "clips": math.nan} for name, m in published_rows().items()})
    metrics_df = pd.DataFrame.from_dict(metrics, orient="index")
    metrics_df = metrics_df[[c for c in METRIC_ORDER if c in metrics_df.columns] + ["clips"]]
    metrics_df.index.name = "run"

    preds = {name: s.argmax(1) for name, s in rows.items()}
    body_df = pd.DataFrame({name: per_body_accuracy(al.labels, p) for name, p in preds.items()},
                           index=list(BODY_CLASSES)).T
    body_support = np.bincount(body_of_action(al.labels), minlength=len(BODY_CLASSES))
    body_df.loc["clips"] = body_support.astype(np.float64)
    body_df.index.name = "run"

    per_class_df = pd.DataFrame({"class_id": np.arange(k), "class": class_names,
                                 "body": [BODY_CLASSES[b] for b in body_of_action(np.arange(k))],
                                 "support": np.bincount(al.labels, minlength=k)})
    accs = {name: per_class_accuracy(al.labels, p, k) for name, p in preds.items()}
    for name, acc in accs.items():
        per_class_df[f"acc: {name}"] = acc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = _per_class_figures(loaded[0].name, accs, class_names, out)

    sig_rows = []
    names_in_rows = list(rows)
    pairs = [(names_in_rows[i], names_in_rows[j]) for i in range(len(loaded)) for j in range(i + 1, len(loaded))]
    if fusion_name:
        pairs += [(fusion_name, m) for m in fused_members]
    for a, b in pairs:
        ca, cb = preds[a] == al.labels, preds[b] == al.labels
        t = mcnemar(ca, cb, exact_below=exact_below)
        sig_rows.append({"a": a, "b": b, "clips": n_clips, "acc_a": 100 * ca.mean(), "acc_b": 100 * cb.mean(),
                         "only_a_correct": t.only_a, "only_b_correct": t.only_b, "test": t.method,
                         "statistic": t.statistic, "p_value": t.p_value})
    sig_df = pd.DataFrame(sig_rows, columns=["a", "b", "clips", "acc_a", "acc_b", "only_a_correct",
                                             "only_b_correct", "test", "statistic", "p_value"])

    atomic_to_csv(metrics_df, out / "metrics.csv")
    atomic_to_csv(body_df, out / "per_body.csv")
    atomic_to_csv(per_class_df, out / "per_class.csv", index=False)
    atomic_to_csv(sig_df, out / "significance.csv", index=False)
    report = out / "report.md"
    atomic_write_text(report, _render(loaded, split, al, metrics_df, body_df, sig_df, figures, fusion_name,
                                      bool(published), exact_below))
    atomic_write_text(out / "compare.json", json.dumps({
        "split": split, "shared_clips": n_clips, "runs": {r.name: str(r.path) for r in loaded},
        "fusion": fused_members, "published_rows": bool(published),
        "metrics": json.loads(metrics_df.to_json(orient="index")),
        "significance": json.loads(sig_df.to_json(orient="records"))}, indent=1))
    if echo is not None:
        echo(format_metrics_table(metrics_df))
        echo(f"report: {report}")
    return CompareReport(out_dir=out, report=report, metrics=metrics_df, per_body=body_df,
                         per_class=per_class_df, significance=sig_df, figures=figures)


def _per_class_figures(reference: str, accs: dict[str, np.ndarray], class_names: Sequence[str],
                       out: Path) -> list[Path]:
    """One bar plot of per-class accuracy differences per row (runs after the first, fusion) vs the first run."""
    from piumr_skel.engine.plots import plot_per_class_difference

    figures = []
    for name, acc in accs.items():
        if name == reference:
            continue
        path = out / f"per_class_{_slug(name)}_vs_{_slug(reference)}.png"
        figures.append(plot_per_class_difference(acc, accs[reference], class_names, path, names=(name, reference)))
    return figures


def _body_cells(body_df: pd.DataFrame) -> pd.DataFrame:
    """Recalls with 2 decimals and the clip counts as integers, as strings: format_metrics_table would
    otherwise print a column as integers whenever all its recalls happen to be whole numbers."""
    cells = body_df.apply(lambda col: col.map(lambda v: "–" if not np.isfinite(v) else f"{v:.2f}"))
    cells.loc["clips"] = [str(int(v)) for v in body_df.loc["clips"]]
    return cells


def _fmt_p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def _render(runs: Sequence[RunOutputs], split: str, al: Aligned, metrics_df: pd.DataFrame, body_df: pd.DataFrame,
            sig_df: pd.DataFrame, figures: list[Path], fusion_name: str | None, published: bool,
            exact_below: int) -> str:
    n = len(al.clip_ids)
    lines = [f"# Run comparison: {split} split, {n} shared clips, {len(np.unique(al.subjects))} subjects", "",
             "## Runs", ""]
    lines += [f"{i}. **{_md(r.name)}**: {_describe(r)}" for i, r in enumerate(runs, 1)]
    notes = [f"{r.name}: {note}" for r in runs for note in r.notes]
    notes += [f"{r.name}: {len(r.predictions) - n} of its {len(r.predictions)} scored clips are not scored by every "
              f"run and are left out" for r in runs if len(r.predictions) > n]
    if any(r.split_parts is None for r in runs):
        notes.append("runs without split/split.json were checked by their config's split settings only")
    if notes:
        lines += ["", "Notes:", ""] + [f"* {_md(s)}" for s in notes]
    lines += ["", "## Metrics (percent)", "",
              "Every official MA-52 metric and the person-level robustness figures (per-subject accuracy "
              "mean, std and mean of the worst 10% of subjects), all on the same shared clips.", "",
              format_metrics_table(metrics_df.rename(index=_md)), ""]
    if fusion_name:
        lines += [f"**{_md(fusion_name)}** averages the softmax scores of those runs clip by clip "
                  f"(late fusion, e.g. the RGB + skeleton ensemble).", ""]
    if published:
        lines += ["Rows marked **[published]** are copied from the MA-52 papers (official split); "
                  "they were **not reproduced** here and were not computed on these clips. '–' = not reported.",
                  ""]
    lines += ["## Per body part (recall, percent)", "",
              "Accuracy on the clips of each of the 7 MA-52 body classes (body of the predicted action vs "
              "the true one); the last row counts the clips.", "",
              format_metrics_table(_body_cells(body_df).rename(index=_md)), ""]
    lines += ["## Per-class differences", ""]
    if figures:
        lines += [f"![{f.stem}]({f.name})" for f in figures]
        lines += ["", "Bars: accuracy difference per class (points), sorted from largest gain to largest loss, "
                      "coloured by body class. Per-class accuracies of every run: `per_class.csv`.", ""]
    else:
        lines += ["One run only: per-class accuracies are in `per_class.csv`.", ""]
    lines += ["## Paired significance (McNemar)", ""]
    if len(sig_df):
        lines += [f"Two-sided McNemar test on the {n} shared clips: only the clips that exactly one of the two "
                  f"gets right count. Exact binomial test below {exact_below} such clips, else chi-square with "
                  f"continuity correction (scipy.stats).", "",
                  "| A | B | acc A | acc B | only A right | only B right | test | statistic | p-value |",
                  "|---|---|---:|---:|---:|---:|---|---:|---:|"]
        for r in sig_df.itertuples(index=False):
            lines.append(f"| {_md(r.a)} | {_md(r.b)} | {r.acc_a:.2f} | {r.acc_b:.2f} | {r.only_a_correct} | "
                         f"{r.only_b_correct} | {r.test} | {r.statistic:.3g} | {_fmt_p(r.p_value)} |")
    else:
        lines.append("One run only: nothing to test.")
    lines += ["", "Files: `metrics.csv`, `per_body.csv`, `per_class.csv`, `significance.csv`, `compare.json`.", ""]
    return "\n".join(lines)
