"""Evaluation protocols: the official MA-52 split, subject-disjoint K folds (xsub), and user split files.

A split is a dict split name -> list of clip ids, with names from SPLIT_NAMES. `write_split` stores
one in a run folder (split.json + one txt per split) so that other runs can reuse it with
`make_split("file", ..., split_file=...)`.
"""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from piumr_skel.data.labels import parse_subject, read_labels

SPLIT_NAMES = ("train", "val", "test")
SPLIT_JSON = "split.json"
Split = dict[str, list[str]]


def make_split(protocol: str, labels: pd.DataFrame | None, *, fold: int = 0, folds: int = 5, seed: int = 0,
               split_file: str | Path | None = None,
               lists: Mapping[str, pd.DataFrame | str | Path] | None = None,
               val_fraction: float = 0.1) -> Split:
    """Build a split for a protocol.

    * ``official``: train/val[/test] from the MA-52 list files, ``lists`` = split name -> labels frame
      or list path. Without ``lists``, a ``split`` column of ``labels`` is used. The clip ids are
      returned as listed; keeping those that the store holds is the caller's job (`match_store`).
    * ``xsub``: subject-disjoint fold ``fold`` of ``folds``, see `xsub_split`.
    * ``file``: a user split file, see `read_split_file`; clips without a label in ``labels`` (when
      given) are dropped with a warning.

    Every returned split is non-empty; an empty one is a ValueError.
    """
    if protocol == "official":
        split = _official_split(labels, lists)
    elif protocol == "xsub":
        if labels is None:
            raise ValueError("the xsub protocol needs the labels frame (clip_id, label, subject)")
        split = xsub_split(labels, fold=fold, folds=folds, seed=seed, val_fraction=val_fraction)
    elif protocol == "file":
        if split_file is None:
            raise ValueError("the file protocol needs split_file (CSV clip_id,split or a split.json)")
        split = read_split_file(split_file)
        if labels is not None:
            split = _keep_labelled(split, labels, split_file)
    else:
        raise ValueError(f"unknown split protocol {protocol!r}; choose official, xsub or file")
    _check_split(split, f"{protocol} split")
    return split


# ----------------------------------------------------------------------------- official
def find_ma52_lists(folder: str | Path) -> dict[str, Path]:
    """The official list files in a folder: split name -> `<name>_list_videos.txt` (train and val required)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MA-52 list folder not found: {folder}")
    found = {n: folder / f"{n}_list_videos.txt" for n in SPLIT_NAMES if (folder / f"{n}_list_videos.txt").is_file()}
    for need in ("train", "val"):
        if need not in found:
            raise FileNotFoundError(f"{folder}: {need}_list_videos.txt not found")
    return found


def _official_split(labels: pd.DataFrame | None, lists: Mapping[str, Any] | None) -> Split:
    if lists is None:
        if labels is None or "split" not in labels.columns:
            raise ValueError("the official protocol needs lists={'train': ..., 'val': ..., 'test': ...} "
                             "(MA-52 list files or label frames), or a 'split' column in the labels")
        return {name: labels.loc[labels["split"] == name, "clip_id"].astype(str).tolist()
                for name in SPLIT_NAMES if (labels["split"] == name).any()}
    unknown = set(lists) - set(SPLIT_NAMES)
    if unknown:
        raise ValueError(f"official lists: unknown split names {sorted(unknown)}; use {SPLIT_NAMES}")
    for need in ("train", "val"):
        if need not in lists:
            raise ValueError(f"official lists: the {need!r} list is missing")
    split: Split = {}
    for name in SPLIT_NAMES:
        if name in lists:
            src = lists[name]
            frame = src if isinstance(src, pd.DataFrame) else read_labels(src)
            split[name] = frame["clip_id"].astype(str).tolist()
    return split


# ----------------------------------------------------------------------------- xsub
def _subjects_of(labels: pd.DataFrame) -> np.ndarray:
    if "subject" in labels.columns:
        subj = labels["subject"].fillna("").astype(str).to_numpy()
    else:
        subj = np.full(len(labels), "", dtype=object)
    clip = labels["clip_id"].astype(str).to_numpy()
    subj = np.array([s or parse_subject(c) for s, c in zip(subj, clip)], dtype=object)
    unknown = clip[subj == ""]
    if len(unknown):
        raise ValueError(f"xsub split: {len(unknown)} clips have no subject id (neither a subject column "
                         f"nor an SSSS_BB_NNNN name), e.g. {list(unknown[:5])}")
    return subj


def assign_subject_folds(subjects: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> dict[str, int]:
    """Assign every subject to one of `folds` test folds, greedily stratified.

    Subjects are placed rarest-class first (ties in a seeded random order). Each goes to the fold
    that, in order of priority: (1) does not end up holding every subject of one of its classes
    (so each class with >= 2 subjects keeps a subject outside every test fold); (2) has the lowest
    load: the mean, over the subject's classes, of the fraction of that class's subjects already in
    the fold, plus the fraction of all clips already in the fold (spreads each class over the folds
    and balances fold sizes on one scale); (3) random tie-break.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"subject": subjects, "label": labels})
    classes_of = frame.groupby("subject")["label"].apply(lambda s: np.unique(s.to_numpy())).to_dict()
    clips_of = frame.groupby("subject").size().to_dict()
    subj_count = frame.drop_duplicates(["subject", "label"]).groupby("label").size().to_dict()
    names = np.array(sorted(classes_of))
    if folds < 2:
        raise ValueError(f"xsub split: folds must be >= 2, got {folds}")
    if len(names) < folds:
        raise ValueError(f"xsub split: {len(names)} subjects cannot fill {folds} folds")
    names = names[rng.permutation(len(names))]
    rarity = np.array([min(subj_count[c] for c in classes_of[s]) for s in names])
    order = names[np.argsort(rarity, kind="stable")]

    remaining = dict(subj_count)                      # class -> subjects not yet placed
    in_fold = np.zeros((folds, max(subj_count) + 1), dtype=np.int64)   # subjects of class c in fold f
    clips = np.zeros(folds, dtype=np.int64)
    total = float(len(labels))
    assignment: dict[str, int] = {}
    for s in order:
        cls = classes_of[s]
        n_c = np.array([subj_count[c] for c in cls])
        last = np.array([remaining[c] == 1 for c in cls])
        # (1) placing the last unplaced subject of a class in the fold holding all the others.
        violations = ((in_fold[:, cls] == n_c - 1) & last & (n_c >= 2)).sum(1)
        load = (in_fold[:, cls] / n_c).mean(1) + clips / total
        key = np.lexsort((rng.random(folds), load, violations))
        f = int(key[0])
        assignment[str(s)] = f
        in_fold[f, cls] += 1
        clips[f] += clips_of[s]
        for c in cls:
            remaining[c] -= 1
    return assignment


def xsub_split(labels: pd.DataFrame, *, fold: int = 0, folds: int = 5, seed: int = 0,
               val_fraction: float = 0.1) -> Split:
    """Subject-disjoint split: fold `fold`'s subjects are the test set, the rest train and val.

    Folds come from `assign_subject_folds` (the same for every `fold` given `seed`), so over the K
    folds every subject is tested exactly once. Val is a seeded random subset of the non-test
    subjects, about `val_fraction` of all subjects (at least one), drawn so that every class with
    >= 2 subjects keeps a subject in train. When fewer than 3 non-test subjects remain, when
    `val_fraction` is 0, or when no subject can be moved without losing a class from train,
    val = test (the usual cross-subject protocol without a separate validation set); a warning says
    so in the last case.
    """
    if not 0 <= fold < folds:
        raise ValueError(f"xsub split: fold must be in [0, {folds}), got {fold}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"xsub split: val_fraction must be in [0, 1), got {val_fraction}")
    subjects = _subjects_of(labels)
    y = labels["label"].to_numpy(dtype=np.int64)
    assignment = assign_subject_folds(subjects, y, folds, seed)
    clip = labels["clip_id"].astype(str).to_numpy()
    test_subj = {s for s, f in assignment.items() if f == fold}
    rest = sorted(set(assignment) - test_subj)

    val_subj: set[str] = set()
    n_val = max(1, round(val_fraction * len(assignment)))
    if val_fraction > 0 and len(rest) >= 3:
        frame = pd.DataFrame({"subject": subjects, "label": y})
        classes_of = frame.groupby("subject")["label"].apply(lambda s: set(s.to_numpy().tolist())).to_dict()
        subj_count = frame.drop_duplicates(["subject", "label"]).groupby("label").size()
        needed = set(subj_count.index[subj_count >= 2].tolist())
        train_holders = {c: sum(c in classes_of[s] for s in rest) for c in needed}
        rng = np.random.default_rng([seed, fold])
        for s in np.array(rest)[rng.permutation(len(rest))]:
            if len(val_subj) >= min(n_val, len(rest) - 1):
                break
            if all(train_holders[c] > 1 for c in classes_of[s] & needed):
                val_subj.add(str(s))
                for c in classes_of[s] & needed:
                    train_holders[c] -= 1
        if not val_subj:
            warnings.warn(f"xsub fold {fold}: no subject can go to val without losing a class from train; "
                          "val = test", stacklevel=2)
    in_test = np.isin(subjects, list(test_subj))
    in_val = np.isin(subjects, list(val_subj))
    split = {"train": clip[~in_test & ~in_val].tolist(),
             "val": clip[in_val].tolist() if val_subj else clip[in_test].tolist(),
             "test": clip[in_test].tolist()}
    _warn_missing_train_classes(y, subjects, ~in_test & ~in_val, fold)
    return split


def _warn_missing_train_classes(y: np.ndarray, subjects: np.ndarray, train: np.ndarray, fold: int) -> None:
    """The greedy placement can fail only in pathological cases; say which classes it lost."""
    frame = pd.DataFrame({"subject": subjects, "label": y})
    n_subj = frame.drop_duplicates().groupby("label").size()
    lost = sorted(set(n_subj.index[n_subj >= 2]) - set(np.unique(y[train]).tolist()))
    if lost:
        warnings.warn(f"xsub fold {fold}: classes {lost} have >= 2 subjects but none in train", stacklevel=3)


# ----------------------------------------------------------------------------- files
def read_split_file(path: str | Path) -> Split:
    """Read a split: a CSV `clip_id,split` (header required) or the JSON `write_split` writes.

    A folder is read through its split.json. Errors name the file and line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / SPLIT_JSON
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from None
        splits = data.get("splits", data) if isinstance(data, dict) else None
        if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
            raise ValueError(f"{path}: expected {{'splits': {{name: [clip_id, ...]}}}}")
        unknown = set(splits) - set(SPLIT_NAMES)
        if unknown:
            raise ValueError(f"{path}: unknown split names {sorted(unknown)}; use {SPLIT_NAMES}")
        split = {k: [str(c) for c in splits[k]] for k in SPLIT_NAMES if k in splits}
    else:
        split = {}
        seen: dict[str, int] = {}
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
        numbered = [(i + 1, r) for i, r in enumerate(rows) if any(x.strip() for x in r)]
        if not numbered:
            raise ValueError(f"{path}: empty split file")
        header = [h.strip().lower() for h in numbered[0][1]]
        if header != ["clip_id", "split"]:
            raise ValueError(f"{path}:{numbered[0][0]}: header must be clip_id,split, got {','.join(header)}")
        for lineno, row in numbered[1:]:
            if len(row) != 2:
                raise ValueError(f"{path}:{lineno}: expected 2 columns clip_id,split, got {len(row)}")
            clip, name = row[0].strip(), row[1].strip().lower()
            if name not in SPLIT_NAMES:
                raise ValueError(f"{path}:{lineno}: split {row[1]!r} is not one of {SPLIT_NAMES}")
            if clip in seen:
                raise ValueError(f"{path}:{lineno}: clip {clip!r} already listed on line {seen[clip]}")
            seen[clip] = lineno
            split.setdefault(name, []).append(clip)
    _check_split(split, str(path))
    return split


def _keep_labelled(split: Split, labels: pd.DataFrame, source: str | Path) -> Split:
    known = set(labels["clip_id"].astype(str))
    out = {k: [c for c in v if c in known] for k, v in split.items()}
    dropped = sum(len(v) for v in split.values()) - sum(len(v) for v in out.values())
    if dropped:
        warnings.warn(f"{source}: {dropped} clips of the split file have no label and are left out", stacklevel=3)
    return out


def _check_split(split: Split, source: str) -> None:
    """Non-empty splits, train disjoint from val/test; val and test disjoint unless identical (val = test)."""
    if "train" not in split:
        raise ValueError(f"{source}: no train split")
    for name, ids in split.items():
        if not ids:
            raise ValueError(f"{source}: the {name} split is empty")
        if len(set(ids)) != len(ids):
            raise ValueError(f"{source}: the {name} split lists a clip twice")
    train = set(split["train"])
    for name in ("val", "test"):
        both = train & set(split.get(name, ()))
        if both:
            raise ValueError(f"{source}: {len(both)} clips are in train and {name}, e.g. {sorted(both)[:3]}")
    if "val" in split and "test" in split and split["val"] != split["test"]:
        both = set(split["val"]) & set(split["test"])
        if both:
            raise ValueError(f"{source}: {len(both)} clips are in val and test, e.g. {sorted(both)[:3]}")


def write_split(path: str | Path, split: Split, *, meta: dict[str, Any] | None = None) -> Path:
    """Write `split` into folder `path`: split.json ({"meta": ..., "splits": ...}) and <name>.txt per split.

    Returns the JSON path, which `make_split("file", ..., split_file=...)` reads back.
    """
    _check_split(split, "split to write")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta or {}, "splits": {k: list(map(str, v)) for k, v in split.items()}}
    js = out / SPLIT_JSON
    js.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    for name, ids in split.items():
        (out / f"{name}.txt").write_text("".join(f"{c}\n" for c in ids), encoding="utf-8")
    return js

