"""Reliability under real use (issue 10): concurrent cache builders, one writer per store, run-folder
guards. Each test reproduces a failure a user hit."""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_data import _pose_clip, _write_store  # tests/test_data.py

import pose_extract as pe
from piumr_skel.data.dataset import ClipCache

# ---------------------------------------------------------------------------- clip cache


def _digest(cache: ClipCache) -> str:
    h = hashlib.sha1(np.ascontiguousarray(cache.frames).tobytes())
    h.update(cache.table.to_csv(index=False).encode())
    return h.hexdigest()


def _concurrent_builder(store: str, cache_dirs: list[str], barrier, results) -> None:
    """Child process: for each cache dir, wait for the sibling, then build the same cache at once."""
    for cache_dir in cache_dirs:
        barrier.wait(timeout=120)
        try:
            cache = ClipCache.build(store, "mp_pose", cache_dir)
            results.put((cache_dir, "ok", cache.meta.get("generation"), _digest(cache)))
        except BaseException as err:  # reported to the parent, which fails the test
            results.put((cache_dir, "error", f"{type(err).__name__}: {err}", ""))


def test_two_processes_building_one_cache_at_once(tmp_path: Path) -> None:
    """Issue 10 item 2: the second builder waits and reuses the first one's cache, never a mix."""
    rng = np.random.default_rng(0)
    clips = {f"{s:04d}_01_{i:04d}": _pose_clip(rng, 150) for s in range(4) for i in range(10)}
    store = _write_store(pe, tmp_path / "store", clips)
    expected = _digest(ClipCache.build(store, "mp_pose", tmp_path / "reference"))
    rounds = [str(tmp_path / f"cache{r}") for r in range(3)]
    ctx = mp.get_context("spawn")  # fork after pyarrow's thread pools started can hang the child
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_concurrent_builder, args=(str(store), rounds, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=300) for _ in range(2 * len(rounds))]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0], f"a builder died: {got}"
    for cache_dir in rounds:
        mine = [g for g in got if g[0] == cache_dir]
        assert [g[1] for g in mine] == ["ok", "ok"], mine
        assert mine[0][2] is not None and mine[0][2] == mine[1][2], f"both built {cache_dir}: {mine}"
        assert mine[0][3] == mine[1][3] == expected
        assert _digest(ClipCache.load(cache_dir)) == expected
        leftovers = [f.name for f in Path(cache_dir).iterdir() if f.name.startswith(".tmp")]
        assert leftovers == []


def test_cache_rebuilds_when_frames_are_edited_in_place(tmp_path: Path) -> None:
    """Issue 10 item 6: same clips table, other frames in the same file -> the cache rebuilds."""
    rng = np.random.default_rng(2)
    first = {"0001_01_0001": _pose_clip(rng, 20)}
    second = {"0001_01_0001": _pose_clip(rng, 20)}
    store = _write_store(pe, tmp_path / "store", first)
    other = _write_store(pe, tmp_path / "other", second)
    cache = ClipCache.build(store, "mp_pose", tmp_path / "cache")
    before = np.array(cache["0001_01_0001"])
    (frames_file,) = (store / "frames").glob("*.parquet")
    (other_file,) = (other / "frames").glob("*.parquet")
    shutil.copyfile(other_file, frames_file)  # edited in place: the clips table does not change
    rebuilt = ClipCache.build(store, "mp_pose", tmp_path / "cache")
    after = np.array(rebuilt["0001_01_0001"])
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, ClipCache.build(other, "mp_pose", tmp_path / "c2")["0001_01_0001"])


# ---------------------------------------------------------------------------- one writer per store


def test_second_extract_into_one_store_is_refused_naming_the_first(tmp_path: Path) -> None:
    """Issue 10 item 3: two `piumr extract` into one store used to both extract every clip."""
    import subprocess
    import sys
    import time

    import pandas as pd
    from click.testing import CliRunner
    from test_extract import _RUN, write_video  # tests/test_extract.py

    from cli.extract import extract_cmd

    videos, out = tmp_path / "videos", tmp_path / "store"
    n = 6
    for i in range(n):
        write_video(videos / f"{i:04d}_01_{i:04d}.mp4", frames=30, size=(160, 120), seed=i)
    args = [str(videos), "-o", str(out), "--no-progress"]
    first = subprocess.Popen([sys.executable, "-c", _RUN, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if list((out / "clips").glob("*.parquet")):
            break
        time.sleep(0.02)
    assert first.poll() is None, "the first extraction ended before the second could start"
    second = CliRunner().invoke(extract_cmd, args)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert second.exit_code == 1, second.output
    assert f"is in use by pid {first.pid} on host" in second.output and "--shard" in second.output
    assert len(second.output.strip().splitlines()) == 1, second.output
    frames = pd.read_parquet(out / "frames", columns=["clip_id", "frame"])
    assert not frames.duplicated().any() and len(frames) == n * 30
    # Once the first is done the same command just finds everything done.
    again = CliRunner().invoke(extract_cmd, args)
    assert again.exit_code == 0 and f"{n} already done" in again.output, again.output


def _mediapipe_store(path: Path, max_side: int, clip_id: str) -> Path:
    from pose_extract import StoreWriter

    parts = {"pose": (3, 4)}
    with StoreWriter(path, kind="mediapipe_holistic", parts=parts, settings={"max_side": max_side}) as w:
        w.write_clip({"clip_id": clip_id}, {"pose": np.zeros((2, 3, 4), np.float32)})
    return path


def test_merge_into_a_store_made_with_other_settings_is_refused(tmp_path: Path) -> None:
    """Issue 10 item 4: the inputs are compared with an existing output, not only with each other."""
    from pose_extract import StoreError, merge_stores, open_store

    a = _mediapipe_store(tmp_path / "a", 0, "c0")
    b = _mediapipe_store(tmp_path / "b", 64, "c1")
    out = merge_stores(tmp_path / "m", [a])
    with pytest.raises(StoreError, match=r"existing store, made with other settings.*max_side: 0 vs 64"):
        merge_stores(out, [b])
    assert list(open_store(out).clips()["clip_id"]) == ["c0"]


def test_merge_into_a_store_being_written_is_refused(tmp_path: Path) -> None:
    from pose_extract import LockBusyError, merge_stores, writer_lock

    a = _mediapipe_store(tmp_path / "a", 0, "c0")
    with writer_lock(tmp_path / "m"):
        with pytest.raises(LockBusyError, match=r"keypoint store .*m is in use by pid \d+ on host"):
            merge_stores(tmp_path / "m", [a])
    assert merge_stores(tmp_path / "m", [a]) == tmp_path / "m"  # free again once released


# ---------------------------------------------------------------------------- run folder guard


@pytest.fixture()
def trained(tiny_recipe_factory):
    """A finished 1-epoch tiny run: (recipe, run folder)."""
    from piumr_skel.engine.config import make_config
    from piumr_skel.engine.train import train

    recipe = tiny_recipe_factory(name="guarded", girl=False)
    return recipe, train(make_config(recipe), echo=lambda s: None)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and p.name != ".train.lock"}


def test_resume_with_another_seed_is_refused_before_anything_is_written(trained) -> None:
    """Issue 10 item 1: --resume --seed 8 used to train on another split and overwrite config.yaml."""
    from piumr_skel.engine.config import make_config
    from piumr_skel.engine.runguard import RunGuardError
    from piumr_skel.engine.train import train

    recipe, run = trained
    before = _snapshot(run)
    for change, key in (({"seed": 8, "name": "guarded"}, "seed"), ({"base_channels": 8}, "base_channels"),
                        ({"epochs": 2}, "epochs")):
        with pytest.raises(RunGuardError, match=rf"{key}: .* there, .* now"):
            train(make_config({**recipe, **change}), resume=True, echo=lambda s: None)
        assert _snapshot(run) == before, f"a refused resume ({change}) wrote into the run folder"


def test_resume_may_change_workers_and_device_and_extend_epochs_explicitly(trained) -> None:
    from piumr_skel.engine.config import make_config
    from piumr_skel.engine.train import train

    recipe, run = trained
    said: list[str] = []
    train(make_config({**recipe, "num_workers": 1, "device": "cpu"}), resume=True, echo=said.append)
    assert any("resumed" in s for s in said)
    train(make_config({**recipe, "epochs": 2}), resume=True, extend_epochs=True, echo=lambda s: None)
    import torch

    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 2


def test_two_trainings_into_one_run_folder_refuse(trained) -> None:
    """Issue 10 item 5: the second `piumr train` into a folder another one trains in stops at once."""
    from piumr_skel.engine.config import make_config
    from piumr_skel.engine.runguard import LOCK_FILE, RunBusyError
    from piumr_skel.engine.train import train
    from pose_extract.locking import exclusive_lock

    recipe, run = trained
    with exclusive_lock(run / LOCK_FILE, "a running training"):
        with pytest.raises(RunBusyError, match=r"run folder .*guarded is in use by pid \d+ on host"):
            train(make_config(recipe), resume=True, echo=lambda s: None)
    train(make_config(recipe), resume=True, echo=lambda s: None)  # free again


def test_failed_train_on_a_bad_store_leaves_no_run_folder(tiny_recipe_factory, tmp_path: Path) -> None:
    from piumr_skel.engine.config import make_config
    from piumr_skel.engine.train import train
    from pose_extract import StoreError

    recipe = {**tiny_recipe_factory(name="never", girl=False), "store": str(tmp_path / "nope")}
    with pytest.raises(StoreError, match="not found"):
        train(make_config(recipe), echo=lambda s: None)
    assert not (Path(recipe["out_dir"]) / "never").exists()


@pytest.mark.slow
def test_demo_with_another_seed_does_not_report_the_first_demo(tmp_path: Path) -> None:
    """Issue 10 item 1: `piumr demo --seed 1` after a first demo printed the first demo's numbers."""
    from piumr_skel.tools.demo import run_demo

    said: list[str] = []
    first = run_demo(tmp_path, preset="quick", device="cpu", seed=0, echo=said.append)
    assert not any("--resume" in s for s in said), said
    said.clear()
    second = run_demo(tmp_path, preset="quick", device="cpu", seed=1, echo=said.append)
    assert not any("resume" in s for s in said), said
    assert first["checkpoint"] != second["checkpoint"]
    assert "seed1" in second["checkpoint"]
