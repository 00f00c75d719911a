"""`piumr import landmarks`: MediaPipe Holistic arrays in an .npz -> a MediaPipe keypoint store."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.importers import import_group

SIGNS = Path(__file__).resolve().parents[2] / "shared" / "signs_dev" / "fingerspelling_dev.npz"


def _arrays(seed: int = 0, lengths=(3, 4, 2), C: int = 4) -> dict[str, np.ndarray]:
    """Three clips in 'other' units (shoulder width ~200): clip 0 has no left hand, clip 1 loses
    its right hand in frame 2, clip 2 has an all-zero pose frame and a zeroed pose point."""
    rng = np.random.default_rng(seed)
    F = sum(lengths)
    data = rng.uniform(50, 450, size=(F, 75, C)).astype(np.float32)
    if C == 4:
        data[..., 3] = rng.uniform(0.2, 1.0, size=(F, 75))
    data[0:3, 33:54] = 0          # clip 0: left hand never found
    data[3 + 2, 54:75] = 0        # clip 1, frame 2: right hand lost
    data[7, 0:33] = 0             # clip 2, frame 0: pose lost
    data[8, 15] = 0               # clip 2, frame 1: left wrist zeroed on every channel
    return {"data": data, "lengths": np.array(lengths, np.int64),
            "gloss": np.array(["B", "A", "B"]), "language": np.array(["ase", "gsg", "ase"]),
            "fps": np.array([25.0, 30.0, 25.0])}


def _write(tmp_path: Path, arrays: dict, name: str = "in.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _invoke(file: Path, out: Path, *extra: str):
    return CliRunner().invoke(import_group, ["landmarks", str(file), "-o", str(out),
                                             "--label-key", "gloss", "--subject-key", "language",
                                             *extra])


def test_round_trip_values_labels_subjects(tmp_path):
    from piumr_skel.data.labels import read_class_names, read_labels
    from pose_extract import open_store

    arrays = _arrays()
    out = tmp_path / "store"
    r = _invoke(_write(tmp_path, arrays), out)
    assert r.exit_code == 0, r.output
    assert "3 clips" in r.output and "2 subjects" in r.output

    st = open_store(out)
    assert st.info["kind"] == "mediapipe_holistic" and st.info["layout"] is None
    assert st.info["settings"]["format"] == "npz_landmarks"
    assert st.info["settings"]["label_key"] == "gloss" and st.info["settings"]["units"] == "other"
    assert st.info["extractor_version"] == "piumr-import-landmarks-1"
    clips = st.clips().set_index("clip_id")
    ids = ["ase_B_0000", "gsg_A_0001", "ase_B_0002"]
    assert sorted(clips.index) == sorted(ids)
    assert clips.loc["gsg_A_0001", "subject"] == "gsg"
    assert clips.loc["gsg_A_0001", "fps"] == 30.0
    assert clips.loc["ase_B_0002", "rel_path"] == "in.npz#2"
    assert json.loads(clips.loc["ase_B_0002", "settings"])["subject_key"] == "language"
    assert (clips["width"] == 500).all() and (clips["height"] == 500).all()

    data, w = arrays["data"], 500.0
    c0, c1, c2 = (st.load_clip(c) for c in ids)
    np.testing.assert_allclose(c1["pose"][..., 0] * w, data[3:7, :33, 0], rtol=1e-6)
    np.testing.assert_allclose(c1["pose"][..., 1] * w, data[3:7, :33, 1], rtol=1e-6)
    np.testing.assert_allclose(c1["pose"][..., 2] * w, data[3:7, :33, 2], rtol=1e-6)
    np.testing.assert_array_equal(c1["pose"][..., 3], data[3:7, :33, 3])       # visibility as is
    np.testing.assert_allclose(c1["right_hand"][:2] * w, data[3:5, 54:75, :3], rtol=1e-6)
    assert np.isnan(c0["left_hand"]).all()                                      # missing, not zeros
    assert np.isnan(c1["right_hand"][2]).all() and not np.isnan(c1["right_hand"][[0, 1, 3]]).any()
    assert np.isnan(c2["pose"][0]).all()
    assert np.isnan(c2["pose"][1, 15]).all() and not np.isnan(np.delete(c2["pose"][1], 15, 0)).any()
    assert np.isnan(c0["face"]).all() and np.isnan(c0["pose_world"]).all()
    assert clips.loc["ase_B_0000", "rate_left_hand"] == 0.0
    assert clips.loc["gsg_A_0001", "rate_right_hand"] == 0.75

    labels = read_labels(out / "labels.csv")
    assert dict(zip(labels["clip_id"], labels["label"])) == dict(zip(ids, [1, 0, 1]))
    assert dict(zip(labels["clip_id"], labels["subject"])) == dict(zip(ids, ["ase", "gsg", "ase"]))
    assert read_class_names(out / "label_name.txt") == ["A", "B"]
    assert not list(tmp_path.glob(".store*"))                                   # no temp folder left


def test_image_units_integer_labels_and_defaults(tmp_path):
    from piumr_skel.data.labels import read_class_names, read_labels
    from pose_extract import open_store

    arrays = _arrays(C=3)
    arrays["data"][..., :3] /= 500.0
    arrays = {"data": arrays["data"], "lengths": arrays["lengths"],
              "label": np.array([2, 0, 2]), "subject": np.array([7, 8, 7])}
    out = tmp_path / "st"
    r = CliRunner().invoke(import_group, ["landmarks", str(_write(tmp_path, arrays)), "-o", str(out),
                                          "--units", "image", "--width", "640", "--height", "480",
                                          "--clip-prefix", "fs-"])
    assert r.exit_code == 0, r.output
    st = open_store(out)
    clips = st.clips().set_index("clip_id")
    assert list(clips.index) == ["fs-7_2_0000", "fs-7_2_0002", "fs-8_0_0001"]
    assert (clips["fps"] == 30.0).all() and (clips["width"] == 640).all()
    c = st.load_clip("fs-8_0_0001")
    np.testing.assert_array_equal(c["pose"][..., :3], arrays["data"][3:7, :33])  # stored unchanged
    assert (c["pose"][..., 3] == 1.0).all()                       # no confidence channel: certain
    assert read_class_names(out / "label_name.txt") == ["0", "1", "2"]
    assert list(read_labels(out / "labels.csv")["label"]) == [2, 0, 2]


def test_cache_reads_the_store_with_mediapipe_layouts(tmp_path):
    from piumr_skel.data.dataset import ClipCache

    out = tmp_path / "store"
    assert _invoke(_write(tmp_path, _arrays()), out).exit_code == 0
    for layout, v in (("mp_pose", 35), ("mp_holistic", 77), ("mp_holistic_face", 101)):
        cache = ClipCache.build(out, layout, tmp_path / f"cache-{layout}")
        assert not cache.failed, cache.failed
        x = np.asarray(cache["gsg_A_0001"])
        assert x.shape == (4, v, 3) and np.isfinite(x).all()
        assert cache.subject("gsg_A_0001") == "gsg"


def _bad_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (input file, text the one-line error must contain)."""
    cases: dict[str, tuple[dict | bytes, str]] = {}
    a = _arrays()
    cases["sum"] = ({**a, "lengths": np.array([3, 4, 3])}, "sums to 10")
    cases["V"] = ({**a, "data": a["data"][:, :74]}, "V = 74")
    cases["C"] = ({**a, "data": a["data"][..., :2]}, "C = 2")
    a = _arrays()
    a["data"][4, 60, 1] = np.nan
    cases["nan"] = (a, "clip 1, frame 1, right_hand")
    a = _arrays()
    a["data"][0, 2, 0] = np.inf
    cases["inf"] = (a, "clip 0, frame 0, pose point 2")
    a = _arrays()
    del a["gloss"]
    cases["key"] = (a, "no key 'gloss'")
    cases["empty"] = ({"data": np.zeros((0, 75, 4), np.float32), "lengths": np.zeros(0, np.int64),
                       "gloss": np.array([], "<U1"), "language": np.array([], "<U1")}, "no clips")
    a = _arrays()
    cases["labels"] = ({**a, "gloss": a["gloss"][:2]}, "'gloss' has shape (2,)")
    cases["subjects"] = ({**a, "language": np.array(["a", "b", "c", "d"])}, "'language'")
    cases["fps"] = ({**a, "fps": np.array([25.0, 30.0])}, "'fps' has shape (2,)")
    cases["zero"] = ({**a, "lengths": np.array([5, 4, 0])}, "clip 2 has 0 frames")
    cases["negative"] = ({**a, "lengths": np.array([7, 4, -2])}, "-2 frames")
    cases["tab"] = ({**a, "gloss": np.array(["B", "A\tx", "B"])}, "holds a tab")
    cases["nosubj"] = ({**a, "language": np.array(["ase", " ", "ase"])}, "empty subject")
    cases["notnpz"] = (b"this is not an archive", "cannot be read as an .npz")
    cases["truncated"] = (None, "cannot be read")
    cases["npy"] = (None, "not an .npz archive")
    cases["zerobytes"] = (b"", "cannot be read as an .npz")
    out = {}
    for name, (content, text) in cases.items():
        path = tmp_path / f"{name}.npz"
        if name == "truncated":
            good = _write(tmp_path, _arrays(), "good.npz").read_bytes()
            path.write_bytes(good[: len(good) // 2])
        elif name == "npy":
            with path.open("wb") as fh:
                np.save(fh, _arrays()["data"])
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            np.savez(path, **content)
        out[name] = (path, text)
    return out


def test_bad_inputs_give_one_line_errors_and_write_nothing(tmp_path):
    for name, (path, text) in _bad_cases(tmp_path).items():
        out = tmp_path / f"out-{name}"
        r = _invoke(path, out)
        assert r.exit_code != 0, (name, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (name, r.output)
        assert str(path) in lines[0] and text in lines[0], (name, lines[0])
        assert r.exception is None or isinstance(r.exception, SystemExit), (name, r.exception)
        assert not out.exists(), name
    assert not list(tmp_path.glob(".out-*"))


def test_missing_key_names_the_keys_present(tmp_path):
    r = _invoke(_write(tmp_path, _arrays()), tmp_path / "o", "--subject-key", "signer")
    assert r.exit_code != 0
    assert "no key 'signer'" in r.output and "data, fps, gloss, language, lengths" in r.output


def test_image_units_refused_for_other_units(tmp_path):
    r = _invoke(_write(tmp_path, _arrays()), tmp_path / "o", "--units", "image")
    assert r.exit_code != 0 and "--units other" in r.output and not (tmp_path / "o").exists()


def test_existing_store_refused_unless_overwrite(tmp_path):
    from pose_extract import open_store

    src, out = _write(tmp_path, _arrays()), tmp_path / "store"
    assert _invoke(src, out).exit_code == 0
    r = _invoke(src, out)
    assert r.exit_code != 0 and "not empty" in r.output and "--overwrite" in r.output
    a = {**_arrays(), "gloss": np.array(["C", "C", "D"])}
    assert _invoke(_write(tmp_path, a, "b.npz"), out, "--overwrite").exit_code == 0
    assert sorted(open_store(out).clips()["clip_id"]) == ["ase_C_0000", "ase_D_0002", "gsg_C_0001"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "x.txt").write_text("keep")
    r = _invoke(src, other, "--overwrite")
    assert r.exit_code != 0 and "not a keypoint store" in r.output
    assert (other / "x.txt").read_text() == "keep"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _invoke(src, empty).exit_code == 0


def test_real_signs_slice(tmp_path):
    """Ten clips of ../shared/signs_dev: import, then build the mp_holistic clip cache."""
    if not SIGNS.is_file():
        pytest.skip(f"../shared/signs_dev not found ({SIGNS}): real-data check skipped")
    from piumr_skel.data.dataset import ClipCache

    with np.load(SIGNS) as z:
        src = {k: z[k] for k in z.files}
    pick = np.r_[0:5, 40:45]   # two languages
    starts = np.r_[0, np.cumsum(src["lengths"])[:-1]]
    frames = np.concatenate([src["data"][starts[i]:starts[i] + src["lengths"][i]] for i in pick])
    part = {"data": frames, "lengths": src["lengths"][pick], "gloss": src["gloss"][pick],
            "language": src["language"][pick], "fps": src["fps"][pick]}
    out = tmp_path / "signs"
    r = _invoke(_write(tmp_path, part, "signs.npz"), out)
    assert r.exit_code == 0, r.output
    cache = ClipCache.build(out, "mp_holistic", tmp_path / "cache")
    assert not cache.failed, cache.failed
    assert len(cache) == 10
    cid = f"{part['language'][0]}_{part['gloss'][0]}_0000"
    x = np.asarray(cache[cid])
    assert x.shape == (int(part["lengths"][0]), 77, 3) and np.isfinite(x).all()
    assert {cache.subject(c) for c in cache.clip_ids} == set(part["language"])
