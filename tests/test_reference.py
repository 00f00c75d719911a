"""The logistic-regression reference row: right-hand features, one fit per fold, saved and reused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from piumr_skel.engine.config import make_config
from piumr_skel.skeleton.layouts import HAND_NAMES, get_layout
from piumr_skel.tools import ablate, reference

HOLISTIC = get_layout("mp_holistic")
HAND = reference.right_hand_joints(HOLISTIC)

TINY_SYNTH = {"preset": "demo", "num_subjects": 6, "clips_per_subject": 4, "num_classes": 3,
              "frames_range": [20, 30]}


def _clip(T: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clip = rng.normal(size=(T, HOLISTIC.num_joints, 3)).astype(np.float32)
    clip[..., 2] = 1.0
    return clip


def test_right_hand_joints_only_for_layouts_with_a_right_hand() -> None:
    assert HAND is not None and len(HAND) == 21
    assert HOLISTIC.joints[HAND[0]] == "right_hand_wrist"
    assert [HOLISTIC.joints[j] for j in HAND] == [f"right_hand_{n}" for n in HAND_NAMES]
    assert reference.right_hand_joints(get_layout("mp_pose")) is None


def test_features_are_wrist_relative_scaled_and_evenly_resampled() -> None:
    clip = _clip()
    feats = reference.right_hand_features(clip, HAND)
    assert feats.shape == (reference.FRAMES * 21 * 2,) and np.isfinite(feats).all()
    # invariant to where the hand is and how large the person is
    moved = clip.copy()
    moved[..., :2] = 3.0 * moved[..., :2] + np.array([5.0, -2.0])
    np.testing.assert_allclose(reference.right_hand_features(moved, HAND), feats, atol=1e-5)
    # a still hand: every resampled frame equals the offsets from the wrist over the wrist-to-middle-MCP length
    still = np.repeat(clip[:1], 4, axis=0)
    xy = still[0, :, :2].astype(np.float64)
    wrist, mcp = HAND[0], HAND[HAND_NAMES.index("middle_mcp")]
    expected = (xy[HAND] - xy[wrist]) / np.linalg.norm(xy[mcp] - xy[wrist])
    got = reference.right_hand_features(still, HAND).reshape(reference.FRAMES, 21, 2)
    np.testing.assert_allclose(got, np.broadcast_to(expected, got.shape), atol=1e-5)
    # resampling to the clip's own length keeps every frame
    per_frame = (clip[:, HAND, :2] - clip[:, HAND[:1], :2]) / _scale(clip)
    np.testing.assert_allclose(reference.right_hand_features(clip, HAND, frames=len(clip)).reshape(per_frame.shape),
                               per_frame, atol=1e-5)


def _scale(clip: np.ndarray) -> float:
    wrist, mcp = HAND[0], HAND[HAND_NAMES.index("middle_mcp")]
    return float(np.linalg.norm(clip[:, mcp, :2] - clip[:, wrist, :2], axis=-1).mean())


def test_a_hand_never_seen_gives_zeros_not_nan() -> None:
    clip = _clip()
    clip[:, HAND] = clip[:, HAND[:1]]              # normalisation puts an unseen hand on its wrist
    assert not reference.right_hand_features(clip, HAND).any()


@pytest.fixture(scope="module")
def holistic_spec(tmp_path_factory: pytest.TempPathFactory) -> ablate.AblationSpec:
    out = tmp_path_factory.mktemp("ref")
    recipe = out / "r.yaml"
    recipe.write_text(yaml.safe_dump({"synthetic": TINY_SYNTH, "folds": 2, "layout": "mp_holistic",
                                      "num_workers": 0, "device": "cpu"}))
    spec = ablate.make_spec(out, config=recipe, echo=lambda s: None)
    syn = spec.synthetic
    ablate.prepare_synthetic(out, syn["preset"], seed=syn["seed"], overrides=syn["overrides"], echo=lambda s: None)
    return spec


def test_one_fit_per_fold_saved_and_reused(holistic_spec: ablate.AblationSpec) -> None:
    out = Path(holistic_spec.base.out_dir).parent
    notes: list[str] = []
    results = reference.run_reference(holistic_spec.base, out / "reference", echo=notes.append)
    assert [r["fold"] for r in results] == [0, 1] and len(notes) == 2
    for r in results:
        assert 0.0 <= r["metrics"]["action_top1"] <= 100.0 and r["clips"] > 0
        assert {"subj_acc_std", "subj_acc_worst10"} <= set(r["metrics"])
    stamps = [p.stat().st_mtime_ns for p in sorted((out / "reference").glob("fold*.json"))]
    notes.clear()
    assert reference.run_reference(holistic_spec.base, out / "reference", echo=notes.append) == results
    assert notes == [] and stamps == [p.stat().st_mtime_ns for p in sorted((out / "reference").glob("fold*.json"))]
    assert reference.load_reference(out / "reference", holistic_spec.base) == results
    # other folds: the saved results do not belong to them
    other = make_config({**holistic_spec.base.to_dict(), "split_seed": 1})
    assert reference.load_reference(out / "reference", other) == []

    # the ablation table gets the row, one run per fold
    result = ablate.summarise(holistic_spec, out, runs=[], warn=lambda s: None)
    assert result.table.loc[reference.REFERENCE_KEY, "runs"] == 2
    assert reference.REFERENCE_TITLE in (out / "ablation.md").read_text()


def test_layout_without_a_right_hand_has_no_row(tmp_path: Path) -> None:
    notes: list[str] = []
    cfg = make_config({"layout": "mp_pose", "store": str(tmp_path), "labels": str(tmp_path / "l.csv")})
    assert reference.run_reference(cfg, tmp_path / "ref", echo=notes.append) == []
    assert "no right hand" in notes[0]
