"""Extraction of the 4 real MA-52 clips in ../shared/ma52/videos (skipped when that folder is absent)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_extract import ExtractSettings, extract_videos, open_store

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "ma52" / "videos"

pytestmark = [
    pytest.mark.real,
    pytest.mark.slow,  # the module's fixture extracts the 4 clips (about 30 s)
    pytest.mark.skipif(not VIDEOS.is_dir(), reason=f"real MA-52 clips not found at {VIDEOS}"),
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    """The folder extracted in this process, and its first 2 clips again by 2 worker processes."""
    base = tmp_path_factory.mktemp("real")
    settings = ExtractSettings()
    a = extract_videos(VIDEOS, base / "one", settings=settings, workers=1, progress=False)
    b = extract_videos(VIDEOS, base / "two", settings=settings, workers=2, progress=False, limit=2)
    assert not a.failed and not b.failed
    return base / "one", base / "two"


def _cv2_counts(path: Path) -> tuple[int, float, int, int]:
    cap = cv2.VideoCapture(str(path))
    n = 0
    ok, frame = cap.read()
    h, w = frame.shape[:2]
    while ok:
        n += 1
        ok, _ = cap.read()
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps, w, h


def test_clips_match_the_videos(stores: tuple[Path, Path]) -> None:
    clips = open_store(stores[0]).clips().set_index("clip_id")
    assert sorted(clips.index) == sorted(p.stem for p in VIDEOS.glob("*.mp4"))
    for path in VIDEOS.glob("*.mp4"):
        n, fps, w, h = _cv2_counts(path)
        row = clips.loc[path.stem]
        assert row["num_frames"] == n and row["fps"] == pytest.approx(fps)
        assert (row["width"], row["height"]) == (w, h) == (1080, 1296)
        assert row["subject"] == path.stem[:4] and row["status"] == "ok"


def test_pose_found_and_coordinates_inside_the_image(stores: tuple[Path, Path]) -> None:
    st = open_store(stores[0])
    clips = st.clips().set_index("clip_id")
    for cid, arrs in st.load_all().items():
        pose = arrs["pose"]
        found = ~np.isnan(pose).all(axis=(1, 2))
        assert found.mean() >= 0.9, f"{cid}: pose in only {found.mean():.0%} of frames"
        assert clips.loc[cid, "rate_pose"] == pytest.approx(found.mean())
        seen = pose[found][..., 3] > 0.5             # visible points must lie in the frame
        xy = pose[found][..., :2][seen]
        assert ((xy > -0.05) & (xy < 1.05)).all(), f"{cid}: pose point outside the image"
        for hand in ("left_hand", "right_hand"):
            h = arrs[hand][~np.isnan(arrs[hand]).all(axis=(1, 2))][..., :2]
            assert ((h > -0.05) & (h < 1.05)).all(), f"{cid}: {hand} point outside the image"
        world = arrs["pose_world"][found][..., :3]
        assert np.abs(world).max() < 2.0            # metres around the hips
        assert arrs["face"].shape[1:] == (24, 3)


def test_two_runs_identical(stores: tuple[Path, Path]) -> None:
    a, b = open_store(stores[0]), open_store(stores[1])
    ids = list(b.clips()["clip_id"])
    assert len(ids) == 2
    assert a.clips().iloc[:2].reset_index(drop=True).equals(b.clips())
    la, lb = a.load_all(ids), b.load_all(ids)
    for cid in ids:
        for part in la[cid]:
            np.testing.assert_array_equal(la[cid][part], lb[cid][part], err_msg=f"{cid} {part}")


def test_train_and_eval_on_the_real_clips_through_the_cli(stores: tuple[Path, Path], real_split,
                                                         tmp_path: Path) -> None:
    """`piumr train` (mp_holistic, ST-GCN + TFAM + GIRL) and `piumr eval` on the 4 extracted real clips.

    Four clips are a smoke test of the whole real path (MediaPipe keypoints → cache → model → metrics),
    not an accuracy figure.
    """
    from click.testing import CliRunner

    from cli.main import cli

    labels, split = real_split.labels, real_split.split
    runner = CliRunner()
    result = runner.invoke(cli, [
        "train", "--store", str(stores[0]), "--labels", str(labels), "--split", "file", "--split-file", str(split),
        "--layout", "mp_holistic", "--backbone", "stgcn", "--base-channels", "4", "--num-blocks", "3",
        "--clip-len", "16", "--epochs", "2", "--batch-size", "2", "--warmup-epochs", "0", "--num-workers", "0",
        "--test-clips", "1", "--tfam", "--girl", "--girl-warmup", "1", "--girl-num-groups", "2",
        "--device", "cpu", "--out-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
        "--name", "real"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "real"
    assert (run / "best.pt").is_file() and (run / "metrics.csv").is_file()
    result = runner.invoke(cli, ["eval", str(run), "--split", "test", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Action Top-1" in result.output
