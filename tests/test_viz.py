"""Skeleton visualiser: output files of the right size and frame count, nothing drawn for missing
joints, and a real MA-52 clip drawn over its video."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli.viz import viz_cmd
from piumr_skel.skeleton.layouts import get_layout
from piumr_skel.tools.viz import BACKGROUND, draw_skeleton, joint_colors, load_clip_skeleton, render
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


@pytest.mark.real
@pytest.mark.slow
def test_real_clip_skeleton_lies_on_the_person(tmp_path):
    """Extract one real MA-52 clip with MediaPipe Holistic and draw it over its video."""
    videos = SHARED / "videos"
    if not videos.is_dir():
        pytest.skip(f"{videos} is absent: the real MA-52 clips live in ../shared/ma52")
    from pose_extract import extract_videos, open_store

    store = tmp_path / "store"
    extract_videos(videos, store, limit=1, progress=False)  # the first clip by name
    st = open_store(store)
    row = st.clips().iloc[0]
    assert row["status"] == "ok", row["error"]
    clip_id, video = row["clip_id"], videos / row["rel_path"]

    skel = load_clip_skeleton(st, clip_id)  # MediaPipe -> mp_holistic through assemble
    assert skel.layout.name == "mp_holistic" and skel.keypoints.shape[1] == 77
    mid = skel.keypoints.shape[0] // 2
    body = [skel.layout.index(n) for n in ("nose", "left_shoulder", "right_shoulder",
                                          "left_hip", "right_hip")]
    xy = skel.keypoints[mid, body, :2]
    # MA-52 clips are person-centred crops: the body lies inside the frame, around its middle.
    assert np.isfinite(xy).all()
    assert (xy[:, 0] > 0.15 * skel.width).all() and (xy[:, 0] < 0.85 * skel.width).all()
    assert (xy[:, 1] > 0.05 * skel.height).all() and (xy[:, 1] < 0.95 * skel.height).all()

    out = render(st, clip_id, tmp_path / "real.png", video=video)
    drawn = cv2.imread(str(out))
    cap = cv2.VideoCapture(str(video))
    for _ in range(mid + 1):  # decode forward, as the renderer does, rather than trust seeking
        ok, raw = cap.read()
    cap.release()
    assert ok and drawn.shape == raw.shape == (skel.height, skel.width, 3)
    # the drawing changed the frame at the nose and left it alone in a far corner
    nx, ny = skel.keypoints[mid, skel.layout.index("nose"), :2].round().astype(int)
    assert np.abs(drawn[ny, nx].astype(int) - raw[ny, nx].astype(int)).max() > 30
    assert np.array_equal(drawn[:20, :20], raw[:20, :20])


def _mediapipe_store(tmp_path: Path, left_hand_found: bool) -> Path:
    """A 200 x 200 MediaPipe store, 3 frames: the body on the left, the right hand bottom-left,
    the left hand (when found) alone in the top-right corner."""
    from pose_extract import KIND_MEDIAPIPE, mediapipe_parts

    parts = mediapipe_parts()
    t = 3
    frames = {p: np.full((t, v, c), np.nan, np.float32) for p, (v, c) in parts.items()}
    rng = np.random.default_rng(0)
    pose = np.zeros((t, 33, 4), np.float32)
    pose[..., 0] = rng.uniform(0.1, 0.5, (t, 33))
    pose[..., 1] = rng.uniform(0.1, 0.7, (t, 33))
    pose[..., 3] = 0.9
    frames["pose"] = pose
    frames["pose_world"] = pose.copy()
    right = np.zeros((t, 21, 3), np.float32)
    right[..., 0] = rng.uniform(0.05, 0.2, (t, 21))
    right[..., 1] = rng.uniform(0.8, 0.95, (t, 21))
    frames["right_hand"] = right
    if left_hand_found:
        left = np.zeros((t, 21, 3), np.float32)
        left[..., 0] = rng.uniform(0.8, 0.95, (t, 21))
        left[..., 1] = rng.uniform(0.05, 0.2, (t, 21))
        frames["left_hand"] = left
    path = tmp_path / f"mp_{left_hand_found}"
    with StoreWriter(path, kind=KIND_MEDIAPIPE, parts=parts, settings={}) as writer:
        writer.write_clip({"clip_id": "c", "fps": 30.0, "width": 200, "height": 200}, frames)
    return path


def test_mediapipe_store_missing_hand_draws_nothing_in_its_region(tmp_path):
    with_hand = cv2.imread(str(render(_mediapipe_store(tmp_path, True), "c", tmp_path / "a.png")))
    no_hand = cv2.imread(str(render(_mediapipe_store(tmp_path, False), "c", tmp_path / "b.png")))
    assert with_hand.shape == no_hand.shape == (200, 200, 3)
    corner = (slice(0, 50), slice(150, 200))  # the left hand's region, away from the body
    assert (with_hand[corner] != BACKGROUND).any()
    assert (no_hand[corner] == BACKGROUND).all()
    # the right hand (bottom-left) is drawn in both
    assert (no_hand[155:195, 5:45] != BACKGROUND).any()
