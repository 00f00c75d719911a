"""`piumr import pose`: pose-format `.pose` files (MediaPipe Holistic) -> a MediaPipe keypoint store.

The test files are written by pose-format itself, with the header of its own Holistic estimator
(`pose_format.utils.holistic.holistic_components`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("pose_format", reason="pose-format is not installed (pip install pose-format)")

from pose_format import Pose, PoseHeader  # noqa: E402
from pose_format.numpy import NumPyPoseBody  # noqa: E402
from pose_format.pose_header import PoseHeaderDimensions  # noqa: E402

from cli.importers import import_group  # noqa: E402

W, H = 640, 480
# point offsets in pose-format's Holistic order: pose 33, face 468, left hand 21, right hand 21, world 33
POSE, FACE, LH, RH, WORLD = 0, 33, 501, 522, 543


def _holistic_pose(frames: int, *, people: int = 1, fps: float = 25.0, seed: int = 0,
                   components: list[str] | None = None) -> Pose:
    """A Holistic .pose as pose-format's estimator writes it: x, y pixels of a W x H frame, z as
    MediaPipe's, pose confidence = visibility, hand confidence 1; a part not found is 0 with
    confidence 0 (pose-format masks it). Frame 0 has no left hand; pose point 15 (left wrist)
    is lost in frame 1."""
    from pose_format.utils.holistic import holistic_components

    comps = holistic_components()
    if components is not None:
        comps = [c for c in comps if c.name in components]
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(W, H), components=comps)
    n = header.total_points()
    rng = np.random.default_rng(seed)
    data = np.stack([rng.uniform(10, W - 10, (frames, people, n)), rng.uniform(10, H - 10, (frames, people, n)),
                     rng.uniform(-0.3, 0.3, (frames, people, n))], axis=-1).astype(np.float32)
    conf = rng.uniform(0.2, 1.0, (frames, people, n)).astype(np.float32)
    if components is None:
        conf[:, :, LH:WORLD] = 1.0
        data[0, :, LH:RH] = 0
        conf[0, :, LH:RH] = 0
    data[1, :, POSE + 15] = 0
    conf[1, :, POSE + 15] = 0
    return Pose(header, NumPyPoseBody(fps=fps, data=data, confidence=conf))


def _write(pose: Pose, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pose.write(fh)
    return path


def _corpus(root: Path) -> dict[str, Pose]:
    """Three clips, one in a subfolder; 'c' holds two people."""
    poses = {"a": _holistic_pose(5, fps=25.0, seed=1), "b": _holistic_pose(3, fps=30.0, seed=2),
             "c": _holistic_pose(4, people=2, seed=3)}
    for name, pose in poses.items():
        _write(pose, root / ("sub" if name == "b" else "") / f"{name}.pose")
    return poses


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _invoke(src: Path, out: Path, labels: Path, *extra: str):
    return CliRunner().invoke(import_group, ["pose", str(src), "-o", str(out), "--labels", str(labels),
                                             *extra])


def _one_line_error(r, *texts: str) -> None:
    assert r.exit_code != 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    for text in texts:
        assert text in lines[0], (text, lines[0])


def test_holistic_round_trip(tmp_path):
    from piumr_skel.data.labels import read_class_names, read_labels
    from pose_extract import open_store

    poses = _corpus(tmp_path / "in")
    labels = _csv(tmp_path / "labels.csv", "clip_id,gloss,signer\na.pose,HELLO,s1\nb,BYE,s2\nc,HELLO,\n")
    out = tmp_path / "store"
    r = _invoke(tmp_path / "in", out, labels, "--label-key", "gloss", "--subject-key", "signer")
    assert r.exit_code == 0, r.output
    assert "3 clips, layout mp_holistic" in r.output
    assert "not imported: FACE_LANDMARKS, POSE_WORLD_LANDMARKS" in r.output
    assert "1 files hold more than one person; kept: person 0 (e.g. c)" in r.output

    st = open_store(out)
    assert st.info["kind"] == "mediapipe_holistic" and st.info["settings"]["format"] == "pose_format"
    clips = st.clips().set_index("clip_id")
    assert sorted(clips.index) == ["a", "b", "c"]
    assert clips.loc["b", "rel_path"] == "sub/b.pose" and clips.loc["b", "fps"] == 30.0
    assert clips.loc["a", "fps"] == 25.0 and list(clips["num_frames"].loc[["a", "b", "c"]]) == [5, 3, 4]
    assert (clips["width"] == W).all() and (clips["height"] == H).all()
    assert json.loads(clips.loc["c", "settings"])["people"] == 2
    assert clips.loc["a", "rate_left_hand"] == 0.8 and clips.loc["a", "rate_right_hand"] == 1.0

    for cid, pose in poses.items():
        x = st.load_clip(cid)
        d = np.asarray(pose.body.data.data)[:, 0]
        c = np.asarray(pose.body.confidence)[:, 0]
        d = np.where((c == 0)[..., None], np.nan, d)                    # what the store should miss
        np.testing.assert_allclose(x["pose"][..., :2] * [W, H], d[:, POSE:FACE, :2], rtol=1e-5)
        np.testing.assert_array_equal(x["pose"][..., 2], d[:, POSE:FACE, 2])                # z as is
        np.testing.assert_array_equal(x["pose"][..., 3], np.where(np.isnan(d[:, POSE:FACE, 0]), np.nan,
                                                                  c[:, POSE:FACE]))         # visibility
        np.testing.assert_allclose(x["left_hand"] * [W, H, 1], d[:, LH:RH], rtol=1e-5)
        np.testing.assert_allclose(x["right_hand"] * [W, H, 1], d[:, RH:WORLD], rtol=1e-5)
        assert np.isnan(x["pose"][1, 15]).all() and not np.isnan(x["pose"][0]).any()   # masked -> missing
        assert np.isnan(x["left_hand"][0]).all()                                        # not found -> null
        assert np.isnan(x["face"]).all() and np.isnan(x["pose_world"]).all()

    got = read_labels(out / "labels.csv")
    assert dict(zip(got["clip_id"], got["label"])) == {"a": 1, "b": 0, "c": 1}
    assert dict(zip(got["clip_id"], got["subject"])) == {"a": "s1", "b": "s2", "c": ""}
    assert read_class_names(out / "label_name.txt") == ["BYE", "HELLO"]
    assert not list(tmp_path.glob(".store*"))


def test_store_reads_with_mp_holistic(tmp_path):
    from piumr_skel.data.dataset import ClipCache

    _write(_holistic_pose(4), tmp_path / "in" / "0003_01_0001.pose")
    out = tmp_path / "store"
    r = _invoke(tmp_path / "in", out, _csv(tmp_path / "l.csv", "clip_id,label\n0003_01_0001,2\n"))
    assert r.exit_code == 0, r.output
    assert "1 subjects: 0003 1" in r.output and "(3 classes)" in r.output   # integer ids kept
    cache = ClipCache.build(out, "mp_holistic", tmp_path / "cache")
    assert not cache.failed, cache.failed
    assert np.asarray(cache["0003_01_0001"]).shape == (4, 77, 3)
    assert cache.subject("0003_01_0001") == "0003"


def test_pose_only_file_gives_mp_pose_and_unlabelled_rows(tmp_path):
    from pose_extract import open_store

    src = _write(_holistic_pose(3, components=["POSE_LANDMARKS"]), tmp_path / "p.pose")
    out = tmp_path / "store"
    r = _invoke(src, out, _csv(tmp_path / "l.csv", "clip_id,label\np,\n"))
    assert r.exit_code == 0, r.output
    assert "1 clips, layout mp_pose" in r.output and "frames found: pose 100%" in r.output
    assert "test_list.csv" in r.output and not (out / "labels.csv").exists()
    clips = open_store(out).clips().set_index("clip_id")
    assert np.isnan(clips.loc["p", "rate_left_hand"])          # no hand component: unknown, not 0
    x = open_store(out).load_clip("p")
    assert np.isnan(x["left_hand"]).all() and np.isfinite(x["pose"][0]).all()

    _write(_holistic_pose(3), tmp_path / "h.pose")          # a holistic file beside it: refused
    r = _invoke(tmp_path, tmp_path / "mixed", _csv(tmp_path / "l2.csv", "clip_id,label\np,A\nh,B\n"))
    _one_line_error(r, "mixes kinds", "separate stores")
    assert not (tmp_path / "mixed").exists()


def test_truncated_file_is_one_line_naming_it(tmp_path):
    good = _write(_holistic_pose(5), tmp_path / "in" / "good.pose")
    raw = good.read_bytes()
    bad = tmp_path / "in" / "cut.pose"
    bad.write_bytes(raw[: len(raw) - 1000])
    labels = _csv(tmp_path / "l.csv", "clip_id,label\ngood,A\ncut,B\n")
    r = _invoke(tmp_path / "in", tmp_path / "store", labels)
    _one_line_error(r, str(bad), "truncated or corrupt")
    assert not (tmp_path / "store").exists() and not list(tmp_path.glob(".store*"))


def test_unsupported_components_are_named(tmp_path):
    from pose_format.utils.generic import fake_openpose_135_pose

    src = _write(fake_openpose_135_pose(3), tmp_path / "op.pose")
    r = _invoke(src, tmp_path / "store", _csv(tmp_path / "l.csv", "clip_id,label\nop,A\n"))
    _one_line_error(r, str(src), "BODY_135", "components found", "supported: POSE_LANDMARKS")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("rows, text", [
    ("a,A\nb,B\n", "no row for 1 of the 3 .pose files, e.g. 'c'"),
    ("a,A\nb,B\nc,A\nzz,B\n", "1 rows name no .pose file of the input, e.g. 'zz'"),
    ("a,A\nb,B\na,B\n", "clip 'a' listed twice"),
])
def test_label_csv_must_match_the_files(tmp_path, rows, text):
    _corpus(tmp_path / "in")
    labels = _csv(tmp_path / "l.csv", "clip_id,label\n" + rows)
    r = _invoke(tmp_path / "in", tmp_path / "store", labels)
    _one_line_error(r, str(labels), text)
    assert not (tmp_path / "store").exists()


def test_nan_and_empty_files_are_refused(tmp_path):
    pose = _holistic_pose(3)
    pose.body.data.data[2, 0, RH + 4, 1] = np.nan
    nan = _write(pose, tmp_path / "nan.pose")
    labels = _csv(tmp_path / "l.csv", "clip_id,label\nnan,A\n")
    _one_line_error(_invoke(nan, tmp_path / "s1", labels), str(nan),
                    "frame 2, RIGHT_HAND_LANDMARKS point 'THUMB_TIP'")
    empty = _write(_empty_pose(), tmp_path / "empty.pose")
    labels = _csv(tmp_path / "l2.csv", "clip_id,label\nempty,A\n")
    _one_line_error(_invoke(empty, tmp_path / "s2", labels), str(empty), "no frames")


def _empty_pose() -> Pose:
    pose = _holistic_pose(2)
    return Pose(pose.header, NumPyPoseBody(fps=25.0, data=np.asarray(pose.body.data.data)[:0],
                                           confidence=np.asarray(pose.body.confidence)[:0]))
