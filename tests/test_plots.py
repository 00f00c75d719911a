"""Tests for piumr_skel.engine.plots: every figure writes a non-empty PNG, and bad input is refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from piumr_skel.data.labels import MA52_CLASSES
from piumr_skel.engine.metrics import per_class_accuracy, per_subject_accuracy
from piumr_skel.engine.plots import (
    plot_confusion_matrix,
    plot_per_class_change,
    plot_per_class_difference,
    plot_subject_accuracy,
    plot_training_curves,
    plot_validation_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


def history(rng: np.random.Generator, epochs: int = 4) -> list[dict[str, float]]:
    return [{"epoch": e + 1, "train_loss": 3.0 / (e + 1), "loss_ce": 2.5 / (e + 1),
             "val_action_top1": 20 + 5 * e + rng.random(), "val_f1_mean": 15 + 4 * e} for e in range(epochs)]


@pytest.fixture
def preds() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 52, 300)
    pred = np.where(rng.random(300) < 0.6, gt, rng.integers(0, 52, 300))
    return gt, pred


def test_training_curves(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    assert_png(plot_training_curves(history(rng), tmp_path / "a" / "curves.png"))
    frame = pd.DataFrame(history(rng)).drop(columns="epoch")  # epochs default to 1..n
    assert_png(plot_training_curves(frame, tmp_path / "curves2.png"))
    with pytest.raises(ValueError, match="no epochs"):
        plot_training_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no loss or metric columns"):
        plot_training_curves([{"epoch": 1, "lr": 0.1}], tmp_path / "x.png")


def test_confusion_matrix_52_and_small(tmp_path: Path, preds) -> None:
    gt, pred = preds
    assert_png(plot_confusion_matrix(gt, pred, MA52_CLASSES, tmp_path / "cm.png"))
    assert_png(plot_confusion_matrix(gt % 5, pred % 5, [f"c{i}" for i in range(5)], tmp_path / "cm5.png",
                                     normalize=False))


def test_subject_accuracy_distributions(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    subjects = rng.integers(0, 20, 400).astype(str)
    variants = {name: per_subject_accuracy(rng.random(400) < p, subjects)
                for name, p in (("ERM", 0.5), ("+TFAM", 0.55), ("full", 0.6))}
    assert_png(plot_subject_accuracy(variants, tmp_path / "subj.png"))
    with pytest.raises(ValueError, match="'empty' has no subjects"):
        plot_subject_accuracy({"empty": []}, tmp_path / "x.png")


def test_validation_curves(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    runs = {"ERM": history(rng), "full": pd.DataFrame(history(rng, 6))}
    assert_png(plot_validation_curves(runs, tmp_path / "val.png", metric="val_f1_mean"))
    with pytest.raises(ValueError, match="run 'ERM' has no column 'val_nope'"):
        plot_validation_curves(runs, tmp_path / "x.png", metric="val_nope")


def test_per_class_change_and_difference(tmp_path: Path, preds) -> None:
    gt, pred = preds
    rng = np.random.default_rng(4)
    ref = per_class_accuracy(gt, pred)
    other = per_class_accuracy(gt, np.where(rng.random(300) < 0.3, gt, pred))
    assert_png(plot_per_class_change({"+GIRL": other, "full": ref[::-1].copy()}, ref, MA52_CLASSES,
                                     tmp_path / "change.png"))
    assert_png(plot_per_class_difference(other, ref, MA52_CLASSES, tmp_path / "diff.png", names=("full", "ERM")))
    with pytest.raises(ValueError, match=r"expected \(52,\)"):
        plot_per_class_change({"bad": ref[:10]}, ref, MA52_CLASSES, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no class has an accuracy in both runs"):
        plot_per_class_difference(np.full(52, np.nan), ref, MA52_CLASSES, tmp_path / "x.png")
