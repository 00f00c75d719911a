"""Reliability under real use (issue 10): concurrent cache builders, one writer per store, run-folder
guards. Each test reproduces a failure a user hit."""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np
import pytest

from piumr_skel.data import ClipCache
from test_data import _pose_clip, _store_api, _write_store  # tests/test_data.py

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
    pe, layouts = _store_api()
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
    pe, _ = _store_api()
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
