"""Tests for piumr_skel.data.splits: official lists, subject-disjoint K folds, split files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from piumr_skel.data.labels import read_labels
from piumr_skel.data.splits import assign_subject_folds, find_ma52_lists, make_split, read_split_file, write_split

MA52 = Path(__file__).resolve().parents[2] / "shared" / "ma52"
needs_ma52 = pytest.mark.skipif(not (MA52 / "train_list_videos.txt").is_file(),
                                reason=f"MA-52 list files not found in {MA52}")


def toy_labels(num_subjects: int = 23, num_classes: int = 12, seed: int = 0, rare: int = 0) -> pd.DataFrame:
    """Long-tailed toy labels: common classes everywhere, class K-2 held by 2 subjects, class K-1 by 1.

    With `rare` > 0, classes K..K+rare-1 are each held by a random pair of subjects: the cases a
    careless split loses from train.
    """
    rng = np.random.default_rng(seed)
    extra: dict[int, list[int]] = {}
    for c in range(num_classes, num_classes + rare):
        for s in rng.choice(num_subjects, 2, replace=False):
            extra.setdefault(int(s), []).append(c)
    rows = []
    for s in range(num_subjects):
        n = int(rng.integers(5, 15))
        labels = rng.integers(0, num_classes - 2, n).tolist() + extra.get(s, [])
        if s in (3, 17):
            labels.append(num_classes - 2)
        if s == 5:
            labels.append(num_classes - 1)
        rows += [(f"{s:04d}_01_{i:04d}", int(y), f"{s:04d}") for i, y in enumerate(labels)]
    return pd.DataFrame(rows, columns=["clip_id", "label", "subject"])


def subjects_of(labels: pd.DataFrame, clips: list[str]) -> set[str]:
    return set(labels.set_index("clip_id").loc[clips, "subject"])


@pytest.mark.parametrize("folds", [2, 5])
def test_xsub_folds_are_subject_disjoint_and_cover_every_subject_once(folds: int) -> None:
    labels = toy_labels()
    tested: list[str] = []
    for k in range(folds):
        split = make_split("xsub", labels, fold=k, folds=folds, seed=3)
        tr, va, te = (subjects_of(labels, split[n]) for n in ("train", "val", "test"))
        assert not tr & va and not tr & te and not va & te
        assert len(split["train"]) + len(split["val"]) + len(split["test"]) == len(labels)
        tested += sorted(te)
    assert sorted(tested) == sorted(labels["subject"].unique())  # each subject in exactly one test fold


def test_xsub_stratification_keeps_every_shared_class_in_train() -> None:
    labels = toy_labels(rare=15)
    n_subj = labels.drop_duplicates(["subject", "label"]).groupby("label").size()
    needed = set(n_subj.index[n_subj >= 2])
    assert {10, 12, 26} <= needed and 11 not in needed  # the rare classes the toy data was built with
    for seed in range(4):
        for k in range(5):
            split = make_split("xsub", labels, fold=k, folds=5, seed=seed)
            train_classes = set(labels.set_index("clip_id").loc[split["train"], "label"])
            assert needed <= train_classes, (seed, k)


def test_xsub_is_deterministic_and_seed_dependent() -> None:
    labels = toy_labels()
    a = make_split("xsub", labels, fold=1, seed=7)
    assert a == make_split("xsub", labels, fold=1, seed=7)
    folds = [assign_subject_folds(labels["subject"].to_numpy(), labels["label"].to_numpy(), 5, s) for s in range(4)]
    assert any(f != folds[0] for f in folds[1:])


def test_xsub_fold_sizes_are_balanced() -> None:
    labels = toy_labels(num_subjects=40)
    sizes = [len(make_split("xsub", labels, fold=k, folds=4, seed=0)["test"]) for k in range(4)]
    assert max(sizes) - min(sizes) <= 0.5 * len(labels) / 4


def test_xsub_val_equals_test_when_too_few_subjects_or_asked() -> None:
    labels = toy_labels(num_subjects=4, num_classes=3)
    split = make_split("xsub", labels, fold=0, folds=2, seed=0)  # 2 subjects left: no room for val
    assert split["val"] == split["test"]
    split = make_split("xsub", toy_labels(), fold=0, folds=5, seed=0, val_fraction=0.0)
    assert split["val"] == split["test"]


def test_xsub_errors() -> None:
    labels = toy_labels(num_subjects=4)
    with pytest.raises(ValueError, match="4 subjects cannot fill 5 folds"):
        make_split("xsub", labels, folds=5)
    with pytest.raises(ValueError, match=r"fold must be in \[0, 2\)"):
        make_split("xsub", labels, fold=2, folds=2)
    no_subject = pd.DataFrame({"clip_id": ["a", "b"], "label": [0, 1], "subject": ["", ""]})
    with pytest.raises(ValueError, match=r"2 clips have no subject id.*\['a', 'b'\]"):
        make_split("xsub", no_subject, folds=2)
    with pytest.raises(ValueError, match="unknown split protocol 'cv'"):
        make_split("cv", labels)


def test_split_file_round_trip(tmp_path: Path) -> None:
    labels = toy_labels()
    split = make_split("xsub", labels, fold=2, seed=1)
    js = write_split(tmp_path / "run", split, meta={"protocol": "xsub", "fold": 2, "seed": 1})
    assert js.name == "split.json" and json.loads(js.read_text())["meta"]["fold"] == 2
    for name, ids in split.items():
        assert (tmp_path / "run" / f"{name}.txt").read_text().split() == ids
    assert make_split("file", labels, split_file=js) == split
    assert read_split_file(tmp_path / "run") == split          # a folder is read via its split.json
    val_is_test = {"train": ["a"], "val": ["b"], "test": ["b"]}
    assert read_split_file(write_split(tmp_path / "v", val_is_test)) == val_is_test


def test_csv_split_file_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "s.csv"
    f.write_text("clip_id,split\r\na,train\r\nb,TRAIN\r\nc,val\r\nd,test\r\n")
    assert read_split_file(f) == {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    labels = pd.DataFrame({"clip_id": ["a", "c", "d"], "label": [0, 1, 2], "subject": ""})
    with pytest.warns(UserWarning, match="1 clips of the split file have no label"):
        assert make_split("file", labels, split_file=f) == {"train": ["a"], "val": ["c"], "test": ["d"]}
    with pytest.raises(ValueError, match="the train split is empty"), pytest.warns(UserWarning):
        make_split("file", labels.iloc[1:], split_file=f)
    cases = {
        "bad.csv": ("clip_id,split\na,train\nb,holdout\n", r"bad\.csv:3: split 'holdout' is not one of"),
        "dup.csv": ("clip_id,split\na,train\na,val\n", r"dup\.csv:3: clip 'a' already listed on line 2"),
        "head.csv": ("id,split\na,train\n", r"head\.csv:1: header must be clip_id,split"),
        "cols.csv": ("clip_id,split\na,train,x\n", r"cols\.csv:2: expected 2 columns"),
        "empty.csv": ("\n", r"empty\.csv: empty split file"),
        "notrain.csv": ("clip_id,split\na,val\n", r"notrain\.csv: no train split"),
        "overlap.json": ('{"splits": {"train": ["a"], "val": ["a"]}}', r"overlap\.json: 1 clips are in train and val"),
        "names.json": ('{"train": ["a"], "dev": ["b"]}', r"names\.json: unknown split names \['dev'\]"),
        "broken.json": ("{", r"broken\.json: not valid JSON"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            read_split_file(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_split_file(tmp_path / "missing.csv")


def test_official_from_frames_paths_and_split_column(tmp_path: Path) -> None:
    tr = pd.DataFrame({"clip_id": ["a", "b"], "label": [0, 1], "subject": ""})
    (tmp_path / "val.txt").write_text("c.mp4 1\r\n")
    split = make_split("official", None, lists={"train": tr, "val": tmp_path / "val.txt"})
    assert split == {"train": ["a", "b"], "val": ["c"]}
    with_col = pd.concat([tr.assign(split="train"), pd.DataFrame({"clip_id": ["c"], "label": [1],
                                                                  "subject": [""], "split": ["test"]})])
    assert make_split("official", with_col) == {"train": ["a", "b"], "test": ["c"]}
    with pytest.raises(ValueError, match="the 'val' list is missing"):
        make_split("official", None, lists={"train": tr})
    with pytest.raises(ValueError, match="official protocol needs lists"):
        make_split("official", tr)
    with pytest.raises(ValueError, match="the val split is empty"):
        make_split("official", None, lists={"train": tr, "val": tr.iloc[:0]})
    (tmp_path / "train_list_videos.txt").write_text("a.mp4 0\n")
    with pytest.raises(FileNotFoundError, match="val_list_videos.txt not found"):
        find_ma52_lists(tmp_path)


@needs_ma52
def test_official_ma52_lists_share_186_subjects_and_xsub_fixes_it() -> None:
    lists = find_ma52_lists(MA52)
    assert set(lists) == {"train", "val", "test"}
    split = make_split("official", None, lists=lists)
    assert [len(split[n]) for n in ("train", "val", "test")] == [11250, 5586, 5586]
    labels = pd.concat([read_labels(lists["train"]), read_labels(lists["val"])], ignore_index=True)
    shared = subjects_of(labels, split["train"]) & subjects_of(labels, split["val"])
    assert len(shared) == 186
    xs = make_split("xsub", labels, fold=0, folds=5, seed=0)
    tr, va, te = (subjects_of(labels, xs[n]) for n in ("train", "val", "test"))
    assert not tr & va and not tr & te and not va & te
    assert set(labels.set_index("clip_id").loc[xs["train"], "label"]) == set(range(52))
