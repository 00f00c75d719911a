"""Finding video files, splitting them into shards, and decoding them with checks that say what failed."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .schema import VIDEO_EXTENSIONS

# Containers whose header frame count is exact; for the others (mkv, webm) OpenCV estimates it from
# duration x fps, so a small shortfall is not a truncation.
EXACT_COUNT = (".mp4", ".mov", ".avi")


class VideoError(Exception):
    """A video that cannot be read; the message says why (shown in the clips table's error column)."""


def find_videos(root: str | Path) -> list[Path]:
    """Video files under ``root`` (recursive, extensions case-insensitive), sorted by relative path."""
    root = Path(root)
    found = [p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and not p.is_dir()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def parse_shard(text: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n; ValueError with the reason otherwise."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need n >= 1 and 0 <= i < n (shards are numbered 0..n-1)")
    return i, n


def shard_of(rel_path: str, n: int) -> int:
    """Shard of a file: a hash of its relative path, so adding files does not move the others."""
    return zlib.crc32(rel_path.encode()) % n


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video: fps, frame count (may be 0 if unknown), original size."""

    fps: float
    frame_count: int
    width: int
    height: int


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video for decoding; VideoError with a clear reason for empty, unreadable or non-video files."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:  # OpenCV only says "cannot open"; this tells permission problems
            fh.read(1)
    except OSError as exc:
        raise VideoError(f"cannot read file: {exc.strerror or exc}") from None
    if size == 0:
        raise VideoError("empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError("OpenCV cannot open it as a video (not a video, truncated or unsupported codec)")
    info = VideoInfo(fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                     frame_count=max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0),
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if info.width <= 0 or info.height <= 0:
        cap.release()
        raise VideoError("no video stream (frame size 0)")
    return cap, info


def iter_frames(path: str | Path, max_side: int | None = None) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """(info, iterator of RGB uint8 frames), downscaled so the longest side is at most ``max_side``.

    The iterator raises VideoError when no frame decodes, or when decoding stops before the frame count
    the container announced (a truncated or corrupt file).
    """
    path = Path(path)
    cap, info = open_video(path)
    exact = path.suffix.lower() in EXACT_COUNT

    def frames() -> Iterator[np.ndarray]:
        n = 0
        try:
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                n += 1
                if max_side and max(bgr.shape[:2]) > max_side:
                    h, w = bgr.shape[:2]
                    s = max_side / max(h, w)
                    # INTER_AREA: the right filter for shrinking; normalised coordinates are unchanged.
                    bgr = cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))),
                                     interpolation=cv2.INTER_AREA)
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
        if n == 0:
            raise VideoError("no frame could be decoded")
        expected = info.frame_count
        tolerance = 0 if exact else max(2, int(0.02 * expected))
        if expected and n < expected - tolerance:
            raise VideoError(f"decoding stopped at frame {n} of {expected} (truncated or corrupt file)")

    return info, frames()
