"""Interop against the anchors' own code: PYSKL's 2D writer output in, PoseDataset-style loading of
our exports out, MMN's MA-52 containers as its loader reads them, and complete Codabench files."""
from __future__ import annotations

import os.path as osp
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.importers import export_cmd, import_group
from piumr_skel.data.labels import match_store, read_labels
from piumr_skel.skeleton.layouts import HALPE44_INDICES, MP_POSE_NAMES, get_layout
from piumr_skel.tools.importers import ImportFormatError, export_pyskl, import_mmn, import_pyskl
from pose_extract import open_store

ANN_KEYS = {"frame_dir", "img_shape", "original_shape", "total_frames", "keypoint", "keypoint_score"}


def _dump(obj, path: Path) -> Path:
    with path.open("wb") as fh:
        pickle.dump(obj, fh)
    return path


def pyskl_writer_output(lines: list[str], people: list[int], seed: int = 0) -> list[dict]:
    """What PYSKL's tools/data/custom_2d_skeleton.py dumps (non-compressed) for a video list: a bare
    list; frame_dir = basename without suffix; `label` only when the line has one; img_shape from
    the first frame; (M, T, 17, 2) keypoints and (M, T, 17) scores in float16 (M = most people
    detected in one frame, absent ones zero); num_person_raw; no original_shape."""
    rng = np.random.default_rng(seed)
    annos = []
    for line, m in zip(lines, people):
        x = line.split()
        anno = dict(frame_dir=osp.basename(x[0]).split(".")[0], filename=x[0])
        if len(x) == 2:
            anno["label"] = int(x[1])
        t = int(rng.integers(3, 6))
        kp = np.zeros((m, t, 17, 3), dtype=np.float32)
        kp[..., :2] = rng.uniform(5, 300, (m, t, 17, 2))
        kp[..., 2] = rng.uniform(0.2, 1.0, (m, t, 17))
        anno["img_shape"] = (240, 320)
        anno["total_frames"] = t
        anno["num_person_raw"] = m
        anno["keypoint"] = kp[..., :2].astype(np.float16)
        anno["keypoint_score"] = kp[..., 2].astype(np.float16)
        anno.pop("filename")
        annos.append(anno)
    return annos


def pose_dataset_load(path: Path, split: str | None = None, data_prefix: str = "") -> list[dict]:
    """The loading path of PYSKL's PoseDataset.load_pkl_annotations (MMAction2 1.x's
    load_data_list is the same), without mmcv: then every sample is read as the pipeline does."""
    with path.open("rb") as fh:
        data = pickle.load(fh)
    if split:
        split_lists, data = data["split"], data["annotations"]
        identifier = "filename" if "filename" in data[0] else "frame_dir"
        data = [x for x in data if x[identifier] in split_lists[split]]
    for item in data:
        if "frame_dir" in item:
            item["frame_dir"] = osp.join(data_prefix, item["frame_dir"])
    for item in data:  # PoseDecode / GeneratePoseTarget / FormatGCNInput read these
        m, t, v, c = item["keypoint"].shape
        assert c == 2 and item["keypoint"].dtype == np.float32
        assert item["keypoint_score"].shape == (m, t, v)
        assert item["total_frames"] == t and len(item["img_shape"]) == 2
    return data


# ------------------------------------------------------------------------------------ PYSKL in


def test_unlabelled_pyskl_writer_output_imports_as_unlabelled_store(tmp_path):
    anns = pyskl_writer_output(["videos/test0000.mp4", "videos/test0001.mp4", "test0002.mp4"],
                               people=[2, 0, 1])
    src = _dump(anns, tmp_path / "test.pkl")
    res = import_pyskl(src, tmp_path / "st")
    assert res.clip_ids == ["test0000", "test0001", "test0002"] and res.labels is None
    assert not (tmp_path / "st" / "labels.csv").exists()
    listed = read_labels(res.unlabelled)  # a test list for `piumr predict --test-list`
    assert listed["clip_id"].tolist() == res.clip_ids and (listed["label"] == 0).all()
    st = open_store(tmp_path / "st")
    assert np.isnan(st.load_clip("test0001")["keypoints"]).all()  # nobody detected: M = 0
    kp = st.load_clip("test0002")["keypoints"]
    np.testing.assert_array_equal(kp[..., :2], anns[2]["keypoint"][0].astype(np.float32))
    # and back out: no label key, bare list
    export_pyskl(tmp_path / "st", tmp_path / "out.pkl")
    out = pose_dataset_load(tmp_path / "out.pkl")
    assert [a["frame_dir"] for a in out] == res.clip_ids
    assert all("label" not in a for a in out)


def test_labelled_pyskl_writer_output_trains_and_exports_bare_list(tmp_path):
    lines = ["a/0003_01_0001.mp4 9", "0004_02_0005.mp4 12"]
    src = _dump(pyskl_writer_output(lines, people=[1, 3]), tmp_path / "train.pkl")
    res = import_pyskl(src, tmp_path / "st")
    assert res.unlabelled is None
    df = read_labels(res.labels)
    assert dict(zip(df["clip_id"], df["label"])) == {"0003_01_0001": 9, "0004_02_0005": 12}
    export_pyskl(tmp_path / "st", tmp_path / "out.pkl")
    with (tmp_path / "out.pkl").open("rb") as fh:
        assert isinstance(pickle.load(fh), list)  # no splits: what PoseDataset(split=None) iterates
    out = pose_dataset_load(tmp_path / "out.pkl", data_prefix="skeletons")
    assert [(a["frame_dir"], a["label"]) for a in out] == [
        ("skeletons/0003_01_0001", 9), ("skeletons/0004_02_0005", 12)]
    assert all(set(a) == ANN_KEYS | {"label"} for a in out)


def test_refused_import_leaves_nothing_behind(tmp_path):
    anns = pyskl_writer_output(["x0.mp4 1", "x1.mp4 2", "x2.mp4 3"], people=[1, 1, 1])
    anns[2]["keypoint_score"] = anns[2]["keypoint_score"][:, :1]  # the last one is broken
    with pytest.raises(ImportFormatError, match=r"annotation 2 \('x2'\)"):
        import_pyskl(_dump(anns, tmp_path / "bad.pkl"), tmp_path / "st")
    assert not (tmp_path / "st").exists()

    anns = pyskl_writer_output(["y0.mp4 1", "y1.mp4 2"], people=[1, 1])
    anns[1]["label"] = "x"
    with pytest.raises(ImportFormatError, match=r"label 'x'"):
        import_pyskl(_dump(anns, tmp_path / "bad_label.pkl"), tmp_path / "st2")
    assert not (tmp_path / "st2").exists()

    # into an existing store: nothing added, side files untouched
    import_pyskl(_dump(pyskl_writer_output(["z0.mp4 4"], people=[1]), tmp_path / "ok.pkl"),
                 tmp_path / "st3")
    before = (tmp_path / "st3" / "labels.csv").read_text()
    anns = pyskl_writer_output(["z1.mp4 5", "z2.mp4 6"], people=[1, 1])
    del anns[1]["img_shape"]
    with pytest.raises(ImportFormatError, match="img_shape"):
        import_pyskl(_dump(anns, tmp_path / "bad2.pkl"), tmp_path / "st3")
    assert open_store(tmp_path / "st3").clips()["clip_id"].tolist() == ["z0"]
    assert (tmp_path / "st3" / "labels.csv").read_text() == before


def test_compressed_pyskl_annotation_is_refused_clearly(tmp_path):
    ann = {"frame_dir": "k400_clip", "total_frames": 4, "img_shape": (240, 320), "label": 1,
           "keypoint": np.zeros((6, 17, 3), np.float16), "frame_inds": np.arange(6, dtype=np.int16)}
    with pytest.raises(ImportFormatError, match=r"\(Kinetics-style, .frame_inds.\)"):
        import_pyskl(_dump([ann], tmp_path / "k.pkl"), tmp_path / "st", layout="coco17")


def test_frame_dir_with_folders_round_trips_and_labels_match_store(tmp_path):
    anns = pyskl_writer_output(["0003_01_0001.mp4 9", "0003_01_0002.mp4 1", "0010_02_0101.mp4 3"],
                               people=[1, 1, 1])
    for a, folder in zip(anns, ["train", "train", "val"]):
        a["frame_dir"] = f"{folder}/{a['frame_dir']}"  # legal in MMAction2 (data_prefix + frame_dir)
    ids = [a["frame_dir"] for a in anns]
    data = {"split": {"train": ids[:2], "val": ids[2:]}, "annotations": anns}
    res = import_pyskl(_dump(data, tmp_path / "ann.pkl"), tmp_path / "st")
    store_ids = open_store(tmp_path / "st").clips()["clip_id"].tolist()
    assert sorted(store_ids) == sorted(ids)
    labels = read_labels(res.labels)
    kept, report = match_store(labels, store_ids)
    assert len(kept) == 3, report
    assert labels.set_index("clip_id").loc["val/0010_02_0101", "subject"] == "0010"

    export_pyskl(tmp_path / "st", tmp_path / "out.pkl")
    train = pose_dataset_load(tmp_path / "out.pkl", split="train")
    assert sorted(a["frame_dir"] for a in train) == sorted(ids[:2])
    res2 = import_pyskl(tmp_path / "out.pkl", tmp_path / "st2")
    assert sorted(res2.clip_ids) == sorted(ids)
    for cid in ids:
        np.testing.assert_array_equal(open_store(tmp_path / "st").load_clip(cid)["keypoints"],
                                      open_store(tmp_path / "st2").load_clip(cid)["keypoints"])


# ------------------------------------------------------------------------------- MediaPipe out


@pytest.fixture(scope="module")
def mp_store(tmp_path_factory):
    from piumr_skel.tools.synth import generate_store

    root = tmp_path_factory.mktemp("mp")
    res = generate_store(root / "store", num_subjects=1, clips_per_subject=2, num_classes=2, seed=0,
                         labels_dir=root)
    return res


@pytest.mark.parametrize("layout, v", [("coco17", 17), ("mp_pose", 35), ("mp_holistic", 77)])
def test_export_mediapipe_store_loads_as_pose_dataset(mp_store, tmp_path, layout, v):
    out = export_pyskl(mp_store.store, tmp_path / "mp.pkl", labels=mp_store.labels, layout=layout)
    anns = pose_dataset_load(out)
    labels = read_labels(mp_store.labels)
    st = open_store(mp_store.store)
    clips = st.clips().set_index("clip_id")
    assert sorted(a["frame_dir"] for a in anns) == sorted(clips.index)
    a = anns[0]
    assert a["keypoint"].shape[2] == v and a["label"] == int(
        labels.set_index("clip_id").loc[a["frame_dir"], "label"])
    h, w = int(clips.loc[a["frame_dir"], "height"]), int(clips.loc[a["frame_dir"], "width"])
    assert tuple(a["img_shape"]) == tuple(a["original_shape"]) == (h, w)
    pose = st.load_clip(a["frame_dir"])["pose"]
    lay = get_layout(layout)
    for name in ("nose", "left_eye", "right_wrist", "left_ankle"):  # MediaPipe point by name
        mp = MP_POSE_NAMES.index(name)
        t = np.flatnonzero(np.isfinite(pose[:, mp, 0]))[0]
        j = lay.index(name)
        np.testing.assert_allclose(a["keypoint"][0, t, j], pose[t, mp, :2] * [w, h], rtol=1e-5)
        np.testing.assert_allclose(a["keypoint_score"][0, t, j], pose[t, mp, 3], rtol=1e-6)
    assert np.isfinite(a["keypoint"]).all()  # missing points are PYSKL's (0, 0), score 0


def test_cli_exports_mediapipe_store_without_labels(mp_store, tmp_path):
    r = CliRunner().invoke(export_cmd, [str(mp_store.store), "-o", str(tmp_path / "x.pkl")])
    assert r.exit_code == 0, r.output
    anns = pose_dataset_load(tmp_path / "x.pkl")
    assert anns[0]["keypoint"].shape[2] == 17 and all("label" not in a for a in anns)
    r = CliRunner().invoke(export_cmd, [str(mp_store.store), "-o", str(tmp_path / "y.pkl"),
                                        "--layout", "halpe136"])
    assert r.exit_code != 0 and "halpe136" in r.output
    # an mp_pose export is for other toolkits: our MediaPipe layouts read MediaPipe stores only
    export_pyskl(mp_store.store, tmp_path / "mp.pkl", layout="mp_pose")
    with pytest.raises(ImportFormatError, match="reads MediaPipe store parts"):
        import_pyskl(tmp_path / "mp.pkl", tmp_path / "back", layout="mp_pose")
    assert not (tmp_path / "back").exists()


# ------------------------------------------------------------------------------------ MMN in


def mmn_release(tmp_path: Path, v: int = 136, seed: int = 0) -> tuple[Path, Path, dict]:
    """The MMN MA-52 files as its loader (feeders/feeder_ma52.py) reads them and its
    create_label_pkls.py writes the labels: data = {"annotations": [{frame_dir, total_frames,
    keypoint (M, T, V, 2), keypoint_score (M, T, V), img_shape}, ...]}; labels = a list of
    {file_name, length, label} sorted by file_name; one data clip has no label entry."""
    rng = np.random.default_rng(seed)
    anns = []
    for name in ["0010_02_0101", "0003_01_0001", "0004_02_0005"]:
        t = int(rng.integers(3, 6))
        sc = rng.uniform(0.1, 0.5, (2, t, v)).astype(np.float32)
        sc[1] += 0.5  # person 1 scores higher than person 0
        anns.append({"frame_dir": name, "total_frames": t, "img_shape": (1296, 1080),
                     "keypoint": rng.uniform(1, 1000, (2, t, v, 2)).astype(np.float32),
                     "keypoint_score": sc})
    data = {"annotations": anns}
    labelled = {"0010_02_0101": 9, "0003_01_0001": 51}
    frames = {a["frame_dir"]: a["total_frames"] for a in anns}
    label_list = [{"file_name": n, "length": frames[n], "label": labelled[n]}
                  for n in sorted(labelled)]
    return (_dump(data, tmp_path / "train_data.pkl"), _dump(label_list, tmp_path / "train_label.pkl"),
            data)


def mmn_loader(data_file: Path, label_file: Path) -> tuple[list[np.ndarray], list[int]]:
    """MMN's feeder_ma52.load_data: person 0 of each labelled clip, in label order."""
    with label_file.open("rb") as f:
        data_dict = pickle.load(f)
    with data_file.open("rb") as f:
        everything = pickle.load(f)
    keypoint = {i["frame_dir"]: i["keypoint"][0] for i in everything["annotations"]}
    return ([keypoint[info["file_name"]] for info in data_dict],
            [int(info["label"]) for info in data_dict])


@pytest.mark.parametrize("v, layout", [(136, "halpe136"), (44, "halpe44")])
def test_mmn_release_imports_what_mmn_loads(tmp_path, v, layout):
    data_file, label_file, _ = mmn_release(tmp_path, v=v)
    res = import_mmn(data_file, label_file, tmp_path / "st")
    assert res.layout == layout and res.skipped == 1
    assert res.clip_ids == ["0003_01_0001", "0010_02_0101"]
    xs, ys = mmn_loader(data_file, label_file)
    st = open_store(tmp_path / "st")
    for cid, x in zip(res.clip_ids, xs):
        np.testing.assert_array_equal(st.load_clip(cid)["keypoints"][..., :2], x)
    df = read_labels(res.labels)
    assert df["label"].tolist() == ys and df["subject"].tolist() == ["0003", "0010"]


def test_mmn_best_person_and_44_from_136(tmp_path):
    data_file, label_file, data = mmn_release(tmp_path)
    res = import_mmn(data_file, label_file, tmp_path / "st", layout="halpe44", person="best")
    assert res.layout == "halpe44"
    ann = next(a for a in data["annotations"] if a["frame_dir"] == "0003_01_0001")
    kp = open_store(tmp_path / "st").load_clip("0003_01_0001")["keypoints"]
    np.testing.assert_array_equal(kp[..., :2], ann["keypoint"][1][:, list(HALPE44_INDICES)])
    np.testing.assert_array_equal(kp[..., 2], ann["keypoint_score"][1][:, list(HALPE44_INDICES)])


def test_mmn_label_without_data_is_refused_before_writing(tmp_path):
    data_file, _, _ = mmn_release(tmp_path)
    labels = _dump([{"file_name": "0003_01_0001", "label": 1}, {"file_name": "9999_01_0001", "label": 2}],
                   tmp_path / "l.pkl")
    with pytest.raises(ImportFormatError, match=r"1 of 2 labelled clips have no annotation.*9999_01_0001"):
        import_mmn(data_file, labels, tmp_path / "st")
    assert not (tmp_path / "st").exists()
    bare = _dump([1, 2, 3], tmp_path / "bare.pkl")
    with pytest.raises(ImportFormatError, match="must name them"):
        import_mmn(data_file, bare, tmp_path / "st")


def test_cli_import_mmn_reports_skipped(tmp_path):
    data_file, label_file, _ = mmn_release(tmp_path, v=44)
    r = CliRunner().invoke(import_group, ["mmn", str(data_file), str(label_file), "-o",
                                          str(tmp_path / "st"), "--person", "best"])
    assert r.exit_code == 0, r.output
    assert "2 clips, layout halpe44" in r.output and "1 clips of the data file" in r.output


# ---------------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def run_and_store(tiny_recipe_in, tiny_store, tmp_path_factory):
    from piumr_skel.engine.config import make_config
    from piumr_skel.engine.train import train

    out = tmp_path_factory.mktemp("interop_run")
    return train(make_config(tiny_recipe_in(out / "runs", epochs=1)), echo=lambda *a, **k: None), tiny_store


def _test_list(tiny_store, path: Path, extra: list[str]) -> list[str]:
    labels = pd.read_csv(tiny_store.labels, sep=" ", header=None, names=["file", "label"])
    chosen = labels["file"].iloc[[3, 0]].tolist() + extra
    path.write_text("".join(f"{f} 0\r\n" for f in chosen))
    return chosen


@pytest.mark.slow
def test_predict_refuses_missing_clips_unless_allowed(run_and_store, tmp_path):
    from piumr_skel.data.labels import body_of_action
    from piumr_skel.engine.evaluate import predict_run

    run, tiny_store = run_and_store
    chosen = _test_list(tiny_store, tmp_path / "t.txt", ["test0000.mp4", "test0001.mp4"])
    with pytest.raises(ValueError, match=r"2 of 4 test clips are not in the store .*test0000, test0001"):
        predict_run(run, out=tmp_path / "sub", test_list=str(tmp_path / "t.txt"), device="cpu")
    said = []
    predict_run(run, out=tmp_path / "sub", test_list=str(tmp_path / "t.txt"), device="cpu",
                allow_missing=True, echo=said.append)
    table = pd.read_csv(tmp_path / "sub" / "prediction.csv")
    assert table["vid"].tolist() == chosen  # every row, in list order
    assert (tmp_path / "sub" / "missing_clips.txt").read_text().split() == ["test0000", "test0001"]
    assert "2 of 4 test clips" in said[0]
    actions = table[[f"action_pred_{i}" for i in range(1, 6)]].to_numpy()
    bodies = table[[f"body_pred_{i}" for i in range(1, 6)]].to_numpy()
    assert (actions[2:] == [0, 1, 2, 3, 4]).all()  # uniform rows
    assert (bodies == body_of_action(actions)).all()  # the official derivation by default


@pytest.mark.slow
def test_predict_body_from_scores_and_cli(run_and_store, tmp_path):
    from cli.train import predict_cmd

    run, tiny_store = run_and_store
    _test_list(tiny_store, tmp_path / "t.txt", [])
    r = CliRunner().invoke(predict_cmd, [str(run), "--test-list", str(tmp_path / "t.txt"), "-o",
                                         str(tmp_path / "sub"), "--device", "cpu",
                                         "--body-from", "scores"])
    assert r.exit_code == 0, r.output
    bodies = pd.read_csv(tmp_path / "sub" / "prediction.csv").filter(like="body_pred").to_numpy()
    assert all(len(set(row)) == 5 for row in bodies)  # 5 distinct bodies ranked by summed scores
    assert not (tmp_path / "sub" / "missing_clips.txt").exists()
    assert "--body-from" in CliRunner().invoke(predict_cmd, ["--help"]).output
    r = CliRunner().invoke(predict_cmd, [str(run), "--test-list", str(tmp_path / "missing.txt"),
                                         "-o", str(tmp_path / "s2"), "--device", "cpu"])
    assert r.exit_code != 0 and "missing.txt" in r.output
