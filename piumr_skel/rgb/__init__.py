"""RGB variant: TSM ResNet-18/50 on TSN-sampled video frames, with the same TFAM (V = 1) and GIRL."""
from .model import RGB_ARCHS, RGBRecognizer, TemporalHead
from .resnet import ResNet, load_pretrained, resnet18, resnet50
from .tsm import TemporalShift, make_temporal_shift, temporal_shift, tsm_resnet
from .video_data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoClipDataset,
    VideoReadError,
    find_videos,
    read_frames,
    segment_indices,
    video_frame_count,
)

__all__ = [
    "RGB_ARCHS", "RGBRecognizer", "TemporalHead",
    "ResNet", "load_pretrained", "resnet18", "resnet50",
    "TemporalShift", "make_temporal_shift", "temporal_shift", "tsm_resnet",
    "IMAGENET_MEAN", "IMAGENET_STD", "VideoClipDataset", "VideoReadError", "find_videos", "read_frames",
    "segment_indices", "video_frame_count",
]
