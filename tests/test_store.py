"""Tests of the Parquet keypoint store: round trip, missing parts as nulls, atomic commits, compaction,
kill safety, merging and clear errors."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pose_extract import FACE_SUBSET, StoreError, StoreWriter, load_clip, merge_stores, open_store, parse_subject
from pose_extract.schema import CLIP_COLUMNS, mediapipe_parts

PARTS = {"pose": (5, 4), "left_hand": (3, 3)}


def make_clip(seed: int, t: int | None = None) -> dict[str, np.ndarray]:
    """Random (T, V, C) arrays with some frames missing entirely and some single points missing."""
    rng = np.random.default_rng(seed)
    t = int(rng.integers(3, 9)) if t is None else t
    out = {}
    for p, (v, c) in PARTS.items():
        a = rng.random((t, v, c), dtype=np.float32)
        a[rng.random(t) < 0.3] = np.nan              # part not found in those frames
        if t > 1:
            a[1, 0] = np.nan                          # one point missing (imported layouts have these)
        out[p] = a
    return out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for p in a:
        np.testing.assert_array_equal(a[p], b[p])   # NaN == NaN for assert_array_equal


def new_writer(path: Path, **kw) -> StoreWriter:
    return StoreWriter(path, kind="imported", parts=PARTS, settings={"source": "test"},
                       layout="toy", **kw)


def test_round_trip_and_clips_table(tmp_path: Path) -> None:
    store = tmp_path / "s"
    w = new_writer(store, compact_every=0)
    clips = {f"0019_02_{i:04d}": make_clip(i) for i in range(3)}
    for cid, arrs in clips.items():
        w.write_clip({"clip_id": cid, "fps": 30.0, "width": 1080, "height": 1296}, arrs)
    w.write_clip({"clip_id": "test0001", "status": "failed", "error": "boom"}, None)
    st = open_store(store)
    table = st.clips()
    assert tuple(table.columns) == CLIP_COLUMNS
    assert list(table["clip_id"]) == sorted([*clips, "test0001"])
    row = table.set_index("clip_id").loc["0019_02_0001"]
    assert row["subject"] == "0019" and row["num_frames"] == len(clips["0019_02_0001"]["pose"])
    expected_rate = (~np.isnan(clips["0019_02_0001"]["pose"]).all(axis=(1, 2))).mean()
    assert row["rate_pose"] == pytest.approx(expected_rate)
    assert np.isnan(row["rate_face"])                # no face part in this store
    assert table.set_index("clip_id").loc["test0001", "error"] == "boom"
    assert table["num_frames"].dtype == np.int32 and table["fps"].dtype == np.float64
    for cid, arrs in clips.items():
        assert_same(st.load_clip(cid), arrs)
        assert_same(load_clip(store, cid), arrs)
    everything = st.load_all()
    assert set(everything) == set(table["clip_id"])
    assert everything["test0001"]["pose"].shape == (0, 5, 4)
    assert w.done_clip_ids() == set(table["clip_id"])
    with pytest.raises(KeyError, match="nope"):
        st.load_clip("nope")


def test_missing_part_is_null_not_zero(tmp_path: Path) -> None:
    store = tmp_path / "s"
    arrs = make_clip(0, t=4)
    arrs["left_hand"][2] = np.nan
    new_writer(store).write_clip({"clip_id": "c"}, arrs)
    frames = pd.read_parquet(store / "frames")
    assert frames.loc[frames["frame"] == 2, "left_hand"].iloc[0] is None
    assert len(frames.loc[frames["frame"] == 0, "pose"].iloc[0]) == 5 * 4
    info = json.loads((store / "store.json").read_text())
    assert info["schema_version"] == 1 and list(info["parts"]) == list(PARTS)


def test_compaction_folds_files_and_keeps_content(tmp_path: Path) -> None:
    store = tmp_path / "s"
    w = new_writer(store, compact_every=4)
    clips = {f"c{i:02d}": make_clip(i) for i in range(10)}
    for cid, arrs in clips.items():
        w.write_clip({"clip_id": cid}, arrs)
    w.close()
    # 10 clips in parts of 4: 4 + 4 compacted during writing, the last 2 at close.
    assert len(list((store / "clips").glob("*.parquet"))) == 3
    assert len(list((store / "frames").glob("*.parquet"))) == 3
    st = open_store(store)
    assert list(st.clips()["clip_id"]) == sorted(clips)
    loaded = st.load_all()
    for cid, arrs in clips.items():
        assert_same(loaded[cid], arrs)


def test_interrupted_compaction_and_commit_leave_a_consistent_store(tmp_path: Path) -> None:
    """Recreate the files a SIGKILL can leave behind and check that readers see each clip once."""
    store = tmp_path / "s"
    w = new_writer(store, compact_every=0)
    clips = {f"c{i}": make_clip(i) for i in range(3)}
    for cid, arrs in clips.items():
        w.write_clip({"clip_id": cid}, arrs)
    backup = tmp_path / "backup"
    shutil.copytree(store, backup)
    w.compact()
    # Killed after the part was committed, before the replaced per-clip files were deleted:
    for d in ("clips", "frames"):
        for f in (backup / d).glob("*.parquet"):
            shutil.copy(f, store / d / f.name)
    # Killed between the frames rename and the clips rename of a new clip:
    orphan = next((backup / "frames").glob("*.parquet"))
    shutil.copy(orphan, store / "frames" / "99999999999999999999-c-0000000000000000.parquet")
    # Killed while writing a temp file (a pid that cannot be alive):
    (store / ".tmp" / f"{os.uname().nodename.replace('-', '_')}-999999999-dead.tmp").write_bytes(b"x")
    st = open_store(store)
    assert list(st.clips()["clip_id"]) == sorted(clips)
    for cid, arrs in clips.items():
        assert_same(st.load_clip(cid), arrs)
    new_writer(store).compact()   # the next writer cleans the leftovers up
    assert len(list((store / "clips").glob("*.parquet"))) == 1
    assert len(list((store / "frames").glob("*.parquet"))) == 1
    assert list((store / ".tmp").iterdir()) == []
    assert_same(open_store(store).load_clip("c1"), clips["c1"])


_KILL_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_store import make_clip, new_writer
    from pathlib import Path
    w = new_writer(Path({store!r}), compact_every=3)
    done = w.done_clip_ids()
    for i in range({n}):
        if f"c{{i:03d}}" not in done:
            w.write_clip({{"clip_id": f"c{{i:03d}}"}}, make_clip(i))
            print(i, flush=True)  # tells the parent a commit happened
    w.close()
""")


@pytest.mark.slow
def test_sigkill_at_any_time_never_shows_partial_clips(tmp_path: Path) -> None:
    store, n = tmp_path / "s", 30
    code = _KILL_CHILD.format(tests=str(Path(__file__).parent), store=str(store), n=n)
    seen = []
    # Kill after the k-th commit plus a short delay, so some kills land inside a later write or
    # inside a compaction (every 3 clips).
    for k, delay in ((2, 0.0), (4, 0.004), (5, 0.02), (3, 0.01)):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(k):
            if not proc.stdout.readline():
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        st = open_store(store)
        ids = list(st.clips()["clip_id"])
        assert len(ids) == len(set(ids))
        seen.append(len(ids))
        for cid, arrs in st.load_all().items():
            assert_same(arrs, make_clip(int(cid[1:])))
    print("clips visible after each kill:", seen)
    assert any(0 < k < n for k in seen), f"no kill landed mid-run: {seen}"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, stdout=subprocess.DEVNULL)
    st = open_store(store)
    assert list(st.clips()["clip_id"]) == [f"c{i:03d}" for i in range(n)]
    loaded = st.load_all()
    for i in range(n):
        assert_same(loaded[f"c{i:03d}"], make_clip(i))
    raw = pd.concat([pq.read_table(f).to_pandas() for f in (store / "clips").glob("*.parquet")])
    assert raw["clip_id"].is_unique              # compaction removed every replaced file


def test_open_store_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not found"):
        open_store(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match=r"plain.*store\.json missing"):
        open_store(tmp_path / "plain")
    store = tmp_path / "s"
    new_writer(store).write_clip({"clip_id": "a"}, make_clip(0))
    info = json.loads((store / "store.json").read_text())
    (store / "store.json").write_text(json.dumps({**info, "schema_version": 2}))
    with pytest.raises(StoreError, match="schema_version is 2"):
        open_store(store)


def test_writer_refuses_mismatch_and_bad_input(tmp_path: Path) -> None:
    store = tmp_path / "s"
    w = new_writer(store)
    with pytest.raises(StoreError, match="parts"):
        StoreWriter(store, kind="imported", parts={"pose": (5, 4)}, settings={}, layout="toy")
    with pytest.raises(StoreError, match="kind"):
        StoreWriter(store, kind="mediapipe_holistic", parts=PARTS, settings={}, layout="toy")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        new_writer(tmp_path / "other")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        new_writer(tmp_path / "file")
    good = make_clip(0, t=4)
    with pytest.raises(ValueError, match=r"missing \['left_hand'\]"):
        w.write_clip({"clip_id": "a"}, {"pose": good["pose"]})
    with pytest.raises(ValueError, match=r"must be \(T, 3, 3\)"):
        w.write_clip({"clip_id": "a"}, {**good, "left_hand": np.zeros((4, 2, 3), np.float32)})
    with pytest.raises(ValueError, match="different frame counts"):
        w.write_clip({"clip_id": "a"}, {**good, "left_hand": np.zeros((3, 3, 3), np.float32)})
    with pytest.raises(ValueError, match="clip_id"):
        w.write_clip({}, good)
    assert w.done_clip_ids() == set()              # nothing half-written by the refused calls


def test_failed_then_ok_clip_prefers_ok(tmp_path: Path) -> None:
    store = tmp_path / "s"
    w = new_writer(store, compact_every=0)
    w.write_clip({"clip_id": "a", "status": "failed", "error": "x"}, None)
    w.compact()
    arrs = make_clip(3)
    w.write_clip({"clip_id": "a"}, arrs)
    st = open_store(store)
    assert list(st.clips()["status"]) == ["ok"]
    assert_same(st.load_clip("a"), arrs)


def test_merge_stores(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    wa, wb = new_writer(a), new_writer(b)
    for i in range(3):
        wa.write_clip({"clip_id": f"c{i}"}, make_clip(i))
    for i in range(3, 5):
        wb.write_clip({"clip_id": f"c{i}"}, make_clip(i))
    wa.write_clip({"clip_id": "dup", "status": "failed", "error": "x"}, None)
    wb.write_clip({"clip_id": "dup"}, make_clip(9))
    wa.close()
    wb.close()
    out = merge_stores(tmp_path / "m", [a, b])
    st = open_store(out)
    assert list(st.clips()["clip_id"]) == ["c0", "c1", "c2", "c3", "c4", "dup"]
    assert (st.clips()["status"] == "ok").all()
    for i in range(5):
        assert_same(st.load_clip(f"c{i}"), make_clip(i))
    assert_same(st.load_clip("dup"), make_clip(9))
    merge_stores(out, [a, b])                        # idempotent
    assert len(open_store(out).clips()) == 6
    other = tmp_path / "o"
    StoreWriter(other, kind="imported", parts={"pose": (5, 4)}, settings={}, layout="toy")
    with pytest.raises(StoreError, match="cannot merge"):
        merge_stores(tmp_path / "m2", [a, other])


def test_parse_subject_and_face_subset() -> None:
    assert parse_subject("0019_02_0078") == "0019"
    assert parse_subject("test0001") == "" and parse_subject("0019_02_78") == ""
    names = [n for n, _ in FACE_SUBSET]
    idx = [i for _, i in FACE_SUBSET]
    assert len(FACE_SUBSET) == 24 and len(set(names)) == 24 and len(set(idx)) == 24
    assert max(idx) < 468 and FACE_SUBSET[0] == ("nose_tip", 1)
    assert mediapipe_parts()["face"] == (24, 3)
    assert mediapipe_parts(full_face=True)["face"] == (468, 3)
    assert mediapipe_parts(full_face=True, refine_face=True)["face"] == (478, 3)
