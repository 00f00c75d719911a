"""Skeleton layouts: each skeleton is ONE validated `Layout` (joints, tree edges, centre, flips, parts,
store sources) that the graph, bones, flip augmentation and drawing code all read from."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Layout", "LAYOUTS", "get_layout", "assemble", "FACE_SUBSET_EDGES"]


@dataclass(frozen=True)
class Layout:
    """A skeleton: V named joints joined by a tree of (child, parent) edges rooted at `center`.

    `sources[v] = (part, indices)` says how joint v is read from a keypoint store: the mean of
    `clip_arrays[part][:, indices]` (a single index for a real point, several for a virtual joint
    such as MediaPipe's neck = mean of the shoulders).

    Derived in `__post_init__` (after validation): `num_joints`, `parents` (V,) with
    `parents[center] == center`, `flip_index` (V,) the left/right permutation (an involution),
    `part_index` (V,) the position of each joint's part in `part_names`.
    """

    name: str
    joints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    center: int
    flip_pairs: tuple[tuple[int, int], ...]
    parts: Mapping[str, tuple[int, ...]] = field(hash=False)
    sources: tuple[tuple[str, tuple[int, ...]], ...]
    num_joints: int = field(init=False, compare=False)
    parents: np.ndarray = field(init=False, compare=False, repr=False)
    flip_index: np.ndarray = field(init=False, compare=False, repr=False)
    part_names: tuple[str, ...] = field(init=False, compare=False, repr=False)
    part_index: np.ndarray = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Normalise containers so that a frozen Layout really cannot be mutated.
        _set = object.__setattr__
        _set(self, "joints", tuple(self.joints))
        _set(self, "edges", tuple((int(c), int(p)) for c, p in self.edges))
        _set(self, "flip_pairs", tuple((int(a), int(b)) for a, b in self.flip_pairs))
        _set(self, "parts", MappingProxyType({k: tuple(int(i) for i in v) for k, v in self.parts.items()}))
        _set(self, "sources", tuple((str(p), tuple(int(i) for i in idx)) for p, idx in self.sources))
        V = len(self.joints)
        _set(self, "num_joints", V)
        _set(self, "parents", self._validate_tree(V))
        _set(self, "flip_index", self._validate_flips(V))
        names, index = self._validate_parts(V)
        _set(self, "part_names", names)
        _set(self, "part_index", index)
        self._validate_sources(V)
        for arr in (self.parents, self.flip_index, self.part_index):
            arr.setflags(write=False)  # shared by every user of the cached layout

    # ------------------------------------------------------------------ validation
    def _err(self, msg: str) -> ValueError:
        return ValueError(f"layout {self.name!r}: {msg}")

    def _validate_tree(self, V: int) -> np.ndarray:
        if V == 0:
            raise self._err("has no joints")
        seen: dict[str, int] = {}
        for i, n in enumerate(self.joints):
            if n in seen:
                raise self._err(f"duplicate joint name {n!r} at indices {seen[n]} and {i}")
            seen[n] = i
        if not 0 <= self.center < V:
            raise self._err(f"center {self.center} out of range for {V} joints")
        for c, p in self.edges:
            if not (0 <= c < V and 0 <= p < V):
                raise self._err(f"edge ({c}, {p}) refers to a joint outside 0..{V - 1}")
            if c == p:
                raise self._err(f"edge ({c}, {p}) is a self-loop on {self.joints[c]!r}")
        # Connectivity first: it is the mistake that silently stops messages (MediaPipe's own
        # connection list has three separate pieces).
        if V > 1:
            missing = sorted(set(range(V)) - _reachable(self.center, self.edges, V))
            if missing:
                names = [self.joints[i] for i in missing]
                raise self._err(f"not connected: joints {names} cannot be reached from centre "
                                f"{self.joints[self.center]!r}")
        parents = np.full(V, -1, dtype=np.int64)
        parents[self.center] = self.center
        for c, p in self.edges:
            if c == self.center:
                raise self._err(f"centre {self.joints[c]!r} must not have a parent (edge ({c}, {p}))")
            if parents[c] != -1:
                raise self._err(f"joint {self.joints[c]!r} has two parents: "
                                f"{self.joints[parents[c]]!r} and {self.joints[p]!r}")
            parents[c] = p
        orphans = [self.joints[i] for i in np.flatnonzero(parents < 0)]
        if orphans:
            raise self._err(f"joints {orphans} have no parent; every joint but the centre needs exactly one")
        return parents

    def _validate_flips(self, V: int) -> np.ndarray:
        flip = np.arange(V)
        for a, b in self.flip_pairs:
            if not (0 <= a < V and 0 <= b < V) or a == b:
                raise self._err(f"flip pair ({a}, {b}) is not two distinct joints in 0..{V - 1}")
            flip[a], flip[b] = b, a
        bad = np.flatnonzero(flip[flip] != np.arange(V))
        if bad.size:
            i = int(bad[0])
            chain = " -> ".join(self.joints[j] for j in (i, flip[i], flip[flip[i]]))
            raise self._err(f"flip map is not its own inverse ({chain}); each joint may be in one pair only")
        # A mirrored skeleton must be the same skeleton, or flip augmentation breaks the bones.
        edge_set = set(self.edges)
        for c, p in self.edges:
            if (int(flip[c]), int(flip[p])) not in edge_set:
                raise self._err(f"edges are not left/right symmetric: ({self.joints[c]!r} -> "
                                f"{self.joints[p]!r}) has no mirrored edge")
        return flip

    def _validate_parts(self, V: int) -> tuple[tuple[str, ...], np.ndarray]:
        index = np.full(V, -1, dtype=np.int64)
        names = tuple(self.parts)
        for k, (part, idx) in enumerate(self.parts.items()):
            for i in idx:
                if not 0 <= i < V:
                    raise self._err(f"part {part!r} refers to joint {i} outside 0..{V - 1}")
                if index[i] != -1:
                    raise self._err(f"joint {self.joints[i]!r} is in parts {names[index[i]]!r} and {part!r}")
                index[i] = k
        loose = [self.joints[i] for i in np.flatnonzero(index < 0)]
        if loose:
            raise self._err(f"joints {loose} belong to no body part")
        return names, index

    def _validate_sources(self, V: int) -> None:
        if len(self.sources) != V:
            raise self._err(f"{len(self.sources)} sources for {V} joints")
        for v, (part, idx) in enumerate(self.sources):
            if not idx or min(idx) < 0:
                raise self._err(f"joint {self.joints[v]!r} has an empty or negative source {part}{idx}")

    def __reduce__(self):
        # The read-only parts mapping cannot be pickled; rebuild (and re-validate) from the init fields
        # so layouts travel to DataLoader workers and into checkpoints.
        return (Layout, (self.name, self.joints, self.edges, self.center, self.flip_pairs, dict(self.parts),
                         self.sources))

    # ------------------------------------------------------------------ helpers
    def index(self, name: str) -> int:
        """Joint index of `name` (ValueError naming the layout when unknown)."""
        try:
            return self.joints.index(name)
        except ValueError:
            raise self._err(f"no joint named {name!r}") from None

    @property
    def store_parts(self) -> tuple[str, ...]:
        """Store parts this layout reads, in first-use order."""
        return tuple(dict.fromkeys(p for p, _ in self.sources))


def _reachable(start: int, edges, V: int) -> set[int]:
    """Joints reached from `start` along the edges taken in both directions (breadth first)."""
    neighbours: list[list[int]] = [[] for _ in range(V)]
    for c, p in edges:
        neighbours[c].append(p)
        neighbours[p].append(c)
    seen, queue = {start}, deque([start])
    while queue:
        for j in neighbours[queue.popleft()]:
            if j not in seen:
                seen.add(j)
                queue.append(j)
    return seen


# ---------------------------------------------------------------------------- building blocks
MP_POSE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)
HAND_NAMES = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)
# (child, parent) inside a 21-point hand (MediaPipe and Halpe share this order): each finger is a
# chain from the wrist; the palm cross-links of the drawing lists would make cycles.
HAND_EDGES = tuple((i, 0 if i % 4 == 1 else i - 1) for i in range(1, 21))

# Tree for FACE_SUBSET names (pose_extract.schema), rooted at nose_tip which hangs from the pose nose.
FACE_SUBSET_EDGES: Mapping[str, str] = MappingProxyType({
    "nose_bridge": "nose_tip", "forehead": "nose_bridge",
    "right_eye_inner": "nose_bridge", "right_eye_outer": "right_eye_inner",
    "right_eye_upper": "right_eye_inner", "right_eye_lower": "right_eye_inner",
    "left_eye_inner": "nose_bridge", "left_eye_outer": "left_eye_inner",
    "left_eye_upper": "left_eye_inner", "left_eye_lower": "left_eye_inner",
    "right_brow_inner": "forehead", "right_brow_outer": "right_brow_inner",
    "left_brow_inner": "forehead", "left_brow_outer": "left_brow_inner",
    "upper_lip": "nose_tip", "lower_lip": "upper_lip", "chin": "lower_lip",
    "mouth_right": "upper_lip", "mouth_left": "upper_lip",
    "right_cheek": "right_eye_outer", "right_jaw": "right_cheek",
    "left_cheek": "left_eye_outer", "left_jaw": "left_cheek",
})


def _face_subset() -> tuple[tuple[str, int], ...]:
    from pose_extract.schema import FACE_SUBSET  # the store owns the subset and its order

    return tuple((str(n), int(i)) for n, i in FACE_SUBSET)


def _mp_pose_spec() -> dict:
    neck, pelvis = 33, 34
    edges = [
        # head: eyes/ears/mouth hang from the nose, the nose from the neck (bridging edge)
        (0, neck), (1, 0), (2, 1), (3, 2), (7, 3), (4, 0), (5, 4), (6, 5), (8, 6), (9, 0), (10, 0),
        # arms
        (11, neck), (12, neck), (13, 11), (14, 12), (15, 13), (16, 14),
        (17, 15), (18, 16), (19, 15), (20, 16), (21, 15), (22, 16),
        # trunk and legs: the pelvis is the root
        (neck, pelvis), (23, pelvis), (24, pelvis), (25, 23), (26, 24), (27, 25), (28, 26),
        (29, 27), (30, 28), (31, 27), (32, 28),
    ]
    flips = [(1, 4), (2, 5), (3, 6), (7, 8), (9, 10)] + [(i, i + 1) for i in range(11, 33, 2)]
    parts = {
        "head": tuple(range(11)),
        "torso": (11, 12, 23, 24, neck, pelvis),
        "left_arm": (13, 15, 17, 19, 21), "right_arm": (14, 16, 18, 20, 22),
        "left_leg": (25, 27, 29, 31), "right_leg": (26, 28, 30, 32),
    }
    sources = [("pose", (i,)) for i in range(33)] + [("pose", (11, 12)), ("pose", (23, 24))]
    return dict(joints=list(MP_POSE_NAMES) + ["neck", "pelvis"], edges=edges, center=pelvis,
                flip_pairs=flips, parts=parts, sources=sources)


def _add_hands(spec: dict, left_wrist: int, right_wrist: int, part_names: tuple[str, str],
               source_parts: tuple[str, str] | None) -> None:
    """Append a left and a right 21-point hand, wrist attached to the body wrists (in place).

    source_parts: store parts for MediaPipe ("left_hand", "right_hand"); None for imported layouts,
    whose sources are `keypoints` at the joint's own index."""
    starts = []
    for side, wrist, pname in zip(("left", "right"), (left_wrist, right_wrist), part_names):
        start = len(spec["joints"])
        starts.append(start)
        spec["joints"] += [f"{side}_hand_{n}" for n in HAND_NAMES]
        spec["edges"] += [(start, wrist)] + [(start + c, start + p) for c, p in HAND_EDGES]
        spec["parts"][pname] = tuple(range(start, start + 21))
        if source_parts is not None:
            part = source_parts[0] if side == "left" else source_parts[1]
            spec["sources"] += [(part, (i,)) for i in range(21)]
    spec["flip_pairs"] += [(starts[0] + i, starts[1] + i) for i in range(21)]


def _mp_holistic_spec() -> dict:
    spec = _mp_pose_spec()
    _add_hands(spec, 15, 16, ("left_hand", "right_hand"), ("left_hand", "right_hand"))
    return spec


def _mp_holistic_face_spec() -> dict:
    spec = _mp_holistic_spec()
    subset = [n for n, _ in _face_subset()]
    start = len(spec["joints"])
    idx = {n: start + i for i, n in enumerate(subset)}
    unknown = (set(FACE_SUBSET_EDGES) | set(FACE_SUBSET_EDGES.values())) - set(subset)
    if unknown or set(subset) - set(FACE_SUBSET_EDGES) != {"nose_tip"}:
        raise ValueError(f"layout 'mp_holistic_face': pose_extract.schema.FACE_SUBSET names {subset} "
                         f"do not match the face tree FACE_SUBSET_EDGES")
    spec["joints"] += [f"face_{n}" for n in subset]
    spec["edges"] += [(idx["nose_tip"], 0)] + [(idx[c], idx[p]) for c, p in FACE_SUBSET_EDGES.items()]
    spec["flip_pairs"] += [(idx[n], idx[n.replace("left", "right")]) for n in subset if "left" in n]
    spec["parts"]["face"] = tuple(idx.values())
    spec["sources"] += [("face", (i,)) for i in range(len(subset))]
    return spec


def _coco17_spec() -> dict:
    joints = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
              "left_knee", "right_knee", "left_ankle", "right_ankle"]
    # PYSKL's COCO tree rooted at the nose (hips hang from the shoulders).
    edges = [(15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6),
             (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)]
    flips = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
    parts = {"head": (0, 1, 2, 3, 4), "torso": (5, 6, 11, 12), "left_arm": (7, 9), "right_arm": (8, 10),
             "left_leg": (13, 15), "right_leg": (14, 16)}
    return dict(joints=joints, edges=edges, center=0, flip_pairs=flips, parts=parts,
                sources=[("keypoints", (i,)) for i in range(17)])


def _openpose18_spec() -> dict:
    joints = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
              "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
              "right_eye", "left_eye", "right_ear", "left_ear"]
    # PYSKL's OpenPose tree rooted at the neck (hips hang from the shoulders).
    edges = [(4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2), (5, 1),
             (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14)]
    flips = [(2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17)]
    parts = {"head": (0, 14, 15, 16, 17), "torso": (1, 2, 5, 8, 11), "left_arm": (6, 7), "right_arm": (3, 4),
             "left_leg": (12, 13), "right_leg": (9, 10)}
    return dict(joints=joints, edges=edges, center=1, flip_pairs=flips, parts=parts,
                sources=[("keypoints", (i,)) for i in range(18)])


def _openpose28_spec() -> dict:
    """PCAN's MA-52 release: OpenPose-18 + 5 fingertips per hand (thumb..pinky), each tip hung from
    its wrist. The release's tip order is not documented publicly; we assume left hand 18–22, then
    right hand 23–27 — check a drawn clip (`piumr viz`) before trusting it."""
    spec = _openpose18_spec()
    tips = ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip")
    left = list(range(18, 23))
    right = list(range(23, 28))
    spec["joints"] = spec["joints"] + [f"left_{t}" for t in tips] + [f"right_{t}" for t in tips]
    spec["edges"] = spec["edges"] + [(j, 7) for j in left] + [(j, 4) for j in right]
    spec["flip_pairs"] = spec["flip_pairs"] + list(zip(left, right))
    spec["parts"] = dict(spec["parts"], left_hand=tuple(left), right_hand=tuple(right))
    spec["sources"] = [("keypoints", (i,)) for i in range(28)]
    return spec


def _face68_names() -> list[str]:
    """iBUG-300W 68-point names (the subject's right side comes first, as in the annotation)."""
    n = [f"right_jaw_{8 - j}" for j in range(8)] + ["chin"] + [f"left_jaw_{j}" for j in range(1, 9)]
    n += [f"right_brow_{k}" for k in range(1, 6)] + [f"left_brow_{k}" for k in range(5, 0, -1)]
    n += [f"nose_bridge_{k}" for k in range(1, 4)] + ["nose_tip"]
    n += ["right_nose_2", "right_nose_1", "nose_bottom", "left_nose_1", "left_nose_2"]
    n += ["right_eye_outer", "right_eye_upper_outer", "right_eye_upper_inner", "right_eye_inner",
          "right_eye_lower_inner", "right_eye_lower_outer",
          "left_eye_inner", "left_eye_upper_inner", "left_eye_upper_outer", "left_eye_outer",
          "left_eye_lower_outer", "left_eye_lower_inner"]
    n += ["mouth_right", "upper_lip_right_2", "upper_lip_right_1", "upper_lip", "upper_lip_left_1",
          "upper_lip_left_2", "mouth_left", "lower_lip_left_2", "lower_lip_left_1", "lower_lip",
          "lower_lip_right_1", "lower_lip_right_2"]
    n += ["inner_mouth_right", "inner_upper_lip_right", "inner_upper_lip", "inner_upper_lip_left",
          "inner_mouth_left", "inner_lower_lip_left", "inner_lower_lip", "inner_lower_lip_right"]
    return [f"face_{x}" for x in n]


# 68-point face as (child, parent) in 0..67; rooted at the nose tip (30), which hangs from the body nose.
# Midline points hang only from midline points so the tree stays left/right symmetric.
FACE68_EDGES = (
    [(29, 30), (28, 29), (27, 28)]                                         # nose bridge down to the tip
    + [(33, 30), (32, 33), (31, 32), (34, 33), (35, 34)]                   # nostrils
    + [(21, 27), (20, 21), (19, 20), (18, 19), (17, 18)]                   # right brow from the bridge
    + [(22, 27), (23, 22), (24, 23), (25, 24), (26, 25)]                   # left brow
    + [(39, 28), (38, 39), (37, 38), (36, 37), (40, 39), (41, 40)]         # right eye from its inner corner
    + [(42, 28), (43, 42), (44, 43), (45, 44), (47, 42), (46, 47)]         # left eye
    + [(51, 33), (50, 51), (49, 50), (48, 49), (52, 51), (53, 52), (54, 53)]  # upper lip, corners
    + [(62, 51), (61, 62), (60, 61), (63, 62), (64, 63), (66, 62), (67, 66), (65, 66)]  # inner lips
    + [(57, 66), (58, 57), (59, 58), (56, 57), (55, 56)]                   # lower lip
    + [(8, 57)] + [(j, j + 1) for j in range(8)] + [(j, j - 1) for j in range(9, 17)]  # chin, jaw
)
FACE68_FLIPS = ([(j, 16 - j) for j in range(8)] + [(17 + k, 26 - k) for k in range(5)]
                + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
                   (48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)])


def _halpe136_spec() -> dict:
    """Halpe full-body 136 in AlphaPose order: body 0–25, face 26–93, left hand 94–114, right 115–135."""
    joints = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
              "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck", "hip",
              "left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe", "left_heel", "right_heel"]
    # AlphaPose's drawing list leaves the face points 0–4 apart from the body: hang the nose from the neck.
    edges = [(1, 0), (2, 0), (3, 1), (4, 2), (0, 18), (17, 18), (18, 19), (5, 18), (6, 18), (7, 5), (9, 7),
             (8, 6), (10, 8), (11, 19), (12, 19), (13, 11), (15, 13), (14, 12), (16, 14),
             (24, 15), (20, 24), (22, 24), (25, 16), (21, 25), (23, 25)]
    flips = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (20, 21), (22, 23),
             (24, 25)]
    parts = {"head": (0, 1, 2, 3, 4, 17), "torso": (5, 6, 11, 12, 18, 19), "left_arm": (7, 9),
             "right_arm": (8, 10), "left_leg": (13, 15, 20, 22, 24), "right_leg": (14, 16, 21, 23, 25)}
    f0 = len(joints)
    joints += _face68_names()
    edges += [(f0 + 30, 0)] + [(f0 + c, f0 + p) for c, p in FACE68_EDGES]
    flips += [(f0 + a, f0 + b) for a, b in FACE68_FLIPS]
    parts["face"] = tuple(range(f0, f0 + 68))
    spec: dict[str, Any] = dict(joints=joints, edges=edges, center=19, flip_pairs=flips, parts=parts, sources=[])
    _add_hands(spec, 9, 10, ("left_hand", "right_hand"), None)
    spec["sources"] = [("keypoints", (i,)) for i in range(len(spec["joints"]))]
    return spec


# The 44 Halpe-136 points MMN's MA-52 code indexes (docs/INTEROP.md), ascending: body 0-25; face points
# 68-index 28 (nose bridge), 33 (nose bottom), 36/45 (outer eye corners), 51/57 (upper/lower lip);
# wrist and the five fingertips of each hand.
HALPE44_INDICES: tuple[int, ...] = (
    tuple(range(26)) + tuple(26 + i for i in (28, 33, 36, 45, 51, 57))
    + tuple(94 + i for i in (0, 4, 8, 12, 16, 20)) + tuple(115 + i for i in (0, 4, 8, 12, 16, 20)))


def _subset_spec(spec: dict, keep: tuple[int, ...]) -> dict:
    """The spec of the joints `keep` of `spec` (imported layouts): names, flips and parts by index,
    each kept joint hung from its nearest kept ancestor so the tree stays a tree."""
    new = {old: i for i, old in enumerate(keep)}
    parent = {c: p for c, p in spec["edges"]}
    flip = dict(spec["flip_pairs"]) | {b: a for a, b in spec["flip_pairs"]}

    def kept_ancestor(j: int) -> int:
        while j not in new:
            j = parent[j]
        return new[j]

    if spec["center"] not in new:
        raise ValueError(f"subset {keep} drops the centre joint {spec['center']}")
    if any(flip.get(j, j) not in new for j in keep):
        raise ValueError(f"subset {keep} keeps a joint but not its mirror")
    parts = {k: tuple(new[j] for j in v if j in new) for k, v in spec["parts"].items()}
    return dict(joints=[spec["joints"][j] for j in keep],
                edges=[(new[c], kept_ancestor(p)) for c, p in spec["edges"] if c in new],
                center=new[spec["center"]],
                flip_pairs=[(new[a], new[b]) for a, b in spec["flip_pairs"] if a in new],
                parts={k: v for k, v in parts.items() if v},
                sources=[("keypoints", (i,)) for i in range(len(keep))])


def _halpe44_spec() -> dict:
    """MMN's 44-point subset of Halpe-136 (:data:`HALPE44_INDICES`)."""
    return _subset_spec(_halpe136_spec(), HALPE44_INDICES)


def _builder(name: str, spec_fn: Callable[[], dict]) -> Callable[[], Layout]:
    @lru_cache(maxsize=None)
    def build() -> Layout:
        return Layout(name=name, **spec_fn())

    build.__doc__ = f"Build (once) the {name!r} layout."
    return build


LAYOUTS: dict[str, Callable[[], Layout]] = {
    "mp_pose": _builder("mp_pose", _mp_pose_spec),
    "mp_holistic": _builder("mp_holistic", _mp_holistic_spec),
    "mp_holistic_face": _builder("mp_holistic_face", _mp_holistic_face_spec),
    "coco17": _builder("coco17", _coco17_spec),
    "openpose18": _builder("openpose18", _openpose18_spec),
    "openpose28": _builder("openpose28", _openpose28_spec),
    "halpe136": _builder("halpe136", _halpe136_spec),
    "halpe44": _builder("halpe44", _halpe44_spec),
}


def get_layout(name: str | Layout) -> Layout:
    """The validated layout called `name` (a Layout passes through)."""
    if isinstance(name, Layout):
        return name
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; choices: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]()


# ---------------------------------------------------------------------------- store -> (T, V, 3)
# Parts in normalised image coordinates (pose_world is in metres and cannot become pixels).
MEDIAPIPE_IMAGE_PARTS = ("pose", "left_hand", "right_hand", "face")


def _part_to_pixels(part: str, arr: np.ndarray, width: float, height: float) -> np.ndarray:
    """(T, Vp, C) store array -> (T, Vp, 3) float32 x, y pixels and score; NaN rows stay NaN."""
    if arr.ndim != 3:
        raise ValueError(f"part {part!r}: expected a (T, V, C) array, got shape {arr.shape}")
    out = np.empty(arr.shape[:2] + (3,), dtype=np.float32)
    if part == "keypoints":  # imported stores: already pixels, with a score channel
        if arr.shape[2] < 3:
            raise ValueError(f"part 'keypoints': expected (T, V, 3) x, y, score, got shape {arr.shape}")
        out[:] = arr[..., :3]
        return out
    if part not in MEDIAPIPE_IMAGE_PARTS:
        raise ValueError(f"store part {part!r} is not in image coordinates; layouts can read "
                         f"{', '.join(MEDIAPIPE_IMAGE_PARTS)} or keypoints")
    need_c = 4 if part == "pose" else 3
    if arr.shape[2] < need_c:
        raise ValueError(f"part {part!r}: expected (T, V, {need_c}) normalised landmarks, got shape {arr.shape}")
    out[..., 0] = arr[..., 0] * width
    out[..., 1] = arr[..., 1] * height
    if part == "pose":
        out[..., 2] = arr[..., 3]  # visibility
    else:  # hands and face have no per-point score: a detected point counts as certain
        out[..., 2] = np.where(np.isnan(arr[..., 0]), np.nan, 1.0)
    return out


def assemble(layout: Layout, clip_arrays: Mapping[str, np.ndarray], width: float, height: float) -> np.ndarray:
    """Read one clip of a store into the layout: (T, V, 3) float32 x, y in pixels and a score.

    clip_arrays: part -> (T, Vp, C) as returned by `Store.load_clip` (NaN rows where the part was not
    found). MediaPipe parts are normalised to the image and scaled by width/height; the `keypoints`
    part of imported stores is already in pixels. Virtual joints are the mean of their sources and are
    NaN when any source is missing. A full face mesh (468/478 points) is read through FACE_SUBSET.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"assemble({layout.name!r}): width and height must be positive, got {width}x{height}")
    needed = layout.store_parts
    missing = [p for p in needed if p not in clip_arrays]
    if missing:
        raise ValueError(f"assemble({layout.name!r}): store parts {missing} are missing; "
                         f"clip has {sorted(clip_arrays)}")
    lengths = {p: np.asarray(clip_arrays[p]).shape[0] for p in needed}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"assemble({layout.name!r}): parts have different frame counts {lengths}")
    T = next(iter(lengths.values()))
    conv: dict[str, np.ndarray] = {}
    remap: dict[str, np.ndarray | None] = {}
    for p in needed:
        arr = np.asarray(clip_arrays[p], dtype=np.float32)
        conv[p] = _part_to_pixels(p, arr, width, height)
        remap[p] = None
        if p == "face":
            subset = _face_subset()
            if arr.shape[1] != len(subset):
                if arr.shape[1] < 468:
                    raise ValueError(f"assemble({layout.name!r}): face part has {arr.shape[1]} points; "
                                     f"expected the {len(subset)}-point subset or a 468/478 mesh")
                remap[p] = np.array([i for _, i in subset])
    for p in needed:
        top = max(max(idx) for q, idx in layout.sources if q == p)
        sub = remap[p]
        have = conv[p].shape[1] if sub is None else len(sub)
        if top >= have:
            raise ValueError(f"assemble({layout.name!r}): the layout reads {p}[0..{top}] but the part has "
                             f"{have} points")
    out = np.empty((T, layout.num_joints, 3), dtype=np.float32)
    for v, (p, idx) in enumerate(layout.sources):
        sub = remap[p]
        src = np.asarray(idx) if sub is None else sub[list(idx)]
        pts = conv[p][:, src]
        out[:, v] = pts[:, 0] if len(src) == 1 else pts.mean(axis=1)
    return out
