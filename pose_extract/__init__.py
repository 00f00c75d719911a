"""Video -> keypoints: MediaPipe Holistic extraction into a Parquet keypoint store, and the store API."""
from .locking import LockBusyError
from .schema import (
    FACE_SUBSET,
    FACE_SUBSET_INDICES,
    KIND_IMPORTED,
    KIND_MEDIAPIPE,
    SCHEMA_VERSION,
    VIDEO_EXTENSIONS,
    mediapipe_parts,
    parse_subject,
)
from .store import Store, StoreError, StoreWriter, load_clip, merge_stores, open_store, writer_lock

__all__ = [
    "FACE_SUBSET", "FACE_SUBSET_INDICES", "KIND_IMPORTED", "KIND_MEDIAPIPE", "SCHEMA_VERSION",
    "VIDEO_EXTENSIONS", "mediapipe_parts", "parse_subject",
    "LockBusyError", "Store", "StoreError", "StoreWriter", "load_clip", "merge_stores", "open_store",
    "writer_lock",
    "ExtractError", "ExtractReport", "ExtractSettings", "HolisticExtractor", "extract_videos",
]


def __getattr__(name: str):
    # The extractor pulls in OpenCV; readers of a store (training, importers) need not pay for it.
    if name in ("ExtractError", "ExtractReport", "ExtractSettings", "HolisticExtractor",
                "extract_videos"):
        from . import extract

        return getattr(extract, name)
    raise AttributeError(f"module 'pose_extract' has no attribute {name!r}")
