"""Layouts: validation errors, left/right flips by name, tree structure, and assembling store arrays."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from piumr_skel.skeleton.layouts import LAYOUTS, Layout, assemble, get_layout

EXPECTED_V = {"mp_pose": 35, "mp_holistic": 77, "mp_holistic_face": 101, "coco17": 17, "openpose18": 18,
              "openpose28": 28, "halpe136": 136, "halpe44": 44}


def _tiny(**over) -> Layout:
    """A valid 5-joint skeleton (root, spine, head, left/right arm) with one field overridden."""
    kw = dict(name="tiny", joints=("root", "spine", "head", "left_arm", "right_arm"),
              edges=((1, 0), (2, 1), (3, 1), (4, 1)), center=0, flip_pairs=((3, 4),),
              parts={"body": (0, 1, 2), "left": (3,), "right": (4,)},
              sources=tuple(("keypoints", (i,)) for i in range(5)))
    kw.update(over)
    return Layout(**kw)


def test_tiny_layout_derived_fields():
    lay = _tiny()
    assert lay.num_joints == 5
    assert lay.parents.tolist() == [0, 0, 1, 1, 1]
    assert lay.flip_index.tolist() == [0, 1, 2, 4, 3]
    assert lay.index("head") == 2
    with pytest.raises(ValueError, match="no joint named 'tail'"):
        lay.index("tail")
    with pytest.raises(dataclasses.FrozenInstanceError):
        lay.center = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        lay.parts["body"] = (0,)  # type: ignore[index]
    with pytest.raises(ValueError, match="read-only"):
        lay.parents[1] = 2
    again = pickle.loads(pickle.dumps(lay))  # DataLoader workers and checkpoints pickle layouts
    assert again == lay and hash(again) == hash(lay) and (again.parents == lay.parents).all()


def test_disconnected_layout_raises():
    # "right_arm" hangs from nothing and "left_arm" from it: two pieces.
    with pytest.raises(ValueError, match=r"layout 'tiny': not connected: joints \['left_arm', 'right_arm'\]"):
        _tiny(edges=((1, 0), (2, 1), (3, 4)), flip_pairs=())


def test_duplicate_names_raise():
    with pytest.raises(ValueError, match="duplicate joint name 'spine' at indices 1 and 2"):
        _tiny(joints=("root", "spine", "spine", "left_arm", "right_arm"))


def test_non_involutive_flip_map_raises():
    with pytest.raises(ValueError, match="flip map is not its own inverse"):
        _tiny(flip_pairs=((3, 4), (4, 2)))


@pytest.mark.parametrize("over, message", [
    (dict(edges=((1, 0), (2, 1), (3, 1), (4, 1), (4, 2))), "has two parents"),
    (dict(edges=((1, 0), (2, 1), (3, 1), (4, 1), (0, 2))), "must not have a parent"),
    (dict(edges=((1, 0), (2, 1), (3, 1), (4, 9))), "outside 0..4"),
    (dict(edges=((1, 0), (2, 1), (3, 1), (4, 2))), "not left/right symmetric"),
    (dict(flip_pairs=((3, 3),)), "not two distinct joints"),
    (dict(parts={"body": (0, 1, 2), "left": (3,)}), r"joints \['right_arm'\] belong to no body part"),
    (dict(parts={"body": (0, 1, 2, 3), "left": (3,), "right": (4,)}), "is in parts 'body' and 'left'"),
    (dict(sources=(("keypoints", (0,)),)), "1 sources for 5 joints"),
    (dict(center=7), "center 7 out of range"),
])
def test_other_validation_errors(over, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**over)


def test_unknown_layout_names_choices():
    with pytest.raises(ValueError, match="unknown layout 'ntu25'; choices: mp_pose"):
        get_layout("ntu25")


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_is_a_tree_rooted_at_centre(name):
    lay = get_layout(name)
    assert lay.num_joints == EXPECTED_V[name] == len(lay.sources)
    assert len(lay.edges) == lay.num_joints - 1
    assert lay.parents[lay.center] == lay.center
    for v in range(lay.num_joints):  # following parents reaches the centre without a cycle
        seen, j = set(), v
        while j != lay.center:
            assert j not in seen, f"{name}: cycle through {lay.joints[j]}"
            seen.add(j)
            j = int(lay.parents[j])
    assert sorted(i for idx in lay.parts.values() for i in idx) == list(range(lay.num_joints))


@pytest.mark.parametrize("name", LAYOUTS)
def test_flip_pairs_map_left_to_right_by_name(name):
    lay = get_layout(name)
    flip = lay.flip_index
    assert (flip[flip] == np.arange(lay.num_joints)).all()
    for v, joint in enumerate(lay.joints):
        if "left" in joint:
            assert lay.joints[flip[v]] == joint.replace("left", "right"), (joint, lay.joints[flip[v]])
        elif "right" in joint:
            assert lay.joints[flip[v]] == joint.replace("right", "left"), (joint, lay.joints[flip[v]])
        else:
            assert flip[v] == v, f"{joint} is on the midline but flips to {lay.joints[flip[v]]}"
    # Parts mirror too: left_arm <-> right_arm.
    for part, idx in lay.parts.items():
        if "left" in part:
            assert sorted(flip[list(idx)].tolist()) == sorted(lay.parts[part.replace("left", "right")])


def test_mediapipe_bridges_and_hands():
    lay = get_layout("mp_holistic")
    p = lambda j: lay.joints[lay.parents[lay.index(j)]]  # noqa: E731
    assert lay.joints[lay.center] == "pelvis"
    assert p("nose") == "neck" and p("neck") == "pelvis" and p("mouth_left") == "nose"
    assert p("left_hand_wrist") == "left_wrist" and p("right_hand_wrist") == "right_wrist"
    assert p("left_hand_index_tip") == "left_hand_index_dip" and p("left_hand_index_mcp") == "left_hand_wrist"
    assert lay.sources[lay.index("neck")] == ("pose", (11, 12))
    assert lay.sources[lay.index("pelvis")] == ("pose", (23, 24))
    assert lay.sources[lay.index("right_hand_thumb_tip")] == ("right_hand", (4,))
    assert lay.joints[:33] == get_layout("mp_pose").joints[:33]


def test_halpe136_follows_alphapose_order():
    lay = get_layout("halpe136")
    assert lay.joints[17:20] == ("head", "neck", "hip") and lay.joints[lay.center] == "hip"
    assert lay.joints[24:26] == ("left_heel", "right_heel")
    assert lay.joints[26] == "face_right_jaw_8" and lay.joints[34] == "face_chin" and lay.joints[56] == "face_nose_tip"
    assert lay.joints[94] == "left_hand_wrist" and lay.joints[115] == "right_hand_wrist"
    assert lay.parents[94] == 9 and lay.parents[115] == 10 and lay.parents[56] == 0
    assert lay.sources[135] == ("keypoints", (135,))


def test_halpe44_is_the_halpe136_subset_mmn_indexes():
    from piumr_skel.skeleton.layouts import HALPE44_INDICES

    lay, full = get_layout("halpe44"), get_layout("halpe136")
    assert list(HALPE44_INDICES) == sorted(HALPE44_INDICES) and len(HALPE44_INDICES) == 44
    assert lay.joints == tuple(full.joints[i] for i in HALPE44_INDICES)
    assert lay.joints[lay.center] == "hip"
    # flips are halpe136's, read through the subset
    assert [HALPE44_INDICES[j] for j in lay.flip_index] == [full.flip_index[i] for i in HALPE44_INDICES]
    # every parent is the nearest kept ancestor in halpe136
    for v, p in enumerate(lay.parents):
        if v == lay.center:
            continue
        a = full.parents[HALPE44_INDICES[v]]
        while a not in HALPE44_INDICES:
            a = full.parents[a]
        assert HALPE44_INDICES[p] == a
    # bones of MMN's feeder_ma52.py (child, parent) that are also tree edges here: hands from the
    # wrists 9/10, the foot from the ankle, lips -> nose bottom -> nose, the bridge from the nose
    for c, p in [(32, 9), (33, 32), (37, 32), (38, 10), (43, 38), (24, 15), (20, 24), (31, 30),
                 (30, 27), (27, 0), (26, 0), (18, 19), (5, 18)]:
        assert lay.parents[c] == p, (lay.joints[c], lay.joints[p])
    assert lay.joints[32] == "left_hand_wrist" and lay.joints[38] == "right_hand_wrist"


def _mp_clip(T: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    pose = rng.uniform(0, 1, (T, 33, 4)).astype(np.float32)
    left = rng.uniform(0, 1, (T, 21, 3)).astype(np.float32)
    right = rng.uniform(0, 1, (T, 21, 3)).astype(np.float32)
    right[1] = np.nan  # right hand not found in frame 1
    pose[2] = np.nan   # no pose in frame 2
    return {"pose": pose, "left_hand": left, "right_hand": right}


def test_assemble_mediapipe_to_pixels():
    lay = get_layout("mp_holistic")
    clip = _mp_clip()
    out = assemble(lay, clip, width=100, height=200)
    assert out.shape == (3, 77, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 5, :2], clip["pose"][0, 5, :2] * [100, 200], rtol=1e-6)
    assert out[0, 5, 2] == clip["pose"][0, 5, 3]  # score = visibility
    neck = lay.index("neck")
    np.testing.assert_allclose(out[0, neck], out[0, [11, 12]].mean(axis=0), rtol=1e-6)
    rw = lay.index("right_hand_wrist")
    np.testing.assert_allclose(out[0, rw, :2], clip["right_hand"][0, 0, :2] * [100, 200], rtol=1e-6)
    assert out[0, rw, 2] == 1.0
    assert np.isnan(out[1, rw:rw + 21]).all() and not np.isnan(out[1, :rw]).any()
    assert np.isnan(out[2, :35]).all() and not np.isnan(out[2, 35:]).any()


def test_assemble_imported_keypoints_are_pixels():
    kp = np.random.default_rng(1).uniform(0, 500, (4, 17, 3)).astype(np.float32)
    out = assemble(get_layout("coco17"), {"keypoints": kp}, width=640, height=480)
    np.testing.assert_array_equal(out, kp)


def test_assemble_errors_name_the_problem():
    lay = get_layout("mp_holistic")
    clip = _mp_clip()
    with pytest.raises(ValueError, match=r"store parts \['left_hand'\] are missing"):
        assemble(lay, {k: v for k, v in clip.items() if k != "left_hand"}, 100, 100)
    clip["left_hand"] = clip["left_hand"][:2]
    with pytest.raises(ValueError, match="different frame counts"):
        assemble(lay, clip, 100, 100)
    with pytest.raises(ValueError, match=r"reads keypoints\[0..16\] but the part has 10 points"):
        assemble(get_layout("coco17"), {"keypoints": np.zeros((2, 10, 3), np.float32)}, 10, 10)


def test_assemble_face_subset_and_full_mesh_agree():
    from pose_extract.schema import FACE_SUBSET

    lay = get_layout("mp_holistic_face")
    clip = _mp_clip()
    mesh = np.random.default_rng(2).uniform(0, 1, (3, 478, 3)).astype(np.float32)
    subset = mesh[:, [i for _, i in FACE_SUBSET]]
    a = assemble(lay, {**clip, "face": subset}, 100, 100)
    b = assemble(lay, {**clip, "face": mesh}, 100, 100)
    np.testing.assert_array_equal(a, b)
    f0 = lay.index("face_nose_tip")
    np.testing.assert_allclose(a[:, f0, :2], mesh[:, 1, :2] * 100, rtol=1e-6)


def test_assemble_rejects_wrong_channels_and_world_coordinates():
    lay = get_layout("mp_pose")
    with pytest.raises(ValueError, match=r"part 'pose': expected \(T, V, 4\)"):
        assemble(lay, {"pose": np.zeros((2, 33, 3), np.float32)}, 10, 10)
    world = Layout(name="world", joints=("a", "b"), edges=((1, 0),), center=0, flip_pairs=(),
                   parts={"body": (0, 1)}, sources=(("pose_world", (0,)), ("pose_world", (1,))))
    with pytest.raises(ValueError, match="'pose_world' is not in image coordinates"):
        assemble(world, {"pose_world": np.zeros((2, 33, 4), np.float32)}, 10, 10)
