"""Tests for piumr_skel.data.dataset: clip cache, dataset determinism, loaders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_layout import TOY, ToyLayout  # tests/toy_layout.py

import pose_extract as pe
from piumr_skel.data.dataset import (
    AugmentConfig,
    CacheMismatchError,
    ClipCache,
    SkeletonDataset,
    make_loader,
)
from piumr_skel.data.transforms import normalize_clip, to_stream
from piumr_skel.skeleton import layouts


def _toy_arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n normalised toy clips of 10..80 frames, named like MA-52 clips."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        T = int(rng.integers(10, 80))
        x = rng.normal(0, 50, size=(T, TOY.num_joints, 3)) + 300
        x[..., 2] = rng.uniform(0.3, 1, size=(T, TOY.num_joints))
        out[f"{i % 3:04d}_01_{i:04d}"] = normalize_clip(x, TOY)
    return out


@pytest.fixture()
def toy_cache(tmp_path: Path) -> ClipCache:
    arrays = _toy_arrays(12)
    subjects = {c: c[:4] for c in arrays}
    return ClipCache.from_arrays(tmp_path / "cache", arrays, TOY, subjects=subjects)


def _dataset(cache: ClipCache, **kw) -> SkeletonDataset:
    ids = cache.clip_ids
    labels = [i % 5 for i in range(len(ids))]
    kw.setdefault("augment", AugmentConfig())
    return SkeletonDataset(cache, ids, labels, None, T=16, seed=3, layout=TOY, **kw)


# ---------------------------------------------------------------------------- cache files


def test_cache_round_trip_is_memory_mapped(toy_cache: ClipCache):
    arrays = _toy_arrays(12)
    loaded = ClipCache.load(toy_cache.cache_dir)
    assert isinstance(loaded.frames, np.memmap)
    assert loaded.frames.dtype == np.float32
    assert loaded.clip_ids == list(arrays)
    for cid, a in arrays.items():
        np.testing.assert_array_equal(loaded[cid], a)
        assert loaded.length(cid) == len(a)
        assert loaded.subject(cid) == cid[:4]
    with pytest.raises(KeyError, match="not in the clip cache"):
        loaded["9999_01_0000"]


def test_cache_refuses_other_layout_and_incomplete(toy_cache: ClipCache):
    other = ToyLayout(name="toy2")
    with pytest.raises(CacheMismatchError, match="layout"):
        ClipCache.load(toy_cache.cache_dir, layout=other)
    ClipCache.load(toy_cache.cache_dir, layout=TOY)  # same layout is accepted
    (toy_cache.cache_dir / toy_cache.meta["files"]["clips"]).unlink()
    with pytest.raises(ValueError, match="incomplete"):
        ClipCache.load(toy_cache.cache_dir)
    with pytest.raises(FileNotFoundError, match="no clip cache"):
        ClipCache.load(toy_cache.cache_dir / "nowhere")


# ---------------------------------------------------------------------------- dataset


def test_dataset_shapes_and_streams(toy_cache: ClipCache):
    ds = _dataset(toy_cache)
    x, label, idx = ds[4]
    assert x.shape == (3, 16, TOY.num_joints) and x.dtype == torch.float32
    assert (label, idx) == (4, 4)
    assert list(ds.subjects[:3]) == [c[:4] for c in toy_cache.clip_ids[:3]]
    test = _dataset(toy_cache, train=False, num_clips=4, stream="bone")
    xt, _, _ = test[0]
    assert xt.shape == (4, 3, 16, TOY.num_joints)
    assert (xt[:, :2, :, TOY.center] == 0).all()  # the centre's bone is zero
    # At test the first clip of one is the plain deterministic sample of the stream.
    single = _dataset(toy_cache, train=False, stream="joint_motion")
    x1, _, _ = single[2]
    assert x1.shape == (3, 16, TOY.num_joints)
    assert (x1[:2, -1] == 0).all()
    clip = toy_cache[toy_cache.clip_ids[2]]
    from piumr_skel.data.transforms import uniform_sample

    rows = uniform_sample(len(clip), 16, train=False)[0]
    expected = to_stream(np.asarray(clip[rows]), TOY, "joint_motion", channels_last=True)
    np.testing.assert_allclose(x1.numpy(), expected.transpose(2, 0, 1), atol=1e-6)


def test_dataset_randomness_is_per_seed_epoch_index(toy_cache: ClipCache):
    ds = _dataset(toy_cache)
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    a = ds[5][0]
    assert torch.equal(a, ds[5][0])  # same (seed, epoch, index)
    ds.set_epoch(1)
    b = ds[5][0]
    assert not torch.equal(a, b)
    ds.set_epoch(0)
    assert torch.equal(a, ds[5][0])
    other_seed = _dataset(toy_cache)
    other_seed.seed = 4
    assert not torch.equal(a, other_seed[5][0])
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    test = _dataset(toy_cache, train=False)
    t0 = test[5][0]
    test.set_epoch(7)
    assert torch.equal(t0, test[5][0])  # test sampling does not depend on the epoch


def test_dataset_errors(toy_cache: ClipCache):
    with pytest.raises(ValueError, match="empty dataset"):
        SkeletonDataset(toy_cache, [], [], layout=TOY)
    missing = [f"9999_01_{i:04d}" for i in range(8)]
    with pytest.raises(KeyError, match=r"8 of 9 clip ids.*9999_01_0000.*\+3 more"):
        SkeletonDataset(toy_cache, missing + toy_cache.clip_ids[:1], [0] * 9, layout=TOY)
    with pytest.raises(ValueError, match="labels"):
        SkeletonDataset(toy_cache, toy_cache.clip_ids[:2], [0], layout=TOY)
    with pytest.raises(ValueError, match="unknown stream"):
        SkeletonDataset(toy_cache, toy_cache.clip_ids[:2], [0, 1], stream="rgb", layout=TOY)
    with pytest.raises(ValueError, match="num_clips"):
        SkeletonDataset(toy_cache, toy_cache.clip_ids[:2], [0, 1], num_clips=3, layout=TOY)


# ---------------------------------------------------------------------------- loaders


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone(), i.clone()) for x, y, i in loader]


def test_loader_is_reproducible_and_worker_independent(toy_cache: ClipCache):
    ds = _dataset(toy_cache)
    torch_state = torch.random.get_rng_state()
    kw = dict(batch_size=4, shuffle=True, seed=1, drop_last=False)
    b0 = _batches(make_loader(ds, num_workers=0, epoch=2, **kw))
    b2 = _batches(make_loader(ds, num_workers=2, epoch=2, **kw))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert len(b0) == 3
    for (x0, y0, i0), (x2, y2, i2) in zip(b0, b2):
        assert torch.equal(i0, i2) and torch.equal(y0, y2) and torch.equal(x0, x2)
    order = torch.cat([i for _, _, i in b0])
    assert sorted(order.tolist()) == list(range(len(ds)))
    assert order.tolist() != list(range(len(ds)))  # shuffled
    again = _batches(make_loader(ds, num_workers=0, epoch=2, **kw))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(b0, again))
    other_epoch = torch.cat([i for _, _, i in make_loader(ds, num_workers=0, epoch=3, **kw)])
    assert other_epoch.tolist() != order.tolist()
    assert ds.epoch == 3  # make_loader sets the dataset's epoch


def test_loader_in_order_and_test_clips(toy_cache: ClipCache):
    ds = _dataset(toy_cache, train=False, num_clips=2)
    loader = make_loader(ds, batch_size=5, shuffle=False, num_workers=0, seed=0, epoch=0,
                         drop_last=False)
    batches = list(loader)
    assert torch.cat([i for _, _, i in batches]).tolist() == list(range(len(ds)))
    assert batches[0][0].shape == (5, 2, 3, 16, TOY.num_joints)


# ---------------------------------------------------------------------------- from a real store


def _write_store(pe, path: Path, clips: dict[str, np.ndarray], status: dict[str, str] | None = None):
    """A tiny MediaPipe store: clips {clip_id: pose (T, 33, 4) in [0, 1]}, hands never found."""
    parts = {"pose": (33, 4), "left_hand": (21, 3), "right_hand": (21, 3)}
    writer = pe.StoreWriter(path, kind="mediapipe_holistic", parts=parts, settings={"test": True})
    for cid, pose in clips.items():
        st = (status or {}).get(cid, "ok")
        meta = dict(clip_id=cid, rel_path=f"{cid}.mp4", subject=pe.parse_subject(cid), fps=30.0,
                    num_frames=len(pose), width=640, height=480, rate_pose=1.0, rate_left_hand=0.0,
                    rate_right_hand=0.0, rate_face=0.0, status=st,
                    error="" if st == "ok" else "decode error", extractor_version="test",
                    settings="{}")
        hand = np.full((len(pose), 21, 3), np.nan, dtype=np.float32)
        writer.write_clip(meta, {"pose": pose.astype(np.float32), "left_hand": hand,
                                 "right_hand": hand.copy()})
    return path


def _pose_clip(rng: np.random.Generator, T: int) -> np.ndarray:
    base = rng.uniform(0.3, 0.7, size=(33, 2))
    base[11], base[12] = (0.55, 0.4), (0.45, 0.4)  # shoulders
    xy = base[None] + 0.01 * rng.normal(size=(T, 33, 2))
    vis = rng.uniform(0.5, 1.0, size=(T, 33, 1))
    z = np.zeros((T, 33, 1))
    return np.concatenate([xy, z, vis], axis=-1)


def test_cache_build_from_store_round_trip(tmp_path: Path):
    rng = np.random.default_rng(0)
    clips = {f"00{s}1_01_000{i}": _pose_clip(rng, 30 + i) for s in range(2) for i in range(3)}
    bad = np.full((20, 33, 4), np.nan)  # pose never found: cannot be normalised
    clips["0099_01_0000"] = bad
    clips["0098_01_0000"] = _pose_clip(rng, 5)
    store = _write_store(pe, tmp_path / "store", clips, status={"0098_01_0000": "failed"})
    layout = layouts.get_layout("mp_pose")
    with pytest.warns(UserWarning, match="0099_01_0000"):
        cache = ClipCache.build(store, layout, tmp_path / "cache")
    good = [c for c in clips if c not in ("0099_01_0000", "0098_01_0000")]
    assert sorted(cache.clip_ids) == sorted(good)
    assert "0099_01_0000" in cache.failed and "0098_01_0000" in cache.skipped
    for cid in good:
        x = cache[cid]
        assert x.shape == (len(clips[cid]), layout.num_joints, 3)
        assert np.isfinite(x).all()
        np.testing.assert_allclose(x[:, layout.center, :2], 0.0, atol=1e-5)
        assert cache.subject(cid) == cid[:4]
    loaded = ClipCache.load(tmp_path / "cache", layout=layout, store=store)
    np.testing.assert_array_equal(loaded.frames, cache.frames)
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["layout"] == "mp_pose" and meta["num_clips"] == len(good)
    with pytest.raises(KeyError, match="failed normalisation"):
        SkeletonDataset(cache, ["0099_01_0000"], [0])


def test_cache_rebuilds_when_store_changes(tmp_path: Path):
    rng = np.random.default_rng(1)
    store = _write_store(pe, tmp_path / "store", {"0001_01_0001": _pose_clip(rng, 25)})
    layout = layouts.get_layout("mp_pose")
    first = ClipCache.build(store, layout, tmp_path / "cache")
    mtime = first.frames_path.stat().st_mtime_ns
    same = ClipCache.build(store, layout, tmp_path / "cache")  # reused, not rewritten
    assert same.frames_path == first.frames_path and same.frames_path.stat().st_mtime_ns == mtime
    assert same.meta["store_fingerprint"] == first.meta["store_fingerprint"]
    _write_store(pe, tmp_path / "store", {"0002_01_0001": _pose_clip(rng, 25)})
    with pytest.raises(CacheMismatchError, match="store"):
        ClipCache.load(tmp_path / "cache", store=store)
    rebuilt = ClipCache.build(store, layout, tmp_path / "cache")
    assert sorted(rebuilt.clip_ids) == ["0001_01_0001", "0002_01_0001"]
    other = ClipCache.build(store, layouts.get_layout("mp_holistic"), tmp_path / "cache")
    assert other.meta["layout"] == "mp_holistic" and other.frames.shape[1] == 77


def test_distributed_loader_uses_seeded_sampler(toy_cache: ClipCache, tmp_path: Path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ds = _dataset(toy_cache)
        kw = dict(batch_size=4, shuffle=True, num_workers=0, seed=5, drop_last=False,
                  distributed=True)
        loader = make_loader(ds, epoch=1, **kw)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        assert loader.sampler.epoch == 1
        order = [i for _, _, b in loader for i in b.tolist()]
        assert sorted(order) == list(range(len(ds)))
        assert order == [i for _, _, b in make_loader(ds, epoch=1, **kw) for i in b.tolist()]
        assert order != [i for _, _, b in make_loader(ds, epoch=2, **kw) for i in b.tolist()]
    finally:
        dist.destroy_process_group()
