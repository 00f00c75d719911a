"""Video clips for the RGB variant: TSN segment sampling, sparse cv2 decoding, crop/flip, ImageNet norm.

Only the sampled frames are converted and copied: the reader walks the stream with `grab()`
(demux + decode, no colour conversion) and calls `retrieve()` on the sampled frames alone; for a
long jump it seeks instead (`CAP_PROP_POS_FRAMES`) and falls back to grabbing when the seek does not
land on the requested frame. On a 75-frame 1080×1296 MA-52 clip, grabbing every frame took 0.18 s
against 0.56 s for reading them all, and each seek costs a decode from the previous keyframe, so
short jumps are grabbed.

Randomness (segment offsets, crop, flip) comes from `np.random.default_rng((seed, epoch, index))`,
so a resumed run and any number of workers see the same clips.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


class VideoReadError(RuntimeError):
    """A video that cannot be opened or decoded; the message names the file."""


def find_videos(folder: str | Path) -> dict[str, Path]:
    """Every video under `folder` (recursively, e.g. MA-52's videos_train/ videos_val/ videos_test/)
    -> {clip_id (file stem): path}. Two files with the same stem are an error naming both."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder}: no such directory")
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in VIDEO_SUFFIXES or not path.is_file():
            continue
        if path.stem in found:
            raise ValueError(f"video folder {folder}: clip id {path.stem!r} occurs twice: "
                             f"{found[path.stem]} and {path}")
        found[path.stem] = path
    if not found:
        raise ValueError(f"video folder {folder}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    return found


def segment_indices(num_frames: int, num_segments: int, *, train: bool,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN sampling: split [0, num_frames) into num_segments equal segments, one frame from each.

    train: a uniformly random frame within each segment (needs rng); test: each segment's centre.
    Clips shorter than num_segments repeat frames. Returns (num_segments,) int64, non-decreasing.
    """
    if num_frames < 1:
        raise ValueError(f"segment_indices: num_frames must be >= 1, got {num_frames}")
    edges = np.linspace(0.0, num_frames, num_segments + 1)
    if train:
        if rng is None:
            raise ValueError("segment_indices: train sampling needs an explicit rng")
        pos = edges[:-1] + rng.random(num_segments) * np.diff(edges)
    else:
        pos = (edges[:-1] + edges[1:]) / 2
    return np.clip(np.floor(pos).astype(np.int64), 0, num_frames - 1)


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise FileNotFoundError(f"video {path}: no such file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoReadError(f"video {path}: cannot be opened by OpenCV (corrupt or unsupported format)")
    return cap


def video_frame_count(path: str | Path) -> int:
    """Frames in the video from the container header; counts by grabbing when the header has none."""
    path = Path(path)
    cap = _open(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:  # some streams carry no count: walk them once (grab only, cheap)
            n = 0
            while cap.grab():
                n += 1
    finally:
        cap.release()
    if n <= 0:
        raise VideoReadError(f"video {path}: no decodable frames")
    return n


class _ShortVideo(Exception):
    """The stream ended at frame `available` before a requested index (header count too high)."""

    def __init__(self, available: int):
        super().__init__(available)
        self.available = available


def _read_sparse(path: Path, indices: np.ndarray, seek_threshold: int) -> dict[int, np.ndarray]:
    """Decode the unique frames in `indices` -> {index: (H, W, 3) uint8 BGR}; retrieve() once per index."""
    wanted = np.unique(indices)
    cap = _open(path)
    out: dict[int, np.ndarray] = {}
    try:
        pos = 0  # index of the frame the next grab() returns
        seek_ok = True
        for target in wanted.tolist():
            if seek_ok and target - pos > seek_threshold:
                cap.set(cv2.CAP_PROP_POS_FRAMES, target)
                if int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == target:
                    pos = target
                else:  # inaccurate seek (e.g. broken index): reopen and walk from the start
                    seek_ok = False
                    cap.release()
                    cap = _open(path)
                    pos = 0
            while pos < target:
                if not cap.grab():
                    raise _ShortVideo(pos)
                pos += 1
            if not cap.grab():
                raise _ShortVideo(pos)
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                raise VideoReadError(f"video {path}: frame {target} cannot be decoded")
            out[target] = frame
            pos += 1
    finally:
        cap.release()
    return out


def read_frames(path: str | Path, indices: Sequence[int] | np.ndarray, *,
                seek_threshold: int = 60) -> np.ndarray:
    """Decode only frames `indices` (any order, repeats allowed) -> (len(indices), H, W, 3) uint8 RGB.

    seek_threshold: a jump of more than this many frames seeks instead of grabbing through.
    Raises VideoReadError naming the file when it cannot be opened or a frame is past its end.
    """
    path = Path(path)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0 or indices.min() < 0:
        raise ValueError(f"video {path}: frame indices must be non-empty and >= 0, got {indices.tolist()}")
    try:
        frames = _read_sparse(path, indices, seek_threshold)
    except _ShortVideo as short:
        raise VideoReadError(f"video {path}: stream ends after {short.available} frames, "
                             f"frame {int(indices.max())} requested") from None
    return np.stack([cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in indices.tolist()])


def _resize_short(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = short / min(h, w)
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    # INTER_AREA antialiases the 4× shrink of 1080p frames; linear is fine for upscaling.
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


class VideoClipDataset(Dataset):
    """TSN-sampled RGB clips decoded straight from video files.

    __getitem__(i) -> (x (T, 3, size, size) float32 ImageNet-normalised, label, i), T = num_segments.
    Train: random frame per segment, short side resized to scale_size, one random size×size crop
    and a horizontal flip (p = 0.5) shared by all frames of the clip. Test: segment centres and a
    centre crop. `set_epoch(epoch)` changes the random draws, like the skeleton dataset.
    scale_size=None scales the short side to size·256/224. A long jump between sampled frames
    (> seek_threshold frames) seeks instead of grabbing through.
    """

    num_clips = 1  # one TSN clip per video, also at test time

    def __init__(self, video_paths: Sequence[str | Path], labels: Sequence[int] | np.ndarray,
                 subjects: Sequence[str] | np.ndarray, *, num_segments: int = 8, train: bool,
                 size: int = 224, scale_size: int | None = 256, seed: int = 0, seek_threshold: int = 60):
        self.video_paths = [Path(p) for p in video_paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.subjects = np.asarray(subjects).astype(str)
        if not (len(self.video_paths) == len(self.labels) == len(self.subjects)):
            raise ValueError(f"VideoClipDataset: {len(self.video_paths)} videos, {len(self.labels)} labels, "
                             f"{len(self.subjects)} subjects; the three must have the same length")
        missing = [str(p) for p in self.video_paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"VideoClipDataset: {len(missing)} video file(s) not found, e.g. "
                                    + ", ".join(missing[:5]))
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        if scale_size is None:  # TSN's 256/224 ratio for any crop size
            scale_size = round(size * 256 / 224)
        if scale_size < size:
            raise ValueError(f"scale_size {scale_size} must be >= crop size {size}")
        self.num_segments = num_segments
        self.train = train
        self.size = size
        self.scale_size = scale_size
        self.seed = seed
        self.seek_threshold = seek_threshold
        self.epoch = 0
        self._num_frames: dict[int, int] = {}  # header counts, cached per worker

    def __len__(self) -> int:
        return len(self.video_paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self, index: int) -> np.random.Generator:
        # Test-time draws use a fixed epoch so evaluation is identical across epochs.
        return np.random.default_rng((self.seed, self.epoch if self.train else 0, index))

    def _frames(self, index: int) -> tuple[np.ndarray, np.random.Generator]:
        """Sample and decode -> ((T, H, W, 3) uint8 RGB, rng to continue with for the crop)."""
        path = self.video_paths[index]
        if index not in self._num_frames:
            self._num_frames[index] = video_frame_count(path)
        for attempt in range(2):
            rng = self._rng(index)
            idx = segment_indices(self._num_frames[index], self.num_segments, train=self.train, rng=rng)
            try:
                frames = _read_sparse(path, idx, self.seek_threshold)
            except _ShortVideo as short:
                # The header over-counts (common by a frame or two in MP4): resample within what exists.
                if attempt or short.available < 1:
                    raise VideoReadError(f"video {path}: stream ends after {short.available} frames, "
                                         f"header says {self._num_frames[index]}") from None
                self._num_frames[index] = short.available
                continue
            return np.stack([cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in idx.tolist()]), rng
        raise AssertionError("unreachable")

    def _transform(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, 3, size, size) float32, normalised; same crop/flip for every frame."""
        frames = np.stack([_resize_short(f, self.scale_size) for f in frames])
        h, w = frames.shape[1:3]
        if self.train:
            top = int(rng.integers(0, h - self.size + 1))
            left = int(rng.integers(0, w - self.size + 1))
        else:
            top, left = (h - self.size) // 2, (w - self.size) // 2
        frames = frames[:, top:top + self.size, left:left + self.size]
        if self.train and rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        x = (frames.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        frames, rng = self._frames(index)
        return torch.from_numpy(self._transform(frames, rng)), int(self.labels[index]), index
