"""MA-52 metrics as the official evaluation computes them, person-level robustness, and Codabench export.

Everything is plain NumPy (scikit-learn is a test-only dependency; the tests check these functions
against it). Metrics are in percent.
"""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from piumr_skel.data.labels import BODY_CLASSES, NUM_ACTIONS, body_of_action
from piumr_skel.engine.atomic import atomic_path

METRIC_ORDER = ("action_top1", "action_top5", "body_top1", "f1_macro_action", "f1_micro_action",
                "f1_macro_body", "f1_micro_body", "f1_mean",
                "subj_acc_mean", "subj_acc_std", "subj_acc_worst10")
METRIC_TITLES = {"action_top1": "Action Top-1", "action_top5": "Action Top-5", "body_top1": "Body Top-1",
                 "f1_macro_action": "F1 macro (action)", "f1_micro_action": "F1 micro (action)",
                 "f1_macro_body": "F1 macro (body)", "f1_micro_body": "F1 micro (body)", "f1_mean": "F1_mean",
                 "subj_acc_mean": "Subj. acc. mean", "subj_acc_std": "Subj. acc. std",
                 "subj_acc_worst10": "Worst-10% subj. acc."}


def _as_labels(a: np.ndarray | Sequence[int], name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def f1_score(gt: np.ndarray, pred: np.ndarray, average: str = "macro") -> float:
    """F1 in [0, 1] for single-label multi-class predictions, as sklearn's `f1_score`.

    macro: the mean over the classes present in gt or pred (sklearn's default `labels`) of
    2·TP / (2·TP + FP + FN); a class never predicted scores 0. micro: the same ratio over summed counts,
    which equals accuracy for single-label data.
    """
    gt, pred = _as_labels(gt, "gt"), _as_labels(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} differ in length")
    if gt.size == 0:
        raise ValueError("F1 of an empty set")
    classes, inv = np.unique(np.concatenate([gt, pred]), return_inverse=True)
    g, p = inv[: len(gt)], inv[len(gt):]
    hit = g == p
    tp = np.bincount(g[hit], minlength=len(classes)).astype(np.float64)
    fn = np.bincount(g[~hit], minlength=len(classes))
    fp = np.bincount(p[~hit], minlength=len(classes))
    if average == "micro":
        return float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()))
    if average == "macro":
        return float(np.mean(2 * tp / (2 * tp + fp + fn)))  # > 0 denominators: each class occurs somewhere
    raise ValueError(f"average must be 'macro' or 'micro', got {average!r}")


def top_k_accuracy(scores: np.ndarray, gt: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is among the k highest scores; scores (N, K), gt (N,).

    Ties at the k-th score are broken by class order (a stable sort), like `np.argsort`.
    """
    k = min(k, scores.shape[1])
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((topk == gt[:, None]).any(1).mean())


def _check_scores(scores: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    gt = _as_labels(gt, "gt")
    if scores.ndim != 2 or scores.shape[0] != gt.shape[0]:
        raise ValueError(f"scores must be (N, K) with N = len(gt) = {len(gt)}, got {scores.shape}")
    if scores.shape[0] == 0:
        raise ValueError("no samples to score")
    if scores.shape[1] > NUM_ACTIONS:
        raise ValueError(f"scores have {scores.shape[1]} classes; MA-52 body metrics need <= {NUM_ACTIONS}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    if gt.min() < 0 or gt.max() >= scores.shape[1]:
        raise ValueError(f"gt labels must lie in [0, {scores.shape[1]}), got [{gt.min()}, {gt.max()}]")
    return scores, gt


def ma52_metrics(scores: np.ndarray, gt: np.ndarray, *, body: bool = True) -> dict[str, float]:
    """The official MA-52 metrics in percent; scores (N, K <= 52), gt (N,) action ids.

    With body=False (classes that are not MA-52's), only the action-level metrics.

    pred = argmax(scores); bodies map through `body_of_action`. F1 at each level as sklearn's
    `f1_score` (macro over the classes present in gt or pred). body_top1 = f1_micro_body, as the
    official code defines it; F1_mean = mean of the four F1 scores.
    """
    scores, gt = _check_scores(scores, gt)
    pred = scores.argmax(1)
    out = {"action_top1": top_k_accuracy(scores, gt, 1),
           "action_top5": top_k_accuracy(scores, gt, 5),
           "f1_macro_action": f1_score(gt, pred, "macro"),
           "f1_micro_action": f1_score(gt, pred, "micro")}
    if not body:
        return {k: 100.0 * out[k] for k in METRIC_ORDER if k in out}
    gt_body, pred_body = body_of_action(gt), body_of_action(pred)
    out |= {"f1_macro_body": f1_score(gt_body, pred_body, "macro"),
           "f1_micro_body": f1_score(gt_body, pred_body, "micro")}
    out["body_top1"] = out["f1_micro_body"]
    out["f1_mean"] = (out["f1_macro_action"] + out["f1_macro_body"] + out["f1_micro_body"]
                      + out["f1_micro_action"]) / 4
    return {k: 100.0 * out[k] for k in METRIC_ORDER if k in out}


def has_ma52_bodies(class_names: Sequence[str] | None) -> bool:
    """Body-level metrics apply only when the classes are MA-52's 52 actions (its action-to-body
    table means nothing for other class sets)."""
    from piumr_skel.data.labels import MA52_CLASSES

    return class_names is None or list(class_names) == list(MA52_CLASSES)


def score_split(scores: np.ndarray, labels: np.ndarray, subjects: np.ndarray, *,
                class_names: Sequence[str] | None = None) -> dict[str, float]:
    """Every official metric that applies (body levels only for MA-52's classes) plus the
    person-level robustness figures, percent; scores (N, K)."""
    out = dict(ma52_metrics(scores, labels, body=has_ma52_bodies(class_names)))
    out.update(subject_robustness(scores.argmax(1) == labels, subjects))
    return out


def per_subject_accuracy(correct: np.ndarray, subjects: np.ndarray | Sequence[str]) -> pd.Series:
    """Accuracy in percent of each subject (index sorted by subject id); correct (N,) bool."""
    correct = np.asarray(correct)
    subjects = np.asarray(subjects).astype(str)
    if correct.ndim != 1 or correct.shape != subjects.shape:
        raise ValueError(f"correct {correct.shape} and subjects {subjects.shape} must be equal-length 1-D arrays")
    if correct.size == 0:
        raise ValueError("no samples for per-subject accuracy")
    return 100.0 * pd.Series(correct.astype(np.float64)).groupby(subjects).mean().rename("accuracy")


def subject_robustness(correct: np.ndarray, subjects: np.ndarray | Sequence[str], *,
                       worst_fraction: float = 0.1) -> dict[str, float]:
    """Person-level robustness in percent; correct (N,) bool, subjects (N,) ids.

    subj_acc_mean / subj_acc_std: mean and population std (ddof = 0: the subjects scored are the whole
    population being described, not a sample) of the per-subject accuracies. subj_acc_worst10: mean
    accuracy of the ceil(worst_fraction · S) lowest-scoring subjects, at least one.
    """
    acc = np.sort(per_subject_accuracy(correct, subjects).to_numpy())
    n_worst = max(1, int(np.ceil(worst_fraction * len(acc) - 1e-9)))
    return {"subj_acc_mean": float(acc.mean()), "subj_acc_std": float(acc.std(ddof=0)),
            "subj_acc_worst10": float(acc[:n_worst].mean())}


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Counts (K, K) int64: rows = true class, columns = predicted class (sklearn's convention)."""
    gt, pred = _as_labels(gt, "gt"), _as_labels(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} differ in length")
    k = int(num_classes if num_classes is not None else max(gt.max(initial=-1), pred.max(initial=-1)) + 1)
    if gt.size and (min(gt.min(), pred.min()) < 0 or max(gt.max(), pred.max()) >= k):
        raise ValueError(f"class ids must lie in [0, {k})")
    return np.bincount(gt * k + pred, minlength=k * k).reshape(k, k)


def per_class_accuracy(gt: np.ndarray, pred: np.ndarray, num_classes: int = NUM_ACTIONS) -> np.ndarray:
    """Recall of each class in percent, (num_classes,); NaN for classes absent from gt."""
    cm = confusion_matrix(gt, pred, num_classes)
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, 100.0 * np.diag(cm) / support, np.nan)


def per_body_accuracy(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Recall of each of the 7 body classes in percent, (7,), with bodies derived from action ids."""
    return per_class_accuracy(body_of_action(_as_labels(gt, "gt")), body_of_action(_as_labels(pred, "pred")),
                              len(BODY_CLASSES))


def body_scores(scores: np.ndarray) -> np.ndarray:
    """Body-class scores (N, 7): the sum of the action scores of each body class; scores (N, K <= 52)."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.zeros((scores.shape[0], len(BODY_CLASSES)))
    np.add.at(out.T, body_of_action(np.arange(scores.shape[1])), scores.T)
    return out


BODY_FROM = ("actions", "scores")


def write_codabench(path: str | Path, vids: Sequence[str], scores: np.ndarray, *,
                    zip_path: str | Path | None = None, body_from: str = "scores") -> Path:
    """Write the Codabench prediction.csv (and zip it when `zip_path` is given); returns the file written last.

    Columns: vid, action_pred_1..5 (top-5 actions by score), body_pred_1..5. With body_from="actions"
    (the official packers: VUT-HFUT/Micro-Action online_evaluation/eval.py, the MAC starter kit)
    body_pred_k = body of action_pred_k, so bodies may repeat. With "scores" bodies are ranked by the
    summed softmax score of their actions (`body_scores`): with probabilities that is the model's
    probability of each body class; body_pred_1 can then differ from the body of action_pred_1,
    which is what the offline `ma52_metrics` scores. `vids` are written as given (the
    MA-52 test list names them `test0000.mp4`, ...).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(vids):
        raise ValueError(f"scores must be (N, K) with N = {len(vids)} vids, got {scores.shape}")
    if scores.shape[1] < 5:
        raise ValueError(f"a Codabench file needs top-5 predictions, but scores have {scores.shape[1]} classes")
    if len(set(vids)) != len(vids):
        raise ValueError("write_codabench: duplicated vid names")
    top_action = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    if body_from not in BODY_FROM:
        raise ValueError(f"body_from must be one of {BODY_FROM}, got {body_from!r}")
    top_body = body_of_action(top_action) if body_from == "actions" else \
        np.argsort(-body_scores(scores), axis=1, kind="stable")[:, :5]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["vid"] + [f"action_pred_{i}" for i in range(1, 6)] + [f"body_pred_{i}" for i in range(1, 6)])
        for vid, a, b in zip(vids, top_action, top_body):
            w.writerow([vid, *a.tolist(), *b.tolist()])
    if zip_path is None:
        return path
    zip_path = Path(zip_path)
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(path, arcname="prediction.csv")   # Codabench expects the CSV at the zip's root
    return zip_path


def format_metrics_table(results: Mapping[str, Mapping[str, float] | float] | pd.DataFrame, *,
                         digits: int = 2, columns: Sequence[str] | None = None) -> str:
    """A Markdown table: one row per run (dict name -> metrics dict, or a DataFrame indexed by run).

    A flat dict of metric -> value is one unnamed row. Known metrics come first in METRIC_ORDER with
    readable titles; other numeric columns follow. Strings (e.g. "61.2 ± 0.4") pass through.
    """
    if isinstance(results, pd.DataFrame):
        frame = results.copy()
    elif results and all(isinstance(v, Mapping) for v in results.values()):
        frame = pd.DataFrame.from_dict({k: dict(v) for k, v in results.items() if isinstance(v, Mapping)},
                                       orient="index")
    elif all(not isinstance(v, Mapping) for v in results.values()):
        frame = pd.DataFrame([dict(results)], index=[""])
    else:
        raise ValueError("format_metrics_table: give {run: {metric: value}}, {metric: value} or a DataFrame")
    if columns is None:
        columns = [c for c in METRIC_ORDER if c in frame.columns] + \
                  [c for c in frame.columns if c not in METRIC_ORDER]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"format_metrics_table: unknown columns {missing}")

    # Counts (epochs, clips) stay integers even when a missing value made pandas store them as floats.
    integral = {c for c in columns if c not in METRIC_TITLES and pd.api.types.is_numeric_dtype(frame[c])
                and np.all(np.mod(frame[c].dropna().to_numpy(dtype=np.float64), 1) == 0)}

    def cell(v: object, c: str) -> str:
        if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
            return "–"
        if c in integral:
            return str(int(v))  # type: ignore[call-overload]
        if isinstance(v, (float, np.floating)):
            return f"{v:.{digits}f}"
        return str(v)

    head = ["run"] + [METRIC_TITLES.get(c, str(c)) for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
    for i, name in enumerate(frame.index):
        # column-wise access: a row Series would upcast ints (epochs, clip counts) to floats
        lines.append("| " + " | ".join([str(name)] + [cell(frame[c].iloc[i], c) for c in columns]) + " |")
    return "\n".join(lines)


def mean_std(values: Sequence[Mapping[str, float]], *, digits: int = 2) -> dict[str, str]:
    """Combine metric dicts of several folds or seeds into "mean ± std" strings (population std)."""
    if not values:
        raise ValueError("mean_std: no runs to combine")
    keys = [k for k in values[0] if all(k in v for v in values)]
    out = {}
    for k in keys:
        arr = np.array([float(v[k]) for v in values])
        out[k] = f"{arr.mean():.{digits}f} ± {arr.std(ddof=0):.{digits}f}"
    return out


# ----------------------------------------------------------------------------- labelings agreement
def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(a: Sequence | np.ndarray, b: Sequence | np.ndarray) -> float:
    """Normalised mutual information of two labelings, MI / mean(H(a), H(b)), in [0, 1].

    Two constant labelings agree perfectly (1.0); a constant one against a varied one shares nothing (0.0).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"nmi: two 1-D labelings of the same length expected, got {a.shape} and {b.shape}")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1.0)
    ha, hb = _entropy(table.sum(1)), _entropy(table.sum(0))
    if ha == 0.0 and hb == 0.0:
        return 1.0
    if ha == 0.0 or hb == 0.0:
        return 0.0
    p = table / table.sum()
    outer = np.outer(p.sum(1), p.sum(0))
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / outer[nz])).sum())
    return float(np.clip(mi / (0.5 * (ha + hb)), 0.0, 1.0))


def purity(groups: Sequence | np.ndarray, truth: Sequence | np.ndarray) -> float:
    """Share of items that belong to their group's most common `truth` value."""
    frame = pd.DataFrame({"g": np.asarray(groups), "t": np.asarray(truth)})
    return float(frame.groupby("g")["t"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(frame))
