"""Importers: PYSKL and MMN fixture pickles -> imported store -> PYSKL pickle -> store, losslessly."""
from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.importers import export_cmd, import_group
from piumr_skel.data.labels import read_labels
from piumr_skel.data.splits import read_split_file
from piumr_skel.tools.importers import (
    ImportFormatError,
    export_pyskl,
    import_mmn,
    import_pyskl,
    pick_person,
    read_pyskl,
)
from pose_extract import open_store

V = 17  # COCO-17, the layout of PYSKL's 2D NTU / FineGYM releases


def _person(rng: np.random.Generator, t: int, v: int, score: float) -> tuple[np.ndarray, np.ndarray]:
    xy = rng.uniform(10, 300, size=(t, v, 2)).astype(np.float32)
    sc = np.full((t, v), score, np.float32) + rng.uniform(-0.05, 0.05, (t, v)).astype(np.float32)
    return xy, sc


def _pyskl_fixture(path: Path, v: int = V, seed: int = 0) -> dict:
    """Three clips as PYSKL writes them: a two-person clip (the second person scores higher), an
    NTU-named clip with missing joints and a whole missing frame, and a clip of another size."""
    rng = np.random.default_rng(seed)
    anns = []
    a_xy, a_sc = zip(_person(rng, 5, v, 0.3), _person(rng, 5, v, 0.9))
    anns.append({"frame_dir": "0003_01_0001", "total_frames": 5, "img_shape": (240, 320),
                 "original_shape": (240, 320), "label": 9,
                 "keypoint": np.stack(a_xy), "keypoint_score": np.stack(a_sc)})
    b_xy, b_sc = _person(rng, 4, v, 0.8)
    b_xy[1, 3] = 0.0  # OpenPose/PYSKL missing joint: (0, 0) with score 0
    b_sc[1, 3] = 0.0
    b_xy[2] = 0.0     # nobody found in frame 2
    b_sc[2] = 0.0
    anns.append({"frame_dir": "S001C001P007R001A001", "total_frames": 4, "img_shape": (480, 640),
                 "original_shape": (480, 640), "label": 3,
                 "keypoint": b_xy[None], "keypoint_score": b_sc[None]})
    c_xy, c_sc = _person(rng, 3, v, 0.7)
    anns.append({"frame_dir": "clip_c", "total_frames": 3, "img_shape": (100, 200),
                 "original_shape": (100, 200), "label": 0,
                 "keypoint": c_xy[None], "keypoint_score": c_sc[None]})
    data = {"split": {"xsub_train": ["0003_01_0001", "S001C001P007R001A001"],
                      "xsub_val": ["clip_c"],
                      "xview_train": ["S001C001P007R001A001", "clip_c"]},
            "annotations": anns}
    with path.open("wb") as fh:
        pickle.dump(data, fh)
    return data


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _split_dict(path: Path) -> dict[str, list[str]]:
    return json.loads(path.read_text())


def test_import_pyskl_keeps_best_person_missing_joints_labels_and_splits(tmp_path):
    data = _pyskl_fixture(tmp_path / "ann.pkl")
    res = import_pyskl(tmp_path / "ann.pkl", tmp_path / "store")
    assert res.layout == "coco17"
    assert res.clip_ids == ["0003_01_0001", "S001C001P007R001A001", "clip_c"]

    st = open_store(tmp_path / "store")
    assert st.info["kind"] == "imported" and st.info["layout"] == "coco17"
    assert tuple(st.info["parts"]["keypoints"]) == (V, 3)
    clips = st.clips().set_index("clip_id")
    assert (clips.loc["S001C001P007R001A001", ["width", "height", "num_frames"]].tolist()
            == [640, 480, 4])

    a = st.load_clip("0003_01_0001")["keypoints"]
    ann = data["annotations"][0]
    assert a.shape == (5, V, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a[..., :2], ann["keypoint"][1])  # the higher-scoring person
    np.testing.assert_array_equal(a[..., 2], ann["keypoint_score"][1])

    b = st.load_clip("S001C001P007R001A001")["keypoints"]
    assert np.isnan(b[1, 3]).all() and np.isfinite(np.delete(b[1], 3, axis=0)).all()
    assert np.isnan(b[2]).all()
    np.testing.assert_array_equal(b[0, :, :2], data["annotations"][1]["keypoint"][0, 0])

    labels = {r["clip_id"]: r for r in _csv(res.labels)}
    assert {c: int(r["label"]) for c, r in labels.items()} == {
        "0003_01_0001": 9, "S001C001P007R001A001": 3, "clip_c": 0}
    assert labels["0003_01_0001"]["subject"] == "0003"
    assert labels["S001C001P007R001A001"]["subject"] == "P007"
    assert _split_dict(res.split) == data["split"]
    # the file protocol knows train/val/test: one CSV per PYSKL protocol prefix
    assert sorted(p.name for p in res.protocol_splits) == ["split_xsub.csv", "split_xview.csv"]
    assert read_split_file(tmp_path / "store" / "split_xsub.csv") == {
        "train": ["0003_01_0001", "S001C001P007R001A001"], "val": ["clip_c"]}


def test_labels_file_reads_with_read_labels(tmp_path):
    _pyskl_fixture(tmp_path / "ann.pkl")
    res = import_pyskl(tmp_path / "ann.pkl", tmp_path / "store")
    df = read_labels(res.labels)
    assert dict(zip(df["clip_id"], df["label"].astype(int))) == {
        "0003_01_0001": 9, "S001C001P007R001A001": 3, "clip_c": 0}


def test_pyskl_round_trip_is_lossless(tmp_path):
    data = _pyskl_fixture(tmp_path / "ann.pkl")
    import_pyskl(tmp_path / "ann.pkl", tmp_path / "s1")
    export_pyskl(tmp_path / "s1", tmp_path / "out.pkl")

    with (tmp_path / "out.pkl").open("rb") as fh:
        out = pickle.load(fh)
    assert out["split"] == data["split"]
    by_id = {a["frame_dir"]: a for a in out["annotations"]}
    b = by_id["S001C001P007R001A001"]
    assert b["keypoint"].shape == (1, 4, V, 2) and b["keypoint_score"].shape == (1, 4, V)
    assert tuple(b["img_shape"]) == (480, 640) and b["label"] == 3 and b["total_frames"] == 4
    # missing joints go back to PYSKL's (0, 0), score 0
    assert (b["keypoint"][0, 2] == 0).all() and (b["keypoint_score"][0, 2] == 0).all()
    np.testing.assert_array_equal(b["keypoint"][0], data["annotations"][1]["keypoint"][0])

    import_pyskl(tmp_path / "out.pkl", tmp_path / "s2")
    s1, s2 = open_store(tmp_path / "s1"), open_store(tmp_path / "s2")
    for cid in ["0003_01_0001", "S001C001P007R001A001", "clip_c"]:
        np.testing.assert_array_equal(s1.load_clip(cid)["keypoints"],
                                      s2.load_clip(cid)["keypoints"])  # NaN == NaN here
    assert _csv(tmp_path / "s1" / "labels.csv") == _csv(tmp_path / "s2" / "labels.csv")
    assert _split_dict(tmp_path / "s1" / "splits.json") == _split_dict(tmp_path / "s2" / "splits.json")


def test_reimport_into_same_store_does_not_duplicate(tmp_path):
    _pyskl_fixture(tmp_path / "ann.pkl")
    import_pyskl(tmp_path / "ann.pkl", tmp_path / "store")
    import_pyskl(tmp_path / "ann.pkl", tmp_path / "store")
    assert len(open_store(tmp_path / "store").clips()) == 3
    assert len(_csv(tmp_path / "store" / "labels.csv")) == 3


@pytest.mark.parametrize("v, name", [(18, "openpose18"), (28, "openpose28")])
def test_layout_chosen_by_number_of_joints(tmp_path, v, name):
    _pyskl_fixture(tmp_path / "ann.pkl", v=v)
    res = import_pyskl(tmp_path / "ann.pkl", tmp_path / "store")
    assert res.layout == name
    assert open_store(tmp_path / "store").load_clip("clip_c")["keypoints"].shape == (3, v, 3)


def _write(path: Path, obj) -> Path:
    with path.open("wb") as fh:
        pickle.dump(obj, fh)
    return path


def test_pyskl_errors_name_file_annotation_and_shape(tmp_path):
    data = _pyskl_fixture(tmp_path / "ann.pkl")

    _pyskl_fixture(tmp_path / "v13.pkl", v=13)
    with pytest.raises(ImportFormatError, match=r"v13\.pkl.*13 joints"):
        import_pyskl(tmp_path / "v13.pkl", tmp_path / "s_v13")

    anns = [dict(a) for a in data["annotations"]]
    anns[1]["keypoint_score"] = anns[1]["keypoint_score"][:, :3]
    p = _write(tmp_path / "score.pkl", {"split": {}, "annotations": anns})
    with pytest.raises(ImportFormatError,
                       match=r"score\.pkl: annotation 1 \('S001C001P007R001A001'\).*\(1, 4, 17\)"):
        import_pyskl(p, tmp_path / "s_score")

    anns = [dict(a) for a in data["annotations"]]
    anns[2]["keypoint"] = np.zeros((1, 3, 18, 2), np.float32)
    anns[2]["keypoint_score"] = np.zeros((1, 3, 18), np.float32)
    p = _write(tmp_path / "mixed.pkl", {"split": {}, "annotations": anns})
    with pytest.raises(ImportFormatError, match=r"mixed\.pkl: annotation 2 \('clip_c'\).*17"):
        import_pyskl(p, tmp_path / "s_mixed")

    p = _write(tmp_path / "dict.pkl", {"foo": 1})
    with pytest.raises(ImportFormatError, match=r"dict\.pkl: not a PYSKL annotation pickle"):
        read_pyskl(p)

    p = _write(tmp_path / "split.pkl", {"split": {"train": ["nope"]}, "annotations": anns[:1]})
    with pytest.raises(ImportFormatError, match=r"split\.pkl: split 'train'.*'nope'"):
        import_pyskl(p, tmp_path / "s_split")

    with pytest.raises(ImportFormatError, match=r"bad_layout.*not in piumr_skel\.skeleton\.layouts"):
        import_pyskl(tmp_path / "ann.pkl", tmp_path / "s_lay", layout="bad_layout")

    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ImportFormatError, match=r"junk\.pkl: cannot be read as a pickle"):
        import_pyskl(tmp_path / "junk.pkl", tmp_path / "s_junk")


def test_pick_person_takes_highest_mean_score():
    score = np.zeros((3, 4, 5), np.float32)
    score[2] = 0.5
    score[1, :1] = 1.0  # one confident frame does not beat a steady person
    assert pick_person(np.zeros((3, 4, 5, 2)), score) == 2


# ---------------------------------------------------------------------------------- MMN

def test_mmn_stacked_array_with_int_labels(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.uniform(1, 1000, size=(3, 6, 136, 2)).astype(np.float32)
    data[0, 2, 5] = 0.0  # not detected
    _write(tmp_path / "train_data.pkl", data)
    _write(tmp_path / "train_label.pkl", [4, 0, 51])
    res = import_mmn(tmp_path / "train_data.pkl", tmp_path / "train_label.pkl", tmp_path / "st")
    assert res.layout == "halpe136" and res.clip_ids == ["train_00000", "train_00001", "train_00002"]
    st = open_store(tmp_path / "st")
    kp = st.load_clip("train_00000")["keypoints"]
    assert kp.shape == (6, 136, 3)
    assert np.isnan(kp[2, 5]).all()
    np.testing.assert_array_equal(kp[0, :, :2], data[0, 0])
    assert (kp[1, :, 2] == 1).all()  # two channels: detected points get score 1
    assert [int(r["label"]) for r in _csv(res.labels)] == [4, 0, 51]
    assert _split_dict(res.split) == {"train": res.clip_ids}
    clips = st.clips().set_index("clip_id")
    assert clips.loc["train_00001", ["width", "height"]].tolist() == [1080, 1296]


def test_mmn_list_of_arrays_and_named_labels_merge_with_other_split(tmp_path):
    rng = np.random.default_rng(2)
    train = [rng.uniform(1, 900, size=(t, 136, 3)).astype(np.float32) for t in (4, 7)]
    _write(tmp_path / "train_data.pkl", train)
    _write(tmp_path / "train_label.pkl", (["0003_01_0001.mp4", "0004_02_0005.mp4"], [9, 12]))
    # MS-G3D style (N, C, T, V, M): person 1 has the higher score
    val = np.zeros((1, 3, 5, 136, 2), np.float32)
    val[0, :2, :, :, 0] = 5.0
    val[0, 2, :, :, 0] = 0.2
    val[0, :2, :, :, 1] = 7.0
    val[0, 2, :, :, 1] = 0.9
    _write(tmp_path / "val_data.pkl", val)
    _write(tmp_path / "val_label.pkl", [["0010_02_0101.mp4"], np.array([3])])

    import_mmn(tmp_path / "train_data.pkl", tmp_path / "train_label.pkl", tmp_path / "st")
    res = import_mmn(tmp_path / "val_data.pkl", tmp_path / "val_label.pkl", tmp_path / "st",
                     person="best")
    st = open_store(tmp_path / "st")
    a = st.load_clip("0004_02_0005")["keypoints"]
    np.testing.assert_array_equal(a, train[1])
    v = st.load_clip("0010_02_0101")["keypoints"]
    assert np.allclose(v[..., :2], 7.0) and np.allclose(v[..., 2], 0.9)
    labels = {r["clip_id"]: (int(r["label"]), r["subject"]) for r in _csv(res.labels)}
    assert labels == {"0003_01_0001": (9, "0003"), "0004_02_0005": (12, "0004"),
                      "0010_02_0101": (3, "0010")}
    both = {"train": ["0003_01_0001", "0004_02_0005"], "val": ["0010_02_0101"]}
    assert _split_dict(res.split) == both
    assert read_split_file(tmp_path / "st" / "split.csv") == both


def test_mmn_errors(tmp_path):
    good = np.ones((2, 3, 136, 2), np.float32)
    _write(tmp_path / "d.pkl", good)
    _write(tmp_path / "l.pkl", [1, 2])
    _write(tmp_path / "l3.pkl", [1, 2, 3])
    _write(tmp_path / "ldict.pkl", {"labels": [1, 2]})
    _write(tmp_path / "bad_shape.pkl", np.ones((2, 3, 50, 2), np.float32))
    with pytest.raises(ImportFormatError, match=r"ldict\.pkl: expected a list of integer labels"):
        import_mmn(tmp_path / "d.pkl", tmp_path / "ldict.pkl", tmp_path / "s1")
    with pytest.raises(ImportFormatError, match=r"d\.pkl: 2 samples but .*l3\.pkl has 3 labels"):
        import_mmn(tmp_path / "d.pkl", tmp_path / "l3.pkl", tmp_path / "s2")
    with pytest.raises(ImportFormatError, match=r"bad_shape\.pkl: data has shape \(2, 3, 50, 2\)"):
        import_mmn(tmp_path / "bad_shape.pkl", tmp_path / "l.pkl", tmp_path / "s3")
    with pytest.raises(FileNotFoundError, match=r"missing\.pkl"):
        import_mmn(tmp_path / "missing.pkl", tmp_path / "l.pkl", tmp_path / "s4")


# ---------------------------------------------------------------------------------- CLI

def test_cli_import_export_round_trip(tmp_path):
    _pyskl_fixture(tmp_path / "ann.pkl")
    runner = CliRunner()
    r = runner.invoke(import_group, ["pyskl", str(tmp_path / "ann.pkl"), "-o", str(tmp_path / "st")])
    assert r.exit_code == 0, r.output
    assert "3 clips, layout coco17" in r.output
    r = runner.invoke(export_cmd, [str(tmp_path / "st"), "--format", "pyskl",
                                   "-o", str(tmp_path / "x.pkl")])
    assert r.exit_code == 0, r.output
    assert len(read_pyskl(tmp_path / "x.pkl")[0]) == 3

    r = runner.invoke(import_group, ["pyskl", str(tmp_path / "x.pkl"), "-o", str(tmp_path / "s2"),
                                     "--layout", "no_such_layout"])
    assert r.exit_code != 0 and "no_such_layout" in r.output
