"""Tests of the synthetic MA-52-like generator: schema, determinism, motions and person style."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from piumr_skel.data.labels import MA52_CLASSES, body_of_action, read_class_names, read_labels
from piumr_skel.tools.synth import (
    FACE_NAMES,
    PARTS,
    SYNTH_CLASSES,
    SynthConfig,
    draw_subject,
    draw_subjects,
    generate_clips,
    generate_store,
    synth_clip,
)
from pose_extract.schema import FACE_SUBSET

SHARED = Path(__file__).resolve().parents[2] / "shared" / "ma52"
TINY = SynthConfig(num_subjects=3, clips_per_subject=4, num_classes=8)
# No fidgets and no detector noise: used where a test looks at one action's own motion.
CLEAN = dataclasses.replace(SynthConfig(), habit_prob=0.0, noise_px_range=(0.0, 0.0),
                            num_classes=len(SYNTH_CLASSES))


def _clips(config: SynthConfig, seed: int) -> list:
    return list(generate_clips(config, seed))


def _equal_parts(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


# ---------------------------------------------------------------- config and class table

def test_config_presets_and_record() -> None:
    cfg = SynthConfig()
    assert 12 <= cfg.num_classes <= 16
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()
    demo, bench = SynthConfig.demo(), SynthConfig.benchmark()
    assert demo.num_subjects * demo.clips_per_subject <= 1000
    assert bench.num_subjects * bench.clips_per_subject > demo.num_subjects * demo.clips_per_subject
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_subjects = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="num_classes"):
        SynthConfig(num_classes=len(SYNTH_CLASSES) + 1)
    with pytest.raises(ValueError, match="frames_range"):
        SynthConfig(frames_range=(60, 45))


def test_classes_are_ma52_and_cover_every_body_class() -> None:
    for action, name in SYNTH_CLASSES:
        assert MA52_CLASSES[action] == name
    ids = [a for a, _ in SYNTH_CLASSES]
    assert len(set(ids)) == len(ids)
    assert {body_of_action(a) for a in ids[:7]} == set(range(7))
    assert {body_of_action(a) for a in SynthConfig().class_ids} == set(range(7))


def test_face_names_follow_the_store_schema() -> None:
    assert FACE_NAMES == tuple(name for name, _ in FACE_SUBSET)


# ---------------------------------------------------------------- clips in memory

def test_same_seed_same_clips_other_seed_other_clips() -> None:
    a, b, c = _clips(TINY, 0), _clips(TINY, 0), _clips(TINY, 1)
    assert [x.clip_id for x in a] == [x.clip_id for x in b]
    assert all(_equal_parts(x.parts, y.parts) for x, y in zip(a, b))
    assert not all(x.parts["pose"].shape == y.parts["pose"].shape
                   and np.allclose(x.parts["pose"], y.parts["pose"]) for x, y in zip(a, c))


def test_global_random_state_is_untouched() -> None:
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    _clips(TINY, 0)
    assert np.random.random() == before


def test_parts_shapes_names_and_missing_rows() -> None:
    clips = _clips(TINY, 0)
    assert len(clips) == TINY.num_subjects * TINY.clips_per_subject
    assert len({c.clip_id for c in clips}) == len(clips)
    for c in clips:
        subject, body, _ = c.clip_id.split("_")
        assert subject == c.subject and len(subject) == 4
        assert int(body) == body_of_action(c.label)
        assert set(c.parts) == set(PARTS)
        T = c.parts["pose"].shape[0]
        assert TINY.frames_range[0] <= T <= TINY.frames_range[1] and c.meta["num_frames"] == T
        for part, (V, C) in PARTS.items():
            x = c.parts[part]
            assert x.shape == (T, V, C) and x.dtype == np.float32
            missing = np.isnan(x)
            # a part is missing for whole frames, never for single coordinates
            assert np.array_equal(missing.any(axis=(1, 2)), missing.all(axis=(1, 2)))
            if part != "pose_world":
                assert c.meta[f"rate_{part}"] == pytest.approx(1 - missing.all(axis=(1, 2)).mean())
        assert not np.isnan(c.parts["pose"]).any() and not np.isnan(c.parts["pose_world"]).any()
        vis = c.parts["pose"][..., 3]
        assert vis.min() >= 0 and vis.max() <= 1


def test_coordinates_lie_in_the_image() -> None:
    pose = np.concatenate([c.parts["pose"][..., :2].reshape(-1, 2) for c in _clips(TINY, 0)])
    inside = ((pose >= 0) & (pose <= 1)).all(axis=1)
    assert inside.mean() > 0.99
    # a seated person: the head above the hips, the hips above the ankles (image y grows down)
    c = _clips(TINY, 0)[0].parts["pose"]
    assert c[:, 0, 1].mean() < c[:, 23:25, 1].mean() < c[:, 27:29, 1].mean()
    # the subject faces the camera: their left shoulder is on the image right
    assert (c[:, 11, 0] > c[:, 12, 0]).all()


def test_hands_drop_out_in_runs() -> None:
    cfg = dataclasses.replace(TINY, hand_detect_beta=(2.0, 2.0), num_subjects=6)
    rates, runs = [], []
    for c in _clips(cfg, 0):
        for part in ("left_hand", "right_hand"):
            miss = np.isnan(c.parts[part][:, 0, 0])
            rates.append(miss.mean())
            if 0 < miss.sum() < len(miss):
                starts = np.flatnonzero(np.diff(miss.astype(int)) == 1).size + int(miss[0])
                runs.append(miss.sum() / starts)
    assert 0.1 < np.mean(rates) < 0.9
    assert np.mean(runs) > 2.5          # misses come in runs, not single frames


# ---------------------------------------------------------------- motions

def _clip_of(action: int, subject: int = 0, seed: int = 0, config: SynthConfig = CLEAN) -> np.ndarray:
    """pose_world (T, 33, 4) of one clean clip of `action`."""
    style = draw_subject(subject, config, np.random.default_rng([seed, subject, 0]))
    parts, _ = synth_clip(style, action, config, np.random.default_rng([seed, subject, 7]))
    return parts["pose_world"]


def _std(p: np.ndarray, joints: list[int], axes: list[int]) -> float:
    return float(p[:, joints][..., axes].std(axis=0).mean())


HEAD, ANKLES_KNEES = list(range(11)), [25, 26, 27, 28]


@pytest.mark.parametrize("subject", [0, 1, 2])
def test_each_class_moves_its_own_joints(subject: int) -> None:
    nod = _clip_of(9, subject)
    assert _std(nod, HEAD, [1, 2]) > 5 * _std(nod, ANKLES_KNEES, [1, 2])
    legs = _clip_of(24, subject)
    assert _std(legs, ANKLES_KNEES, [1, 2]) > 5 * _std(legs, HEAD, [1, 2])
    shake = _clip_of(10, subject)                 # yaw: the nose moves sideways more than up-down
    assert _std(shake, [0], [0]) > 2 * _std(shake, [0], [1])
    shrug = _clip_of(2, subject)
    assert _std(shrug, [11, 12], [1]) > 5 * _std(shrug, [23, 24, 27, 28], [1])
    cross = _clip_of(28, subject)                 # one ankle crosses towards the other side
    assert _std(cross, [27, 28], [0]) > 5 * _std(cross, [15, 16], [0])
    for action in (43, 41):                       # a hand travels to the face and back
        p = _clip_of(action, subject)
        dist = np.linalg.norm(p[:, [15, 16], None, :3] - p[:, None, [0], :3], axis=-1).min(axis=(1, 2))
        assert dist.min() < 0.22 and dist.max() > 0.35
    rub = _clip_of(14, subject)                   # both wrists meet in front of the body
    gap = np.linalg.norm(rub[:, 15, :3] - rub[:, 16, :3], axis=-1)
    assert gap.min() < 0.09
    assert np.ptp(rub[:, [15, 16], :3], axis=0).max() > 0.03


def test_confusable_pairs_share_joints() -> None:
    # nodding and bowing both pitch the head; they differ in rhythm, not in which joints move
    # at the nominal tempo and without tremor, so that the rhythm is the action's own
    steady = dataclasses.replace(CLEAN, speed_sd=0.0, clip_speed_sd=0.0, style_class_coupling=0.0,
                                 tremor_amp_range=(0.0, 0.0))
    nod, bow = _clip_of(9, config=steady), _clip_of(5, config=steady)
    for p in (nod, bow):
        assert _std(p, [0], [1, 2]) > 3 * _std(p, [27, 28], [1, 2])

    def rhythmic(x: np.ndarray) -> float:
        """Share of the signal's power in 1.5-4 Hz (a nod's rhythm) at 30 fps."""
        power = np.abs(np.fft.rfft(x - x.mean())) ** 2
        freq = np.fft.rfftfreq(len(x), 1 / 30)
        return float(power[(freq > 1.5) & (freq < 4)].sum() / power[freq > 0].sum())

    assert rhythmic(nod[:, 0, 1]) > 3 * rhythmic(bow[:, 0, 1])


def test_unknown_action_is_rejected() -> None:
    style = draw_subject(0, CLEAN, np.random.default_rng(0))
    with pytest.raises(ValueError):
        synth_clip(style, 51, CLEAN, np.random.default_rng(0))


# ---------------------------------------------------------------- person style

def test_person_style_differs_between_subjects() -> None:
    cfg = dataclasses.replace(TINY, num_subjects=6, clips_per_subject=5, noise_px_range=(0.0, 0.0))
    widths: dict[str, list[float]] = {}
    for c in _clips(cfg, 0):
        pw = c.parts["pose_world"]
        widths.setdefault(c.subject, []).append(float(np.linalg.norm(pw[:, 11, :3] - pw[:, 12, :3], axis=-1).mean()))
    means = np.array([np.mean(v) for v in widths.values()])
    within = np.mean([np.std(v) for v in widths.values()])
    assert means.std() > 3 * within        # shoulder width is a property of the person
    styles = draw_subjects(dataclasses.replace(SynthConfig(), num_subjects=8), 0)
    for attr in ("speed", "amplitude", "tremor_freq", "focal", "noise_px", "hand_rate"):
        values = [getattr(s, attr) for s in styles]
        assert np.std(values) > 0.05 * abs(np.mean(values)), attr


def test_class_prior_is_skewed_per_subject() -> None:
    from scipy.stats import chi2_contingency
    cfg = SynthConfig(num_subjects=8)
    styles = draw_subjects(cfg, 0)
    priors = np.stack([s.prior for s in styles])
    assert np.allclose(priors.sum(1), 1) and (priors > 0).all()
    assert np.median(priors.max(1)) > 2.5 / cfg.num_classes           # a favourite class each
    assert len({int(p.argmax()) for p in priors}) > 2                  # not everyone's the same
    # the labels drawn follow the prior: subject and label are strongly dependent
    counts = np.stack([np.random.default_rng([0, i, 1]).multinomial(200, s.prior) for i, s in enumerate(styles)])
    keep = counts.sum(0) > 0
    assert chi2_contingency(counts[:, keep])[1] < 1e-6


# ---------------------------------------------------------------- the store on disk

def _store_tables(store: Path):
    import pyarrow.parquet as pq
    frames = pq.read_table(sorted((store / "frames").glob("*.parquet"))).sort_by([("clip_id", "ascending"),
                                                                                    ("frame", "ascending")])
    clips = pq.read_table(sorted((store / "clips").glob("*.parquet"))).sort_by("clip_id")
    return frames, clips


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth") / "store"
    return generate_store(out, config=TINY, seed=0, labels_dir=out.parent)


def test_store_roundtrip_and_schema(store) -> None:
    from pose_extract import open_store
    s = open_store(store.store)
    assert s.info["schema_version"] == 1 and s.info["kind"] == "mediapipe_holistic"
    assert {k: tuple(v) for k, v in s.info["parts"].items()} == PARTS
    assert s.info["settings"]["synth"]["num_subjects"] == TINY.num_subjects
    clips = s.clips()
    expected = {c.clip_id: c for c in _clips(TINY, 0)}
    assert set(clips["clip_id"]) == set(expected)
    assert (clips["status"] == "ok").all() and (clips["width"] == 1080).all() and (clips["height"] == 1296).all()
    assert dict(zip(clips["clip_id"], clips["subject"])) == {k: c.subject for k, c in expected.items()}
    for cid, c in list(expected.items())[:4]:
        loaded = s.load_clip(cid)
        assert _equal_parts({k: loaded[k] for k in PARTS}, c.parts)


def test_store_marks_missing_parts_as_null(store) -> None:
    frames, _ = _store_tables(store.store)
    assert frames["pose"].null_count == 0
    assert frames["face"].null_count > 0                          # pixelated faces: mostly not found
    assert frames["left_hand"].null_count + frames["right_hand"].null_count > 0
    hands = frames["left_hand"].drop_null().combine_chunks().flatten().to_numpy()
    assert np.isfinite(hands).all()                               # missing = null, never NaN or zeros


def test_store_is_deterministic(store, tmp_path: Path) -> None:
    again = generate_store(tmp_path / "again", config=TINY, seed=0)
    other = generate_store(tmp_path / "other", config=TINY, seed=1)
    f0, c0 = _store_tables(store.store)
    f1, c1 = _store_tables(again.store)
    f2, _ = _store_tables(other.store)
    assert f0.equals(f1) and c0.select(["clip_id", "num_frames"]).equals(c1.select(["clip_id", "num_frames"]))
    assert not f0.equals(f2)
    assert store.labels.read_text() == again.labels.read_text()


def test_labels_files(store) -> None:
    lines = store.labels.read_text().splitlines()
    assert len(lines) == TINY.num_subjects * TINY.clips_per_subject
    for line in lines:
        name, label = line.split(" ")
        subject, body, index = name.removesuffix(".mp4").split("_")
        assert len(subject) == 4 and len(body) == 2 and len(index) == 4
        assert int(body) == body_of_action(int(label))
        assert int(label) in TINY.class_ids
    df = read_labels(store.labels)
    assert set(df["subject"]) == {f"{i + 1:04d}" for i in range(TINY.num_subjects)}
    assert read_class_names(store.class_names) == list(MA52_CLASSES)


def test_label_names_match_the_real_ma52_file(store) -> None:
    real = SHARED / "label_name.txt"
    if not real.exists():
        pytest.skip(f"{real} not found (the shared MA-52 files live outside the repo)")
    assert read_class_names(store.class_names) == read_class_names(real)


def test_refuses_to_overwrite_a_store(store) -> None:
    with pytest.raises(FileExistsError, match=str(store.store.name)):
        generate_store(store.store, config=TINY)


def test_generation_is_fast() -> None:
    import time
    cfg = SynthConfig(num_subjects=4, clips_per_subject=25)
    t0 = time.perf_counter()
    n = sum(1 for _ in generate_clips(cfg, 0))
    per_clip = (time.perf_counter() - t0) / n
    assert per_clip < 0.015, f"{per_clip * 1e3:.1f} ms per clip; 2,000 clips must take well under a minute"

