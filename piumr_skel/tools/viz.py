"""Draw the skeleton of any layout over a clip's video frames (or a blank canvas) and write it as
an mp4, a gif, a single-frame png or a png contact sheet.

Edges come from ``layout.edges`` and colours from ``layout.parts``, so every layout draws with the
same code. A joint with a non-finite x or y (missing in the store) is not drawn, nor is any edge
touching it.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

# Distinct BGR colours, one per body part in the order the layout lists its parts.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (75, 25, 230), (75, 180, 60), (25, 225, 255), (200, 130, 0), (48, 130, 245),
    (180, 30, 145), (240, 240, 70), (230, 50, 240), (60, 245, 210), (212, 190, 250),
    (128, 128, 0), (255, 190, 220), (40, 110, 170), (200, 250, 255), (0, 0, 128),
    (195, 255, 170),
)
UNASSIGNED_COLOR: tuple[int, int, int] = (200, 200, 200)  # joints that belong to no part
BACKGROUND: tuple[int, int, int] = (0, 0, 0)
SUFFIXES = (".mp4", ".gif", ".png")


@dataclass
class ClipSkeleton:
    """One clip ready to draw: ``keypoints`` (T, V, 3) = x, y pixels of a width × height frame,
    score; NaN where missing."""

    clip_id: str
    layout: object  # piumr_skel.skeleton.layouts.Layout
    keypoints: np.ndarray
    width: int
    height: int
    fps: float
    rel_path: str = ""


def joint_colors(layout) -> np.ndarray:
    """(V, 3) uint8 BGR colour per joint: the colour of the first part that lists it."""
    colors = np.tile(np.array(UNASSIGNED_COLOR, np.uint8), (layout.num_joints, 1))
    assigned = np.zeros(layout.num_joints, bool)
    for i, (_, joints) in enumerate(layout.parts.items()):
        idx = np.array([j for j in joints if not assigned[j]], dtype=int)
        if idx.size:
            colors[idx] = PALETTE[i % len(PALETTE)]
            assigned[idx] = True
    return colors


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, layout, *,
                  colors: np.ndarray | None = None, radius: int | None = None,
                  thickness: int | None = None, min_score: float | None = None) -> np.ndarray:
    """Draw one frame's skeleton on ``image`` (H, W, 3) uint8 BGR, in place, and return it.

    ``keypoints`` is (V, 3) = x, y pixels, score. A joint is drawn when x and y are finite (and,
    with ``min_score``, its score is at least that); an edge (child, parent) when both ends are.
    Each edge takes its child's colour.
    """
    if keypoints.shape != (layout.num_joints, 3):
        raise ValueError(f"keypoints have shape {keypoints.shape}, expected "
                         f"({layout.num_joints}, 3) for layout {layout.name!r}")
    colors = joint_colors(layout) if colors is None else colors
    h, w = image.shape[:2]
    # Line widths scale with the frame so that 1080p and thumbnails both read well.
    radius = radius if radius is not None else max(2, round(min(h, w) / 200))
    thickness = thickness if thickness is not None else max(1, round(min(h, w) / 300))
    xy = keypoints[:, :2]
    valid = np.isfinite(xy).all(axis=1)
    if min_score is not None:
        valid &= np.nan_to_num(keypoints[:, 2], nan=-np.inf) >= min_score
    pts = np.where(valid[:, None], xy, 0).round().astype(np.int32)
    for child, parent in layout.edges:
        if valid[child] and valid[parent]:
            cv2.line(image, tuple(map(int, pts[child])), tuple(map(int, pts[parent])),
                     tuple(map(int, colors[child])), thickness, cv2.LINE_AA)
    for j in np.flatnonzero(valid):
        cv2.circle(image, tuple(map(int, pts[j])), radius, tuple(map(int, colors[j])), -1,
                   cv2.LINE_AA)
    return image


def load_clip_skeleton(store, clip_id: str, layout: str | None = None) -> ClipSkeleton:
    """Keypoints of one clip of a store (path or Store) in pixels.

    A MediaPipe store is assembled through ``assemble(get_layout(layout or "mp_holistic"), ...)``;
    an imported store uses its own layout (``layout`` may name another one with the same number
    of joints).
    """
    from piumr_skel.skeleton.layouts import assemble, get_layout
    from pose_extract import open_store

    st = open_store(store) if isinstance(store, (str, Path)) else store
    clips = st.clips()
    rows = clips[clips["clip_id"] == clip_id]
    if rows.empty:
        raise KeyError(f"clip {clip_id!r} is not in the store (it has {len(clips)} clips)")
    row = rows.iloc[0]
    width, height = int(row["width"]), int(row["height"])
    fps = float(row["fps"]) if np.isfinite(row["fps"]) and row["fps"] > 0 else 30.0
    arrays = st.load_clip(clip_id)
    kind = st.info.get("kind")
    if kind == "imported":
        own = st.info.get("layout")
        name = layout or own
        if not name:
            raise ValueError(f"{st.path}: an imported store without a layout in store.json")
        lay = get_layout(name)
        kp = arrays["keypoints"].astype(np.float32)
        if kp.shape[1] != lay.num_joints:
            raise ValueError(f"clip {clip_id!r} has {kp.shape[1]} joints (layout {own!r}); "
                             f"layout {lay.name!r} has {lay.num_joints}")
    else:
        lay = get_layout(layout or "mp_holistic")
        kp = assemble(lay, arrays, width, height)
    if width <= 0 or height <= 0:  # size unknown: a canvas that holds every point
        finite = kp[..., :2][np.isfinite(kp[..., :2]).all(-1)]
        top = finite.max(axis=0) if finite.size else np.array([64.0, 64.0])
        width, height = int(math.ceil(top[0] * 1.05)) + 1, int(math.ceil(top[1] * 1.05)) + 1
    return ClipSkeleton(clip_id, lay, kp, width, height, fps, str(row.get("rel_path", "") or ""))


def _video_frames(video: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise OSError(f"{video}: cannot open the video")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def render_frames(skel: ClipSkeleton, *, video: str | Path | None = None,
                  indices: Sequence[int] | None = None, scale: float = 1.0,
                  min_score: float | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, (H, W, 3) uint8 BGR image) for ``indices`` (default all frames), in
    increasing frame order.

    With ``video`` the skeleton is drawn over the decoded frame of the same index (keypoints
    rescaled if the video size differs from the store's); past the video's end, or without a
    video, over a blank width × height canvas.
    """
    t = skel.keypoints.shape[0]
    wanted = list(range(t)) if indices is None else [int(i) for i in indices]
    for i in wanted:
        if not 0 <= i < t:
            raise IndexError(f"frame {i} is out of range: clip {skel.clip_id!r} has {t} frames")
    colors = joint_colors(skel.layout)
    if video and not Path(video).is_file():
        raise FileNotFoundError(f"{video}: no such video")
    decoded: Iterator[np.ndarray] | None = _video_frames(Path(video)) if video else None
    pos, frame = -1, None
    for i in sorted(set(wanted)):
        while decoded is not None and pos < i:  # decode forward to frame i, never seek
            frame = next(decoded, None)
            pos += 1
            if frame is None:
                decoded = None
        if decoded is not None and frame is not None and pos == i:
            image = frame.copy()
        else:
            image = np.empty((skel.height, skel.width, 3), np.uint8)
            image[:] = BACKGROUND
        kp = skel.keypoints[i].copy()
        sx, sy = image.shape[1] / skel.width, image.shape[0] / skel.height
        kp[:, 0] *= sx
        kp[:, 1] *= sy
        draw_skeleton(image, kp, skel.layout, colors=colors, min_score=min_score)
        if scale != 1.0:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        yield i, image


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                  cols: int | None = None, max_width: int = 2400) -> np.ndarray:
    """Tile same-size (H, W, 3) images into one image, row-major, each labelled top-left."""
    if not images:
        raise ValueError("contact sheet of no images")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    h, w = images[0].shape[:2]
    f = min(1.0, max_width / (cols * w))
    th, tw = max(1, round(h * f)), max(1, round(w * f))
    sheet = np.zeros((rows * th, cols * tw, 3), np.uint8)
    for k, img in enumerate(images):
        tile = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA) if f != 1.0 else img
        if labels is not None:
            cv2.putText(tile, labels[k], (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255),
                        2, cv2.LINE_AA)
        r, c = divmod(k, cols)
        sheet[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile
    return sheet


def write_video(frames: Iterable[np.ndarray], out: Path, fps: float) -> int:
    """Write BGR frames to ``out`` (.mp4 via cv2 mp4v, .gif via PIL); returns the frame count."""
    suffix = out.suffix.lower()
    count = 0
    if suffix == ".mp4":
        writer = None
        try:
            for img in frames:
                if writer is None:
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps,
                                             (img.shape[1], img.shape[0]))
                    if not writer.isOpened():
                        raise OSError(f"{out}: cv2.VideoWriter (mp4v) cannot open this file")
                writer.write(img)
                count += 1
        finally:
            if writer is not None:
                writer.release()
    elif suffix == ".gif":
        from PIL import Image

        pil = [Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)) for img in frames]
        if not pil:
            raise ValueError(f"{out}: no frames to write")
        pil[0].save(out, save_all=True, append_images=pil[1:], loop=0,
                    duration=max(1, round(1000 / fps)))
        count = len(pil)
    else:
        raise ValueError(f"{out}: unsupported video suffix {out.suffix!r} (use .mp4 or .gif)")
    return count


def _check_frame_count(video: Path, skel: ClipSkeleton) -> None:
    """Refuse a video whose frame count differs from the clip's: its keypoints would be drawn over
    other frames (likely another clip's video). Containers that only estimate the count get a warning."""
    from pose_extract.video import EXACT_COUNT, VideoError, open_video

    try:
        cap, info = open_video(video)
    except VideoError as err:
        raise ValueError(f"{video}: {err}") from None
    cap.release()
    t = skel.keypoints.shape[0]
    if info.frame_count <= 0 or info.frame_count == t:
        return
    msg = (f"{video} has {info.frame_count} frames but clip {skel.clip_id!r} has {t} in the store: "
           f"is it the video this clip was extracted from?")
    if video.suffix.lower() not in EXACT_COUNT:
        warnings.warn(msg + " (its container only estimates the frame count)", stacklevel=3)
        return
    raise ValueError(msg + " Pass the right --video, or none to draw on a blank canvas")


def render(store, clip_id: str, out: str | Path, *, video: str | Path | None = None,
           layout: str | None = None, frame: int | None = None, sheet: int = 0,
           scale: float = 1.0, min_score: float | None = None) -> Path:
    """Render one clip of a store to ``out``: .mp4 / .gif (every frame) or .png (frame ``frame``,
    default the middle one, or with ``sheet`` = n a contact sheet of n evenly spaced frames).

    ``video`` is the clip's video file, or the folder the store was extracted from (the clip's
    ``rel_path`` is looked up there).
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{out}: unsupported output type {out.suffix!r}; use one of {SUFFIXES}")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number > 0, got {scale}")
    if sheet < 0:
        raise ValueError(f"sheet must be >= 0 (0 = a single frame), got {sheet}")
    skel = load_clip_skeleton(store, clip_id, layout)
    t = skel.keypoints.shape[0]
    if t == 0:
        raise ValueError(f"clip {clip_id!r} has no frames")
    if video is not None and Path(video).is_dir():
        video = Path(video) / (skel.rel_path or f"{clip_id}.mp4")
    if video is not None and Path(video).is_file():
        _check_frame_count(Path(video), skel)
    out.parent.mkdir(parents=True, exist_ok=True)
    render = functools.partial(render_frames, skel, video=video, scale=scale, min_score=min_score)
    if suffix == ".png":
        if sheet > 0:
            idx = np.unique(np.linspace(0, t - 1, min(sheet, t)).round().astype(int))
            rendered = list(render(indices=idx))
            image = contact_sheet([im for _, im in rendered], [f"{i}" for i, _ in rendered])
        else:
            i = t // 2 if frame is None else frame
            _, image = next(render(indices=[i]))
        if not cv2.imwrite(str(out), image):
            raise OSError(f"{out}: cv2 could not write the png")
        return out
    write_video((im for _, im in render()), out, skel.fps)
    return out
