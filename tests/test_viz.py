"""Skeleton visualiser: output files of the right size and frame count, nothing drawn for missing
joints, and a real MA-52 clip drawn over its video."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli.viz import viz_cmd
from piumr_skel.layouts import get_layout
from piumr_skel.viz import BACKGROUND, draw_skeleton, joint_colors, load_clip_skeleton, render
from pose_extract import StoreWriter

SHARED = Path(__file__).resolve().parents[2] / "shared" / "ma52"
W, H, T = 160, 120, 6

# A standing COCO-17 figure in a 160 x 120 frame; the left arm reaches far to the right, alone
# in the box x >= 120, so its pixels can be checked in isolation.
_POSE = {
    "nose": (60, 15), "left_eye": (63, 12), "right_eye": (57, 12), "left_ear": (66, 14),
    "right_ear": (54, 14), "left_shoulder": (70, 35), "right_shoulder": (50, 35),
    "left_elbow": (125, 40), "right_elbow": (45, 55), "left_wrist": (150, 45),
    "right_wrist": (42, 75), "left_hip": (66, 70), "right_hip": (54, 70),
    "left_knee": (67, 90), "right_knee": (53, 90), "left_ankle": (68, 110),
    "right_ankle": (52, 110),
}


def _figure(layout) -> np.ndarray:
    """(T, V, 3) keypoints of the figure, drifting 1 px right per frame, score 0.9."""
    kp = np.zeros((T, layout.num_joints, 3), np.float32)
    for name, (x, y) in _POSE.items():
        kp[:, layout.index(name)] = (x, y, 0.9)
    kp[:, :, 0] += np.arange(T, dtype=np.float32)[:, None]
    return kp


def _store(tmp_path: Path, kp: np.ndarray, clip_id: str = "0019_02_0078") -> Path:
    path = tmp_path / "store"
    writer = StoreWriter(path, kind="imported", parts={"keypoints": (kp.shape[1], 3)},
                         settings={}, layout="coco17")
    meta = {"clip_id": clip_id, "rel_path": f"{clip_id}.mp4", "subject": "", "fps": 10.0,
            "num_frames": kp.shape[0], "width": W, "height": H, "rate_pose": 1.0,
            "rate_left_hand": float("nan"), "rate_right_hand": float("nan"),
            "rate_face": float("nan"), "status": "ok", "error": "", "extractor_version": "test",
            "settings": "{}"}
    writer.write_clip(meta, {"keypoints": kp})
    return path


@pytest.fixture
def coco():
    return get_layout("coco17")


def test_mp4_has_every_frame_at_clip_size(tmp_path, coco):
    store = _store(tmp_path, _figure(coco))
    out = render(store, "0019_02_0078", tmp_path / "out.mp4")
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == T
    assert frames[0].shape == (H, W, 3)
    assert frames[0].max() > 100  # something was drawn


def test_gif_has_every_frame_at_clip_size(tmp_path, coco):
    from PIL import Image

    out = render(_store(tmp_path, _figure(coco)), "0019_02_0078", tmp_path / "out.gif")
    with Image.open(out) as im:
        assert im.n_frames == T and im.size == (W, H)


def test_png_single_frame_sheet_and_scale(tmp_path, coco):
    store = _store(tmp_path, _figure(coco))
    one = cv2.imread(str(render(store, "0019_02_0078", tmp_path / "one.png", frame=0)))
    assert one.shape == (H, W, 3)
    mid = cv2.imread(str(render(store, "0019_02_0078", tmp_path / "mid.png")))
    # the figure drifts right: the default middle frame is frame T // 2 = 3, not frame 0
    nose = coco.index("nose")
    assert mid.shape == one.shape and not np.array_equal(mid, one)
    colour = joint_colors(coco)[nose]
    assert (mid[15, 60 + T // 2] == colour).all()
    sheet = cv2.imread(str(render(store, "0019_02_0078", tmp_path / "sheet.png", sheet=4)))
    assert sheet.shape == (2 * H, 2 * W, 3)
    half = cv2.imread(str(render(store, "0019_02_0078", tmp_path / "half.png", scale=0.5)))
    assert half.shape == (H // 2, W // 2, 3)


def test_missing_joints_and_their_edges_are_not_drawn(coco):
    kp = _figure(coco)[0]
    box = (slice(0, H), slice(110, W))  # only the left elbow, wrist and the edges to them

    full = np.zeros((H, W, 3), np.uint8)
    draw_skeleton(full, kp, coco, radius=3, thickness=2)
    assert (full[box] != BACKGROUND).any()
    assert (full[(slice(0, H), slice(0, 90))] != BACKGROUND).any()

    no_arm = kp.copy()
    no_arm[[coco.index("left_elbow"), coco.index("left_wrist")]] = np.nan
    img = np.zeros((H, W, 3), np.uint8)
    draw_skeleton(img, no_arm, coco, radius=3, thickness=2)
    assert (img[box] == BACKGROUND).all()
    # the rest of the body is unchanged, with a margin for the anti-aliased shoulder->elbow edge
    rest = (slice(0, H), slice(0, 66))
    np.testing.assert_array_equal(img[rest], full[rest])

    # a missing wrist removes the elbow->wrist edge but keeps the elbow
    no_wrist = kp.copy()
    no_wrist[coco.index("left_wrist")] = np.nan
    img = np.zeros((H, W, 3), np.uint8)
    draw_skeleton(img, no_wrist, coco, radius=3, thickness=2)
    assert (img[36:50, 140:W] == BACKGROUND).all()  # segment (125,40)-(150,45) past the elbow dot
    assert (img[40, 125] != BACKGROUND).any()


def test_min_score_hides_low_confidence_joints(coco):
    kp = _figure(coco)[0]
    kp[coco.index("left_wrist"), 2] = 0.1
    img = np.zeros((H, W, 3), np.uint8)
    draw_skeleton(img, kp, coco, radius=3, thickness=2, min_score=0.5)
    assert (img[36:50, 140:W] == BACKGROUND).all()


def test_draws_over_the_video_frames(tmp_path, coco):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    for _ in range(T):
        writer.write(np.full((H, W, 3), 128, np.uint8))
    writer.release()
    store = _store(tmp_path, _figure(coco))
    img = cv2.imread(str(render(store, "0019_02_0078", tmp_path / "v.png", video=video, frame=0)))
    assert abs(int(img[H - 5, 5].mean()) - 128) < 10  # a background pixel comes from the video
    blank = cv2.imread(str(render(store, "0019_02_0078", tmp_path / "b.png", frame=0)))
    assert (blank[H - 5, 5] == BACKGROUND).all()


def test_errors_name_the_problem(tmp_path, coco):
    store = _store(tmp_path, _figure(coco))
    with pytest.raises(KeyError, match="nope"):
        render(store, "nope", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\.avi"):
        render(store, "0019_02_0078", tmp_path / "x.avi")
    with pytest.raises(IndexError, match="frame 99"):
        render(store, "0019_02_0078", tmp_path / "x.png", frame=99)
    with pytest.raises(ValueError, match="openpose18"):
        load_clip_skeleton(store, "0019_02_0078", layout="openpose18")
    r = CliRunner().invoke(viz_cmd, [str(store), "nope", "-o", str(tmp_path / "x.png")])
    assert r.exit_code != 0 and "nope" in r.output


def test_cli_viz_writes_gif(tmp_path, coco):
    from PIL import Image

    store = _store(tmp_path, _figure(coco))
    r = CliRunner().invoke(viz_cmd, [str(store), "0019_02_0078", "-o", str(tmp_path / "c.gif")])
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "c.gif") as im:
        assert im.n_frames == T
