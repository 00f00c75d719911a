"""Keypoint store schema, version 1: part shapes, the face subset and the Arrow schemas of both tables."""
from __future__ import annotations

import re

import pyarrow as pa

SCHEMA_VERSION = 1
STORE_FILE = "store.json"
FRAMES_DIR = "frames"
CLIPS_DIR = "clips"

KIND_MEDIAPIPE = "mediapipe_holistic"
KIND_IMPORTED = "imported"
KINDS = (KIND_MEDIAPIPE, KIND_IMPORTED)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")

# Ordered (name, face-mesh index) pairs: eyes, brows, nose, mouth and jaw outline, enough to see
# head turns, blinks and mouth movements without storing 468 points per frame.
FACE_SUBSET: tuple[tuple[str, int], ...] = (
    ("nose_tip", 1), ("nose_bridge", 168), ("forehead", 10), ("chin", 152),
    ("right_eye_outer", 33), ("right_eye_inner", 133), ("right_eye_upper", 159),
    ("right_eye_lower", 145),
    ("left_eye_inner", 362), ("left_eye_outer", 263), ("left_eye_upper", 386),
    ("left_eye_lower", 374),
    ("right_brow_outer", 70), ("right_brow_inner", 107), ("left_brow_inner", 336),
    ("left_brow_outer", 300),
    ("mouth_right", 61), ("mouth_left", 291), ("upper_lip", 13), ("lower_lip", 14),
    ("right_cheek", 234), ("left_cheek", 454), ("right_jaw", 172), ("left_jaw", 397),
)
FACE_SUBSET_INDICES: tuple[int, ...] = tuple(i for _, i in FACE_SUBSET)

FACE_MESH_POINTS = 468
FACE_MESH_POINTS_REFINED = 478


def mediapipe_parts(*, full_face: bool = False, refine_face: bool = False) -> dict[str, tuple[int, int]]:
    """Part name -> (V, C) of a MediaPipe Holistic store, in table column order."""
    if full_face:
        face_v = FACE_MESH_POINTS_REFINED if refine_face else FACE_MESH_POINTS
    else:
        face_v = len(FACE_SUBSET)
    return {
        "pose": (33, 4),
        "pose_world": (33, 4),
        "left_hand": (21, 3),
        "right_hand": (21, 3),
        "face": (face_v, 3),
    }


# The detection-rate columns of the clips table, one per part that MediaPipe may not find.
RATE_PARTS = ("pose", "left_hand", "right_hand", "face")

CLIPS_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("rel_path", pa.string()),
    ("subject", pa.string()),
    ("fps", pa.float64()),
    ("num_frames", pa.int32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("rate_pose", pa.float64()),
    ("rate_left_hand", pa.float64()),
    ("rate_right_hand", pa.float64()),
    ("rate_face", pa.float64()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("extractor_version", pa.string()),
    ("settings", pa.string()),
])
CLIP_COLUMNS: tuple[str, ...] = tuple(CLIPS_SCHEMA.names)
STATUSES = ("ok", "failed")


def frames_schema(parts: dict[str, tuple[int, int]]) -> pa.Schema:
    """Frames table schema: clip_id, frame, then one nullable list<float32> per part.

    Every non-null entry holds exactly V*C values (flattened (V, C)); null = part not found. The list is
    variable-size on disk because Parquet cannot store *nullable* fixed-size lists (Arrow raises
    "Lists with non-zero length null components are not supported", apache/arrow#24425); the
    length is checked on read instead.
    """
    fields = [pa.field("clip_id", pa.string(), nullable=False),
              pa.field("frame", pa.int32(), nullable=False)]
    for name, (v, c) in parts.items():
        fields.append(pa.field(name, pa.list_(pa.float32()), nullable=True,
                               metadata={b"shape": f"{v},{c}".encode()}))
    return pa.schema(fields)


_MA52_NAME = re.compile(r"^(\d{4})_(\d{2})_(\d{4})$")


def parse_subject(clip_id: str) -> str:
    """Person id "SSSS" of an MA-52 clip named SSSS_BB_NNNN; "" for any other name (e.g. test0001)."""
    m = _MA52_NAME.match(clip_id)
    return m.group(1) if m else ""
