"""Tests for piumr_skel.data.transforms: normalisation, sampling, streams, augmentations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from toy_layout import TOY  # tests/toy_layout.py

from piumr_skel.data.transforms import (
    STREAMS,
    AugmentConfig,
    augment_clip,
    flip,
    normalize_clip,
    random_flip,
    random_rotate,
    random_scale,
    resample_time,
    temporal_crop_resize,
    to_stream,
    uniform_sample,
)
from piumr_skel.skeleton.layouts import get_layout


def _layouts():
    """The toy layout and the real MediaPipe ones."""
    return [TOY, get_layout("mp_pose"), get_layout("mp_holistic")]


def _pixel_clip(layout, T: int = 20, seed: int = 0) -> np.ndarray:
    """A plausible clip in pixels: a body around (500, 400), shoulders ~80 px apart, moving."""
    rng = np.random.default_rng(seed)
    V = layout.num_joints
    base = rng.uniform(-100, 100, size=(V, 2))
    ls, rs = layout.index("left_shoulder"), layout.index("right_shoulder")
    base[ls], base[rs] = (40.0, -60.0), (-40.0, -60.0)
    t = np.arange(T)[:, None, None]
    xy = base[None] + np.array([500.0, 400.0]) + 5 * np.sin(t / 3.0) + rng.normal(0, 1, (T, V, 2))
    score = rng.uniform(0.5, 1.0, size=(T, V, 1))
    return np.concatenate([xy, score], axis=-1).astype(np.float32)


# ---------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("layout", _layouts(), ids=lambda l: l.name)
def test_normalize_centres_and_scales(layout):
    x = _pixel_clip(layout)
    y = normalize_clip(x, layout)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y[:, layout.center, :2], 0.0, atol=1e-5)
    ls, rs = layout.index("left_shoulder"), layout.index("right_shoulder")
    width = np.median(np.linalg.norm(y[:, ls, :2] - y[:, rs, :2], axis=-1))
    assert width == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(y[..., 2], x[..., 2])  # scores of seen joints kept


def test_normalize_interpolates_gaps_and_zeroes_their_score():
    x = _pixel_clip(TOY, T=12)
    lw = TOY.index("left_wrist")
    x[3:7, lw] = np.nan  # hand lost for 4 frames
    x[:2, lw] = np.nan  # and at the start
    y = normalize_clip(x, TOY)
    assert np.isfinite(y).all()
    assert (y[3:7, lw, 2] == 0).all() and (y[:2, lw, 2] == 0).all()
    assert (y[2, lw, 2] > 0) and (y[7, lw, 2] > 0)
    # Interpolation happens in pixels before centring, so compare against a reference fill.
    ref = x.copy()
    for c in range(2):
        ref[3:7, lw, c] = np.interp(np.arange(3, 7), [2, 7], [x[2, lw, c], x[7, lw, c]])
        ref[:2, lw, c] = x[2, lw, c]  # nearest at the edge
    expected = normalize_clip(ref, TOY)
    np.testing.assert_allclose(y[..., :2], expected[..., :2], atol=1e-4)


def test_normalize_never_seen_joint_sits_at_parent():
    x = _pixel_clip(TOY)
    rw, rs = TOY.index("right_wrist"), TOY.index("right_shoulder")
    x[:, rw] = np.nan
    y = normalize_clip(x, TOY)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y[:, rw, :2], y[:, rs, :2])
    assert (y[:, rw, 2] == 0).all()


def test_normalize_missing_hand_in_real_layout():
    layout = get_layout("mp_holistic")
    x = _pixel_clip(layout)
    hand = [i for i, n in enumerate(layout.joints) if "hand" in n and n.startswith("right")]
    assert hand, "mp_holistic should have right-hand joints"
    x[:, hand] = np.nan  # hand never detected, as in many MA-52 clips
    y = normalize_clip(x, layout)
    assert np.isfinite(y).all()
    assert (y[:, hand, 2] == 0).all()
    for v in hand:  # each missing hand joint is at some seen ancestor
        u = v
        while u in hand:
            u = int(layout.parents[u])
        np.testing.assert_allclose(y[:, v, :2], y[:, u, :2])


def test_normalize_falls_back_to_neck_then_mean():
    x = _pixel_clip(TOY)
    x[:, TOY.center] = np.nan
    y = normalize_clip(x, TOY)
    np.testing.assert_allclose(y[:, TOY.index("neck"), :2], 0.0, atol=1e-5)
    x[:, TOY.index("neck")] = np.nan
    y = normalize_clip(x, TOY)
    seen = [i for i in range(TOY.num_joints) if i not in (0, 1)]
    np.testing.assert_allclose(y[:, seen, :2].mean(axis=1), 0.0, atol=1e-5)
    assert np.isfinite(y).all()


def test_normalize_without_shoulders_uses_box_size():
    x = _pixel_clip(TOY)
    x[:, [TOY.index("left_shoulder"), TOY.index("right_shoulder")]] = np.nan
    y = normalize_clip(x, TOY)
    seen = [0, 1, 2, 5, 6]
    size = (y[:, seen, :2].max(axis=1) - y[:, seen, :2].min(axis=1)).max(axis=-1)
    assert np.median(size) == pytest.approx(1.0, rel=1e-5)


def test_normalize_all_missing_raises():
    x = np.full((5, TOY.num_joints, 3), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="no detected joint"):
        normalize_clip(x, TOY)
    with pytest.raises(ValueError, match="expected a"):
        normalize_clip(np.zeros((5, 3, 3)), TOY)


# ---------------------------------------------------------------------------- sampling


def test_uniform_sample_train_one_frame_per_segment():
    rng = np.random.default_rng(0)
    idx = uniform_sample(100, 10, rng, train=True)
    assert idx.shape == (1, 10) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx[0] // 10, np.arange(10))  # one pick in each segment


def test_uniform_sample_seeds():
    a = uniform_sample(200, 16, np.random.default_rng(3))
    b = uniform_sample(200, 16, np.random.default_rng(3))
    c = uniform_sample(200, 16, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="rng"):
        uniform_sample(200, 16, None, train=True)


def test_uniform_sample_test_is_deterministic_centres():
    idx = uniform_sample(100, 10, train=False)
    np.testing.assert_array_equal(idx[0], np.arange(10) * 10 + 5)
    multi = uniform_sample(75, 64, train=False, num_clips=5)
    assert multi.shape == (5, 64)
    np.testing.assert_array_equal(multi, uniform_sample(75, 64, train=False, num_clips=5))
    assert (np.diff(multi, axis=1) >= 1).all() and multi.max() < 75
    assert len({tuple(r) for r in uniform_sample(200, 10, train=False, num_clips=4)}) == 4


@pytest.mark.parametrize("train", [True, False])
def test_uniform_sample_short_clip_loops(train):
    rng = np.random.default_rng(1)
    idx = uniform_sample(7, 20, rng, train=train, num_clips=3)
    assert idx.shape == (3, 20)
    assert idx.min() >= 0 and idx.max() < 7
    np.testing.assert_array_equal((idx[:, 1:] - idx[:, :-1]) % 7, 1)  # consecutive, wrapping


# ---------------------------------------------------------------------------- streams


@pytest.mark.parametrize("layout", _layouts(), ids=lambda l: l.name)
def test_bone_stream_uses_layout_parents(layout):
    x = normalize_clip(_pixel_clip(layout), layout)
    bone = to_stream(x, layout, "bone", channels_last=True)
    np.testing.assert_allclose(bone[:, layout.center, :2], 0.0)
    parents = np.asarray(layout.parents)
    for v in range(layout.num_joints):
        np.testing.assert_allclose(bone[:, v, :2], x[:, v, :2] - x[:, parents[v], :2], atol=1e-6)
    np.testing.assert_array_equal(bone[..., 2], x[..., 2])


def test_motion_streams_last_frame_zero_and_layouts_agree():
    x = normalize_clip(_pixel_clip(TOY), TOY)
    jm = to_stream(x, TOY, "joint_motion")
    np.testing.assert_allclose(jm[:-1, :, :2], x[1:, :, :2] - x[:-1, :, :2], atol=1e-6)
    assert (jm[-1, :, :2] == 0).all()
    np.testing.assert_array_equal(jm[..., 2], x[..., 2])
    bm = to_stream(x, TOY, "bone_motion")
    bone = to_stream(x, TOY, "bone")
    np.testing.assert_allclose(bm[:-1, :, :2], bone[1:, :, :2] - bone[:-1, :, :2], atol=1e-6)
    assert (bm[-1, :, :2] == 0).all()
    # (C, T, V) gives the same numbers as (T, V, C).
    for s in STREAMS:
        ctv = to_stream(np.transpose(x, (2, 0, 1)), TOY, s)
        np.testing.assert_allclose(ctv, np.transpose(to_stream(x, TOY, s), (2, 0, 1)))
    with pytest.raises(ValueError, match="unknown stream"):
        to_stream(x, TOY, "velocity")


# ---------------------------------------------------------------------------- augmentations


@pytest.mark.parametrize("layout", _layouts(), ids=lambda l: l.name)
def test_flip_is_an_involution_that_swaps_sides(layout):
    x = normalize_clip(_pixel_clip(layout), layout)
    y = flip(x, layout)
    np.testing.assert_allclose(flip(y, layout), x)
    ls, rs = layout.index("left_shoulder"), layout.index("right_shoulder")
    np.testing.assert_allclose(y[:, ls, 0], -x[:, rs, 0])
    np.testing.assert_allclose(y[:, ls, 1:], x[:, rs, 1:])
    for v, name in enumerate(layout.joints):  # every left_* joint lands on its right_* twin
        if name.startswith("left_") and "right_" + name[5:] in layout.joints:
            np.testing.assert_allclose(y[:, v, 1], x[:, layout.index("right_" + name[5:]), 1])


def test_rotation_and_scale_keep_geometry_sane():
    x = normalize_clip(_pixel_clip(TOY), TOY)
    rng = np.random.default_rng(0)
    r = random_rotate(x, rng, max_degrees=30.0, p=1.0)
    np.testing.assert_allclose(np.linalg.norm(r[..., :2], axis=-1),
                               np.linalg.norm(x[..., :2], axis=-1), atol=1e-5)
    assert not np.allclose(r, x)
    s = random_scale(x, rng, strength=0.2, p=1.0)
    ratio = s[..., :2][x[..., :2] != 0] / x[..., :2][x[..., :2] != 0]
    assert ratio.min() >= 0.8 - 1e-6 and ratio.max() <= 1.2 + 1e-6
    np.testing.assert_array_equal(random_rotate(x, rng, p=0.0), x)
    np.testing.assert_array_equal(random_scale(x, rng, p=0.0), x)
    np.testing.assert_array_equal(random_flip(x, TOY, rng, p=0.0), x)


def test_temporal_crop_resize():
    x = np.arange(40, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    y = temporal_crop_resize(x, np.random.default_rng(0), 0.5, 0.5, out_len=40)
    assert y.shape == (40, 2, 3)
    assert y[-1, 0, 0] - y[0, 0, 0] == pytest.approx(19.0)  # a 20-frame window stretched
    assert (np.diff(y[:, 0, 0]) > 0).all()
    np.testing.assert_allclose(resample_time(x, 40), x)
    np.testing.assert_allclose(resample_time(x, 3)[:, 0, 0], [0.0, 19.5, 39.0])


def test_augmentations_leave_global_rng_alone():
    x = normalize_clip(_pixel_clip(TOY), TOY)
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    cfg = AugmentConfig(flip_p=1.0, rotate_p=1.0, scale_p=1.0, crop_p=1.0)
    a = augment_clip(x, TOY, cfg, np.random.default_rng(7))
    uniform_sample(100, 16, np.random.default_rng(7))
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    b = augment_clip(x, TOY, cfg, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and np.isfinite(a).all()
