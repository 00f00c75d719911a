"""Figures for runs and comparisons (matplotlib, Agg backend, PNG): curves, confusion, per-subject and per-class plots.

Each function takes its data and an output path, writes one PNG and returns the path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence, TypeAlias

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in CI; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from piumr_skel.data.labels import BODY_CLASSES, BODY_STARTS, NUM_ACTIONS, body_of_action  # noqa: E402
from piumr_skel.engine.atomic import atomic_path  # noqa: E402
from piumr_skel.engine.metrics import METRIC_TITLES, confusion_matrix  # noqa: E402

History: TypeAlias = pd.DataFrame | Sequence[Mapping[str, float]]
_BODY_COLORS = [plt.get_cmap("tab10")(i) for i in range(len(BODY_CLASSES))]  # RGBA, one per body class


def _frame(history: History, what: str) -> pd.DataFrame:
    frame = history.copy() if isinstance(history, pd.DataFrame) else pd.DataFrame(list(history))
    if frame.empty:
        raise ValueError(f"{what}: no epochs to plot")
    if "epoch" not in frame.columns:
        frame["epoch"] = np.arange(1, len(frame) + 1)
    return frame


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:   # a figure redrawn while someone opens it is the old one or the new one
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)                   # a failed draw does not leak the figure either
    return path


def _title(name: str) -> str:
    for prefix in ("val_", "train_", "test_"):
        if name.startswith(prefix) and name[len(prefix):] in METRIC_TITLES:
            return f"{prefix[:-1]} {METRIC_TITLES[name[len(prefix):]]}"
    return METRIC_TITLES.get(name, name)


def plot_training_curves(history: History, path: str | Path, *,
                         metrics: Sequence[str] | None = None) -> Path:
    """Losses (left) and metrics (right) per epoch from a list of per-epoch dicts or a DataFrame.

    Loss columns are those whose name contains "loss"; metrics default to the val_* columns
    among Top-1, Top-5, F1_mean and worst-10% subject accuracy.
    """
    frame = _frame(history, "training curves")
    numeric = [c for c in frame.columns if c != "epoch" and pd.api.types.is_numeric_dtype(frame[c])]
    losses = [c for c in numeric if "loss" in c]
    if metrics is None:
        metrics = [c for c in ("val_action_top1", "val_action_top5", "val_f1_mean", "val_subj_acc_worst10")
                   if c in frame.columns]
    if not losses and not metrics:
        raise ValueError(f"training curves: no loss or metric columns among {list(frame.columns)}")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, cols, ylabel in ((axes[0], losses, "loss"), (axes[1], list(metrics), "%")):
        for c in cols:
            ax.plot(frame["epoch"], frame[c], marker="o", ms=3, label=_title(c))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if cols:
            ax.legend(fontsize=8)
    axes[0].set_title("losses")
    axes[1].set_title("validation metrics")
    return _save(fig, path)


def _body_separators(ax: plt.Axes, k: int) -> None:
    """Lines between MA-52 body groups on both axes of a (k, k) image."""
    for start in BODY_STARTS[1:]:
        if start < k:
            ax.axhline(start - 0.5, color="k", lw=0.8)
            ax.axvline(start - 0.5, color="k", lw=0.8)


def plot_confusion_matrix(gt: np.ndarray, pred: np.ndarray, class_names: Sequence[str], path: str | Path, *,
                          normalize: bool = True, title: str | None = None) -> Path:
    """Confusion matrix, rows = true class normalised to recall (or counts), with body-group separators.

    Up to 52 classes, ids in MA-52 order, so that the lines split the 7 body classes; tick labels
    carry the class names, coloured by body class.
    """
    k = len(class_names)
    cm = confusion_matrix(gt, pred, k).astype(np.float64)
    if normalize:
        support = cm.sum(1, keepdims=True)
        cm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    size = max(5.0, 0.22 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, shrink=0.6, label="recall" if normalize else "clips")
    ticks = np.arange(k)
    ax.set_xticks(ticks, [f"{i} {n}" for i, n in enumerate(class_names)], rotation=90, fontsize=6)
    ax.set_yticks(ticks, [f"{i} {n}" for i, n in enumerate(class_names)], fontsize=6)
    if k <= NUM_ACTIONS:
        _body_separators(ax, k)
        colors = [_BODY_COLORS[b] for b in body_of_action(np.arange(k))]
        for lab, col in zip(ax.get_xticklabels(), colors):
            lab.set_color(col)
        for lab, col in zip(ax.get_yticklabels(), colors):
            lab.set_color(col)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"confusion matrix ({len(np.asarray(gt))} clips)")
    return _save(fig, path)


def plot_subject_accuracy(variants: Mapping[str, Sequence[float] | pd.Series], path: str | Path, *,
                          seed: int = 0, title: str = "per-subject accuracy") -> Path:
    """Per-subject accuracy distributions of several variants side by side: box plot plus jittered points.

    variants: name -> per-subject accuracies in percent (e.g. `metrics.per_subject_accuracy`). The
    jitter is drawn from np.random.default_rng(seed), so the figure is reproducible.
    """
    if not variants:
        raise ValueError("per-subject accuracy plot: no variants")
    names = list(variants)
    data = [np.asarray(variants[n], dtype=np.float64) for n in names]
    for n, d in zip(names, data):
        if d.size == 0:
            raise ValueError(f"per-subject accuracy plot: variant {n!r} has no subjects")
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4.5))
    ax.boxplot(data, showfliers=False, widths=0.5)
    ax.set_xticks(np.arange(1, len(names) + 1), names)
    for i, d in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, d.size), d, s=10, alpha=0.6, zorder=3)
        ax.plot([i - 0.3, i + 0.3], [d.mean()] * 2, color="crimson", lw=1.5, zorder=4)
    ax.set_ylabel("accuracy per subject (%)")
    ax.set_title(f"{title} (red: mean)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_validation_curves(runs: Mapping[str, History], path: str | Path, *,
                           metric: str = "val_action_top1", train_metric: str | None = None) -> Path:
    """One validation metric per epoch for several runs (name -> per-epoch history) on one axis.

    With `train_metric` (e.g. "train_acc") the training curve is drawn on a second axis beside it,
    so one sees whether a run under-fits or over-fits; epochs without a value are skipped.
    """
    if not runs:
        raise ValueError("validation curves: no runs")
    panels = [(metric, "validation")] + ([(train_metric, "training")] if train_metric else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (col, what) in zip(axes[0][::-1], panels):   # training (when drawn) on the left
        for name, history in runs.items():
            frame = _frame(history, f"{what} curves ({name})")
            if col not in frame.columns:
                raise ValueError(f"{what} curves: run {name!r} has no column {col!r}")
            frame = frame[["epoch", col]].dropna()
            ax.plot(frame["epoch"], frame[col], marker="o", ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training accuracy (%)" if col == "train_acc" else f"{_title(col)} (%)")
        ax.set_title(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _per_class_axes(k: int) -> tuple[plt.Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(max(8.0, 0.22 * k + 2), 4.8))
    ax.axhline(0, color="k", lw=0.8)
    if k <= NUM_ACTIONS:
        for start in BODY_STARTS[1:]:
            if start < k:
                ax.axvline(start - 0.5, color="grey", lw=0.6, ls="--")
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def plot_per_class_change(variants: Mapping[str, np.ndarray], reference: np.ndarray,
                          class_names: Sequence[str], path: str | Path, *,
                          reference_name: str = "ERM") -> Path:
    """Per-class accuracy change (variant minus reference, points) for one or more variants, grouped bars.

    variants: name -> per-class accuracy (K,) in percent (`metrics.per_class_accuracy`); NaN classes
    (absent from gt) are drawn as gaps. Classes stay in id order with dashed body-group separators.
    """
    reference = np.asarray(reference, dtype=np.float64)
    k = len(class_names)
    if reference.shape != (k,):
        raise ValueError(f"per-class change: reference has shape {reference.shape}, expected ({k},)")
    if not variants:
        raise ValueError("per-class change: no variants")
    fig, ax = _per_class_axes(k)
    width = 0.8 / len(variants)
    for i, (name, acc) in enumerate(variants.items()):
        acc = np.asarray(acc, dtype=np.float64)
        if acc.shape != (k,):
            raise ValueError(f"per-class change: variant {name!r} has shape {acc.shape}, expected ({k},)")
        ax.bar(np.arange(k) - 0.4 + width * (i + 0.5), acc - reference, width=width, label=name)
    ax.set_xticks(np.arange(k), class_names, rotation=90, fontsize=6)
    ax.set_xlim(-0.7, k - 0.3)
    ax.set_ylabel(f"accuracy change vs {reference_name} (points)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_per_class_difference(acc_a: np.ndarray, acc_b: np.ndarray, class_names: Sequence[str],
                              path: str | Path, *, names: tuple[str, str] = ("A", "B")) -> Path:
    """Per-class accuracy difference a − b between two runs, sorted from largest gain to largest loss.

    Bars are coloured by body class, so one sees which body groups a change helps or hurts; classes
    that either run cannot score (NaN) are left out.
    """
    a, b = np.asarray(acc_a, dtype=np.float64), np.asarray(acc_b, dtype=np.float64)
    k = len(class_names)
    if a.shape != (k,) or b.shape != (k,):
        raise ValueError(f"per-class difference: shapes {a.shape}, {b.shape}, expected ({k},)")
    ok = np.flatnonzero(np.isfinite(a) & np.isfinite(b))
    if ok.size == 0:
        raise ValueError("per-class difference: no class has an accuracy in both runs")
    diff = a[ok] - b[ok]
    order = ok[np.argsort(-diff, kind="stable")]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.22 * len(ok) + 2), 4.8))
    colors = [_BODY_COLORS[body_of_action(int(c))] if k <= NUM_ACTIONS else "tab:blue" for c in order]
    ax.bar(np.arange(len(order)), a[order] - b[order], color=colors)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(order)), [class_names[c] for c in order], rotation=90, fontsize=6)
    ax.set_ylabel(f"{names[0]} − {names[1]} (points)")
    ax.set_title(f"per-class accuracy: {names[0]} vs {names[1]} (mean {diff.mean():+.2f})")
    if k <= NUM_ACTIONS:
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _BODY_COLORS]
        ax.legend(handles, BODY_CLASSES, fontsize=7, ncol=4)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
