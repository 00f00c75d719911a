"""Import MediaPipe Holistic landmarks saved as arrays (an ``.npz`` of concatenated clips) into a
MediaPipe keypoint store, with ``labels.csv`` and ``label_name.txt`` inside it, ready for
``piumr train --layout mp_holistic`` (or ``mp_pose``).

The ``.npz`` holds ``data`` (F, 75, C) float = pose 33 + left hand 21 + right hand 21 in
MediaPipe's numbering, channels x, y, z[, confidence]; ``lengths`` (N,) frames per clip, in order
(sum = F); a label key and a subject key, (N,) each; optionally ``fps``, (N,) or a scalar.

Missing points: a point whose channels are all exactly 0 is missing (NaN in the store), and a part
(pose, a hand) with every point missing in a frame is null in that frame, never a hand at the
origin. A point that is NaN on every channel counts as missing too; any other NaN or inf is an
error.

Units: the store keeps MediaPipe's convention, x, y normalised to a ``width`` × ``height`` frame
whose size is in the clips table, and ``layouts.assemble`` multiplies back. ``units="image"``
stores x, y, z as they are. ``units="other"`` (e.g. shoulder width ≈ 200, y down) takes the
coordinates as pixels of a ``width`` × ``height`` frame: it stores x / width, y / height and
z / width (MediaPipe's z has the scale of x), so assembled pixels are the file's own values.
Normalisation is scale-invariant, so the frame size only has to keep x and y on one scale.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from piumr_skel.tools.importers import LABELS_FILE, ImportFormatError, ImportResult, write_side_files
from pose_extract.schema import STORE_FILE

NUM_POINTS = 75
HOLISTIC_PARTS = {"pose": slice(0, 33), "left_hand": slice(33, 54), "right_hand": slice(54, 75)}
UNITS = ("image", "other")
DEFAULT_FRAME_SIZE = 500   # with units "other": the signs file's shoulder centre (250, 250) is mid-frame
DEFAULT_FPS = 30.0
LANDMARKS_VERSION = "piumr-import-landmarks-1"
LANDMARKS_FORMAT = "npz_landmarks"
CLASS_NAMES_FILE = "label_name.txt"   # `id<TAB>name`, read by piumr_skel.data.labels.read_class_names
# With units "image" most x, y lie in [0, 1]; a file mostly outside this band is in other units.
_IMAGE_BAND = (-1.0, 2.0)

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


@dataclass
class LandmarkClips:
    """The checked content of a landmarks file: ``data`` (F, 75, C) float32, ``lengths`` (N,),
    ``labels`` (N,) int class ids with ``class_names`` (id -> name), ``subjects`` (N,) str and
    ``fps`` (N,) float."""

    data: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    subjects: list[str]
    fps: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)


@dataclass
class LandmarkImport(ImportResult):
    """An ImportResult plus the class-names file and what the report prints."""

    class_names: Path | None = None
    num_classes: int = 0
    clips_per_subject: dict[str, int] = field(default_factory=dict)
    present: dict[str, float] = field(default_factory=dict)   # part -> fraction of frames found


# ----------------------------------------------------------------------------------------------
# reading and checking


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not zipfile.is_zipfile(path) and not _is_npy(path):
        # np.load would take it for a pickle and blame allow_pickle, which misleads
        raise ImportFormatError(f"{path}: cannot be read as an .npz archive "
                                "(no zip signature: truncated, or another format)")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ImportFormatError(f"{path}: cannot be read as an .npz archive ({first_line(exc)})") \
            from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ImportFormatError(f"{path}: not an .npz archive (a single .npy array)")
    with npz:
        out = {}
        for key in npz.files:
            try:
                out[key] = npz[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise ImportFormatError(f"{path}: key {key!r} cannot be read "
                                        f"({first_line(exc)})") from None
        return out


def _is_npy(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(6) == b"\x93NUMPY"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _key(arrays: dict[str, np.ndarray], key: str, path: Path, what: str) -> np.ndarray:
    if key not in arrays:
        raise ImportFormatError(f"{path}: no key {key!r} ({what}); keys present: "
                                f"{', '.join(sorted(arrays)) or 'none'}")
    return arrays[key]


def _per_clip(arr: np.ndarray, n: int, key: str, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 1 or len(arr) != n:
        raise ImportFormatError(f"{path}: key {key!r} has shape {arr.shape}, expected ({n},), one "
                                f"entry per clip of 'lengths'")
    return arr


def _lengths(arr: np.ndarray, num_frames: int, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer)
                             or (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)))):
        raise ImportFormatError(f"{path}: key 'lengths' must be a 1-D array of integer frame "
                                f"counts, got shape {arr.shape} dtype {arr.dtype}")
    if len(arr) == 0:
        raise ImportFormatError(f"{path}: key 'lengths' is empty: no clips")
    lengths = arr.astype(np.int64)
    bad = np.flatnonzero(lengths <= 0)
    if len(bad):
        raise ImportFormatError(f"{path}: key 'lengths': clip {int(bad[0])} has {int(lengths[bad[0]])} "
                                f"frames (clips with length <= 0: {len(bad)})")
    if int(lengths.sum()) != num_frames:
        raise ImportFormatError(f"{path}: key 'lengths' sums to {int(lengths.sum())} frames but "
                                f"'data' has {num_frames}")
    return lengths


def class_ids(raw: np.ndarray, key: str, path: Path) -> tuple[np.ndarray, list[str]]:
    """Label strings -> ids of the sorted unique strings; integer labels are kept as ids."""
    if raw.dtype.kind in "US":
        names = sorted({str(x) for x in raw})
        bad = [n for n in names if not n.strip() or n != n.strip() or "\t" in n or "\n" in n]
        if bad:
            raise ImportFormatError(f"{path}: key {key!r}: label {bad[0]!r} is empty, has "
                                    "leading or trailing spaces, or holds a tab or newline")
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[str(x)] for x in raw], dtype=np.int64), names
    if raw.dtype.kind in "iu" or (raw.dtype.kind == "f" and np.all(np.isfinite(raw))
                                  and np.all(raw == np.round(raw))):
        ids = raw.astype(np.int64)
        if ids.min() < 0:
            raise ImportFormatError(f"{path}: key {key!r}: label {int(ids.min())} is negative")
        return ids, [str(i) for i in range(int(ids.max()) + 1)]
    raise ImportFormatError(f"{path}: key {key!r} holds {raw.dtype} values; expected strings or "
                            "integer class ids")


def _subjects(raw: np.ndarray, key: str, path: Path) -> list[str]:
    if raw.dtype.kind not in "USiu":
        raise ImportFormatError(f"{path}: key {key!r} holds {raw.dtype} values; expected strings "
                                "or integer person ids")
    subjects = [str(x).strip() for x in raw]
    empty = [i for i, s in enumerate(subjects) if not s]
    if empty:
        raise ImportFormatError(f"{path}: key {key!r}: clip {empty[0]} has an empty subject "
                                f"(clips without one: {len(empty)})")
    return subjects


def _fps(arrays: dict[str, np.ndarray], n: int, fps: float | None, path: Path) -> np.ndarray:
    if fps is not None:
        out = np.full(n, float(fps))
        where = "--fps"
    elif "fps" in arrays:
        raw = np.asarray(arrays["fps"])
        if raw.dtype.kind not in "iuf":
            raise ImportFormatError(f"{path}: key 'fps' holds {raw.dtype} values, expected numbers")
        out = np.full(n, float(raw)) if raw.ndim == 0 else _per_clip(raw, n, "fps", path).astype(float)
        where = f"{path}: key 'fps'"
    else:
        return np.full(n, DEFAULT_FPS)
    bad = np.flatnonzero(~np.isfinite(out) | (out <= 0))
    if len(bad):
        raise ImportFormatError(f"{where}: clip {int(bad[0])} has frame rate {out[bad[0]]}; "
                                "expected a positive number")
    return out


def _check_values(data: np.ndarray, lengths: np.ndarray, path: Path) -> None:
    """Refuse NaN/inf anywhere but in a point that is NaN on every channel (= missing)."""
    finite = np.isfinite(data)
    bad = ~finite.all(axis=-1) & ~np.isnan(data).all(axis=-1)   # (F, V)
    if bad.any():
        f, v = (int(i) for i in np.argwhere(bad)[0])
        clip = int(np.searchsorted(np.cumsum(lengths), f, side="right"))
        frame = f - int(np.cumsum(lengths)[clip] - lengths[clip])
        part = next(p for p, s in HOLISTIC_PARTS.items() if s.start <= v < s.stop)
        raise ImportFormatError(f"{path}: key 'data': NaN or inf in clip {clip}, frame {frame}, "
                                f"{part} point {v - HOLISTIC_PARTS[part].start} "
                                f"(bad points in all: {int(bad.sum())})")


def _check_units(data: np.ndarray, units: str, path: Path) -> None:
    if units != "image":
        return
    xy = data[..., :2]
    xy = xy[np.isfinite(xy).all(axis=-1) & (xy != 0).any(axis=-1)]
    outside = float(((xy < _IMAGE_BAND[0]) | (xy > _IMAGE_BAND[1])).any(axis=-1).mean()) if len(xy) else 0.0
    if outside > 0.5:
        raise ImportFormatError(f"{path}: key 'data': {outside:.0%} of the points lie outside "
                                f"[{_IMAGE_BAND[0]:g}, {_IMAGE_BAND[1]:g}], so x, y are not image-"
                                "normalised; pass --units other")


def read_landmarks_npz(path: str | Path, *, label_key: str = "label", subject_key: str = "subject",
                       fps: float | None = None, units: str = "other") -> LandmarkClips:
    """Read and check a landmarks ``.npz`` (see the module docstring); every problem raises
    ImportFormatError naming the file and the key. ``fps`` overrides the file's ``fps`` key."""
    path = Path(path)
    if units not in UNITS:
        raise ImportFormatError(f"{path}: units must be one of {UNITS}, got {units!r}")
    arrays = _load_npz(path)
    if not arrays:
        raise ImportFormatError(f"{path}: empty archive, no keys")
    data = np.asarray(_key(arrays, "data", path, "(F, 75, C) landmarks"))
    if data.ndim != 3 or not np.issubdtype(data.dtype, np.number):
        raise ImportFormatError(f"{path}: key 'data' has shape {data.shape} dtype {data.dtype}, "
                                f"expected (F, {NUM_POINTS}, 3|4) floats")
    f, v, c = data.shape
    if v != NUM_POINTS:
        raise ImportFormatError(f"{path}: key 'data' has V = {v} points per frame, expected "
                                f"{NUM_POINTS} (pose 33 + left hand 21 + right hand 21)")
    if c not in (3, 4):
        raise ImportFormatError(f"{path}: key 'data' has C = {c} channels, expected 3 (x, y, z) "
                                "or 4 (x, y, z, confidence)")
    if f == 0:
        raise ImportFormatError(f"{path}: key 'data' has no frames: no clips")
    lengths = _lengths(_key(arrays, "lengths", path, "frames per clip"), f, path)
    n = len(lengths)
    labels, names = class_ids(_per_clip(_key(arrays, label_key, path, "labels; see --label-key"),
                                        n, label_key, path), label_key, path)
    subjects = _subjects(_per_clip(_key(arrays, subject_key, path, "subjects; see --subject-key"),
                                   n, subject_key, path), subject_key, path)
    rates = _fps(arrays, n, fps, path)
    data = data.astype(np.float32, copy=False)
    _check_values(data, lengths, path)
    _check_units(data, units, path)
    return LandmarkClips(data, lengths, labels, names, subjects, rates)


# ----------------------------------------------------------------------------------------------
# conversion


def holistic_parts(data: np.ndarray, *, units: str = "other", width: int = DEFAULT_FRAME_SIZE,
                   height: int = DEFAULT_FRAME_SIZE) -> dict[str, np.ndarray]:
    """(T, 75, C) landmarks -> the parts of a MediaPipe store: pose (T, 33, 4) x, y, z, visibility
    (1 without a confidence channel), left_hand / right_hand (T, 21, 3) x, y, z, each normalised to
    the frame (see the module docstring), NaN where missing; pose_world and face all NaN (the file
    has none)."""
    from pose_extract.schema import mediapipe_parts

    t, _, c = data.shape
    pts = np.array(data, dtype=np.float32)
    missing = (pts == 0).all(axis=-1) | np.isnan(pts).all(axis=-1)   # (T, 75)
    if units == "other":
        pts[..., 0] /= width
        pts[..., 1] /= height
        pts[..., 2] /= width
    pts[missing] = np.nan
    out = {name: np.full((t, v, ch), np.nan, np.float32) for name, (v, ch) in mediapipe_parts().items()}
    pose = pts[:, HOLISTIC_PARTS["pose"]]
    out["pose"][..., :3] = pose[..., :3]
    out["pose"][..., 3] = pose[..., 3] if c == 4 else np.where(np.isnan(pose[..., 0]), np.nan, 1.0)
    for hand in ("left_hand", "right_hand"):   # the store's hands have no confidence channel
        out[hand][:] = pts[:, HOLISTIC_PARTS[hand], :3]
    return out


def landmark_clip_ids(subjects: list[str], names: list[str], prefix: str = "") -> list[str]:
    """``{prefix}{subject}_{label}_{index}``: readable, and unique through the clip's index in the
    file (zero-padded to 4 digits or more); characters other than letters, digits, ``.`` and ``-``
    become ``-``."""
    width = max(4, len(str(len(subjects) - 1)))
    return [f"{prefix}{_UNSAFE.sub('-', s)}_{_UNSAFE.sub('-', n)}_{i:0{width}d}"
            for i, (s, n) in enumerate(zip(subjects, names))]


# ----------------------------------------------------------------------------------------------
# writing


def prepare_out(store: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty folder, unless it is a keypoint store and ``overwrite``."""
    if not store.exists():
        return
    if not store.is_dir():
        raise ImportFormatError(f"{store}: exists and is not a folder")
    if not any(store.iterdir()):
        return
    if not overwrite:
        raise ImportFormatError(f"{store}: output folder exists and is not empty; choose a new "
                                "folder or pass --overwrite to replace a keypoint store")
    if not (store / STORE_FILE).is_file():
        raise ImportFormatError(f"{store}: not a keypoint store (no store.json); --overwrite only "
                                "replaces keypoint stores")


def swap_in(tmp: Path, store: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` folder to ``store``; an old store is removed only afterwards."""
    old = None
    prepare_out(store, overwrite)   # again: another import may have finished meanwhile
    if store.exists():
        if any(store.iterdir()):
            old = store.with_name(f".{store.name}.old-{os.getpid()}")
            store.rename(old)
        else:
            store.rmdir()
    tmp.rename(store)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def import_landmarks(path: str | Path, store: str | Path, *, label_key: str = "label",
                     subject_key: str = "subject", units: str = "other",
                     width: int = DEFAULT_FRAME_SIZE, height: int = DEFAULT_FRAME_SIZE,
                     fps: float | None = None, clip_prefix: str = "",
                     overwrite: bool = False) -> LandmarkImport:
    """Import a landmarks ``.npz`` into a new MediaPipe keypoint store at ``store``.

    Every check runs before anything is written; the store is built in a hidden sibling folder
    and renamed into place at the end, so a failure leaves nothing behind. An existing non-empty
    ``store`` is refused, unless ``overwrite`` and it is a keypoint store, which is then replaced
    (only once the new one is complete). Inside the store: ``labels.csv`` (clip_id,label,subject)
    and ``label_name.txt`` (class ids of the sorted label strings, or the integer labels kept).
    """
    from pose_extract import StoreWriter
    from pose_extract.schema import KIND_MEDIAPIPE, mediapipe_parts

    path, store = Path(path), Path(store)
    if width <= 0 or height <= 0:
        raise ImportFormatError(f"{path}: frame size must be positive, got {width}x{height}")
    prepare_out(store, overwrite)
    clips = read_landmarks_npz(path, label_key=label_key, subject_key=subject_key, fps=fps,
                               units=units)
    names = [clips.class_names[i] for i in clips.labels]
    ids = landmark_clip_ids(clips.subjects, names, clip_prefix)   # unique through the index

    source = {"source": path.name, "format": LANDMARKS_FORMAT, "label_key": label_key,
              "subject_key": subject_key, "units": units}
    settings = dict(source, source_path=str(path.resolve()), width=width, height=height,
                    channels=int(clips.data.shape[2]),
                    coordinates=("x, y, z as in the file (image-normalised)" if units == "image" else
                                 f"file units / frame size: x / {width}, y / {height}, z / {width}; "
                                 "assembled pixels are the file's values"),
                    missing="point with all channels 0 (or all NaN) -> NaN; part with all points "
                            "missing in a frame -> null",
                    dropped="hand confidence (the store's hands are x, y, z); pose_world and face "
                            "are absent (null)")
    store.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.with_name(f".{store.name}.importing-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    found = {p: 0 for p in HOLISTIC_PARTS}
    try:
        with StoreWriter(tmp, kind=KIND_MEDIAPIPE, parts=mediapipe_parts(), settings=settings,
                         extractor_version=LANDMARKS_VERSION) as writer:
            for i, (cid, start, length) in enumerate(zip(ids, clips.starts, clips.lengths)):
                parts = holistic_parts(clips.data[start:start + length], units=units, width=width,
                                       height=height)
                for p in found:
                    found[p] += int((~np.isnan(parts[p]).all(axis=(1, 2))).sum())
                meta: dict[str, Any] = {
                    "clip_id": cid, "rel_path": f"{path.name}#{i}", "subject": clips.subjects[i],
                    "fps": float(clips.fps[i]), "width": width, "height": height,
                    "rate_face": float("nan"), "status": "ok",
                    "extractor_version": LANDMARKS_VERSION,
                    "settings": json.dumps(dict(source, index=i), sort_keys=True)}
                writer.write_clip(meta, parts)
        rows = [{"clip_id": c, "label": int(y), "subject": s}
                for c, y, s in zip(ids, clips.labels, clips.subjects)]
        write_side_files(tmp, rows, {})
        (tmp / CLASS_NAMES_FILE).write_text("".join(f"{i}\t{n}\n"
                                                    for i, n in enumerate(clips.class_names)))
        swap_in(tmp, store, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = int(clips.lengths.sum())
    return LandmarkImport(store, store / LABELS_FILE, None, "mp_holistic", ids, [],
                          class_names=store / CLASS_NAMES_FILE, num_classes=len(clips.class_names),
                          clips_per_subject=dict(Counter(clips.subjects)),
                          present={p: n / total for p, n in found.items()})
