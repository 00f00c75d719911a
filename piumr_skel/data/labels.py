"""MA-52 labels: list/CSV readers, the 52 action and 7 body class names, and store matching."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path, PurePath
from typing import Iterable, overload

import numpy as np
import pandas as pd

from pose_extract.schema import parse_subject as _parse_store_subject

# The public MA-52 class names (label_name.txt of the dataset), embedded so the package does not
# depend on a copy of the dataset files.
MA52_CLASSES: tuple[str, ...] = (
    "shaking body", "sitting straightly", "shrugging", "turning around", "rising up",
    "bowing head", "head up", "tilting head", "turning head", "nodding", "shaking head",
    "scratching arms", "playing objects", "putting hands together", "rubbing hands",
    "pointing oneself", "clenching fist", "stretching arms", "retracting arms", "waving",
    "spreading hands", "hands touching fingers", "other finger movements", "illustrative gestures",
    "shaking legs", "curling legs", "spread legs", "closing legs", "crossing legs",
    "stretching feet", "retracting feet", "tiptoe",
    "scratching or touching neck", "scratching or touching chest", "scratching or touching back",
    "scratching or touching shoulder", "arms akimbo", "crossing arms",
    "playing or tidying hair", "scratching or touching hindbrain", "scratching or touching forehead",
    "scratching or touching face", "rubbing eyes", "touching nose", "touching ears", "covering face",
    "covering mouth", "pushing glasses",
    "patting legs", "touching legs", "scratching legs", "scratching feet",
)
NUM_ACTIONS = len(MA52_CLASSES)

BODY_CLASSES: tuple[str, ...] = (
    "Body", "Head", "Upper limb", "Lower limb", "Body-hand", "Head-hand", "Leg-hand",
)
# First action id of each body class (MA-52's class hierarchy): 0-4 Body, 5-10 Head, 11-23 Upper limb,
# 24-31 Lower limb, 32-37 Body-hand, 38-47 Head-hand, 48-51 Leg-hand.
BODY_STARTS = np.array([0, 5, 11, 24, 32, 38, 48], dtype=np.int64)
ACTION_TO_BODY = np.searchsorted(BODY_STARTS, np.arange(NUM_ACTIONS), side="right") - 1

# Suffixes stripped from list entries to get the clip id (= the video's file stem).
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}


@overload
def body_of_action(a: int) -> int: ...
@overload
def body_of_action(a: np.ndarray) -> np.ndarray: ...
def body_of_action(a):
    """Body class (0..6) of an MA-52 action id (0..51); works on ints and integer arrays of any shape."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"action ids must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= NUM_ACTIONS):
        raise ValueError(f"action ids must lie in [0, {NUM_ACTIONS}), got range [{arr.min()}, {arr.max()}]")
    body = ACTION_TO_BODY[arr]
    return int(body) if np.ndim(a) == 0 else body


def parse_subject(clip_id: str) -> str:
    """Person id "SSSS" of an MA-52 name SSSS_BB_NNNN (extension and folders allowed), else ""."""
    return _parse_store_subject(clip_id_of(clip_id))


def clip_id_of(name: str) -> str:
    """Clip id of a list entry: the file name without folders and without a video extension."""
    p = PurePath(name.strip().replace("\\", "/"))
    return p.stem if p.suffix.lower() in VIDEO_SUFFIXES else p.name


def _csv_clip_id(text: str) -> str:
    """Clip id of a CSV `clip_id` cell: an id, not a path, so folders stay (an imported PYSKL
    `frame_dir` such as `train/0003_01_0001` is the store's clip id); a video extension goes."""
    text = text.strip()
    suffix = PurePath(text).suffix
    return text[: -len(suffix)] if suffix.lower() in VIDEO_SUFFIXES else text


def _check_label(text: str, where: str, num_classes: int | None) -> int:
    try:
        label = int(text)
    except ValueError:
        raise ValueError(f"{where}: label {text!r} is not an integer") from None
    if label < 0 or (num_classes is not None and label >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise ValueError(f"{where}: label {label} outside the class range {bound}")
    return label


def _looks_like_csv(path: Path, first_line: str) -> bool:
    return path.suffix.lower() == ".csv" or "," in first_line


def read_labels(path: str | Path, *, num_classes: int | None = None) -> pd.DataFrame:
    """Read an MA-52 list file (`file.mp4 label` per line) or a CSV `clip_id,label[,subject]` with a header.

    CRLF line endings and blank lines are tolerated. Returns a DataFrame with columns clip_id (str:
    a list entry's file stem; a CSV clip_id as written, folders kept, without a video extension),
    label (int64) and subject (str: the CSV column when present, else the first field of an MA-52
    name SSSS_BB_NNNN, else ""), in file order. Raises ValueError naming the file and line
    for a malformed line, a non-integer or out-of-range label, a duplicated clip id, or an empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    # utf-8-sig: a BOM from spreadsheet exports would otherwise end up in the first column name.
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    numbered = [(i + 1, line.strip()) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise ValueError(f"{path}: empty label file")
    clip_ids: list[str] = []
    labels: list[int] = []
    subjects: list[str] = []
    seen: dict[str, int] = {}

    def add(clip: str, label: int, subject: str, lineno: int) -> None:
        if not clip:
            raise ValueError(f"{path}:{lineno}: empty clip id")
        if clip in seen:
            raise ValueError(f"{path}:{lineno}: clip id {clip!r} duplicated (first on line {seen[clip]})")
        seen[clip] = lineno
        clip_ids.append(clip)
        labels.append(label)
        subjects.append(subject)

    if _looks_like_csv(path, numbered[0][1]):
        header_no, header_line = numbered[0]
        header = [h.strip().lower() for h in next(csv.reader([header_line]))]
        if "clip_id" not in header or "label" not in header:
            raise ValueError(f"{path}:{header_no}: CSV header must name the columns clip_id,label[,subject]; "
                             f"got {header}")
        ci, li = header.index("clip_id"), header.index("label")
        si = header.index("subject") if "subject" in header else None
        for lineno, line in numbered[1:]:
            row = next(csv.reader([line]))
            if len(row) != len(header):
                raise ValueError(f"{path}:{lineno}: expected {len(header)} columns ({','.join(header)}), "
                                 f"got {len(row)}")
            clip = _csv_clip_id(row[ci])
            subject = (row[si].strip() if si is not None else "") or parse_subject(clip)
            add(clip, _check_label(row[li].strip(), f"{path}:{lineno}", num_classes), subject, lineno)
        if not clip_ids:
            raise ValueError(f"{path}: CSV has a header but no rows")
    else:
        for lineno, line in numbered:
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{path}:{lineno}: expected 2 fields `file label`, got {len(fields)}: {line!r}")
            clip = clip_id_of(fields[0])
            add(clip, _check_label(fields[1], f"{path}:{lineno}", num_classes), parse_subject(clip), lineno)
    return pd.DataFrame({"clip_id": pd.Series(clip_ids, dtype=object),
                         "label": np.asarray(labels, dtype=np.int64),
                         "subject": pd.Series(subjects, dtype=object)})


def read_class_names(path: str | Path) -> list[str]:
    """Read label_name.txt (`id<TAB>name` per line, any order, CRLF ok) -> names indexed by id 0..K-1.

    Lines without a tab are split at the first run of whitespace. Ids must be 0..K-1, each once.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file not found: {path}")
    names: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.split("\t", 1) if "\t" in line else line.split(None, 1)
        if len(parts) != 2 or not parts[1].strip():
            raise ValueError(f"{path}:{lineno}: expected `id<TAB>name`, got {line!r}")
        try:
            idx = int(parts[0])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: class id {parts[0]!r} is not an integer") from None
        if idx in names:
            raise ValueError(f"{path}:{lineno}: class id {idx} listed twice")
        names[idx] = parts[1].strip()
    if not names:
        raise ValueError(f"{path}: empty class-name file")
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        raise ValueError(f"{path}: class ids must be 0..{len(names) - 1}; missing {missing[:5]}")
    return [names[i] for i in range(len(names))]


def _first(names: Iterable[str], n: int) -> str:
    names = sorted(names)
    more = f", ... (+{len(names) - n})" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def match_store(labels: pd.DataFrame, store_clip_ids: Iterable[str], *,
                show: int = 5) -> tuple[pd.DataFrame, str]:
    """Keep the labelled clips that the keypoint store holds.

    Returns (the rows of `labels` whose clip_id is in the store, in label order, index reset; a
    one-paragraph report). The report counts clips listed but missing from the store and clips in the
    store without a label, naming the first `show` of each; a `UserWarning` carries it when any
    labelled clip is missing. Raises ValueError when no labelled clip is in the store.
    """
    store = {str(c) for c in store_clip_ids}
    listed = labels["clip_id"].astype(str)
    in_store = listed.isin(store).to_numpy()
    missing = set(listed[~in_store])
    unlabelled = store - set(listed)
    report = f"{int(in_store.sum())} of {len(labels)} labelled clips are in the store ({len(store)} clips)"
    if missing:
        report += f"; {len(missing)} listed but missing from the store: {_first(missing, show)}"
    if unlabelled:
        report += f"; {len(unlabelled)} in the store but unlabelled: {_first(unlabelled, show)}"
    if not in_store.any():
        raise ValueError(f"no labelled clip is in the store: {report}")
    if missing:
        warnings.warn(report, stacklevel=2)
    return labels.loc[in_store].reset_index(drop=True), report
