"""Part-local coordinates (the hand_local stream) and the person-style augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from piumr_skel.data.transforms import PersonStyleConfig, part_anchor, part_local, person_style, scale_limbs, to_stream
from piumr_skel.skeleton.layouts import get_layout

HAND_LAYOUTS = ("mp_holistic", "mp_holistic_face", "halpe136", "openpose28")


@pytest.mark.parametrize("name", HAND_LAYOUTS)
def test_every_hand_layout_has_hand_anchors(name):
    layout = get_layout(name)
    for side in ("left", "right"):
        anchor = part_anchor(layout, f"{side}_hand")
        assert anchor is not None and "wrist" in layout.joints[anchor]


@pytest.mark.parametrize("name", HAND_LAYOUTS)
def test_hand_shape_is_invariant_to_where_the_hand_is_and_its_size(name):
    layout = get_layout(name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, layout.num_joints, 2)).astype(np.float32)
    idx = np.asarray(layout.parts["right_hand"])
    anchor = part_anchor(layout, "right_hand")
    moved = x.copy()
    # the same hand shape, 2.5 times larger, somewhere else
    moved[:, idx] = x[:, anchor:anchor + 1] + 2.5 * (x[:, idx] - x[:, anchor:anchor + 1]) + np.float32(3.0)
    moved[:, anchor] += 3.0
    a, b = part_local(x, layout), part_local(moved, layout)
    np.testing.assert_allclose(a[:, idx], b[:, idx], atol=1e-4)
    body = np.setdiff1d(np.arange(layout.num_joints), np.concatenate(
        [np.asarray(layout.parts[p]) for p in ("left_hand", "right_hand", "face") if p in layout.parts]))
    np.testing.assert_array_equal(a[:, body], x[:, body])          # the body stays body-normalised


def test_a_missing_hand_stays_at_zero_in_the_local_frame():
    layout = get_layout("mp_holistic")
    x = np.random.default_rng(1).normal(size=(4, layout.num_joints, 3)).astype(np.float32)
    idx = np.asarray(layout.parts["left_hand"])
    anchor = part_anchor(layout, "left_hand")
    x[:, idx, :2] = x[:, anchor:anchor + 1, :2]                  # where the normaliser puts a never-seen hand
    x[:, idx, 2] = 0.0
    out = to_stream(x, layout, "hand_local", channels_last=True)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, idx, :2], 0.0)
    np.testing.assert_array_equal(out[..., 2], x[..., 2])         # the score passes through


def test_scale_limbs_scales_each_bone_and_keeps_the_tree():
    layout = get_layout("mp_pose")
    x = np.random.default_rng(2).normal(size=(3, layout.num_joints, 3)).astype(np.float32)
    factors = np.random.default_rng(3).uniform(0.5, 1.5, layout.num_joints)
    out = scale_limbs(x, layout, factors)
    parents = np.asarray(layout.parents)
    np.testing.assert_allclose(out[..., :2] - out[:, parents, :2],
                               (x[..., :2] - x[:, parents, :2]) * factors[:, None], atol=1e-5)
    np.testing.assert_array_equal(out[:, layout.center], x[:, layout.center])


def test_person_style_is_reproducible_from_the_clip_generator_and_changes_the_clip():
    layout = get_layout("mp_holistic")
    x = np.random.default_rng(4).normal(size=(30, layout.num_joints, 3)).astype(np.float32)
    cfg = PersonStyleConfig(p=1.0)
    a = person_style(x, layout, np.random.default_rng([5, 0, 1]), cfg)
    b = person_style(x, layout, np.random.default_rng([5, 0, 1]), cfg)
    np.testing.assert_array_equal(a, b)
    assert a.shape[1:] == x.shape[1:] and np.isfinite(a).all()
    assert 30 / 1.4 - 1 <= a.shape[0] <= 30 / 0.7 + 1             # tempo within its range
    assert not np.array_equal(a[: min(len(a), 30)], x[: min(len(a), 30)])
    np.testing.assert_array_equal(person_style(x, layout, np.random.default_rng(0), PersonStyleConfig(p=0.0)), x)
