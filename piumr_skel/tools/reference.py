"""A non-deep reference row for `piumr ablate`: logistic regression on wrist-relative right-hand points,
fitted and scored on the same subject-disjoint folds as the deep runs.

It says what a linear model of the hand shape alone reaches on unseen people, so a deep variant that
does not beat it has learned little beyond that. Only for layouts with a MediaPipe-style right hand.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from piumr_skel.engine.atomic import atomic_write_text
from piumr_skel.engine.config import TrainConfig

REFERENCE_KEY = "reference-lr"
REFERENCE_TITLE = "reference: logistic regression (right hand)"
FRAMES = 8                # frames resampled evenly from each normalised clip
C = 0.1                   # inverse L2 strength of LogisticRegression
MAX_ITER = 2000
_VERSION = 1              # bump when the features or the model change: saved folds are then recomputed


def right_hand_joints(layout: Any) -> np.ndarray | None:
    """Indices of the layout's 21 right-hand points, wrist first (None when it has no full right hand)."""
    from piumr_skel.skeleton.layouts import HAND_NAMES

    names = [f"right_hand_{n}" for n in HAND_NAMES]
    if not all(n in layout.joints for n in names):
        return None
    return np.array([layout.index(n) for n in names], dtype=np.int64)


def right_hand_features(clip: np.ndarray, hand: np.ndarray, frames: int = FRAMES) -> np.ndarray:
    """(frames · 21 · 2,) features of one normalised clip (T, V, 3): each hand point minus the wrist,
    divided by the clip's mean wrist-to-middle-MCP distance, at `frames` evenly spaced times."""
    from piumr_skel.data.transforms import resample_time
    from piumr_skel.skeleton.layouts import HAND_NAMES

    xy = np.asarray(clip[..., :2], dtype=np.float64)
    wrist, mcp = int(hand[0]), int(hand[HAND_NAMES.index("middle_mcp")])
    # a hand never seen sits on its wrist after normalisation: distance 0, so no scaling
    scale = float(np.linalg.norm(xy[:, mcp] - xy[:, wrist], axis=-1).mean())
    relative = xy[:, hand] - xy[:, wrist:wrist + 1]
    return (resample_time(relative, frames) / (scale if scale > 1e-6 else 1.0)).reshape(-1)


def _recipe(cfg: TrainConfig) -> dict[str, Any]:
    """What a fold's result depends on: the data, the fold and the reference model itself."""
    keys = ("store", "labels", "class_names", "layout", "split", "folds", "split_seed", "fold")
    return {**{k: getattr(cfg, k) for k in keys}, "frames": FRAMES, "C": C, "version": _VERSION}


def fit_fold(cfg: TrainConfig) -> dict[str, Any]:
    """Fit on the fold's train part (train + val), score its test part -> {fold, clips, metrics}.

    Metrics as `metrics.score_split` (percent; body levels only for MA-52's classes).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from piumr_skel.engine.data_setup import load_run_data
    from piumr_skel.engine.metrics import score_split

    data = load_run_data(cfg, None, splits=("train", "val", "test"))
    hand = right_hand_joints(data.layout)
    if hand is None:
        raise ValueError(f"layout {data.layout.name!r} has no right hand: no logistic-regression reference")
    cache = data.datasets["train"].cache
    feats = {s: np.stack([right_hand_features(cache[c], hand) for c in data.clip_ids[s]]) for s in data.clip_ids}
    x_fit = np.concatenate([feats["train"], feats["val"]])
    y_fit = np.concatenate([data.labels["train"], data.labels["val"]])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=MAX_ITER)).fit(x_fit, y_fit)
    proba = model.predict_proba(feats["test"])
    scores = np.zeros((len(proba), len(data.class_names)))
    scores[:, model.classes_] = proba          # classes absent from training keep score 0
    metrics = score_split(scores, data.labels["test"], data.subjects["test"], class_names=data.class_names)
    return {"fold": cfg.fold, "clips": len(proba), "metrics": metrics}


def _fold_path(folder: Path, fold: int) -> Path:
    return folder / f"fold{fold}.json"


def _saved(folder: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    try:
        saved = json.loads(_fold_path(folder, cfg.fold).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return saved if saved.get("recipe") == _recipe(cfg) else None


def _fold_configs(base: TrainConfig) -> list[TrainConfig]:
    return [dataclasses.replace(base, fold=k) for k in range(base.folds)]


def run_reference(base: TrainConfig, folder: str | Path, *, echo: Callable[[str], None] = print) -> list[dict]:
    """The reference of every fold of `base`, into FOLDER/fold<k>.json (one fit per fold, independent of
    the seed); folds saved earlier for the same data and folds are reused. [] when the layout has no
    right hand."""
    from piumr_skel.skeleton.layouts import get_layout

    if right_hand_joints(get_layout(base.layout)) is None:
        echo(f"note: layout {base.layout} has no right hand: no logistic-regression reference row")
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for cfg in _fold_configs(base):
        saved = _saved(folder, cfg)
        if saved is None:
            saved = {"recipe": _recipe(cfg), **fit_fold(cfg)}
            atomic_write_text(_fold_path(folder, cfg.fold), json.dumps(saved, indent=1))  # OUT may be shared
            echo(f"{REFERENCE_TITLE}, fold {cfg.fold}: test ({saved['clips']} clips) Action Top-1 "
                 f"{saved['metrics']['action_top1']:.2f}")
        results.append(saved)
    return results


def load_reference(folder: str | Path, base: TrainConfig) -> list[dict]:
    """The saved reference results of `base`'s folds that match its data and folds (missing ones left out)."""
    folder = Path(folder)
    return [s for cfg in _fold_configs(base) if (s := _saved(folder, cfg)) is not None]
