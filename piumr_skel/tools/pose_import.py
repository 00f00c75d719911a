"""Import ``.pose`` files (the container of the pose-format library, used by sign.mt and many
sign-language corpora; one video per file) into a MediaPipe keypoint store, with ``labels.csv``
and ``label_name.txt`` inside it, ready for ``piumr train --layout mp_holistic`` (or ``mp_pose``).

Input: one ``.pose`` file or a folder searched recursively; the clip id is the file stem. Labels
and subjects come from a CSV (``clip_id,label[,subject]``, the columns of ``piumr train
--labels``; ``label_key`` / ``subject_key`` name other columns) that must name every file, and
only those. A label is a class name (ids = the sorted names) or an integer class id (kept); an
empty label, or a negative integer, marks a clip as unlabelled (``test_list.csv``). Without a
subject column, or with an empty cell, the subject is read from the name (MA-52 ``SSSS_...``,
NTU ``...P007...``), else it is empty.

Components: MediaPipe Holistic's ``POSE_LANDMARKS``, ``LEFT_HAND_LANDMARKS`` and
``RIGHT_HAND_LANDMARKS`` are imported, by point name (so a reduced file, e.g. pose-format's
``reduce_holistic``, keeps what it has and the rest is missing), through the ``.npz`` importer's
:func:`piumr_skel.tools.landmarks.holistic_parts`: files with a hand component give
``mp_holistic``, pose-only files ``mp_pose``; one import takes one kind. ``FACE_LANDMARKS`` and
``POSE_WORLD_LANDMARKS`` are recognised but not imported (the store's face and world parts are
null, as for the ``.npz`` importer). Any other component is refused.

Values: pose-format keeps MediaPipe's x, y as pixels of the header's width × height and z as
MediaPipe gives it (the scale of the normalised x); the store keeps MediaPipe's convention, so
x / width and y / height are stored, z unchanged (``layouts.assemble`` multiplies back: the
assembled pixels are the file's own). A masked point, one with confidence <= 0 (pose-format
masks confidence 0) or one that is NaN on every coordinate is missing; any other NaN or inf is an
error. The pose confidence is the store's visibility; the hands' is dropped (the store's hands
are x, y, z). A file with several people keeps one (``person``: ``first`` = person 0, the
default, or ``best``, see :func:`piumr_skel.tools.importers.pick_person`) and the report names
those files.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from piumr_skel.tools.importers import (
    LABELS_FILE,
    PERSON_CHOICES,
    UNLABELLED_FILE,
    ImportFormatError,
    pick_person,
    subject_of,
    write_side_files,
)
from piumr_skel.tools.landmarks import (
    CLASS_NAMES_FILE,
    HOLISTIC_PARTS,
    NUM_POINTS,
    LandmarkImport,
    class_ids,
    first_line,
    holistic_parts,
    prepare_out,
    swap_in,
)

POSE_SUFFIX = ".pose"
POSE_FORMAT = "pose_format"
POSE_IMPORT_VERSION = "piumr-import-pose-1"
# pose-format component -> store part; the names are those of pose-format's MediaPipe Holistic header.
COMPONENT_PARTS = {"POSE_LANDMARKS": "pose", "LEFT_HAND_LANDMARKS": "left_hand",
                   "RIGHT_HAND_LANDMARKS": "right_hand"}
NOT_IMPORTED = ("FACE_LANDMARKS", "POSE_WORLD_LANDMARKS")
_NEGATIVE_INT = re.compile(r"-\d+")
_INT = re.compile(r"[+-]?\d+")


@dataclass
class PoseImport(LandmarkImport):
    """A LandmarkImport plus what only a .pose import reports."""

    multi_person: list[str] = field(default_factory=list)   # clip ids of files with > 1 person
    person: str = "first"
    not_imported: list[str] = field(default_factory=list)   # components seen and left out


@dataclass
class PoseLabels:
    """The checked label CSV: class id per labelled clip, the class names, a subject per clip."""

    label_of: dict[str, int]
    class_names: list[str]
    subject_of: dict[str, str]


# ----------------------------------------------------------------------------------------------
# reading


def _pose_class() -> Any:
    try:
        from pose_format import Pose
    except ImportError:
        raise ImportFormatError("reading .pose files needs the pose-format package: "
                                "pip install pose-format") from None
    return Pose


def find_pose_files(root: Path) -> list[Path]:
    """``root`` itself if it is a file, else the ``.pose`` files under it (recursive, the suffix
    case-insensitive), sorted by relative path."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    found = [p for p in root.rglob("*") if p.suffix.lower() == POSE_SUFFIX and p.is_file()]
    if not found:
        raise ImportFormatError(f"{root}: no {POSE_SUFFIX} files in this folder or below")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def read_pose(path: Path) -> Any:
    """``pose_format.Pose`` of a file; a file the library cannot read is one ImportFormatError."""
    pose_cls = _pose_class()
    try:
        return pose_cls.read(path.read_bytes())
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot be read ({first_line(exc)})") from None
    except Exception as exc:   # struct.error, TypeError, ValueError, NotImplementedError, ...
        raise ImportFormatError(f"{path}: cannot be read as a .pose file, truncated or corrupt "
                                f"({first_line(exc)})") from None


def _slot(component: str, point: str) -> int:
    """Index 0..74 of a point in the ``.npz`` importer's order (pose 33, left hand, right hand),
    by the names of :mod:`piumr_skel.skeleton.layouts` (MediaPipe's, lower case; a hand's
    ``INDEX_FINGER_MCP`` is ``index_mcp`` there); -1 if the name is not MediaPipe's."""
    from piumr_skel.skeleton.layouts import HAND_NAMES, MP_POSE_NAMES

    part = COMPONENT_PARTS[component]
    name = point.strip().lower()
    names = MP_POSE_NAMES if part == "pose" else HAND_NAMES
    name = name if part == "pose" else name.replace("_finger_", "_")
    return HOLISTIC_PARTS[part].start + names.index(name) if name in names else -1


def component_map(header: Any, path: Path) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(file point indices, their slots 0..74, the imported component names, the components left
    out) of a header; an unknown component or point name raises ImportFormatError."""
    names = [c.name for c in header.components]
    unknown = [n for n in names if n not in COMPONENT_PARTS and n not in NOT_IMPORTED]
    if unknown or "POSE_LANDMARKS" not in names:
        problem = (f"component {unknown[0]!r} is not MediaPipe Holistic's" if unknown
                   else "no POSE_LANDMARKS component")
        raise ImportFormatError(f"{path}: {problem}; components found: {', '.join(names) or 'none'}; "
                                f"supported: {', '.join(COMPONENT_PARTS)} (imported), "
                                f"{', '.join(NOT_IMPORTED)} (left out)")
    src, dst, start = [], [], 0
    for comp in header.components:
        if comp.name in COMPONENT_PARTS:
            for i, point in enumerate(comp.points):
                slot = _slot(comp.name, point)
                if slot < 0:
                    raise ImportFormatError(f"{path}: component {comp.name}: point {point!r} is "
                                            "not a MediaPipe landmark name")
                if slot in dst:
                    raise ImportFormatError(f"{path}: component {comp.name}: point {point!r} "
                                            "appears twice")
                src.append(start + i)
                dst.append(slot)
        start += len(comp.points)
    return (np.array(src, np.int64), np.array(dst, np.int64),
            [n for n in names if n in COMPONENT_PARTS], [n for n in names if n in NOT_IMPORTED])


def _check_finite(xyz: np.ndarray, conf: np.ndarray, missing: np.ndarray, points: list[str],
                  path: Path) -> None:
    bad = ~missing & ~(np.isfinite(xyz).all(axis=-1) & np.isfinite(conf))
    if bad.any():
        f, v = (int(i) for i in np.argwhere(bad)[0])
        raise ImportFormatError(f"{path}: NaN or inf in frame {f}, {points[v]} "
                                f"(bad points in all: {int(bad.sum())})")


def pose_landmarks(pose: Any, path: Path, *, person: str = "first", width: int | None = None,
                   height: int | None = None) -> tuple[np.ndarray, int]:
    """A read Pose -> ((T, 75, 4) x / width, y / height, z, confidence in the ``.npz``
    importer's point order, NaN on every channel where missing, the number of people in the
    file). ``width`` / ``height`` override the header's frame size."""
    src, dst, _, _ = component_map(pose.header, path)
    w = int(width or pose.header.dimensions.width)
    h = int(height or pose.header.dimensions.height)
    if w <= 0 or h <= 0:
        raise ImportFormatError(f"{path}: the header's frame size is {w} x {h}; pass --width and "
                                "--height (the frame the pixel coordinates refer to)")
    data = np.asarray(np.ma.getdata(pose.body.data), dtype=np.float32)
    conf = np.asarray(np.ma.getdata(pose.body.confidence), dtype=np.float32)
    if data.ndim != 4 or data.shape[-1] < 2 or conf.shape != data.shape[:3]:
        raise ImportFormatError(f"{path}: body data {data.shape} and confidence {conf.shape} are "
                                "not (frames, people, points, dims) and (frames, people, points)")
    t, people = data.shape[:2]
    if t == 0:
        raise ImportFormatError(f"{path}: no frames")
    out = np.full((t, NUM_POINTS, 4), np.nan, np.float32)
    if people == 0:   # nobody in the whole video: keep the clip, every point missing
        return out, 0
    data, conf = data[:, :, src], conf[:, :, src]
    masked = np.ma.getmaskarray(pose.body.data)[:, :, src].any(axis=-1)
    dims = min(3, data.shape[-1])
    xyz = np.zeros(data.shape[:3] + (3,), np.float32)
    xyz[..., :dims] = data[..., :dims]   # a 2-D file (XYC) gets z = 0
    missing = masked | (conf <= 0) | np.isnan(xyz[..., :dims]).all(axis=-1)
    if person not in PERSON_CHOICES:
        raise ValueError(f"person must be one of {PERSON_CHOICES}, got {person!r}")
    p = 0 if person == "first" or people == 1 else pick_person(
        np.moveaxis(xyz[..., :2], 1, 0), np.moveaxis(np.where(missing, 0.0, conf), 1, 0))
    components = {c.name: c.points for c in pose.header.components}
    points = [f"{c} point {n!r}" for c in components if c in COMPONENT_PARTS for n in components[c]]
    _check_finite(xyz[:, p], conf[:, p], missing[:, p], points, path)
    xyz = xyz[:, p] / np.array([w, h, 1.0], np.float32)
    values = np.concatenate([xyz, conf[:, p, :, None]], axis=-1)   # (T, n, 4)
    values[missing[:, p]] = np.nan
    out[:, dst] = values
    return out, people


# ----------------------------------------------------------------------------------------------
# labels


def _csv_stem(text: str) -> str:
    """A CSV cell -> clip id: folders, a video extension and ``.pose`` go."""
    from piumr_skel.data.labels import clip_id_of

    cid = clip_id_of(text)
    return cid[: -len(POSE_SUFFIX)] if cid.lower().endswith(POSE_SUFFIX) else cid


def read_pose_labels(path: Path, clip_ids: list[str], *, label_key: str = "label",
                     subject_key: str | None = None) -> PoseLabels:
    """Read and check the label CSV against the clip ids (see the module docstring). Every
    problem raises ImportFormatError naming the CSV (and the line)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such label file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path}: cannot be read as a text CSV ({first_line(exc)})") from None
    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise ImportFormatError(f"{path}: empty label file")
    header = [h.strip().lower() for h in rows[0][1]]
    keys = {"clip_id": "the file stems", label_key.lower(): "the labels; see --label-key"}
    if subject_key is not None:
        keys[subject_key.lower()] = "the subjects; see --subject-key"
    for key, what in keys.items():
        if key not in header:
            raise ImportFormatError(f"{path}:{rows[0][0]}: no column {key!r} ({what}); "
                                    f"columns: {','.join(header)}")
    ci, li = header.index("clip_id"), header.index(label_key.lower())
    skey = (subject_key or "subject").lower()
    si = header.index(skey) if skey in header else None
    cells: dict[str, tuple[str, str]] = {}
    line_of: dict[str, int] = {}
    for lineno, row in rows[1:]:
        if len(row) != len(header):
            raise ImportFormatError(f"{path}:{lineno}: expected {len(header)} columns "
                                    f"({','.join(header)}), got {len(row)}")
        cid = _csv_stem(row[ci])
        if not cid:
            raise ImportFormatError(f"{path}:{lineno}: empty clip_id")
        if cid in cells:
            raise ImportFormatError(f"{path}:{lineno}: clip {cid!r} listed twice (first on line "
                                    f"{line_of[cid]})")
        cells[cid], line_of[cid] = (row[li].strip(), row[si].strip() if si is not None else ""), lineno
    _match(path, set(cells), clip_ids)
    labelled = {c: lab for c, (lab, _) in cells.items() if lab and not _NEGATIVE_INT.fullmatch(lab)}
    label_of: dict[str, int] = {}
    names: list[str] = []
    if labelled:
        as_int = all(_INT.fullmatch(v) for v in labelled.values())
        raw = np.array([int(v) for v in labelled.values()] if as_int else list(labelled.values()))
        ids, names = class_ids(raw, label_key, path)
        label_of = dict(zip(labelled, (int(i) for i in ids)))
    subjects = {c: cells[c][1] or subject_of(c) for c in clip_ids}
    return PoseLabels(label_of, names, subjects)


def _match(path: Path, listed: set[str], clip_ids: list[str]) -> None:
    missing = [c for c in clip_ids if c not in listed]
    if missing:
        raise ImportFormatError(f"{path}: no row for {len(missing)} of the {len(clip_ids)} .pose "
                                f"files, e.g. {missing[0]!r}; every file needs a row (an empty "
                                "label marks it unlabelled)")
    unknown = sorted(listed - set(clip_ids))
    if unknown:
        raise ImportFormatError(f"{path}: {len(unknown)} rows name no .pose file of the input, "
                                f"e.g. {unknown[0]!r}")


def _clip_ids(files: list[Path], root: Path) -> list[str]:
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise ImportFormatError(f"{root}: two files have the stem {f.stem!r} ({seen[f.stem]} and "
                                    f"{f}); clip ids are file stems and must be unique")
        seen[f.stem] = f
    return list(seen)


# ----------------------------------------------------------------------------------------------
# the import


def import_pose(source: str | Path, store: str | Path, *, labels: str | Path,
                label_key: str = "label", subject_key: str | None = None,
                fps: float | None = None, width: int | None = None, height: int | None = None,
                person: str = "first", overwrite: bool = False) -> PoseImport:
    """Import a ``.pose`` file, or the ``.pose`` files under a folder, into a new MediaPipe
    keypoint store at ``store`` (see the module docstring).

    The label CSV is checked first; the clips are then written one file at a time into a hidden
    sibling folder, renamed into place only when every file has been read and checked, so a bad
    file leaves nothing behind. An existing non-empty ``store`` is refused unless ``overwrite``
    and it is a keypoint store (replaced once the new one is complete). ``fps`` overrides the
    files' frame rate; ``width`` / ``height`` their header's frame size.
    """
    from pose_extract import StoreWriter
    from pose_extract.schema import KIND_MEDIAPIPE, mediapipe_parts

    source, store, labels = Path(source), Path(store), Path(labels)
    _pose_class()
    if person not in PERSON_CHOICES:
        raise ImportFormatError(f"{source}: person must be one of {PERSON_CHOICES}, got {person!r}")
    for name, value in (("--fps", fps), ("--width", width), ("--height", height)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ImportFormatError(f"{source}: {name} must be positive, got {value}")
    files = find_pose_files(source)
    root = source if source.is_dir() else source.parent
    ids = _clip_ids(files, source)
    table = read_pose_labels(labels, ids, label_key=label_key, subject_key=subject_key)
    prepare_out(store, overwrite)

    settings = {"source": source.name, "format": POSE_FORMAT, "source_path": str(source.resolve()),
                "labels": str(labels.resolve()), "label_key": label_key, "person": person,
                "coordinates": "x / frame width, y / frame height (the header's unless --width / "
                               "--height), z as in the file (MediaPipe's)",
                "missing": "masked, confidence <= 0 or all-NaN point -> NaN; part with all points "
                           "missing in a frame -> null",
                "dropped": "hand confidence; FACE_LANDMARKS and POSE_WORLD_LANDMARKS (null)"}
    tmp = store.with_name(f".{store.name}.importing-{os.getpid()}")
    store.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    kinds: dict[str, Path] = {}   # layout -> first file of that kind
    found: Counter[str] = Counter()
    total = 0
    multi: list[str] = []
    left_out: set[str] = set()
    try:
        with StoreWriter(tmp, kind=KIND_MEDIAPIPE, parts=mediapipe_parts(), settings=settings,
                         extractor_version=POSE_IMPORT_VERSION) as writer:
            for cid, path in zip(ids, files):
                pose = read_pose(path)
                _, _, comps, dropped = component_map(pose.header, path)
                layout = "mp_holistic" if len(comps) > 1 else "mp_pose"
                kinds.setdefault(layout, path)
                if len(kinds) > 1:
                    raise ImportFormatError(f"{path}: mixes kinds: {kinds['mp_pose']} has no hand "
                                            f"component (mp_pose) but {kinds['mp_holistic']} has "
                                            "(mp_holistic); import them into separate stores")
                rate = float(fps if fps is not None else pose.body.fps)
                if not (np.isfinite(rate) and rate > 0):
                    raise ImportFormatError(f"{path}: frame rate {rate} in the file; pass --fps")
                points, people = pose_landmarks(pose, path, person=person, width=width, height=height)
                parts = holistic_parts(points, units="image")
                if people > 1:
                    multi.append(cid)
                left_out.update(dropped)
                total += len(points)
                meta: dict[str, Any] = {
                    "clip_id": cid, "rel_path": path.relative_to(root).as_posix(),
                    "subject": table.subject_of[cid], "fps": rate,
                    "width": int(width or pose.header.dimensions.width),
                    "height": int(height or pose.header.dimensions.height),
                    "rate_face": float("nan"), "status": "ok", "extractor_version": POSE_IMPORT_VERSION,
                    "settings": json.dumps({"source": path.name, "components": comps + dropped,
                                            "people": people}, sort_keys=True)}
                for comp in COMPONENT_PARTS:
                    part = COMPONENT_PARTS[comp]
                    if comp in comps:
                        found[part] += int((~np.isnan(parts[part]).all(axis=(1, 2))).sum())
                    else:
                        meta[f"rate_{part}"] = float("nan")   # not in the file, not "never found"
                writer.write_clip(meta, parts)
        rows = [{"clip_id": c, "label": table.label_of[c], "subject": table.subject_of[c]}
                for c in ids if c in table.label_of]
        unlabelled = [c for c in ids if c not in table.label_of]
        write_side_files(tmp, rows, {}, unlabelled)
        if table.class_names:
            (tmp / CLASS_NAMES_FILE).write_text("".join(f"{i}\t{n}\n"
                                                        for i, n in enumerate(table.class_names)))
        swap_in(tmp, store, overwrite)
    finally:   # after the swap there is nothing left here; after a failure, the half-built store
        shutil.rmtree(tmp, ignore_errors=True)
    layout = next(iter(kinds))
    shown = ("pose",) if layout == "mp_pose" else tuple(COMPONENT_PARTS.values())
    return PoseImport(store, store / LABELS_FILE if rows else None, None, layout, ids, [],
                      store / UNLABELLED_FILE if unlabelled else None,
                      class_names=store / CLASS_NAMES_FILE if table.class_names else None,
                      num_classes=len(table.class_names),
                      clips_per_subject=dict(Counter(table.subject_of[c] for c in ids)),
                      present={p: found[p] / total for p in shown},
                      multi_person=multi, person=person, not_imported=sorted(left_out))
