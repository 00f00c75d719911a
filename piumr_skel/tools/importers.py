"""Import third-party 2D keypoints (PYSKL annotation pickles, the MMN MA-52 release) into a
keypoint store of kind "imported", and export a store (imported, or MediaPipe from ``piumr
extract``) to a PYSKL annotation pickle. docs/INTEROP.md lists the formats and what each loses.

An imported store has one part, ``keypoints`` (V, 3) = x, y in pixels, score, with NaN where a
joint is missing, and ``store.json["layout"]`` naming its layout in :mod:`piumr_skel.skeleton.layouts`, so
training reads it exactly like a MediaPipe store. Next to the frames, inside the store folder,
the importers write ``labels.csv`` (clip_id,label,subject, readable by ``read_labels``) for the
labelled clips, ``test_list.csv`` (the same columns, label 0 as in MA-52's hidden test list) for
clips the source gives no label (usable by ``piumr predict --test-list``) and, when
the source has splits, ``splits.json`` (the source's split lists exactly, ``{name: [clip_id, ...]}``,
which the exporter writes back) plus CSV files ``clip_id,split`` for the ``file`` split protocol,
which knows only train/val/test: ``split.csv`` from splits named train/val/test and
``split_<prefix>.csv`` from PYSKL's prefixed ones (``xsub_train``, ``xsub_val`` -> ``split_xsub.csv``).

Missing-joint convention, both ways: PYSKL (like OpenPose) marks an undetected joint with
coordinates (0, 0) and score 0. Such joints become NaN on import and are written back as
(0, 0, 0) on export, so import → export → import is lossless to float32 precision. A genuine
detection at exactly pixel (0, 0) with score 0 is indistinguishable from "missing" in that
format and is read as missing.
"""
from __future__ import annotations

import csv
import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from piumr_skel.engine.atomic import atomic_path, atomic_write_text

IMPORTED_KIND = "imported"
KEYPOINT_PART = "keypoints"
LABELS_FILE = "labels.csv"
UNLABELLED_FILE = "test_list.csv"
SPLIT_FILE = "split.csv"
SPLITS_JSON = "splits.json"
PROTOCOL_SPLITS = ("train", "val", "test")  # the names piumr_skel.data.splits' file protocol accepts
IMPORTER_VERSION = "piumr-import-1"

# Layout chosen from the number of joints V of a PYSKL file. PYSKL's 2D NTU-60/120, FineGYM and
# its other HRNet releases are COCO-17 (NTU's 25 joints exist only in the 3D Kinect files, which
# are not 2D pixel keypoints and are refused); the Kinetics skeleton is OpenPose-18; the PCAN
# MA-52 release is OpenPose-18 plus 5 fingertips per hand.
LAYOUT_BY_NUM_JOINTS: dict[int, str] = {17: "coco17", 18: "openpose18", 28: "openpose28",
                                        44: "halpe44", 136: "halpe136"}

# NTU sample names (S001C001P001R001A001) carry the performer id after "P".
_NTU_NAME = re.compile(r"^S\d{3}C\d{3}P(\d{3})R\d{3}A\d{3}")


class ImportFormatError(ValueError):
    """A third-party keypoint file does not have the structure its format promises."""


@dataclass
class ImportResult:
    """What an importer wrote: the store, the labels file (None when no clip has a label), the
    exact split lists (``splits.json``, or None without splits), the ``file``-protocol split CSVs,
    the layout name, the clip ids in file order, the list of unlabelled clips (None if none) and
    how many source clips were left out."""

    store: Path
    labels: Path | None
    split: Path | None
    layout: str
    clip_ids: list[str] = field(default_factory=list)
    protocol_splits: list[Path] = field(default_factory=list)
    unlabelled: Path | None = None
    skipped: int = 0  # source clips left out (MMN: data clips that its label file does not name)


# ----------------------------------------------------------------------------------------------
# helpers shared by both importers


def subject_of(clip_id: str) -> str:
    """Person id of a clip name: MA-52 ``SSSS_BB_NNNN`` -> ``SSSS``, NTU ``S..C..P007..`` -> ``P007``,
    else ``""``."""
    from pose_extract import parse_subject

    clip_id = clip_id.replace("\\", "/").rsplit("/", 1)[-1]  # frame_dir may hold a folder
    subject = parse_subject(clip_id)
    if subject:
        return subject
    match = _NTU_NAME.match(clip_id)
    return f"P{match.group(1)}" if match else ""


def _load_pickle(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except Exception as exc:  # corrupt or not a pickle at all: say which file
        raise ImportFormatError(f"{path}: cannot be read as a pickle ({exc})") from exc


def resolve_layout(name: str | None, num_joints: int, source: str):
    """The Layout for a file with ``num_joints`` joints; ``name`` overrides the guess by V.

    Raises ImportFormatError naming ``source`` when V has no known layout or contradicts ``name``.
    """
    from piumr_skel.skeleton.layouts import get_layout

    if name is None:
        if num_joints not in LAYOUT_BY_NUM_JOINTS:
            known = ", ".join(f"{v} -> {n}" for v, n in LAYOUT_BY_NUM_JOINTS.items())
            raise ImportFormatError(
                f"{source}: no known 2D layout has {num_joints} joints (known: {known}); "
                "pass --layout NAME")
        name = LAYOUT_BY_NUM_JOINTS[num_joints]
    try:
        layout = get_layout(name)
    except (KeyError, ValueError) as exc:
        raise ImportFormatError(f"{source}: layout {name!r} is not in piumr_skel.skeleton.layouts "
                                f"({exc})") from exc
    if layout.store_parts != (KEYPOINT_PART,):
        raise ImportFormatError(f"{source}: layout {name!r} reads MediaPipe store parts "
                                f"{layout.store_parts}; an imported store needs a layout of "
                                "pixel keypoints (coco17, openpose18, halpe136, ...)")
    if layout.num_joints != num_joints:
        raise ImportFormatError(f"{source}: layout {name!r} has {layout.num_joints} joints but "
                                f"the keypoints have {num_joints}")
    return layout


def to_store_keypoints(xy: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(T, V, 2) pixel coordinates and (T, V) scores -> (T, V, 3) float32 with NaN on every
    channel of a missing joint ((0, 0) with score 0, the PYSKL/OpenPose convention)."""
    kp = np.concatenate([xy, score[..., None]], axis=-1).astype(np.float32)
    missing = (xy[..., 0] == 0) & (xy[..., 1] == 0) & (score <= 0)
    missing |= ~np.isfinite(kp).all(axis=-1)
    kp[missing] = np.nan
    return kp


def from_store_keypoints(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, V, 3) store keypoints -> ((T, V, 2) xy, (T, V) score) float32 with missing -> 0."""
    missing = ~np.isfinite(kp).all(axis=-1)
    kp = np.where(missing[..., None], 0.0, kp).astype(np.float32)
    return kp[..., :2].copy(), kp[..., 2].copy()


def _clip_meta(clip_id: str, rel_path: str, kp: np.ndarray, width: int, height: int,
               fps: float, source: str) -> dict[str, Any]:
    found = np.isfinite(kp).all(axis=-1).any(axis=-1)  # (T,) frames with at least one joint
    return {
        "clip_id": clip_id, "rel_path": rel_path, "subject": subject_of(clip_id),
        "fps": float(fps), "num_frames": int(kp.shape[0]),
        "width": int(width), "height": int(height),
        "rate_pose": float(found.mean()) if len(found) else 0.0,
        # Imported stores have no separate hand/face parts.
        "rate_left_hand": float("nan"), "rate_right_hand": float("nan"),
        "rate_face": float("nan"),
        "status": "ok", "error": "", "extractor_version": IMPORTER_VERSION,
        "settings": source,
    }


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _merge_write_csv(path: Path, header: Sequence[str], rows: list[dict[str, Any]],
                     key: Sequence[str]) -> None:
    """Write rows to a CSV, keeping earlier rows of other keys (a store filled by several imports,
    e.g. MMN train then val, keeps one labels file)."""
    new_keys = {tuple(str(r[k]) for k in key) for r in rows}
    old = [r for r in _read_csv_rows(path) if tuple(r[k] for k in key) not in new_keys]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:  # never a half-written labels file
        writer = csv.DictWriter(fh, fieldnames=list(header))
        writer.writeheader()
        for r in old + rows:
            writer.writerow({k: r[k] for k in header})


def _write_store(store_path: Path, layout_name: str, num_joints: int,
                 clips: Iterable[tuple[dict[str, Any], np.ndarray]], settings: dict) -> list[str]:
    """Write (meta, (T, V, 3) keypoints) pairs; clips already in the store are kept, not rewritten."""
    from pose_extract import StoreWriter

    ids = []
    with StoreWriter(store_path, kind=IMPORTED_KIND, parts={KEYPOINT_PART: (num_joints, 3)},
                     settings=settings, layout=layout_name) as writer:
        done = writer.done_clip_ids()
        for meta, kp in clips:
            ids.append(meta["clip_id"])
            if meta["clip_id"] not in done:
                writer.write_clip(meta, {KEYPOINT_PART: kp})
    return ids


def protocol_split_files(splits: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list[str]]]:
    """Group split lists into train/val/test splits for the ``file`` protocol: file name ->
    {train|val|test: clip ids}. ``train``/``val``/``test`` go to ``split.csv``;
    ``<prefix>_train`` etc. to ``split_<prefix>.csv``. A group without a train list, or one that
    lists a clip twice, is left out (the exact lists stay in ``splits.json``)."""
    groups: dict[str, dict[str, list[str]]] = {}
    for name, members in splits.items():
        prefix, _, last = name.rpartition("_")
        if name in PROTOCOL_SPLITS:
            groups.setdefault(SPLIT_FILE, {})[name] = list(members)
        elif prefix and last in PROTOCOL_SPLITS:
            groups.setdefault(f"split_{prefix}.csv", {})[last] = list(members)
    out = {}
    for fname, group in groups.items():
        ids = [c for members in group.values() for c in members]
        if "train" in group and len(ids) == len(set(ids)):
            out[fname] = group
    return out


def write_side_files(store_path: Path, labels: list[dict[str, Any]],
                     splits: Mapping[str, Sequence[str]], unlabelled: Sequence[str] = ()
                     ) -> tuple[Path | None, Path | None, list[Path]]:
    """labels.csv, test_list.csv (``unlabelled`` clip ids), splits.json and the protocol split
    CSVs, merged with what the store already has (a split name imported again is replaced). No
    labels.csv is created for an import without labels (the labels path is then None)."""
    header = ("clip_id", "label", "subject")
    labels_file = store_path / LABELS_FILE
    labels_path = labels_file if labels or labels_file.is_file() else None
    if labels_path is not None:
        _merge_write_csv(labels_path, header, labels, key=("clip_id",))
    if unlabelled:
        rows = [{"clip_id": c, "label": 0, "subject": subject_of(c)} for c in unlabelled]
        _merge_write_csv(store_path / UNLABELLED_FILE, header, rows, key=("clip_id",))
    if not splits:
        return labels_path, None, []
    json_path = store_path / SPLITS_JSON
    merged = dict(read_splits_json(json_path)) if json_path.is_file() else {}
    merged.update({k: list(v) for k, v in splits.items()})
    atomic_write_text(json_path, json.dumps(merged, indent=1))
    written = []
    for fname, group in protocol_split_files(merged).items():
        lines = "".join(f"{c},{name}\n" for name, members in group.items() for c in members)
        atomic_write_text(store_path / fname, "clip_id,split\n" + lines)
        written.append(store_path / fname)
    return labels_path, json_path, written


def read_splits_json(path: Path) -> dict[str, list[str]]:
    """``splits.json`` -> {split name: [clip_id, ...]}, with a clear error for anything else."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ImportFormatError(f"{path}: cannot read split lists ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ImportFormatError(f"{path}: expected {{split name: [clip_id, ...]}}")
    return {str(k): [str(c) for c in v] for k, v in data.items()}


def _check_unique(ids: Sequence[str], source: Path) -> None:
    seen: set[str] = set()
    for cid in ids:
        if cid in seen:
            raise ImportFormatError(f"{source}: clip id {cid!r} appears twice")
        seen.add(cid)


# ----------------------------------------------------------------------------------------------
# PYSKL annotation pickle


def pick_person(keypoint: np.ndarray, score: np.ndarray) -> int:
    """Index of the person to keep from (M, T, V, 2) keypoints and (M, T, V) scores: the one with
    the highest mean score over all frames and joints (PYSKL pads absent people with zeros, so
    the main, longest-tracked person wins). Ties go to the first."""
    return int(np.argmax(score.reshape(score.shape[0], -1).mean(axis=1)))


PERSON_CHOICES = ("best", "first")


def _annotation_keypoints(ann: Mapping[str, Any], idx: int, source: Path,
                          person: str = "best") -> np.ndarray:
    """One PYSKL annotation -> (T, V, 3) store keypoints of the chosen person: ``best`` (see
    :func:`pick_person`) or ``first`` (person 0, what MMN's MA-52 loader keeps)."""
    where = f"{source}: annotation {idx} ({ann.get('frame_dir', '?')!r})"
    if "keypoint" not in ann:
        raise ImportFormatError(f"{where}: no 'keypoint' array")
    kp = np.asarray(ann["keypoint"], dtype=np.float32)
    if kp.ndim != 4 or kp.shape[-1] not in (2, 3):
        raise ImportFormatError(f"{where}: 'keypoint' has shape {kp.shape}, expected (M, T, V, 2)")
    if kp.shape[-1] == 3 and "keypoint_score" not in ann:
        raise ImportFormatError(f"{where}: 'keypoint' has 3 channels and no 'keypoint_score': "
                                "3D skeletons are not 2D pixel keypoints")
    m, t, v, _ = kp.shape
    if "keypoint_score" in ann:
        sc = np.asarray(ann["keypoint_score"], dtype=np.float32)
        if sc.shape != (m, t, v):
            raise ImportFormatError(f"{where}: 'keypoint_score' has shape {sc.shape}, expected "
                                    f"(M, T, V) = {(m, t, v)} to match 'keypoint' {kp.shape}")
    else:  # ground-truth 2D without confidences: every non-(0, 0) point counts as certain
        sc = ((kp[..., 0] != 0) | (kp[..., 1] != 0)).astype(np.float32)
    total = ann.get("total_frames", t)
    if int(total) != t:
        raise ImportFormatError(f"{where}: total_frames = {total} but 'keypoint' has T = {t}")
    if m == 0:  # no person in the whole clip: keep the clip, every joint missing
        return np.full((t, v, 3), np.nan, np.float32)
    if person not in PERSON_CHOICES:
        raise ValueError(f"person must be one of {PERSON_CHOICES}, got {person!r}")
    p = pick_person(kp[..., :2], sc) if person == "best" else 0
    return to_store_keypoints(kp[p, ..., :2], sc[p])


def read_pyskl(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Read a PYSKL annotation pickle -> (annotations, splits). A bare list of annotations (no
    split) is accepted and gives empty splits."""
    path = Path(path)
    data = _load_pickle(path)
    splits: dict[str, list[str]]
    if isinstance(data, list):
        anns, splits = data, {}
    elif isinstance(data, dict) and "annotations" in data:
        anns, splits = data["annotations"], data.get("split", {}) or {}
    else:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ImportFormatError(f"{path}: not a PYSKL annotation pickle: expected a dict with "
                                f"'split' and 'annotations' (or a list of annotations), got {got}")
    if not isinstance(splits, dict):
        raise ImportFormatError(f"{path}: 'split' is {type(splits).__name__}, expected "
                                "{name: [frame_dir, ...]}")
    for i, ann in enumerate(anns):
        if not isinstance(ann, Mapping) or "frame_dir" not in ann:
            raise ImportFormatError(f"{path}: annotation {i} is not a dict with 'frame_dir'")
        if "frame_inds" in ann:
            raise ImportFormatError(f"{path}: annotation {i} ({ann['frame_dir']!r}) is compressed "
                                    "(Kinetics-style, 'frame_inds'); only the uncompressed "
                                    "(M, T, V, 2) form can be imported")
    return list(anns), {str(k): [str(x) for x in v] for k, v in splits.items()}


def import_pyskl(path: str | Path, store: str | Path, *, layout: str | None = None,
                 fps: float = 30.0, person: str = "best") -> ImportResult:
    """Import a PYSKL annotation pickle into an imported keypoint store.

    Each annotation becomes one clip (clip id = ``frame_dir``, folders kept) holding one person
    (``person``: ``best`` = highest mean score, see :func:`pick_person`; ``first`` = person 0) as
    (T, V, 3) pixels + score. ``layout`` defaults to the one implied by V
    (:data:`LAYOUT_BY_NUM_JOINTS`). Writes ``labels.csv`` for the labelled annotations,
    ``test_list.csv`` for those without ``label`` (PYSKL's writer leaves it out for an unlabelled
    video list) or with a negative one, and, when the pickle has splits, ``splits.json`` and the protocol split CSVs.
    ``fps`` is recorded for every clip (PYSKL files carry none). Every annotation is checked
    before anything is written, so a refused file leaves no store behind; clips already in the
    store are kept (an interrupted import resumes).
    """
    path, store = Path(path), Path(store)
    anns, splits = read_pyskl(path)
    if not anns:
        raise ImportFormatError(f"{path}: no annotations")
    ids = [str(a["frame_dir"]) for a in anns]
    _check_unique(ids, path)
    known = set(ids)
    for name, members in splits.items():
        unknown = [c for c in members if c not in known]
        if unknown:
            raise ImportFormatError(f"{path}: split {name!r} names {len(unknown)} clips with no "
                                    f"annotation, e.g. {unknown[0]!r}")

    first = np.asarray(anns[0].get("keypoint"))
    if first.ndim != 4:
        raise ImportFormatError(f"{path}: annotation 0 ({ids[0]!r}): 'keypoint' has shape "
                                f"{first.shape}, expected (M, T, V, 2)")
    lay = resolve_layout(layout, int(first.shape[2]), str(path))

    def clip(i: int) -> tuple[dict[str, Any], np.ndarray]:
        ann = anns[i]
        kp = _annotation_keypoints(ann, i, path, person)
        if kp.shape[1] != lay.num_joints:
            raise ImportFormatError(
                f"{path}: annotation {i} ({ids[i]!r}) has V = {kp.shape[1]} joints, expected "
                f"{lay.num_joints} for layout {lay.name!r} (shape (M, T, {lay.num_joints}, 2))")
        h, w = _img_shape(ann, i, path)
        return _clip_meta(ids[i], ids[i], kp, w, h, fps, json.dumps({"source": path.name})), kp

    labels_of = {i: _label_int(a["label"], i, path) for i, a in enumerate(anns)
                 if a.get("label") is not None}
    labelled = {i: y for i, y in labels_of.items() if y >= 0}  # -1: "no label" (old piumr exports)
    for i in range(len(anns)):  # check everything before the store exists
        clip(i)
    settings = {"source": str(path), "format": "pyskl", "layout": lay.name, "fps": fps}
    _write_store(store, lay.name, lay.num_joints, (clip(i) for i in range(len(anns))), settings)
    labels = [{"clip_id": ids[i], "label": y, "subject": subject_of(ids[i])}
              for i, y in labelled.items()]
    unlabelled = [c for i, c in enumerate(ids) if i not in labelled]
    labels_path, split_path, protocol = write_side_files(store, labels, splits, unlabelled)
    return ImportResult(store, labels_path, split_path, lay.name, ids, protocol,
                        store / UNLABELLED_FILE if unlabelled else None)


def _img_shape(ann: Mapping[str, Any], idx: int, source: Path) -> tuple[int, int]:
    shape = ann.get("img_shape", ann.get("original_shape"))
    if shape is None or len(shape) < 2:
        raise ImportFormatError(f"{source}: annotation {idx} ({ann.get('frame_dir')!r}): no "
                                f"'img_shape' (h, w), got {shape!r}")
    return int(shape[0]), int(shape[1])


def _label_int(label: Any, idx: int, source: Path) -> int:
    try:
        return int(label)
    except (TypeError, ValueError) as exc:
        raise ImportFormatError(f"{source}: sample {idx}: label {label!r} is not an integer "
                                "class id") from exc


# MediaPipe layouts that read a `piumr extract` store's parts directly, smallest first; any other
# layout is exported from the first of these that has all its joint names.
MEDIAPIPE_LAYOUTS = ("mp_pose", "mp_holistic", "mp_holistic_face")
MEDIAPIPE_EXPORT_DEFAULT = "coco17"  # the graph PYSKL's and MMAction2's 2D configs have built in


def export_reader(info: Mapping[str, Any], parts: Mapping[str, Any], layout: str | None = None):
    """-> (target Layout, ``read(clip_arrays, width, height) -> (T, V, 3)`` pixels + score) for
    exporting a store with ``store.json`` ``info`` and ``parts`` in ``layout``.

    An imported store exports in its own layout by default; a MediaPipe store in ``coco17``. A
    target that does not read the store directly is taken from a source layout (the imported
    store's own, or the smallest MediaPipe layout that has them) by joint name: ``coco17`` from
    ``mp_pose`` keeps the 17 MediaPipe pose points with COCO's names, ``halpe44`` from
    ``halpe136`` its 44 points. Raises ValueError naming the joints the store cannot give.
    """
    from piumr_skel.skeleton.layouts import assemble, get_layout

    kind = info.get("kind")
    if kind == IMPORTED_KIND:
        candidates = [get_layout(info["layout"])]
        target = get_layout(layout) if layout else candidates[0]
    else:
        target = get_layout(layout or MEDIAPIPE_EXPORT_DEFAULT)
        candidates = [get_layout(n) for n in MEDIAPIPE_LAYOUTS]
    candidates = [lay for lay in candidates if set(lay.store_parts) <= set(parts)]
    if set(target.store_parts) <= set(parts):
        source = target
    else:
        found = next((lay for lay in candidates if set(target.joints) <= set(lay.joints)), None)
        if found is None:
            have = candidates[-1] if candidates else None
            lost = sorted(set(target.joints) - set(have.joints)) if have else list(target.joints)
            raise ValueError(f"a {kind} store (parts {sorted(parts)}) cannot be exported in layout "
                             f"{target.name!r}: no joints named {lost[:5]}"
                             + (f" (+{len(lost) - 5})" if len(lost) > 5 else ""))
        source = found
    pick = None if source is target else np.array([source.index(n) for n in target.joints])

    def read(arrays: Mapping[str, np.ndarray], width: float, height: float) -> np.ndarray:
        kp = assemble(source, arrays, width, height)
        return kp if pick is None else kp[:, pick]

    return target, read


def export_pyskl(store: str | Path, out: str | Path, *, labels: str | Path | None = None,
                 split: str | Path | None = None, layout: str | None = None) -> Path:
    """Write a store (imported, or MediaPipe from ``piumr extract``) as a PYSKL annotation pickle
    that PYSKL's and MMAction2's ``PoseDataset`` load as they are: one person (M = 1),
    ``keypoint`` (1, T, V, 2) float32 pixels, ``keypoint_score`` (1, T, V), ``img_shape`` =
    ``original_shape`` (h, w), ``total_frames``, ``frame_dir`` (the clip id) and ``label``, left
    out for clips without one.

    ``layout``: see :func:`export_reader`. ``labels`` (MA-52 list or CSV, read with
    ``read_labels``) and ``split`` (``splits.json`` or a CSV clip_id,split) default to the store's
    own ``labels.csv`` / ``splits.json`` when present. Without splits the file is a bare list of
    annotations (what a ``PoseDataset`` without ``split=`` iterates), else
    ``{"split": {name: [frame_dir, ...]}, "annotations": [...]}``. Missing joints become (0, 0)
    with score 0, PYSKL's convention. Clips whose extraction failed are left out.
    """
    from pose_extract import open_store

    store, out = Path(store), Path(out)
    st = open_store(store)
    target, read = export_reader(st.info, st.parts, layout)
    clips = st.clips()
    clips = clips[clips["status"] == "ok"]
    label_of = _labels_by_clip(store, labels)
    splits = _splits(store, split)
    arrays = st.load_all(list(clips["clip_id"]))
    anns = []
    for row in clips.itertuples(index=False):
        kp = read(arrays[row.clip_id], float(row.width), float(row.height))
        xy, sc = from_store_keypoints(kp)
        shape = (int(row.height), int(row.width))
        ann = {"frame_dir": row.clip_id, "img_shape": shape, "original_shape": shape,
               "total_frames": int(kp.shape[0]), "keypoint": xy[None], "keypoint_score": sc[None]}
        if row.clip_id in label_of:
            ann["label"] = int(label_of[row.clip_id])
        anns.append(ann)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, tmp.open("wb") as fh:
        pickle.dump({"split": splits, "annotations": anns} if splits else anns, fh,
                    protocol=pickle.HIGHEST_PROTOCOL)
    return out


def _labels_by_clip(store: Path, labels: str | Path | None) -> dict[str, int]:
    path = Path(labels) if labels is not None else store / LABELS_FILE
    if labels is None and not path.is_file():
        return {}
    from piumr_skel.data.labels import read_labels

    df = read_labels(path)
    return {str(c): int(lbl) for c, lbl in zip(df["clip_id"], df["label"])}


def _splits(store: Path, split: str | Path | None) -> dict[str, list[str]]:
    """Split lists for the export: ``splits.json`` or a CSV clip_id,split (any split names)."""
    path = Path(split) if split is not None else store / SPLITS_JSON
    if split is None and not path.is_file():
        return {}
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such split file")
    if path.suffix.lower() == ".json":
        return read_splits_json(path)
    rows = _read_csv_rows(path)
    if rows and not {"clip_id", "split"} <= set(rows[0]):
        raise ImportFormatError(f"{path}: a split file needs the columns clip_id,split; "
                                f"got {sorted(rows[0])}")
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["split"], []).append(r["clip_id"])
    return out


# ----------------------------------------------------------------------------------------------
# MMN MA-52 release: {split}_data.pkl + {split}_label.pkl, Halpe-136 whole body


def read_mmn_labels(path: str | Path) -> tuple[list[str] | None, np.ndarray]:
    """``{split}_label.pkl`` -> (sample names or None, (N,) int64 labels). Accepts MMN's list of
    ``{file_name, label, ...}`` dicts, a list/array of ints or an MS-G3D/PYSKL-style
    ``(names, labels)`` pair."""
    path = Path(path)
    obj = _load_pickle(path)
    if isinstance(obj, list) and obj and all(isinstance(e, Mapping) for e in obj):
        bad = next((i for i, e in enumerate(obj) if not {"file_name", "label"} <= set(e)), None)
        if bad is not None:
            raise ImportFormatError(f"{path}: entry {bad} has keys {sorted(obj[bad])}, expected "
                                    "'file_name' and 'label'")
        return ([str(e["file_name"]) for e in obj],
                np.array([_label_int(e["label"], i, path) for i, e in enumerate(obj)], np.int64))
    names = None
    if (isinstance(obj, (tuple, list)) and len(obj) == 2
            and isinstance(obj[0], (list, tuple, np.ndarray)) and len(obj[0]) > 0
            and isinstance(obj[0][0], str)):
        names, obj = [str(n) for n in obj[0]], obj[1]
    try:
        labels = np.asarray(obj)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.number):
            raise ValueError
        if not np.all(labels == np.round(labels)):
            raise ValueError
    except (ValueError, TypeError):
        raise ImportFormatError(
            f"{path}: expected a list of integer labels or a (names, labels) pair, got "
            f"{type(obj).__name__}") from None
    labels = labels.astype(np.int64)
    if names is not None and len(names) != len(labels):
        raise ImportFormatError(f"{path}: {len(names)} names but {len(labels)} labels")
    return names, labels


def _mmn_samples(data: Any, num_joints: int, path: Path, person: str = "best") -> list[np.ndarray]:
    """MMN data -> list of (T, V, C) arrays, C in (2, 3). Handles a list of (T, V, C) arrays, a
    stacked (N, T, V, C) array and an MS-G3D style (N, C, T, V, M) array (``person``: ``best`` =
    highest mean score, or most detected points when C = 2; ``first`` = person 0)."""
    expect = f"a list of (T, {num_joints}, 2|3) arrays, (N, T, {num_joints}, 2|3) or " \
             f"(N, 2|3, T, {num_joints}, M)"
    if isinstance(data, (list, tuple)):
        out = []
        for i, a in enumerate(data):
            a = np.asarray(a, dtype=np.float32)
            if a.ndim != 3 or a.shape[1] != num_joints or a.shape[2] not in (2, 3):
                raise ImportFormatError(f"{path}: sample {i} has shape {a.shape}, expected "
                                        f"(T, {num_joints}, 2|3)")
            out.append(a)
        return out
    arr = np.asarray(data)
    if arr.ndim == 4 and arr.shape[2] == num_joints and arr.shape[3] in (2, 3):
        return [a.astype(np.float32) for a in arr]
    if arr.ndim == 5 and arr.shape[1] in (2, 3) and arr.shape[3] == num_joints:
        out = []
        for a in arr.astype(np.float32):  # (C, T, V, M)
            a = a.transpose(3, 1, 2, 0)   # (M, T, V, C)
            if a.shape[-1] == 3:
                weight = a[..., 2]
            else:
                weight = ((a[..., 0] != 0) | (a[..., 1] != 0)).astype(np.float32)
            out.append(a[pick_person(a[..., :2], weight) if person == "best" else 0])
        return out
    raise ImportFormatError(f"{path}: data has shape {getattr(arr, 'shape', '?')}, expected "
                            f"{expect}")


def _mmn_layouts(layout: str | None, source: Path):
    """-> (target Layout, {V accepted in the data: joint indices to keep, or None for all})."""
    from piumr_skel.skeleton.layouts import HALPE44_INDICES

    if layout is None:
        return None, {136: None, 44: None}
    lay = _get_layout(layout, source)
    accept: dict[int, np.ndarray | None] = {lay.num_joints: None}
    if lay.name == "halpe44":  # MMN's 44 points out of a 136-point file
        accept[136] = np.array(HALPE44_INDICES)
    return lay, accept


def _mmn_annotation_clips(raw: Mapping[str, Any], names: list[str] | None, label: Path, data: Path,
                          accept: Mapping[int, Any], person: str, size: tuple[int, int],
                          fps: float):
    """MMN's real data file ({"annotations": [...]}) matched to its label list by
    ``file_name == frame_dir``, in label order, every clip checked -> (ids, V, a generator of
    (meta, keypoints) to write, number of data clips without a label)."""
    anns = raw.get("annotations")
    if not isinstance(anns, list) or not all(isinstance(a, Mapping) and "frame_dir" in a
                                              for a in anns):
        raise ImportFormatError(f"{data}: 'annotations' is not a list of dicts with 'frame_dir'")
    if names is None:
        raise ImportFormatError(f"{label}: the data file holds named annotations, so the label "
                                "file must name them too ([{file_name, label}, ...], as MMN's "
                                "loader reads it); got bare labels")
    by_dir = {str(a["frame_dir"]): i for i, a in enumerate(anns)}
    missing = [n for n in names if n not in by_dir]
    if missing:
        raise ImportFormatError(f"{label}: {len(missing)} of {len(names)} labelled clips have no "
                                f"annotation in {data.name}: {', '.join(missing[:5])}"
                                + (" ..." if len(missing) > 5 else ""))
    picked = [(by_dir[n], anns[by_dir[n]]) for n in names]
    vs = {int(np.shape(a.get("keypoint"))[2]) if np.ndim(a.get("keypoint")) == 4 else -1
          for _, a in picked}
    if len(vs) != 1 or next(iter(vs)) not in accept:
        raise ImportFormatError(f"{data}: keypoints have V = {sorted(vs)} joints; expected one "
                                f"of {sorted(accept)} (shape (M, T, V, 2))")
    v = vs.pop()

    def clip(i: int, ann: Mapping[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
        kp = _annotation_keypoints(ann, i, data, person)
        if accept[v] is not None:
            kp = kp[:, accept[v]]
        h, w = _img_shape(ann, i, data) if ("img_shape" in ann or "original_shape" in ann) \
            else size
        cid = str(ann["frame_dir"])
        return _clip_meta(cid, cid, kp, w, h, fps, json.dumps({"source": data.name})), kp

    for i, ann in picked:  # check every clip before the store exists
        clip(i, ann)
    return list(names), v, (clip(i, a) for i, a in picked), len(anns) - len(picked)


def import_mmn(data: str | Path, label: str | Path, store: str | Path, *,
               layout: str | None = None, split: str | None = None, width: int = 1080,
               height: int = 1296, fps: float = 30.0, person: str = "first") -> ImportResult:
    """Import one split of the MMN MA-52 release (``{split}_data.pkl`` + ``{split}_label.pkl``).

    The release as MMN's loader (``feeders/feeder_ma52.py``) reads it: the data file is a dict
    whose ``annotations`` hold ``{frame_dir, keypoint (M, T, V, 2), keypoint_score?, ...}``, the
    label file a list of ``{file_name, label}`` matched by ``file_name == frame_dir``; clips come
    in label-file order and data clips without a label are left out (as MMN does). The array
    forms of other MS-G3D-style releases are read too: a list of (T, V, C) arrays, (N, T, V, C) or
    (N, C, T, V, M), with int labels or a ``(names, labels)`` pair.

    ``layout`` defaults to V: 136 -> ``halpe136``, 44 -> ``halpe44`` (MMN's subset);
    ``halpe44`` with 136-point data keeps the 44 points. ``person``: ``first`` keeps person 0
    as MMN does, ``best`` the highest mean score. Coordinates are pixels of the annotation's
    ``img_shape``, else of a ``width`` × ``height`` frame (the MA-52 crops are 1080 × 1296); with
    no scores every point not at (0, 0) gets score 1. Clip ids: ``frame_dir`` / ``file_name``
    as is, the file stem of pair names (``0003_01_0001.mp4`` -> ``0003_01_0001``), else
    ``{split}_{index:05d}``. ``split`` defaults to the prefix of the data file name
    (``train_data.pkl`` -> ``train``); importing train, val and test into one store merges the
    labels and split files. Everything is checked before the store is written.
    """
    data, label, store = Path(data), Path(label), Path(store)
    if person not in PERSON_CHOICES:
        raise ValueError(f"person must be one of {PERSON_CHOICES}, got {person!r}")
    if split is None:
        stem = data.stem
        split = stem[: -len("_data")] if stem.endswith("_data") else stem
    names, labels = read_mmn_labels(label)
    lay, accept = _mmn_layouts(layout, data)
    raw = _load_pickle(data)
    skipped = 0
    if isinstance(raw, Mapping):
        ids, v, clips, skipped = _mmn_annotation_clips(
            raw, names, label, data, accept, person, (height, width), fps)
    else:
        first_err: ImportFormatError | None = None
        for v in accept:
            try:
                samples = _mmn_samples(raw, v, data, person)
                break
            except ImportFormatError as err:
                first_err = first_err or err
        else:
            assert first_err is not None  # accept always holds the layout's own V, so the loop ran
            raise first_err
        if len(samples) != len(labels):
            raise ImportFormatError(f"{data}: {len(samples)} samples but {label} has "
                                    f"{len(labels)} labels")
        ids = [Path(n).stem for n in names] if names else \
            [f"{split}_{i:05d}" for i in range(len(samples))]

        def array_clips():
            for cid, a in zip(ids, samples):
                score = a[..., 2] if a.shape[-1] == 3 else \
                    ((a[..., 0] != 0) | (a[..., 1] != 0)).astype(np.float32)
                kp = to_store_keypoints(a[..., :2], score)
                if accept[v] is not None:
                    kp = kp[:, accept[v]]
                yield _clip_meta(cid, cid, kp, width, height, fps,
                                 json.dumps({"source": data.name})), kp

        clips = array_clips()
    _check_unique(ids, label)
    if lay is None:
        lay = resolve_layout(None, v, str(data))

    settings = {"source": str(data), "format": "mmn", "layout": lay.name, "fps": fps,
                "width": width, "height": height, "person": person}
    _write_store(store, lay.name, lay.num_joints, clips, settings)
    label_rows = [{"clip_id": c, "label": int(y), "subject": subject_of(c)}
                  for c, y in zip(ids, labels)]
    labels_path, split_path, protocol = write_side_files(store, label_rows, {split: ids})
    return ImportResult(store, labels_path, split_path, lay.name, ids, protocol, skipped=skipped)


def _get_layout(name: str, source: Path):
    from piumr_skel.skeleton.layouts import get_layout

    try:
        return get_layout(name)
    except (KeyError, ValueError) as exc:
        raise ImportFormatError(f"{source}: layout {name!r} is not in piumr_skel.skeleton.layouts "
                                f"({exc})") from exc
