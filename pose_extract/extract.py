"""MediaPipe Holistic keypoint extraction of a video folder into a store, with worker processes and resume."""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .schema import FACE_SUBSET_INDICES, KIND_MEDIAPIPE, RATE_PARTS, STORE_FILE, mediapipe_parts, parse_subject
from .store import WRITER_LOCK, StoreError, StoreWriter, describe_settings_diff, open_store, writer_lock
from .video import VideoError, find_videos, iter_frames, shard_of

log = logging.getLogger(__name__)

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS")


class ExtractError(Exception):
    """Bad arguments found before any work starts (missing folder, no videos, incompatible store)."""


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that changes the extracted numbers; recorded in store.json and checked on resume.

    ``max_side``: frames are shrunk (INTER_AREA) so their longest side is at most this many pixels
    before MediaPipe sees them (0 = full size, the default). MediaPipe resizes to 256 px inputs
    internally; shrinking first cost more (the INTER_AREA resize) than it saved in conversion on the
    2-core machine (21.0 against 24.8 frames/s on the 1080×1296 sample clips), so it is off by default
    and kept for very large videos. Normalised coordinates stay valid; width/height stay the original's.
    """

    full_face: bool = False
    refine_face: bool = False
    max_side: int = 0
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    smooth_landmarks: bool = True

    def __post_init__(self) -> None:
        if self.max_side < 0:
            raise ValueError(f"max_side must be >= 0 (0 = full size), got {self.max_side}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        # Fixed MediaPipe options are recorded too: they are part of what produced the numbers.
        return {**asdict(self), "model": "holistic", "model_complexity": 1, "static_image_mode": False}

    @property
    def parts(self) -> dict[str, tuple[int, int]]:
        return mediapipe_parts(full_face=self.full_face, refine_face=self.refine_face)


def extractor_version() -> str:
    """"piumr X; mediapipe Y" for the store and every clip row."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "unknown"

    return f"piumr {ver('piumr')}; mediapipe {ver('mediapipe')}"


# ----------------------------------------------------------------------------------------------
# one clip


def _points(landmarks: Any, with_visibility: bool, indices: tuple[int, ...] | None = None) -> np.ndarray:
    pts = landmarks.landmark
    if indices is not None:
        pts = [pts[i] for i in indices]
    if with_visibility:
        return np.array([(p.x, p.y, p.z, p.visibility) for p in pts], dtype=np.float32)
    return np.array([(p.x, p.y, p.z) for p in pts], dtype=np.float32)


class HolisticExtractor:
    """One MediaPipe Holistic graph (video mode, model_complexity=1) that extracts clips one at a time."""

    def __init__(self, settings: ExtractSettings) -> None:
        import mediapipe as mp_lib  # imported here: heavy, and workers set thread limits first

        self.settings = settings
        self.parts = settings.parts
        self.version = extractor_version()
        self._holistic = mp_lib.solutions.holistic.Holistic(
            static_image_mode=False, model_complexity=1,
            smooth_landmarks=settings.smooth_landmarks, enable_segmentation=False,
            refine_face_landmarks=settings.refine_face or False,
            min_detection_confidence=settings.min_detection_confidence,
            min_tracking_confidence=settings.min_tracking_confidence)

    def close(self) -> None:
        self._holistic.close()

    def __enter__(self) -> "HolisticExtractor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def extract(self, path: str | Path, rel_path: str | None = None
                ) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
        """(clips-table row, {part: (T, V, C) float32 with NaN for parts not found}) of one video.

        Never raises for a bad video: the row then has status "failed", the reason in ``error``, and
        the frames are None.
        """
        path = Path(path)
        clip_id = path.stem
        meta: dict[str, Any] = {
            "clip_id": clip_id, "rel_path": rel_path or path.name, "subject": parse_subject(clip_id),
            "fps": float("nan"), "num_frames": 0, "width": 0, "height": 0,
            "status": "ok", "error": "", "extractor_version": self.version,
            "settings": json.dumps(self.settings.to_dict(), sort_keys=True),
            **{f"rate_{p}": float("nan") for p in RATE_PARTS},
        }
        # Video mode tracks from the previous frame; without a reset the first frames of a clip
        # would depend on whichever clip this process saw before.
        self._holistic.reset()
        face_idx = None if self.settings.full_face else FACE_SUBSET_INDICES
        rows: dict[str, list[np.ndarray]] = {p: [] for p in self.parts}
        missing = {p: np.full(shape, np.nan, np.float32) for p, shape in self.parts.items()}
        try:
            info, frames = iter_frames(path, self.settings.max_side or None)
            meta["fps"] = info.fps if info.fps > 0 else float("nan")
            meta["width"], meta["height"] = info.width, info.height
            for rgb in frames:
                res = self._holistic.process(rgb)
                got = {
                    "pose": res.pose_landmarks and _points(res.pose_landmarks, True),
                    "pose_world": res.pose_world_landmarks and _points(res.pose_world_landmarks, True),
                    "left_hand": res.left_hand_landmarks and _points(res.left_hand_landmarks, False),
                    "right_hand": res.right_hand_landmarks and _points(res.right_hand_landmarks, False),
                    "face": res.face_landmarks and _points(res.face_landmarks, False, face_idx),
                }
                for p in self.parts:
                    arr = got[p]
                    # A refined mesh has 478 points; a 468-point store keeps the first 468.
                    if arr is not None and arr.shape[0] != self.parts[p][0]:
                        arr = arr[: self.parts[p][0]] if arr.shape[0] > self.parts[p][0] else None
                    rows[p].append(missing[p] if arr is None else arr)
        except VideoError as exc:
            meta.update(status="failed", error=str(exc))
            return meta, None
        except Exception as exc:  # a MediaPipe or decoder failure must not stop the whole folder
            meta.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            return meta, None
        out = {p: np.stack(r) if r else np.zeros((0, *self.parts[p]), np.float32) for p, r in rows.items()}
        t = len(rows["pose"])
        meta["num_frames"] = t
        for p in RATE_PARTS:
            meta[f"rate_{p}"] = float((~np.isnan(out[p][:, :, 0]).all(axis=1)).mean()) if t else 0.0
        return meta, out


@contextlib.contextmanager
def _native_logs(shown: bool) -> Iterator[None]:
    """Unless ``shown``, point file descriptor 2 at /dev/null for the duration.

    MediaPipe's C++ side (absl, glog, TFLite) writes about ten lines per clip straight to fd 2, below
    Python; GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL do not reach them in mediapipe 0.10.21. Only
    MediaPipe's own calls run inside this, so the progress bar and Python's warnings are unaffected.
    """
    if shown:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# ----------------------------------------------------------------------------------------------
# worker processes

_WORKER: HolisticExtractor | None = None


def _worker_init(settings: dict[str, Any], native_logs: bool = False) -> None:
    """Per-process setup: one thread per library so N workers use N cores, then one Holistic graph.

    A worker only runs MediaPipe, so unless ``native_logs`` its fd 2 goes to /dev/null for good (its
    errors come back to the parent through the futures)."""
    global _WORKER
    if not native_logs:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    for var in _THREAD_ENV:
        os.environ[var] = "1"
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch  # only if something imported it; keeps its pool from spinning up per worker

        torch.set_num_threads(1)
    except ImportError:
        pass
    _WORKER = HolisticExtractor(ExtractSettings(**settings))


def _worker_extract(path: str, rel_path: str) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.extract(path, rel_path)


# ----------------------------------------------------------------------------------------------
# a folder


@dataclass
class ExtractReport:
    """What a run did. ``failed`` covers every selected clip whose stored status is failed after the run
    (this run's and earlier ones not retried)."""

    store: Path
    selected: int = 0
    skipped: int = 0
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    no_person: list[str] = field(default_factory=list)
    frames: int = 0
    detected: dict[str, int] = field(default_factory=lambda: {p: 0 for p in RATE_PARTS})
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def rates(self) -> dict[str, float]:
        """Frame-weighted detection rate per part over the clips extracted in this run."""
        return {p: (n / self.frames if self.frames else float("nan")) for p, n in self.detected.items()}

    def summary_lines(self) -> list[str]:
        lines = [f"store: {self.store}",
                 f"clips: {self.selected} selected, {self.skipped} already done, {len(self.ok)} extracted "
                 f"ok, {len(self.failed)} failed",
                 f"frames: {self.frames} in {self.seconds:.1f} s ({self.fps:.1f} frames/s)"]
        if self.frames:
            lines.append("detection rate: " + ", ".join(f"{p} {r:.1%}" for p, r in self.rates().items()))
        if self.no_person:
            lines.append(f"no person found in {len(self.no_person)} clip(s): "
                         + ", ".join(self.no_person[:10]) + (" ..." if len(self.no_person) > 10 else ""))
        for cid, reason in sorted(self.failed.items()):
            lines.append(f"FAILED {cid}: {reason}")
        return lines


@dataclass(frozen=True)
class _Job:
    path: Path
    rel_path: str
    clip_id: str


def _plan(videos: Path, out: Path, settings: ExtractSettings, shard: tuple[int, int] | None
          ) -> list[_Job]:
    """Validate the arguments and list the clips of this shard, before any work."""
    if not videos.exists():
        raise ExtractError(f"video folder {videos} does not exist")
    if not videos.is_dir():
        raise ExtractError(f"{videos} is not a folder")
    if out.exists() and not out.is_dir():
        raise ExtractError(f"output {out} is a file; give a folder for the keypoint store")
    if out.is_dir() and (out / STORE_FILE).exists():
        try:
            info = open_store(out).info
        except StoreError as exc:
            raise ExtractError(str(exc)) from None
        if info.get("kind") != KIND_MEDIAPIPE:
            raise ExtractError(f"{out} is a store of kind {info.get('kind')!r}, not {KIND_MEDIAPIPE!r}")
        if info.get("settings") != settings.to_dict():
            diff = describe_settings_diff(info.get("settings", {}), settings.to_dict())
            raise ExtractError(f"{out} was made with different settings ({diff}); re-run with the "
                               "store's options or choose a new output folder")
        if info.get("extractor_version") != extractor_version():
            log.warning("%s was made by %s, this is %s", out, info.get("extractor_version"),
                        extractor_version())
    elif out.is_dir() and any(p.name != WRITER_LOCK for p in out.iterdir()):
        raise ExtractError(f"output {out} is a non-empty folder that is not a keypoint store "
                           f"({STORE_FILE} missing)")
    paths = find_videos(videos)
    if not paths:
        raise ExtractError(f"no video files (.mp4 .avi .mov .mkv .webm) under {videos}")
    jobs = [_Job(p, p.relative_to(videos).as_posix(), p.stem) for p in paths]
    seen: dict[str, str] = {}
    for j in jobs:
        if j.clip_id in seen:
            raise ExtractError(f"two videos share the clip id {j.clip_id!r}: {seen[j.clip_id]} and "
                               f"{j.rel_path} (clip id = file name without extension)")
        seen[j.clip_id] = j.rel_path
    if shard is not None:
        i, n = shard
        jobs = [j for j in jobs if shard_of(j.rel_path, n) == i]
    return jobs


def extract_videos(videos: str | Path, out: str | Path, *, settings: ExtractSettings | None = None,
                   workers: int = 1, shard: tuple[int, int] | None = None, retry_failed: bool = False,
                   progress: bool = True, compact_every: int = 1000, limit: int | None = None,
                   on_clip: Callable[[dict[str, Any]], None] | None = None,
                   native_logs: bool = False) -> ExtractReport:
    """Extract every video under ``videos`` (this ``shard`` of them) into the store ``out``.

    Resumable: clips already in the store are skipped (failed ones too, unless ``retry_failed``).
    ``workers`` > 1 runs that many processes, each with its own Holistic graph and one thread per
    library; 1 runs in this process. Raises ExtractError for bad arguments before any work, and
    LockBusyError (naming the other process) while another job writes the same store; shards
    (``shard=(i, n)``) into separate stores are the way to split the work. MediaPipe's C++ log
    lines are dropped unless ``native_logs``.
    """
    settings = settings or ExtractSettings()
    videos, out = Path(videos), Path(out)
    if workers < 1:
        raise ExtractError(f"workers must be >= 1, got {workers}")
    jobs = _plan(videos, out, settings, shard)
    if limit is not None:
        jobs = jobs[:limit]
    with writer_lock(out):  # a second job into this store is refused, naming this one
        return _extract_jobs(jobs, out, settings, workers, retry_failed, progress, compact_every, on_clip,
                             native_logs)


def _extract_jobs(jobs: list[_Job], out: Path, settings: ExtractSettings, workers: int,
                  retry_failed: bool, progress: bool, compact_every: int,
                  on_clip: Callable[[dict[str, Any]], None] | None, native_logs: bool) -> ExtractReport:
    writer = StoreWriter(out, kind=KIND_MEDIAPIPE, parts=settings.parts, settings=settings.to_dict(),
                         extractor_version=extractor_version(), compact_every=compact_every)
    stored = open_store(out).clips().set_index("clip_id")["status"].to_dict()
    todo = [j for j in jobs if j.clip_id not in stored or (retry_failed and stored[j.clip_id] != "ok")]
    report = ExtractReport(store=out, selected=len(jobs), skipped=len(jobs) - len(todo))
    start = time.perf_counter()

    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="clip", disable=not progress, dynamic_ncols=True)
    n_failed = [0]  # mutable cell for the closure below

    def record(meta: dict[str, Any], frames: dict[str, np.ndarray] | None) -> None:
        writer.write_clip(meta, frames)
        cid = meta["clip_id"]
        if meta["status"] == "ok":
            report.ok.append(cid)
            report.frames += meta["num_frames"]
            for p in RATE_PARTS:
                report.detected[p] += int(round(meta[f"rate_{p}"] * meta["num_frames"]))
            if meta["num_frames"] and meta["rate_pose"] == 0:
                report.no_person.append(cid)
                log.warning("%s: no person found in any of its %d frames", meta["rel_path"],
                            meta["num_frames"])
        else:
            n_failed[0] += 1
            log.warning("%s: failed: %s", meta["rel_path"], meta["error"])
        if on_clip is not None:
            on_clip(meta)
        elapsed = time.perf_counter() - start
        bar.set_postfix(fps=f"{report.frames / max(elapsed, 1e-9):.1f}", failed=n_failed[0],
                        refresh=False)
        bar.update(1)

    try:
        if workers == 1 or len(todo) <= 1:
            if todo:
                with _native_logs(native_logs):
                    ex = HolisticExtractor(settings)
                try:
                    for j in todo:
                        with _native_logs(native_logs):
                            result = ex.extract(j.path, j.rel_path)
                        record(*result)
                finally:
                    with _native_logs(native_logs):
                        ex.close()
        else:
            _run_pool(todo, settings, min(workers, len(todo)), record, native_logs)
    finally:
        bar.close()
        writer.close()
    report.seconds = time.perf_counter() - start
    final = open_store(out).clips().set_index("clip_id")
    for j in jobs:
        if j.clip_id in final.index and final.at[j.clip_id, "status"] != "ok":
            report.failed[j.clip_id] = str(final.at[j.clip_id, "error"])
    return report


def _run_pool(todo: list[_Job], settings: ExtractSettings, workers: int,
              record: Callable[[dict[str, Any], dict[str, np.ndarray] | None], None],
              native_logs: bool = False) -> None:
    """Feed clips to a pool of worker processes, at most two in flight per worker.

    If a worker dies (e.g. a decoder crash), the clips in flight are recorded as failed, since the
    culprit cannot be told apart, and a fresh pool takes the rest; ``--retry-failed`` redoes them.
    """
    # spawn/forkserver: MediaPipe's graph threads do not survive fork, and each worker builds its own.
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    pending = list(reversed(todo))
    while pending:
        lost: list[_Job] = []
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                    initargs=(asdict(settings), native_logs)) as pool:
            running: dict[cf.Future, _Job] = {}
            while (pending or running) and not lost:
                while pending and len(running) < 2 * workers:
                    j = pending.pop()
                    running[pool.submit(_worker_extract, str(j.path), j.rel_path)] = j
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    j = running.pop(fut)
                    try:
                        meta, frames = fut.result()
                    except cf.process.BrokenProcessPool:
                        lost.append(j)
                        continue
                    record(meta, frames)
            lost += running.values()
        for j in lost:
            record(_failed_meta(j, settings, "worker process died while extracting this or a "
                                             "concurrent clip"), None)


def _failed_meta(job: _Job, settings: ExtractSettings, reason: str) -> dict[str, Any]:
    return {"clip_id": job.clip_id, "rel_path": job.rel_path, "subject": parse_subject(job.clip_id),
            "status": "failed", "error": reason, "extractor_version": extractor_version(),
            "settings": json.dumps(settings.to_dict(), sort_keys=True)}
