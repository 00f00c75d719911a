"""Skeleton transforms: normalisation, PYSKL-style frame sampling, streams and augmentations.

Every function does one job on NumPy arrays and reads the skeleton only through a `Layout`
(joint names, `parents`, `center`, `flip_index`). Randomness always comes from an explicit
`np.random.Generator`; nothing here touches NumPy's or torch's global generator.

Shapes: T frames, V joints, C channels (x, y, score).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for type hints: transforms read the layout duck-typed
    from piumr_skel.skeleton.layouts import Layout

# The one list of streams (the config and the CLI read it from here). hand_local: the joint stream
# with each hand (and the face) in its own frame, see `part_local`.
STREAMS = ("joint", "bone", "joint_motion", "bone_motion", "hand_local")
LOCAL_PARTS = ("left_hand", "right_hand", "face")

# Below this, a shoulder width or a box size in pixels is treated as degenerate (0).
_MIN_SCALE = 1e-6


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def _joint_index(layout: "Layout", name: str) -> int | None:
    """Index of the joint called `name`, or None when the layout has no such joint."""
    joints = tuple(layout.joints)
    return joints.index(name) if name in joints else None


def shoulder_joints(layout: "Layout") -> tuple[int, int] | None:
    """(left, right) shoulder joint indices looked up by name, or None if the layout lacks them."""
    left = _joint_index(layout, "left_shoulder")
    right = _joint_index(layout, "right_shoulder")
    if left is None or right is None:
        return None
    return left, right


def _fill_over_time(xy: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linearly interpolate each joint over time from its valid frames.

    xy: (T, V, 2) with anything in invalid entries; valid: (T, V) bool.
    Joints valid in at least one frame get every frame filled; np.interp holds the first/last
    valid value at the edges (nearest). Joints never valid are left NaN for the caller.
    """
    T, V, _ = xy.shape
    out = np.where(valid[..., None], xy, np.nan)
    t = np.arange(T, dtype=np.float64)
    for v in np.flatnonzero(valid.any(axis=0) & ~valid.all(axis=0)):
        tv = t[valid[:, v]]
        for c in range(2):
            out[:, v, c] = np.interp(t, tv, xy[valid[:, v], v, c])
    return out


def _centre_track(filled: np.ndarray, seen: np.ndarray, layout: "Layout") -> np.ndarray:
    """Per-frame centre (T, 2): the layout centre, else the neck, else the mean of seen joints.

    `filled` (T, V, 2) is already interpolated over time, so a joint seen in any frame is
    available in every frame; falling back per clip (not per frame) avoids jumps of the origin.
    """
    center = int(layout.center)
    if seen[center]:
        return filled[:, center]
    neck = _joint_index(layout, "neck")
    if neck is not None and seen[neck]:
        return filled[:, neck]
    return filled[:, seen].mean(axis=1)


def _clip_scale(xy: np.ndarray, valid: np.ndarray, layout: "Layout") -> float:
    """Scale of the person in the clip: median shoulder width, else median bounding-box size.

    Uses only frames where the joints were really detected, so interpolated values do not bias
    it. Returns 1.0 when both are degenerate (e.g. a single visible joint).
    """
    pair = shoulder_joints(layout)
    if pair is not None:
        left, right = pair
        both = valid[:, left] & valid[:, right]
        if both.any():
            width = float(np.median(np.linalg.norm(xy[both, left] - xy[both, right], axis=-1)))
            if width > _MIN_SCALE:
                return width
    sizes = []
    for t in np.flatnonzero(valid.any(axis=1)):
        pts = xy[t, valid[t]]
        sizes.append(float((pts.max(axis=0) - pts.min(axis=0)).max()))
    size = float(np.median(sizes)) if sizes else 0.0
    return size if size > _MIN_SCALE else 1.0


def normalize_clip(x: np.ndarray, layout: "Layout") -> np.ndarray:
    """Centre, scale and gap-fill one clip.

    x: (T, V, 3) x, y (pixels), score; NaN marks a missing joint (as `layouts.assemble` gives).
    Returns (T, V, 3) float32 without NaN:
      * x, y minus the centre track (layout centre, else neck, else mean of the seen joints),
        divided by the median shoulder width (bounding-box size when no shoulders are seen);
      * missing entries of a joint seen elsewhere in the clip are interpolated over time
        (nearest value at the edges); a joint never seen sits at its nearest seen ancestor
        (walking up `layout.parents`), or at the centre track when no ancestor is seen;
      * score: the detector's score where the joint was seen, 0 where it was filled.
    Raises ValueError when no joint is seen in any frame (the caller names the clip).
    """
    x = np.asarray(x, dtype=np.float64)
    V = int(layout.num_joints)
    if x.ndim != 3 or x.shape[1] != V or x.shape[2] != 3:
        raise ValueError(f"expected a (T, {V}, 3) clip for layout {layout.name!r}, got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("clip has no frames")
    xy = x[..., :2]
    valid = np.isfinite(xy).all(axis=-1)
    if not valid.any():
        raise ValueError("clip has no detected joint in any frame")

    filled = _fill_over_time(xy, valid)
    seen = valid.any(axis=0)
    centre = _centre_track(filled, seen, layout)

    parents = np.asarray(layout.parents)
    for v in np.flatnonzero(~seen):
        # Walk up the tree to the nearest seen ancestor; the root maps to itself, so stop there.
        u = v
        while not seen[u] and parents[u] != u:
            u = int(parents[u])
        filled[:, v] = filled[:, u] if seen[u] else centre

    scale = _clip_scale(xy, valid, layout)
    out = np.empty(x.shape, dtype=np.float32)
    out[..., :2] = (filled - centre[:, None, :]) / scale
    score = np.nan_to_num(x[..., 2], nan=0.0, posinf=0.0, neginf=0.0)
    out[..., 2] = np.where(valid, score, 0.0)
    return out


# --------------------------------------------------------------------------------------------
# Frame sampling
# --------------------------------------------------------------------------------------------


def uniform_sample(
    num_frames: int,
    T: int,
    rng: np.random.Generator | None = None,
    train: bool = True,
    num_clips: int = 1,
) -> np.ndarray:
    """Frame indices after PYSKL's UniformSampleFrames; returns (num_clips, T) int64.

    The clip is split into T segments of (almost) equal size and one frame is taken per segment:
    at train a random frame of each segment (`rng` required), at test a deterministic one, where
    clip i of `num_clips` takes the frame at fraction (i + 0.5) / num_clips of each segment
    (the segment centre when num_clips = 1). Unlike PYSKL, test sampling never reseeds a global
    generator. A clip shorter than T is looped from a start frame (random at train, i-th of
    num_clips evenly spaced starts at test), as PYSKL does.
    """
    if num_frames < 1:
        raise ValueError(f"cannot sample from a clip of {num_frames} frames")
    if T < 1 or num_clips < 1:
        raise ValueError(f"T and num_clips must be >= 1, got T={T}, num_clips={num_clips}")
    if train and rng is None:
        raise ValueError("uniform_sample(train=True) needs an explicit rng (np.random.Generator)")
    draw = rng if train else None  # the generator for train draws; narrowed here for the type checker

    out = np.empty((num_clips, T), dtype=np.int64)
    if num_frames < T:
        for i in range(num_clips):
            if draw is not None:
                start = int(draw.integers(num_frames))
            else:
                start = i if num_frames < num_clips else i * num_frames // num_clips
            out[i] = np.arange(start, start + T) % num_frames
        return out

    bounds = np.arange(T + 1, dtype=np.int64) * num_frames // T
    starts, sizes = bounds[:-1], np.diff(bounds)  # every size >= 1 since num_frames >= T
    for i in range(num_clips):
        if draw is not None:
            offset = draw.integers(sizes)
        else:
            offset = (sizes * (2 * i + 1)) // (2 * num_clips)
        out[i] = starts + offset
    return out


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def to_stream(
    x: np.ndarray, layout: "Layout", stream: str, *, channels_last: bool | None = None
) -> np.ndarray:
    """Derive a stream from joints using only `layout.parents`.

    x: (..., C, T, V) or (..., T, V, C); `channels_last=None` guesses from where V sits.
    * joint: x unchanged;
    * bone: x - x[parent] (the centre's bone is zero, its parent being itself);
    * joint_motion / bone_motion: frame t+1 minus frame t, the last frame zero;
    * hand_local: the joints with the hands and the face in part-local coordinates (`part_local`).
    The last channel of C = 3 is the score and passes through unchanged, since a difference of
    confidences means nothing. Returns a new float32 array of the same shape.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
    V = int(layout.num_joints)
    x = np.asarray(x)
    if channels_last is None:
        if x.ndim >= 3 and x.shape[-1] == V:
            channels_last = False
        elif x.ndim >= 3 and x.shape[-2] == V:
            channels_last = True
        else:
            raise ValueError(f"cannot find V={V} joints in an array of shape {x.shape}")
    tvc = x if channels_last else np.moveaxis(x, -3, -1)  # (..., T, V, C)
    if tvc.shape[-2] != V:
        raise ValueError(f"expected V={V} joints, array has shape {x.shape}")

    C = tvc.shape[-1]
    n_geo = 2 if C == 3 else C  # channels that are coordinates; the rest is the score
    out = np.array(tvc, dtype=np.float32, copy=True)
    if stream == "hand_local":
        out[..., :n_geo] = part_local(tvc[..., :n_geo], layout)
    if stream in ("bone", "bone_motion"):
        parents = np.asarray(layout.parents)
        out[..., :n_geo] = tvc[..., :n_geo] - tvc[..., parents, :n_geo]
    if stream in ("joint_motion", "bone_motion"):
        geo = out[..., :n_geo].copy()
        out[..., :-1, :, :n_geo] = geo[..., 1:, :, :] - geo[..., :-1, :, :]
        out[..., -1, :, :n_geo] = 0.0
    return out if channels_last else np.moveaxis(out, -1, -3)


def part_anchor(layout: "Layout", part: str) -> int | None:
    """The joint a part hangs from: the one parent, outside the part, of the part's top joints
    (the pose wrist for a MediaPipe hand, the wrist for PCAN's fingertips, the nose for a face);
    None when the layout lacks the part or its top joints hang from different joints."""
    parts = dict(getattr(layout, "parts", {}) or {})
    if part not in parts or not len(parts[part]):
        return None
    idx = set(int(v) for v in parts[part])
    parents = np.asarray(layout.parents)
    anchors = {int(parents[v]) for v in idx if int(parents[v]) not in idx}
    return anchors.pop() if len(anchors) == 1 else None


def part_local(xy: np.ndarray, layout: "Layout", parts: tuple[str, ...] = LOCAL_PARTS) -> np.ndarray:
    """Each hand (and the face) relative to the joint it hangs from, scaled by its own size.

    xy: (..., T, V, 2) body-normalised coordinates. A part's joints become (x − x_anchor) / s,
    s = the median over frames of the mean distance of the part's joints to its anchor, so a
    hand's shape reads the same wherever the hand is and however large it is; the anchor itself
    and every other joint keep their body-normalised position (where the hand is stays in the
    wrist). A part that was never seen sits on its anchor (the normaliser put it there): it stays
    all zeros, and its score channel, 0, tells the model it is missing.
    Returns a new float32 array of the same shape.
    """
    out = np.array(xy, dtype=np.float32, copy=True)
    pidx = dict(getattr(layout, "parts", {}) or {})
    for part in parts:
        anchor = part_anchor(layout, part)
        if anchor is None:
            continue
        idx = np.asarray(pidx[part])
        rel = xy[..., idx, :] - xy[..., anchor : anchor + 1, :]
        size = np.median(np.linalg.norm(rel, axis=-1).mean(axis=-1), axis=-1)  # (...,)
        size = np.where(size > _MIN_SCALE, size, 1.0)[..., None, None, None]
        out[..., idx, :] = rel / size
    return out


# --------------------------------------------------------------------------------------------
# Augmentations, on (T, V, 3) normalised clips (origin at the centre joint)
# --------------------------------------------------------------------------------------------


def flip(x: np.ndarray, layout: "Layout") -> np.ndarray:
    """Left/right mirror: negate x and swap left and right joints via `layout.flip_index`.

    x: (T, V, C), channel 0 = x, with the origin on the body's mid-line (after normalize_clip).
    """
    out = np.array(x[:, np.asarray(layout.flip_index)], dtype=np.float32, copy=True)
    out[..., 0] = -out[..., 0]
    return out


def random_flip(
    x: np.ndarray, layout: "Layout", rng: np.random.Generator, p: float = 0.5
) -> np.ndarray:
    """`flip` with probability p."""
    return flip(x, layout) if rng.random() < p else x


def random_rotate(
    x: np.ndarray, rng: np.random.Generator, max_degrees: float = 10.0, p: float = 1.0
) -> np.ndarray:
    """Rotate x, y about the origin by an angle uniform in [-max_degrees, max_degrees].

    x: (T, V, C); only the image plane (channels 0, 1) turns. Applied with probability p.
    """
    if rng.random() >= p:
        return x
    a = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=np.float32)
    out = np.array(x, dtype=np.float32, copy=True)
    out[..., :2] = x[..., :2] @ rot.T
    return out


def random_scale(
    x: np.ndarray, rng: np.random.Generator, strength: float = 0.1, p: float = 1.0
) -> np.ndarray:
    """Scale x and y independently by factors uniform in [1 - strength, 1 + strength].

    Independent factors also vary the aspect ratio, i.e. body proportions, which differ
    between people. x: (T, V, C). Applied with probability p.
    """
    if rng.random() >= p:
        return x
    factors = rng.uniform(1.0 - strength, 1.0 + strength, size=2).astype(np.float32)
    out = np.array(x, dtype=np.float32, copy=True)
    out[..., :2] *= factors
    return out


def resample_time(x: np.ndarray, length: int) -> np.ndarray:
    """Linearly resample (T, ...) along time to (length, ...), keeping the end frames."""
    T = x.shape[0]
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    pos = np.linspace(0.0, T - 1, length) if length > 1 else np.zeros(1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, T - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return ((1.0 - w) * x[lo] + w * x[hi]).astype(np.float32)


def temporal_crop_resize(
    x: np.ndarray,
    rng: np.random.Generator,
    min_ratio: float = 0.5,
    max_ratio: float = 1.0,
    out_len: int | None = None,
    p: float = 1.0,
) -> np.ndarray:
    """Crop a random window of min_ratio..max_ratio of the clip, then resample it to out_len.

    x: (T, V, C) -> (out_len or T, V, C). A change of apparent speed and of where the action
    sits in the window. With probability 1 - p only the resampling (if any) is done.
    """
    if not 0.0 < min_ratio <= max_ratio <= 1.0:
        raise ValueError(f"need 0 < min_ratio <= max_ratio <= 1, got {min_ratio}, {max_ratio}")
    T = x.shape[0]
    out_len = T if out_len is None else out_len
    if rng.random() < p:
        length = max(1, int(round(rng.uniform(min_ratio, max_ratio) * T)))
        start = int(rng.integers(T - length + 1))
        x = x[start : start + length]
    return resample_time(x, out_len) if x.shape[0] != out_len else np.asarray(x, np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation strengths and probabilities (0 switches one off)."""

    flip_p: float = 0.5
    rotate_p: float = 0.5
    rotate_degrees: float = 10.0
    scale_p: float = 0.5
    scale_strength: float = 0.1
    crop_p: float = 0.5
    crop_min: float = 0.5
    crop_max: float = 1.0


def augment_clip(
    x: np.ndarray, layout: "Layout", config: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """Apply crop-resize, flip, rotation and scale in a fixed order. x: (T, V, 3) -> same shape.

    The result is a pure function of (x, config, rng state), so a per-item generator makes it
    reproducible.
    """
    x = temporal_crop_resize(x, rng, config.crop_min, config.crop_max, p=config.crop_p)
    x = random_flip(x, layout, rng, p=config.flip_p)
    x = random_rotate(x, rng, config.rotate_degrees, p=config.rotate_p)
    x = random_scale(x, rng, config.scale_strength, p=config.scale_p)
    return x


# --------------------------------------------------------------------------------------------
# Person-style augmentation (docs/METHOD.md): physique, tempo, amplitude and posture of another person
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonStyleConfig:
    """Strengths of the person-style augmentation; each part is applied with probability p."""

    p: float = 0.5
    bone_sigma: float = 0.1            # log-normal std of each bone's length factor
    tempo: tuple[float, float] = (0.7, 1.4)
    amplitude: tuple[float, float] = (0.7, 1.3)
    posture_degrees: float = 8.0


def _topological_order(parents: np.ndarray) -> np.ndarray:
    """Joints ordered so that every parent comes before its children (the root first).

    Cached per tree: the person-style augmentation asks for it for every training clip."""
    return _topological_order_of(tuple(int(p) for p in parents))


@functools.lru_cache(maxsize=64)
def _topological_order_of(parents: tuple[int, ...]) -> np.ndarray:
    depth = np.zeros(len(parents), dtype=np.int64)
    for v in range(len(parents)):
        u, d = v, 0
        while parents[u] != u:
            u, d = parents[u], d + 1
        depth[v] = d
    order = np.argsort(depth, kind="stable")
    order.setflags(write=False)  # shared by every caller
    return order


@functools.lru_cache(maxsize=64)
def _ancestry_of(parents: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(anc, root): anc (V, V) float32 with anc[v, u] = 1 when u is v or one of its ancestors;
    root (V,) the root of each joint's tree. Read-only, shared by every caller."""
    anc = np.zeros((len(parents), len(parents)), dtype=np.float32)
    root = np.zeros(len(parents), dtype=np.int64)
    for v in range(len(parents)):
        u = v
        anc[v, u] = 1.0
        while parents[u] != u:
            u = parents[u]
            anc[v, u] = 1.0
        root[v] = u
    anc.setflags(write=False)
    root.setflags(write=False)
    return anc, root


def _ancestry(parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _ancestry_of(tuple(int(p) for p in parents))


def _subtree_mask(parents: np.ndarray, root: int) -> np.ndarray:
    """(V,) bool: `root` and every joint below it in the tree."""
    return _ancestry(parents)[0][:, root] > 0


def scale_limbs(x: np.ndarray, layout: "Layout", factors: np.ndarray) -> np.ndarray:
    """Scale each bone (joint minus its parent) by factors (V,) and rebuild the joints from the
    root along the layout's tree. x: (T, V, C) -> same shape; scores pass through.

    Joint v = its root + the sum of the scaled bones on the path down to v (one matmul, not a
    loop over the joints: this runs for every training clip of a --aug-person run)."""
    parents = np.asarray(layout.parents)
    anc, root = _ancestry(parents)
    out = np.array(x, dtype=np.float32, copy=True)
    bones = (x[..., :2] - x[:, parents, :2]) * np.asarray(factors, dtype=np.float32)[:, None]  # roots: 0
    out[..., :2] = x[:, root, :2] + anc @ bones
    return out


def _rotate_about(x: np.ndarray, joints: np.ndarray, pivot: np.ndarray, degrees: float) -> None:
    """Rotate x[:, joints, :2] in place by `degrees` about pivot (T, 2)."""
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=np.float32)
    rel = x[:, joints, :2] - pivot[:, None]
    x[:, joints, :2] = rel @ rot.T + pivot[:, None]


def person_style(x: np.ndarray, layout: "Layout", rng: np.random.Generator,
                 config: PersonStyleConfig = PersonStyleConfig()) -> np.ndarray:
    """Make a normalised clip (T, V, C) look performed by another person. Each part with
    probability config.p, in this order:

    * limb lengths: every bone by its own log-normal factor (left and right differ), joints rebuilt
      from the root along `layout.parents`;
    * amplitude: each body part's displacement from its rest posture (median over time) × a factor;
    * posture: the head and the torso turned a little about their parents;
    * tempo: the clip resampled in time by a factor (a longer or shorter clip; frame sampling follows).
    """
    parents = np.asarray(layout.parents)
    out = np.array(x, dtype=np.float32, copy=True)
    if rng.random() < config.p:
        out = scale_limbs(out, layout, np.exp(rng.normal(0.0, config.bone_sigma, size=len(parents))))
    parts = dict(getattr(layout, "parts", {}) or {})
    if rng.random() < config.p and parts:
        rest = np.median(out[..., :2], axis=0)                          # (V, 2)
        for idx in parts.values():
            idx = np.asarray(idx)
            out[:, idx, :2] = rest[idx] + (out[:, idx, :2] - rest[idx]) * rng.uniform(*config.amplitude)
    if rng.random() < config.p:
        for name in ("torso", "head"):
            if name not in parts or not len(parts[name]):
                continue
            # The part's top joint (the one closest to the root) turns its whole subtree about its parent.
            rank = np.argsort(_topological_order(parents))            # joint -> position in the order
            top = min(parts[name], key=lambda v: rank[int(v)])
            joints = np.flatnonzero(_subtree_mask(parents, int(top)))
            _rotate_about(out, joints, out[:, parents[top], :2].copy(),
                          rng.uniform(-config.posture_degrees, config.posture_degrees))
    if rng.random() < config.p and out.shape[0] > 1:
        length = max(1, int(round(out.shape[0] / rng.uniform(*config.tempo))))
        out = resample_time(out, length)
    return out
