"""Datasets that are not MA-52: the class set comes from the labels, body metrics only for MA-52."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from piumr_skel.data.labels import MA52_CLASSES
from piumr_skel.engine.config import make_config
from piumr_skel.engine.data_setup import class_names_for
from piumr_skel.engine.metrics import score_split


def _csv(path: Path, labels: list[int]) -> Path:
    path.write_text("clip_id,label,subject\n" + "".join(f"c{i},{y},s{i % 3}\n" for i, y in enumerate(labels)))
    return path


def test_a_26_class_csv_without_names_gets_26_generic_classes(tmp_path):
    cfg = make_config({"labels": str(_csv(tmp_path / "labels.csv", list(range(26))))})
    names = class_names_for(cfg)
    assert names == [str(i) for i in range(26)]


def test_the_names_file_beside_the_labels_is_used(tmp_path):
    (tmp_path / "label_name.txt").write_text("".join(f"{i}\t{c}\n" for i, c in enumerate("ABC")))
    cfg = make_config({"labels": str(_csv(tmp_path / "labels.csv", [0, 1, 2, 1]))})
    assert class_names_for(cfg) == ["A", "B", "C"]


def test_ma52_lists_keep_the_ma52_names(tmp_path):
    lst = tmp_path / "train_list_videos.txt"
    lst.write_text("0001_01_0001.mp4 3\n")
    assert class_names_for(make_config({"labels": str(lst)})) == list(MA52_CLASSES)


def test_a_label_beyond_the_names_file_is_an_error(tmp_path, monkeypatch):
    from piumr_skel.engine import data_setup

    (tmp_path / "label_name.txt").write_text("0\tA\n1\tB\n")
    cfg = make_config({"labels": str(_csv(tmp_path / "labels.csv", [0, 1, 2])), "store": str(tmp_path)})
    with pytest.raises(ValueError, match="labels outside 0..1"):
        data_setup.load_run_data(cfg, None)


def test_body_metrics_only_for_ma52_classes():
    rng = np.random.default_rng(0)
    scores = rng.random((20, 26))
    labels = rng.integers(0, 26, 20)
    subjects = np.array([f"s{i % 4}" for i in range(20)])
    letters = score_split(scores, labels, subjects, class_names=[chr(65 + i) for i in range(26)])
    assert "action_top1" in letters and "body_top1" not in letters and "f1_mean" not in letters
    ma52 = score_split(rng.random((20, 52)), rng.integers(0, 52, 20), subjects, class_names=list(MA52_CLASSES))
    assert {"body_top1", "f1_mean", "f1_macro_body"} <= set(ma52)
