"""A synthetic, MA-52-like keypoint generator: seated people doing parametric micro-actions.

It writes a real keypoint store (`pose_extract.StoreWriter`, kind ``mediapipe_holistic``) plus an
MA-52-style list file, so the demo, the tests and the benchmarks run the real pipeline on it. The
data is *synthetic*: hand-written motions of a kinematic stick figure, not recordings of people.

Every subject has a person style (proportions, camera, speed, amplitude, tremor, resting posture,
noise, detection dropout and a skewed class prior) that a model can memorise on training people and
that does not transfer to new ones. See docs/SYNTH.md.

Coordinates inside this module are metres in a body frame centred on the mid-hip point: x towards
the image right (the subject's left, since the subject faces the camera), y down, z towards the
camera negative, as in MediaPipe's world landmarks.
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
from scipy.special import ndtri

from piumr_skel.data.labels import MA52_CLASSES, body_of_action

# --------------------------------------------------------------------------------------------
# Classes: MA-52 ids and names. The body class follows from the id (labels.BODY_STARTS).
# --------------------------------------------------------------------------------------------

# (MA-52 action id, MA-52 name). The order matters: the first `num_classes` are used, and the first
# seven cover all seven body classes. Later entries add confusable partners of earlier ones.
SYNTH_CLASSES: tuple[tuple[int, str], ...] = (
    (9, "nodding"),
    (24, "shaking legs"),
    (14, "rubbing hands"),
    (43, "touching nose"),
    (2, "shrugging"),
    (37, "crossing arms"),
    (48, "patting legs"),
    (10, "shaking head"),
    (8, "turning head"),
    (21, "hands touching fingers"),
    (41, "scratching or touching face"),
    (0, "shaking body"),
    (28, "crossing legs"),
    (5, "bowing head"),
    (19, "waving"),
    (3, "turning around"),
    (32, "scratching or touching neck"),
    (49, "touching legs"),
    (7, "tilting head"),
)

# MediaPipe pose landmark indices used below.
NOSE, L_EYE_IN, L_EYE, L_EYE_OUT, R_EYE_IN, R_EYE, R_EYE_OUT, L_EAR, R_EAR, MOUTH_L, MOUTH_R = range(11)
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_PINKY, R_PINKY, L_INDEX, R_INDEX, L_THUMB, R_THUMB = 17, 18, 19, 20, 21, 22
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE, L_HEEL, R_HEEL, L_FOOT, R_FOOT = range(23, 33)
HEAD_POSE = tuple(range(11))

# The face subset of docs/INTERFACES.md, in its order (name, head-frame offset in metres from the
# head pivot at the top of the neck). MediaPipe's "right_" is the subject's right = image left.
_FACE_TEMPLATE: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("nose_tip", (0.0, -0.105, -0.110)), ("nose_bridge", (0.0, -0.140, -0.095)),
    ("forehead", (0.0, -0.190, -0.090)), ("chin", (0.0, -0.035, -0.085)),
    ("right_eye_outer", (-0.048, -0.135, -0.075)), ("right_eye_inner", (-0.015, -0.135, -0.090)),
    ("right_eye_upper", (-0.032, -0.142, -0.088)), ("right_eye_lower", (-0.032, -0.130, -0.087)),
    ("left_eye_inner", (0.015, -0.135, -0.090)), ("left_eye_outer", (0.048, -0.135, -0.075)),
    ("left_eye_upper", (0.032, -0.142, -0.088)), ("left_eye_lower", (0.032, -0.130, -0.087)),
    ("right_brow_outer", (-0.050, -0.155, -0.080)), ("right_brow_inner", (-0.018, -0.158, -0.093)),
    ("left_brow_inner", (0.018, -0.158, -0.093)), ("left_brow_outer", (0.050, -0.155, -0.080)),
    ("mouth_right", (-0.025, -0.065, -0.090)), ("mouth_left", (0.025, -0.065, -0.090)),
    ("upper_lip", (0.0, -0.072, -0.100)), ("lower_lip", (0.0, -0.058, -0.098)),
    ("right_cheek", (-0.070, -0.100, -0.040)), ("left_cheek", (0.070, -0.100, -0.040)),
    ("right_jaw", (-0.055, -0.050, -0.050)), ("left_jaw", (0.055, -0.050, -0.050)),
)
FACE_NAMES: tuple[str, ...] = tuple(n for n, _ in _FACE_TEMPLATE)

# Pose head points 0-10 in the same head frame.
_HEAD_TEMPLATE = np.array([
    (0.0, -0.105, -0.110),                                                   # nose
    (0.015, -0.135, -0.090), (0.032, -0.137, -0.085), (0.048, -0.135, -0.075),  # left eye in/c/out
    (-0.015, -0.135, -0.090), (-0.032, -0.137, -0.085), (-0.048, -0.135, -0.075),  # right eye
    (0.078, -0.120, 0.0), (-0.078, -0.120, 0.0),                             # left, right ear
    (0.025, -0.065, -0.090), (-0.025, -0.065, -0.090),                        # mouth left, right
], dtype=np.float64)
_FACE_OFFSETS = np.array([o for _, o in _FACE_TEMPLATE], dtype=np.float64)

# Hand model in the hand frame (u along the fingers, v across towards the thumb, n out of the palm).
# Knuckle positions (u, v) of thumb CMC and index/middle/ring/pinky MCP, and phalanx lengths.
_KNUCKLES = np.array([(0.025, 0.025), (0.090, 0.025), (0.095, 0.0), (0.090, -0.020), (0.080, -0.038)])
_PHALANGES = np.array([
    (0.030, 0.030, 0.022),   # thumb: CMC->MCP->IP->tip
    (0.040, 0.025, 0.022),   # index
    (0.045, 0.028, 0.024),   # middle
    (0.042, 0.026, 0.022),   # ring
    (0.032, 0.020, 0.020),   # pinky
])
# The thumb leaves its CMC towards +v (sideways); the fingers go along u with a slight fan.
_FINGER_SPREAD = np.array([0.9, 0.08, 0.0, -0.08, -0.16])

PARTS: dict[str, tuple[int, int]] = {
    "pose": (33, 4), "pose_world": (33, 4), "left_hand": (21, 3), "right_hand": (21, 3), "face": (24, 3),
}
GENERATOR_VERSION = "piumr-synth-1"


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generator. Ranges are (low, high) of a uniform draw unless said otherwise;
    `*_sd` are standard deviations of log-normal factors (0 = no variation)."""

    num_subjects: int = 32
    clips_per_subject: int = 30
    num_classes: int = 14                 # the first N entries of SYNTH_CLASSES
    width: int = 1080                     # MA-52 person-centred crops are 1080 x 1296 at 30 fps
    height: int = 1296
    fps: float = 30.0
    frames_range: tuple[int, int] = (45, 75)
    # class prior: per-subject Dirichlet(concentration * num_classes * global long-tail), mixed with
    # a floor; concentration is the mean Dirichlet parameter per class (smaller = more skewed)
    prior_concentration: float = 0.5
    prior_floor: float = 0.02
    prior_tail: float = 0.6               # global class weights (rank+1)^-tail: MA-52 is long-tailed
    # body and camera
    proportion_sd: float = 0.07           # limb lengths, shoulder width, head and hand size
    focal_range: tuple[float, float] = (560.0, 760.0)   # pixels per metre: camera distance
    offset_sd_px: float = 40.0            # where the person sits in the crop
    # execution
    speed_sd: float = 0.30                # personal tempo: oscillation frequency and clip length
    amplitude_sd: float = 0.35            # personal amplitude of every movement
    clip_speed_sd: float = 0.10           # clip-to-clip variation of the same person
    clip_amplitude_sd: float = 0.25
    onset_range: tuple[float, float] = (0.0, 0.3)        # personal onset, fraction of the clip
    active_range: tuple[float, float] = (0.55, 0.9)      # fraction of the clip the action lasts
    style_class_coupling: float = 0.25    # per-person, per-class tempo/amplitude/tremor habits (log sd)
    habit_prob: float = 0.45              # chance a clip also holds a weak favourite-class fidget
    habit_amplitude: float = 0.5
    # tremor: a personal frequency band and amplitude, on hands and (weaker) head
    tremor_freq_range: tuple[float, float] = (3.0, 9.0)    # Hz
    tremor_amp_range: tuple[float, float] = (0.001, 0.008)  # metres at the wrist
    # resting posture (radians / metres, standard deviations across people)
    posture_sd: float = 1.3               # scales every posture spread below
    left_handed_prob: float = 0.12
    switch_hand_prob: float = 0.15
    # detector behaviour
    noise_px_range: tuple[float, float] = (1.0, 5.0)      # per-person keypoint jitter, pixels
    hand_detect_beta: tuple[float, float] = (4.0, 1.5)    # per-person hand detection rate ~ Beta
    face_subject_prob: float = 0.25       # MA-52 faces are pixelated: the mesh is usually not found
    face_detect_range: tuple[float, float] = (0.5, 1.0)
    dropout_run_frames: int = 8           # typical length of a missed-detection run

    def __post_init__(self) -> None:
        if not 1 <= self.num_classes <= len(SYNTH_CLASSES):
            raise ValueError(f"SynthConfig.num_classes must be in 1..{len(SYNTH_CLASSES)}, "
                             f"got {self.num_classes}")
        if self.num_subjects < 1 or self.clips_per_subject < 1:
            raise ValueError(f"SynthConfig needs num_subjects >= 1 and clips_per_subject >= 1, got "
                             f"{self.num_subjects} and {self.clips_per_subject}")
        if self.num_subjects > 9999:
            raise ValueError(f"SynthConfig.num_subjects must fit the 4-digit MA-52 subject id, "
                             f"got {self.num_subjects}")
        lo, hi = self.frames_range
        if not 8 <= lo <= hi:
            raise ValueError(f"SynthConfig.frames_range must be (low, high) with 8 <= low <= high, "
                             f"got {self.frames_range}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every knob, for recording next to the store."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def demo(cls) -> "SynthConfig":
        """Small enough that generate + train a tiny ST-GCN + evaluate runs in minutes on 2 cores."""
        return cls(num_subjects=24, clips_per_subject=25, num_classes=14)

    @classmethod
    def benchmark(cls) -> "SynthConfig":
        """The size used for the ablation (ERM / +TFAM / +GIRL / full) on synthetic people."""
        # More people make the task easier, so person variation is turned up to leave held-out
        # accuracy room to improve (measured with a tiny ST-GCN: see docs/SYNTH.md).
        return cls(num_subjects=40, clips_per_subject=40, num_classes=16, speed_sd=0.4, amplitude_sd=0.45,
                   posture_sd=1.6, habit_prob=0.5, style_class_coupling=0.35)

    @property
    def class_ids(self) -> tuple[int, ...]:
        """MA-52 action ids of the classes in use."""
        return tuple(a for a, _ in SYNTH_CLASSES[: self.num_classes])


class SynthResult(NamedTuple):
    """Paths written by `generate_store`."""

    store: Path
    labels: Path
    class_names: Path


# --------------------------------------------------------------------------------------------
# Person style
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SubjectStyle:
    """One synthetic person: everything that makes their clips theirs, drawn once from the seed."""

    subject: str
    prior: np.ndarray                 # (num_classes,) class probabilities (skewed)
    # body, metres
    shoulder_half: float
    hip_half: float
    torso: float
    neck: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    head_scale: float
    hand_scale: float
    # camera
    focal: float                      # pixels per metre
    centre_px: tuple[float, float]    # image position of the mid-hip point
    # execution
    speed: float
    amplitude: float
    onset: float
    tremor_freq: float
    tremor_amp: float
    class_speed: np.ndarray           # (num_classes,) multiplicative habits per class
    class_amp: np.ndarray
    class_tremor: np.ndarray
    right_handed: bool
    # resting posture
    lean: float                       # torso pitch, rad (+ = forward)
    torso_roll: float
    head_rest: np.ndarray             # (3,) pitch, yaw, roll, rad
    thigh_pitch: float                # rad below horizontal
    thigh_yaw: float                  # rad, legs apart (+) or together (-)
    shin_angle: float                 # rad, feet forward (+)
    hand_rest: np.ndarray             # (2, 3) left/right wrist rest positions, metres
    curl_rest: float                  # finger curl at rest, 0..1
    # detector
    noise_px: float
    hand_rate: float
    face_rate: float
    visibility: float


def _lognormal(rng: np.random.Generator, sd: float, size: Any = None) -> Any:
    return np.exp(rng.normal(0.0, sd, size)) if sd > 0 else (np.ones(size) if size else 1.0)


def class_weights(config: SynthConfig) -> np.ndarray:
    """Global long-tailed class weights (num_classes,), summing to 1 (MA-52 is long-tailed)."""
    w = (np.arange(config.num_classes) + 1.0) ** -config.prior_tail
    return w / w.sum()


def draw_subject(index: int, config: SynthConfig, rng: np.random.Generator) -> SubjectStyle:
    """Draw person number `index` (0-based; subject id "SSSS" = index + 1) from `rng`."""
    k = config.num_classes
    prior = rng.dirichlet(config.prior_concentration * k * class_weights(config))
    floor = min(config.prior_floor, 1.0 / k)     # every class stays possible for everyone
    prior = (1 - floor * k) * prior + floor
    prior = prior / prior.sum()

    p = lambda: float(_lognormal(rng, config.proportion_sd))  # noqa: E731 - a local shorthand
    size = float(_lognormal(rng, config.proportion_sd))        # overall body size, shared by all limbs
    speed = float(_lognormal(rng, config.speed_sd))
    amplitude = float(_lognormal(rng, config.amplitude_sd))
    tremor_amp = float(rng.uniform(*config.tremor_amp_range))

    # Per-class habits: a person does their favourite actions in a consistent, personal way.
    # Tied to the prior rank (favourites one way, rare ones the other) along a personal direction,
    # plus a personal random part, so "this tempo/tremor -> that class" holds within a person only.
    rank = np.argsort(np.argsort(-prior)) / max(k - 1, 1)          # 0 = favourite, 1 = rarest
    habit_dir = rng.normal(0.0, 1.0, 3)
    c = config.style_class_coupling
    log_habits = c * (habit_dir[:, None] * (1 - 2 * rank)[None] + rng.normal(0.0, 0.7, (3, k)))

    sd = config.posture_sd
    shoulder_half = 0.19 * size * p()
    rest_mode = rng.integers(0, 3)   # hands on thighs / clasped on the lap / wide on the armrests
    if rest_mode == 0:
        hand_rest = np.array([[0.15, -0.03, -0.25], [-0.15, -0.03, -0.25]])
    elif rest_mode == 1:
        hand_rest = np.array([[0.05, -0.06, -0.22], [-0.05, -0.06, -0.22]])
    else:
        hand_rest = np.array([[0.28, -0.12, -0.10], [-0.28, -0.12, -0.10]])
    hand_rest = hand_rest * size + rng.normal(0.0, 0.025 * sd, (2, 3))

    face_rate = float(rng.uniform(*config.face_detect_range)) if rng.random() < config.face_subject_prob else 0.0
    return SubjectStyle(
        subject=f"{index + 1:04d}", prior=prior,
        shoulder_half=shoulder_half, hip_half=0.12 * size * p(), torso=0.50 * size * p(),
        neck=0.10 * size * p(), upper_arm=0.30 * size * p(), forearm=0.26 * size * p(),
        thigh=0.43 * size * p(), shin=0.45 * size * p(), head_scale=size * p(), hand_scale=size * p(),
        focal=float(rng.uniform(*config.focal_range)),
        centre_px=(config.width / 2 + rng.normal(0.0, config.offset_sd_px),
                   0.56 * config.height + rng.normal(0.0, config.offset_sd_px)),
        speed=speed, amplitude=amplitude, onset=float(rng.uniform(*config.onset_range)),
        tremor_freq=float(rng.uniform(*config.tremor_freq_range)), tremor_amp=tremor_amp,
        class_speed=np.exp(log_habits[0]), class_amp=np.exp(log_habits[1]), class_tremor=np.exp(2 * log_habits[2]),
        right_handed=bool(rng.random() >= config.left_handed_prob),
        lean=float(rng.normal(0.06, 0.08 * sd)), torso_roll=float(rng.normal(0.0, 0.03 * sd)),
        head_rest=rng.normal([0.05, 0.0, 0.0], [0.10 * sd, 0.08 * sd, 0.06 * sd]),
        thigh_pitch=float(rng.normal(0.10, 0.06 * sd)), thigh_yaw=float(rng.normal(0.10, 0.07 * sd)),
        shin_angle=float(rng.normal(0.05, 0.12 * sd)), hand_rest=hand_rest,
        curl_rest=float(rng.uniform(0.2, 0.6)),
        noise_px=float(rng.uniform(*config.noise_px_range)),
        hand_rate=float(rng.beta(*config.hand_detect_beta)), face_rate=face_rate,
        visibility=float(rng.uniform(0.85, 0.99)),
    )


# --------------------------------------------------------------------------------------------
# Geometry helpers (all vectorised over time)
# --------------------------------------------------------------------------------------------

def _rotation(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(T,) angles -> (T, 3, 3) rotations R = R_yaw R_pitch R_roll. Pitch > 0 bends forward (a point
    above the pivot moves towards the camera), yaw turns about the vertical, roll tilts sideways."""
    cp, sp, cy, sy, cr, sr = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(pitch), np.zeros_like(pitch)
    r_pitch = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1),
                        np.stack([zero, sp, cp], -1)], -2)
    r_yaw = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1),
                      np.stack([-sy, zero, cy], -1)], -2)
    r_roll = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1),
                       np.stack([zero, zero, one], -1)], -2)
    return r_yaw @ r_pitch @ r_roll


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _two_link(root: np.ndarray, target: np.ndarray, a: float, b: float,
              pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-bone inverse kinematics. root, target, pole: (T, 3). Returns (middle joint, end), (T, 3)
    each; an unreachable target is clamped onto the reachable sphere, so limb lengths stay exact."""
    d_vec = target - root
    d = np.clip(np.linalg.norm(d_vec, axis=-1, keepdims=True), abs(a - b) + 1e-3, a + b - 1e-3)
    axis = _unit(d_vec)
    end = root + axis * d
    x = (a * a - b * b + d * d) / (2 * d)
    h = np.sqrt(np.maximum(a * a - x * x, 0.0))
    bend = _unit(pole - np.sum(pole * axis, -1, keepdims=True) * axis)
    return root + axis * x + bend * h, end


def _hand_points(wrist: np.ndarray, u: np.ndarray, n: np.ndarray, curl: np.ndarray, side: float,
                 scale: float) -> np.ndarray:
    """21 MediaPipe hand points (T, 21, 3) from the wrist (T, 3), the finger direction u (T, 3), the
    palm normal hint n (T, 3), finger curl (T, 5) in 0..1 and the side (+1 left, -1 right hand)."""
    u = _unit(u)
    n = _unit(n - np.sum(n * u, -1, keepdims=True) * u)
    v = side * np.cross(n, u)                               # towards the thumb
    t = wrist.shape[0]
    local = np.zeros((t, 21, 3))                            # (u, v, n) coordinates
    ang_step = curl * (np.pi / 2.6)                         # each finger joint bends by this
    for f in range(5):
        base = 1 + 4 * f
        local[:, base, 0], local[:, base, 1] = _KNUCKLES[f]
        direction0 = np.array([np.cos(_FINGER_SPREAD[f]), np.sin(_FINGER_SPREAD[f]), 0.0])
        pos = local[:, base].copy()
        for j in range(3):
            a = ang_step[:, f] * (j + 1)                    # cumulative flexion towards the palm
            step = (np.cos(a)[:, None] * direction0[None] + np.sin(a)[:, None] * np.array([0.0, 0.0, 1.0]))
            if f == 0:   # the thumb folds across the palm (towards -v) rather than into it
                step = (np.cos(a)[:, None] * direction0[None]
                        + np.sin(a)[:, None] * np.array([0.3, -0.8, 0.5]))
            pos = pos + _PHALANGES[f, j] * step
            local[:, base + 1 + j] = pos
    local *= scale
    return wrist[:, None] + local[..., :1] * u[:, None] + local[..., 1:2] * v[:, None] + local[..., 2:] * n[:, None]


def _envelope(t: np.ndarray, start: float, stop: float, ramp: float) -> np.ndarray:
    """(T,) 0 before `start`, raised-cosine up over `ramp` frames, 1 until `stop`, down again."""
    up = np.clip((t - start) / max(ramp, 1.0), 0.0, 1.0)
    down = np.clip((stop - t) / max(ramp, 1.0), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))


def _run_mask(rng: np.random.Generator, t: int, rate: float, run: int) -> np.ndarray:
    """(T,) bool, True = detected. Misses come in runs (smoothed noise thresholded), as in a tracker
    that loses a hand for a few frames; the expected detected fraction is `rate`."""
    if rate >= 1.0:
        return np.ones(t, bool)
    if rate <= 0.0:
        return np.zeros(t, bool)
    noise = rng.normal(0.0, 1.0, t + run)
    smooth = np.convolve(noise, np.ones(run) / np.sqrt(run), mode="valid")[:t]   # unit variance again
    return smooth > ndtri(1.0 - rate)   # the threshold whose exceedance probability is `rate`


# --------------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------------

class _Motion:
    """Time-varying control signals of one clip; actions add to them, `_render` turns them into
    landmarks. Angles in radians, positions in metres (body frame)."""

    def __init__(self, s: SubjectStyle, t: int) -> None:
        z = np.zeros(t)
        self.t = t
        self.torso = [z + s.lean, z.copy(), z + s.torso_roll]        # pitch, yaw, roll
        self.shift = np.zeros((t, 3))                                 # upper body translation
        self.lift = np.zeros((t, 2))                                  # shoulder lift (left, right)
        self.head = [z + s.head_rest[0], z + s.head_rest[1], z + s.head_rest[2]]
        self.thigh_pitch = np.tile([s.thigh_pitch, s.thigh_pitch], (t, 1))   # (T, 2) left, right
        self.thigh_yaw = np.tile([s.thigh_yaw, s.thigh_yaw], (t, 1))
        self.shin = np.tile([s.shin_angle, s.shin_angle], (t, 1))
        self.ankle_dx = np.zeros((t, 2))
        self.wrist = np.tile(s.hand_rest[None], (t, 1, 1))            # (T, 2, 3) wrist targets
        self.wrist_offset = np.zeros((t, 2, 3))                       # small motions on top
        self.fingers = np.tile([0.0, 0.25, -1.0], (t, 2, 1))          # finger direction: forward
        self.palm = np.tile([0.0, 1.0, 0.0], (t, 2, 1))               # palm facing down (the lap)
        self.curl = np.full((t, 2, 5), s.curl_rest)

    def reach(self, hand: int, target: np.ndarray, weight: np.ndarray, fingers: np.ndarray,
              palm: np.ndarray) -> None:
        """Move wrist `hand` (0 left, 1 right) towards target (T, 3) with weight (T,) in 0..1, and
        turn the hand to point its fingers along `fingers` with the palm facing `palm` (3,)."""
        w = weight[:, None]
        self.wrist[:, hand] = (1 - w) * self.wrist[:, hand] + w * target
        self.fingers[:, hand] = (1 - w) * self.fingers[:, hand] + w * _unit(np.asarray(fingers, float))
        self.palm[:, hand] = (1 - w) * self.palm[:, hand] + w * _unit(np.asarray(palm, float))


def _head_points(m: _Motion, s: SubjectStyle) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shoulders (T, 2, 3), head pose points (T, 11, 3), face (T, 24, 3), torso rotation (T, 3, 3)
    and the neck point (T, 3), from the torso and head signals."""
    r_torso = _rotation(*m.torso)
    shoulders_local = np.zeros((m.t, 2, 3))
    shoulders_local[:, 0] = [s.shoulder_half, -s.torso, 0.0]
    shoulders_local[:, 1] = [-s.shoulder_half, -s.torso, 0.0]
    shoulders_local[:, :, 1] -= m.lift
    shoulders = np.einsum("tij,tvj->tvi", r_torso, shoulders_local) + m.shift[:, None]
    neck_local = np.array([0.0, -s.torso - s.neck, 0.0]) - np.array([0.0, 0.4, 0.0]) * m.lift.mean(1, keepdims=True)
    neck = np.einsum("tij,tj->ti", r_torso, neck_local) + m.shift
    r_head = r_torso @ _rotation(*m.head)
    head = np.einsum("tij,vj->tvi", r_head, _HEAD_TEMPLATE * s.head_scale) + neck[:, None]
    face = np.einsum("tij,vj->tvi", r_head, _FACE_OFFSETS * s.head_scale) + neck[:, None]
    return shoulders, head, face, r_torso, neck


def _action(m: _Motion, action: int, s: SubjectStyle, rng: np.random.Generator, env: np.ndarray,
            phase_t: np.ndarray, amp: float, hand: int, ref: Callable[[], tuple]) -> None:
    """Add MA-52 action `action` to the control signals. env: (T,) envelope; phase_t: (T,) seconds
    scaled by the personal tempo; amp: amplitude factor; hand: 0 left / 1 right for one-hand actions;
    ref(): (shoulders, head, face, neck) for targets on the body, computed on demand."""
    t = m.t
    ph = rng.uniform(0, 2 * np.pi)
    sgn = rng.choice([-1.0, 1.0])
    osc = lambda f: np.sin(2 * np.pi * f * phase_t + ph)            # noqa: E731
    bump = lambda f: 0.5 - 0.5 * np.cos(2 * np.pi * f * phase_t)    # noqa: E731 - 0..1 repeated
    side = 1.0 if hand == 0 else -1.0                                # +x for the left hand
    hip = np.array([0.0, 0.0, 0.0])

    if action == 9:      # nodding: repeated pitch down-up
        m.head[0] += 0.24 * amp * env * bump(1.8)
    elif action == 5:    # bowing head: one slow pitch down, held
        m.head[0] += 0.40 * amp * env + 0.02 * amp * env * osc(0.8)
    elif action == 10:   # shaking head: yaw oscillation
        m.head[1] += 0.32 * amp * env * osc(2.0)
    elif action == 8:    # turning head: one yaw turn, held, back
        m.head[1] += sgn * 0.55 * amp * env
    elif action == 7:    # tilting head: roll, held
        m.head[2] += sgn * 0.28 * amp * env
    elif action == 0:    # shaking body: lateral sway of the upper body
        m.torso[2] += 0.07 * amp * env * osc(1.7)
        m.shift[:, 0] += 0.03 * amp * env * osc(1.7)
    elif action == 2:    # shrugging: both shoulders up, once or twice
        m.lift += (0.07 * amp * env * bump(1.1))[:, None]
    elif action == 3:    # turning around: big torso yaw, the head follows further
        m.torso[1] += sgn * 0.6 * amp * env
        m.head[1] += sgn * 0.25 * amp * env
    elif action in (14, 21):   # hands together in front of the belly
        for h in (0, 1):
            sd_ = 1.0 if h == 0 else -1.0
            target = np.tile([sd_ * (0.035 if action == 14 else 0.06), -0.16, -0.27], (t, 1))
            m.reach(h, target, env, fingers=np.array([-sd_ * 0.6, -0.3, -0.6]),
                    palm=np.array([-sd_, 0.0, 0.0]))
        if action == 14:       # rubbing: the palms slide against each other
            slide = 0.03 * amp * env * osc(2.4)
            m.wrist_offset[:, 0, 1] += slide
            m.wrist_offset[:, 1, 1] -= slide
            m.curl = m.curl * (1 - env)[:, None, None] + 0.15 * env[:, None, None]   # flat palms
        else:                  # touching fingers: fingertips tap, the wrists stay put
            tap = 0.35 * amp * env * (0.5 + 0.5 * osc(2.6))
            m.curl[:, :, 1:3] = np.clip(0.2 + tap[:, None, None], 0, 1)
            m.wrist_offset[:, :, 0] += 0.006 * amp * (env * osc(2.6))[:, None]
    elif action == 19:   # waving: hand up beside the shoulder, side-to-side
        target = np.tile([side * (s.shoulder_half + 0.12), -s.torso - 0.02, -0.18], (t, 1))
        m.reach(hand, target, env, fingers=np.array([0.0, -1.0, -0.1]), palm=np.array([0.0, 0.0, -1.0]))
        m.wrist_offset[:, hand, 0] += 0.08 * amp * env * osc(2.2)
        m.curl[:, hand] *= (1 - env)[:, None]
    elif action == 37:   # crossing arms: each wrist to the opposite upper arm, held
        for h in (0, 1):
            sd_ = 1.0 if h == 0 else -1.0
            target = np.tile([-sd_ * 0.13, -s.torso + 0.20, -0.17], (t, 1))
            m.reach(h, target, env, fingers=np.array([-sd_, -0.2, 0.3]), palm=np.array([0.0, 0.0, 1.0]))
    elif action in (43, 41, 32):   # hand to the face / neck
        shoulders, head, face, neck = ref()
        if action == 43:     # touching nose: index fingertip to the nose, brief, back
            target = head[:, NOSE] + np.array([side * 0.01, 0.15, -0.05]) * s.hand_scale
            fingers = np.array([-side * 0.15, -1.0, 0.0])
            m.curl[:, hand, 2:] = np.maximum(m.curl[:, hand, 2:], 0.7 * env[:, None])
            m.curl[:, hand, 1] = m.curl[:, hand, 1] * (1 - env) + 0.25 * env
        elif action == 41:   # touching the face: palm on the cheek, a little rubbing
            cheek = face[:, FACE_NAMES.index("left_cheek" if hand == 0 else "right_cheek")]
            target = cheek + np.array([side * 0.03, 0.11, -0.03]) * s.hand_scale
            fingers = np.array([-side * 0.2, -1.0, 0.1])
            m.wrist_offset[:, hand, 1] += 0.012 * amp * env * osc(3.5)
        else:                # neck: fingers scratching below the chin
            target = neck + np.array([side * 0.03, 0.10, -0.10])
            fingers = np.array([-side * 0.5, -0.6, 0.3])
            m.wrist_offset[:, hand, 0] += 0.015 * amp * env * osc(4.0)
        m.reach(hand, target, env, fingers=fingers, palm=np.array([-side, 0.0, 0.3]))
    elif action in (48, 49):   # hand on the thigh
        knee_frac = 0.55 if action == 48 else 0.85
        target = np.tile(hip + [side * (0.13 + 0.1 * s.thigh_yaw), -0.05, -knee_frac * s.thigh], (t, 1))
        m.reach(hand, target, env, fingers=np.array([0.0, 0.3, -1.0]), palm=np.array([0.0, 1.0, 0.0]))
        if action == 48:     # patting: the hand lifts and falls
            m.wrist_offset[:, hand, 1] -= 0.05 * amp * env * bump(2.2)
        else:                # touching: slow stroke along the thigh
            m.wrist_offset[:, hand, 2] += 0.03 * amp * env * osc(0.9)
    elif action == 24:   # shaking legs: fast heel tapping, one or both legs
        legs = [0, 1] if rng.random() < 0.5 else [int(rng.integers(0, 2))]
        for leg in legs:
            m.thigh_pitch[:, leg] += 0.08 * amp * env * osc(4.0 + 0.3 * leg)
            m.shin[:, leg] += 0.04 * amp * env * osc(4.0 + 0.3 * leg)
    elif action == 28:   # crossing legs: one knee over the other, held
        leg, other = (1, 0) if sgn > 0 else (0, 1)
        toward = 1.0 if leg == 1 else -1.0       # the right leg crosses towards +x
        m.thigh_pitch[:, leg] -= 0.35 * amp * env
        m.thigh_yaw[:, leg] -= (0.35 * amp + s.thigh_yaw) * env
        m.ankle_dx[:, leg] += toward * 0.18 * amp * env
        m.shin[:, leg] += 0.25 * amp * env
        m.thigh_yaw[:, other] -= 0.5 * s.thigh_yaw * env
    else:
        raise ValueError(f"synth has no motion for MA-52 action {action}")


def synth_clip(style: SubjectStyle, action: int, config: SynthConfig, rng: np.random.Generator
               ) -> tuple[dict[str, np.ndarray], int]:
    """Render one clip of `style` doing MA-52 action `action`.

    Returns ({part: (T, V, C) float32 with NaN rows for parts not detected}, which hand acted
    (0 left, 1 right)). Parts and channels follow docs/INTERFACES.md §1 (kind mediapipe_holistic).
    """
    cls_index = config.class_ids.index(action)
    speed = style.speed * style.class_speed[cls_index] * float(_lognormal(rng, config.clip_speed_sd))
    amp = style.amplitude * style.class_amp[cls_index] * float(_lognormal(rng, config.clip_amplitude_sd))
    lo, hi = config.frames_range
    # Slow people take longer over an action: their clips are longer.
    t = int(np.clip(round((lo + hi) / 2 / style.speed ** 0.7 + rng.normal(0, 5)), lo, hi))
    frames = np.arange(t, dtype=np.float64)
    seconds = frames / config.fps

    onset = np.clip(style.onset + rng.normal(0, 0.05), 0.0, 0.4) * t
    active = rng.uniform(*config.active_range) * t
    ramp = np.clip(6.0 / speed, 3.0, 14.0)
    env = _envelope(frames, onset, min(onset + active, t - 1.0), ramp)
    phase_t = seconds * speed

    hand = 1 if style.right_handed else 0
    if rng.random() < config.switch_hand_prob:
        hand = 1 - hand

    m = _Motion(style, t)

    def ref() -> tuple:
        # Body targets (nose, cheek, neck) are read from the head as moved by earlier actions.
        shoulders, head, face, _, neck = _head_points(m, style)
        return shoulders, head, face, neck

    # A weak fidget from the person's favourites first, so the labelled action has the last word.
    if rng.random() < config.habit_prob:
        habit = config.class_ids[int(rng.choice(config.num_classes, p=style.prior))]
        h_onset = rng.uniform(0, 0.5) * t
        h_env = _envelope(frames, h_onset, h_onset + rng.uniform(0.3, 0.6) * t, ramp) * config.habit_amplitude
        if habit != action:
            _action(m, habit, style, rng, h_env, phase_t, amp, hand, ref)
    _action(m, action, style, rng, env, phase_t, amp, hand, ref)

    # Personal tremor: a narrow band around the person's own frequency, on the hands and the head.
    tremor_amp = style.tremor_amp * style.class_tremor[cls_index]
    f_tr = style.tremor_freq * np.exp(rng.normal(0, 0.05))
    tremor = tremor_amp * np.sin(2 * np.pi * f_tr * seconds[:, None] + rng.uniform(0, 2 * np.pi, 3)) \
        * _unit(rng.normal(0, 1, 3))
    m.wrist_offset += tremor[:, None]
    m.head[0] = m.head[0] + 1.5 * tremor[:, 1]

    return _render(m, style, config, rng), hand


def _render(m: _Motion, s: SubjectStyle, config: SynthConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Control signals -> the five store parts (pose, pose_world, hands, face), noise and dropout."""
    t = m.t
    shoulders, head, face, r_torso, _ = _head_points(m, s)
    world = np.zeros((t, 33, 3))
    world[:, :11] = head
    world[:, L_SHOULDER], world[:, R_SHOULDER] = shoulders[:, 0], shoulders[:, 1]
    hips = np.array([[s.hip_half, 0.0, 0.0], [-s.hip_half, 0.0, 0.0]])
    world[:, L_HIP], world[:, R_HIP] = hips[0], hips[1]

    # Legs by forward kinematics: the thigh points at the camera (seated), the shin hangs down.
    for leg, (knee_i, ankle_i, heel_i, foot_i) in enumerate(((L_KNEE, L_ANKLE, L_HEEL, L_FOOT),
                                                             (R_KNEE, R_ANKLE, R_HEEL, R_FOOT))):
        out = 1.0 if leg == 0 else -1.0
        tp, ty = m.thigh_pitch[:, leg], m.thigh_yaw[:, leg]
        thigh_dir = np.stack([out * np.sin(ty) * np.cos(tp), np.sin(tp), -np.cos(tp) * np.cos(ty)], -1)
        knee = hips[leg] + s.thigh * thigh_dir
        shin_dir = np.stack([m.ankle_dx[:, leg] / s.shin, np.cos(m.shin[:, leg]), -np.sin(m.shin[:, leg])], -1)
        ankle = knee + s.shin * _unit(shin_dir)
        world[:, knee_i], world[:, ankle_i] = knee, ankle
        world[:, heel_i] = ankle + np.array([0.0, 0.045, 0.05]) * s.hand_scale
        world[:, foot_i] = ankle + np.array([0.0, 0.065, -0.16]) * s.hand_scale

    # Arms by inverse kinematics towards the wrist targets (rest pose blended with action targets).
    hands = []
    for h, (elbow_i, wrist_i) in enumerate(((L_ELBOW, L_WRIST), (R_ELBOW, R_WRIST))):
        side = 1.0 if h == 0 else -1.0
        target = m.wrist[:, h] + m.wrist_offset[:, h]
        pole = np.tile([side * 0.6, 0.5, 0.6], (t, 1))
        elbow, wrist = _two_link(shoulders[:, h], target, s.upper_arm, s.forearm, pole)
        world[:, elbow_i], world[:, wrist_i] = elbow, wrist
        # the forearm direction bends the resting hand a little, as a relaxed wrist does
        fingers = m.fingers[:, h] + 0.3 * _unit(wrist - elbow)
        hand = _hand_points(wrist, fingers, m.palm[:, h], m.curl[:, h], side, s.hand_scale)
        hands.append(hand)
        # pose's own hand points: pinky, index and thumb knuckles
        world[:, L_PINKY + h] = hand[:, 17]
        world[:, L_INDEX + h] = hand[:, 5]
        world[:, L_THUMB + h] = hand[:, 2]

    # Camera: weak perspective into the 1080 x 1296 crop; MediaPipe z is in image-width units.
    W, H, f = config.width, config.height, s.focal
    cx, cy = s.centre_px
    noise_m = s.noise_px / f

    def to_image(p: np.ndarray, z_ref: np.ndarray | float, scale: float) -> np.ndarray:
        p = p + rng.normal(0.0, noise_m * scale, p.shape)
        return np.stack([(cx + f * p[..., 0]) / W, (cy + f * p[..., 1]) / H,
                         f * (p[..., 2] - z_ref) / W], -1)

    pose = np.empty((t, 33, 4))
    pose[..., :3] = to_image(world, 0.0, 1.0)
    vis = np.clip(s.visibility + rng.normal(0, 0.03, (t, 33)), 0.0, 1.0)
    vis[:, 25:] *= 0.95          # lower legs are a little less certain in MediaPipe
    pose[..., 3] = vis
    pose_world = np.empty((t, 33, 4))
    pose_world[..., :3] = world + rng.normal(0.0, noise_m * 0.7, world.shape)
    pose_world[..., 3] = vis

    parts = {"pose": pose, "pose_world": pose_world}
    for h, name in ((0, "left_hand"), (1, "right_hand")):
        hp = to_image(hands[h], hands[h][:, :1, 2], 1.3)
        hp[~_run_mask(rng, t, s.hand_rate, config.dropout_run_frames)] = np.nan
        parts[name] = hp
    fp = to_image(face, face[:, :1, 2], 0.8)
    fp[~_run_mask(rng, t, s.face_rate, config.dropout_run_frames)] = np.nan
    parts["face"] = fp
    return {k: v.astype(np.float32) for k, v in parts.items()}


# --------------------------------------------------------------------------------------------
# Whole data set
# --------------------------------------------------------------------------------------------

class SynthClip(NamedTuple):
    """One generated clip: MA-52-style id, subject, MA-52 action id, parts, store metadata."""

    clip_id: str
    subject: str
    label: int
    parts: dict[str, np.ndarray]
    meta: dict[str, Any]


def draw_subjects(config: SynthConfig, seed: int) -> list[SubjectStyle]:
    """All subjects' styles; subject i comes from its own stream of `seed`, so it does not depend on
    how many subjects are drawn."""
    return [draw_subject(i, config, np.random.default_rng([seed, i, 0])) for i in range(config.num_subjects)]


def generate_clips(config: SynthConfig, seed: int = 0) -> Iterator[SynthClip]:
    """Yield every clip of the synthetic data set, subject by subject, deterministically from `seed`."""
    counter = 0
    for i, style in enumerate(draw_subjects(config, seed)):
        label_rng = np.random.default_rng([seed, i, 1])
        labels = label_rng.choice(config.num_classes, size=config.clips_per_subject, p=style.prior)
        for j, cls in enumerate(labels):
            action = config.class_ids[int(cls)]
            rng = np.random.default_rng([seed, i, 2, j])
            parts, hand = synth_clip(style, action, config, rng)
            counter += 1
            clip_id = f"{style.subject}_{body_of_action(action):02d}_{counter:04d}"
            t = parts["pose"].shape[0]
            rates = {f"rate_{p}": float(np.mean(~np.isnan(parts[p][:, 0, 0])))
                     for p in ("pose", "left_hand", "right_hand", "face")}
            meta = {"clip_id": clip_id, "rel_path": f"{clip_id}.mp4", "subject": style.subject,
                    "fps": float(config.fps), "num_frames": t, "width": config.width,
                    "height": config.height, **rates, "status": "ok", "error": ""}
            yield SynthClip(clip_id, style.subject, action, parts, meta)


def generate_store(out: str | Path, *, num_subjects: int | None = None, clips_per_subject: int | None = None,
                   num_classes: int | None = None, seed: int = 0, config: SynthConfig | None = None,
                   labels_dir: str | Path | None = None, overwrite: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> SynthResult:
    """Write a synthetic MA-52-like keypoint store to `out` (a store directory, INTERFACES.md §1).

    Sizes given here override those of `config` (default `SynthConfig()`). Also writes, into
    `labels_dir` (default: `out`), `labels.txt` (`SSSS_BB_NNNN.mp4 <MA-52 action id>`) and
    `label_name.txt` (all 52 MA-52 names, `id<TAB>name`, so labels index the usual 52-way head).
    An existing store is an error unless `overwrite`. progress(done, total) is called per clip.
    """
    from pose_extract import StoreWriter

    config = config or SynthConfig()
    sizes = (("num_subjects", num_subjects), ("clips_per_subject", clips_per_subject), ("num_classes", num_classes))
    overrides: dict[str, Any] = {k: v for k, v in sizes if v is not None}
    config = dataclasses.replace(config, **overrides)
    out = Path(out)
    labels_dir = Path(labels_dir) if labels_dir is not None else out
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: not empty; refusing to mix a new synthetic store into it "
                                  f"(pass overwrite=True to replace an existing store)")
        if not (out / "store.json").is_file():
            # never delete a folder that is not a keypoint store, whatever the caller asked
            raise FileExistsError(f"{out}: not empty and not a keypoint store (no store.json); "
                                  f"not deleting it, choose another output folder")
        shutil.rmtree(out)
    names = list(MA52_CLASSES)

    settings = {"generator": GENERATOR_VERSION, "seed": seed, "synth": config.to_dict()}
    lines = []
    total = config.num_subjects * config.clips_per_subject
    with StoreWriter(out, kind="mediapipe_holistic", parts=dict(PARTS), settings=settings,
                     extractor_version=GENERATOR_VERSION) as writer:
        for done, clip in enumerate(generate_clips(config, seed), 1):
            writer.write_clip(clip.meta, clip.parts)
            lines.append(f"{clip.clip_id}.mp4 {clip.label}\n")
            if progress is not None:
                progress(done, total)

    labels_dir.mkdir(parents=True, exist_ok=True)
    labels_path = labels_dir / "labels.txt"
    names_path = labels_dir / "label_name.txt"
    labels_path.write_text("".join(lines))
    names_path.write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(names)))
    return SynthResult(store=out, labels=labels_path, class_names=names_path)
