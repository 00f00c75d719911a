"""Tests of `piumr compare`: McNemar, late fusion, refusals on fabricated runs; end to end on tiny real runs."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from piumr_skel.data.splits import write_split
from piumr_skel.engine.config import make_config, save_config
from piumr_skel.engine.metrics import ma52_metrics, subject_robustness
from piumr_skel.tools.compare import (
    PUBLISHED_MA52,
    CompareError,
    align_runs,
    check_compatible,
    compare_runs,
    late_fusion,
    load_run,
    mcnemar,
)

SHARED_MA52 = Path(__file__).resolve().parents[2] / "shared" / "ma52"


# ----------------------------------------------------------------------------- fabricated runs
def fake_run(root: Path, name: str, scores: np.ndarray, labels: np.ndarray, subjects: list[str],
             clip_ids: list[str], *, split: str = "val", config: dict[str, Any] | None = None,
             split_parts: dict[str, list[str]] | None = None) -> Path:
    """A checkpoint-free run folder holding exactly what compare reads: config.yaml, split/, eval outputs."""
    run = root / name
    run.mkdir(parents=True)
    save_config(make_config({"split": "xsub", "seed": 0, **(config or {})}), run / "config.yaml")
    if split_parts is not None:
        write_split(run / "split", split_parts)
    pred = scores.argmax(1)
    pd.DataFrame({"clip_id": clip_ids, "subject": subjects, "label": labels, "pred": pred,
                  "correct": pred == labels}).to_csv(run / f"predictions_{split}.csv", index=False)
    np.save(run / f"scores_{split}.npy", scores.astype(np.float32))
    return run


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture()
def pair(tmp_path: Path):
    """Two runs on 40 clips of 6 classes that err on different clips, with subjects "0001".."0005"."""
    rng = np.random.default_rng(0)
    n, k = 40, 52
    labels = rng.integers(0, 6, n)
    clip_ids = [f"{i % 5 + 1:04d}_01_{i:04d}" for i in range(n)]
    subjects = [c[:4] for c in clip_ids]

    def scores_with_hits(hit: np.ndarray) -> np.ndarray:
        logits = rng.normal(0, 1, (n, k))
        wrong = (labels + 1 + rng.integers(0, 5, n)) % 6
        logits[np.arange(n), np.where(hit, labels, wrong)] += 4.0
        return softmax(logits)

    hit_a = rng.random(n) < 0.7
    hit_b = rng.random(n) < 0.5
    split = {"train": [f"9999_01_{i:04d}" for i in range(5)], "val": clip_ids}
    a = fake_run(tmp_path, "skeleton", scores_with_hits(hit_a), labels, subjects, clip_ids, split_parts=split)
    b = fake_run(tmp_path, "rgb", scores_with_hits(hit_b), labels, subjects, clip_ids, split_parts=split,
                 config={"modality": "rgb", "backbone": "tsm_r18"})
    return a, b


def test_mcnemar_exact_matches_hand_computed_binomial():
    # 7 clips only A gets right, 1 only B, 12 both: n = 8 discordant < 25, so the exact test:
    # p = 2 · P(X <= 1), X ~ Bin(8, 1/2) = 2 · (1 + 8) / 256.
    a = np.array([1] * 7 + [0] * 1 + [1] * 12 + [0] * 5, bool)
    b = np.array([0] * 7 + [1] * 1 + [1] * 12 + [0] * 5, bool)
    t = mcnemar(a, b)
    assert (t.only_a, t.only_b, t.method) == (7, 1, "exact binomial")
    assert t.p_value == pytest.approx(18 / 256, rel=1e-12)
    # symmetric in A and B
    assert mcnemar(b, a).p_value == pytest.approx(t.p_value, rel=1e-12)


def test_mcnemar_chi_square_with_continuity_correction():
    # 30 vs 10 discordant clips: chi2 = (|30 - 10| - 1)^2 / 40 = 9.025; with 1 dof, p = erfc(sqrt(chi2 / 2)).
    a = np.array([1] * 30 + [0] * 10 + [1] * 50, bool)
    b = np.array([0] * 30 + [1] * 10 + [1] * 50, bool)
    t = mcnemar(a, b)
    assert t.method == "chi-square (continuity corrected)"
    assert t.statistic == pytest.approx(9.025)
    assert t.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)), rel=1e-9)
    assert t.p_value < 0.01
    # identical predictions: nothing to test, p = 1
    same = mcnemar(a, a)
    assert (same.only_a, same.only_b, same.p_value) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="equal-length"):
        mcnemar(a, b[:-1])


def test_late_fusion_can_fix_what_both_runs_get_wrong():
    # Clip 0: A prefers class 1 slightly, B class 2 slightly; both put the true class 0 second.
    a = np.array([[0.45, 0.50, 0.05], [0.1, 0.8, 0.1]])
    b = np.array([[0.45, 0.05, 0.50], [0.2, 0.6, 0.2]])
    fused = late_fusion([a, b])
    np.testing.assert_allclose(fused, (a + b) / 2)
    assert list(fused.argmax(1)) == [0, 1]
    with pytest.raises(ValueError, match="shapes differ"):
        late_fusion([a, b[:, :2]])


def test_compare_fabricated_runs_writes_report_with_fusion_and_tests(pair, tmp_path: Path):
    a, b = pair
    res = compare_runs([a, b], tmp_path / "cmp", split="val")
    ra, rb = load_run(a), load_run(b)
    al = align_runs([ra, rb])
    # each run's row = metrics of its own scores; the fusion row = metrics of the averaged softmax
    for run, scores in (("skeleton", al.scores[0]), ("rgb", al.scores[1]),
                        ("late fusion: skeleton + rgb", (al.scores[0] + al.scores[1]) / 2)):
        want = {**ma52_metrics(scores, al.labels),
                **subject_robustness(scores.argmax(1) == al.labels, al.subjects)}
        got = res.metrics.loc[run]
        for key, value in want.items():
            assert got[key] == pytest.approx(value), (run, key)
    assert res.metrics.loc["skeleton", "action_top1"] != res.metrics.loc["rgb", "action_top1"]
    # one McNemar row per pair of runs, and the fusion against each fused run
    assert len(res.significance) == 3
    row = res.significance.iloc[0]
    ca, cb = al.scores[0].argmax(1) == al.labels, al.scores[1].argmax(1) == al.labels
    assert (row.only_a_correct, row.only_b_correct) == ((ca & ~cb).sum(), (~ca & cb).sum())
    assert row.p_value == pytest.approx(mcnemar(ca, cb).p_value)
    # per body part: the Body class (actions 0-4) is scored; bodies absent from gt are NaN
    assert np.isfinite(res.per_body.loc["skeleton", "Body"])
    assert res.per_body.loc["clips"].sum() == 40
    # files
    text = res.report.read_text()
    for piece in ("## Metrics", "late fusion: skeleton + rgb", "McNemar", "## Per body part", ".png)",
                  "Worst-10% subj. acc."):
        assert piece in text, piece
    assert "[published]" not in text  # not the official split
    for name in ("metrics.csv", "per_body.csv", "per_class.csv", "significance.csv", "compare.json"):
        assert (res.out_dir / name).is_file()
    assert len(res.figures) == 2 and all(f.stat().st_size > 1000 for f in res.figures)
    assert pd.read_csv(res.out_dir / "metrics.csv", index_col=0).shape[0] == 3


def test_runs_align_on_shared_clips_only(pair, tmp_path: Path):
    a, b = pair
    pred = pd.read_csv(b / "predictions_val.csv", dtype={"clip_id": str, "subject": str})
    scores = np.load(b / "scores_val.npy")
    keep = np.arange(5, 35)[::-1]  # fewer clips, another order
    pred.iloc[keep].to_csv(b / "predictions_val.csv", index=False)
    np.save(b / "scores_val.npy", scores[keep])
    ra, rb = load_run(a), load_run(b)
    al = align_runs([ra, rb])
    assert len(al.clip_ids) == 30
    assert list(al.clip_ids) == list(ra.predictions["clip_id"].iloc[5:35])
    np.testing.assert_allclose(al.scores[1], scores[np.arange(5, 35)], rtol=1e-6)
    assert al.subjects[0] == "0001"  # leading zeros kept
    res = compare_runs([a, b], tmp_path / "cmp")
    assert res.metrics["clips"].iloc[0] == 30
    assert "not scored by every run" in res.report.read_text()


def test_published_rows_only_on_the_official_split(tmp_path: Path):
    rng = np.random.default_rng(1)
    labels = np.arange(10) % 5
    ids = [f"0001_01_{i:04d}" for i in range(10)]
    runs = [fake_run(tmp_path, n, softmax(rng.normal(0, 1, (10, 52))), labels, ["0001"] * 10, ids,
                     config={"split": "official"}) for n in ("a", "b")]
    res = compare_runs(runs, tmp_path / "cmp", fuse=None)
    rows = [r for r in res.metrics.index if r.endswith("[published]")]
    assert len(rows) == len(PUBLISHED_MA52)
    tsm = res.metrics.loc["TSM (RGB) [published]"]
    assert tsm["action_top1"] == 56.75 and math.isnan(tsm["subj_acc_mean"])
    assert math.isnan(res.metrics.loc["CTR-GCN (skeleton) [published]", "action_top5"])
    text = res.report.read_text()
    assert "not reproduced" in text and "| TSM (RGB) [published] | 56.75 |" in text
    assert not any(r.startswith("late fusion") for r in res.metrics.index)


def test_refuses_different_split_settings_split_files_classes_and_labels(tmp_path: Path):
    rng = np.random.default_rng(2)
    labels = np.arange(8) % 4
    ids = [f"0001_01_{i:04d}" for i in range(8)]
    subj = ["0001"] * 8
    s = lambda: softmax(rng.normal(0, 1, (8, 52)))  # noqa: E731
    split = {"train": ["0002_01_0000"], "val": ids}
    base = fake_run(tmp_path, "base", s(), labels, subj, ids, split_parts=split)

    other_seed = fake_run(tmp_path, "seed1", s(), labels, subj, ids, split_parts=split, config={"split_seed": 1})
    with pytest.raises(CompareError, match=r"different splits in the configs: split_seed 1 vs 0"):
        check_compatible([load_run(base), load_run(other_seed)])

    moved = {"train": ["0002_01_0000", ids[0]], "val": ids[1:]}
    other_split = fake_run(tmp_path, "moved", s(), labels, subj, ids, split_parts=moved)
    with pytest.raises(CompareError, match=r"the train part of split/split.json differs: 1 clips only"):
        check_compatible([load_run(base), load_run(other_split)])

    names = tmp_path / "names.txt"
    names.write_text("".join(f"{i}\tclass {i}\n" for i in range(52)))
    other_classes = fake_run(tmp_path, "classes", s(), labels, subj, ids, split_parts=split,
                             config={"class_names": str(names)})
    with pytest.raises(CompareError, match=r"different class sets: class 0 is 'class 0' vs 'shaking body'"):
        compare_runs([base, other_classes], tmp_path / "cmp")

    relabelled = fake_run(tmp_path, "relabelled", s(), (labels + 1) % 4, subj, ids, split_parts=split)
    with pytest.raises(CompareError, match=r"different labels on 8 shared clips"):
        check_compatible([load_run(base), load_run(relabelled)])

    # a file-protocol run with another seed has the same split: no refusal
    fa = fake_run(tmp_path, "fa", s(), labels, subj, ids, split_parts=split, config={"split": "file",
                  "split_file": "x.json"})
    fb = fake_run(tmp_path, "fb", s(), labels, subj, ids, split_parts=split, config={"split": "file",
                  "split_file": "x.json", "seed": 3})
    check_compatible([load_run(fa), load_run(fb)])


def test_bad_run_folders_give_clear_errors(tmp_path: Path):
    with pytest.raises(CompareError, match="not a run folder"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match="neither config.yaml nor a checkpoint"):
        load_run(tmp_path / "empty")
    ids = ["0001_01_0000", "0001_01_0001"]
    run = fake_run(tmp_path, "r", softmax(np.eye(2, 52)), np.array([0, 1]), ["0001"] * 2, ids)
    np.save(run / "scores_val.npy", np.zeros((3, 52), np.float32))
    with pytest.raises(CompareError, match=r"scores_val.npy: scores have shape \(3, 52\), expected \(2, 52\)"):
        load_run(run)
    with pytest.raises(CompareError, match=r"no predictions_test.csv \+ scores_test.npy and no checkpoint"):
        load_run(run, "test")


# ----------------------------------------------------------------------------- real tiny runs
@pytest.mark.slow
def test_cli_end_to_end_on_two_tiny_trained_runs(tiny_recipe_factory, tmp_path: Path):
    """ERM vs TFAM + GIRL, 1 epoch each on the tiny synthetic store, compared through the CLI."""
    from cli.compare import compare_cmd
    from piumr_skel.engine.train import train

    runs = []
    for name, on in (("erm", False), ("full", True)):
        runs.append(train(make_config(tiny_recipe_factory(name=name, tfam=on, girl=on)), echo=lambda s: None))
    # one run without eval outputs: compare must evaluate it first
    (runs[1] / "predictions_val.csv").unlink()
    (runs[1] / "scores_val.npy").unlink()
    out = tmp_path / "cmp"
    result = CliRunner().invoke(compare_cmd, [str(r) for r in runs] + ["-o", str(out), "--names", "ERM,full"])
    assert result.exit_code == 0, result.output
    assert "late fusion: ERM + full" in result.output
    assert (runs[1] / "scores_val.npy").is_file()
    text = (out / "report.md").read_text()
    assert "McNemar" in text and "![per_class_full_vs_ERM]" in text
    metrics = pd.read_csv(out / "metrics.csv", index_col=0)
    assert list(metrics.index) == ["ERM", "full", "late fusion: ERM + full"]
    assert metrics["clips"].nunique() == 1 and metrics["clips"].iloc[0] > 0
    # a bad fuse position is a usage error, not a traceback
    bad = CliRunner().invoke(compare_cmd, [str(r) for r in runs] + ["-o", str(out), "--fuse", "1,5"])
    assert bad.exit_code == 2 and "--fuse" in bad.output


def test_cli_refuses_runs_on_different_splits(tiny_recipe_factory, tmp_path: Path):
    """Fabricated runs with another xsub fold: the CLI exits with the reason, no report."""
    from cli.compare import compare_cmd

    labels = np.arange(6) % 3
    ids = [f"0001_01_{i:04d}" for i in range(6)]
    rng = np.random.default_rng(3)
    a = fake_run(tmp_path, "f0", softmax(rng.normal(0, 1, (6, 52))), labels, ["0001"] * 6, ids)
    b = fake_run(tmp_path, "f1", softmax(rng.normal(0, 1, (6, 52))), labels, ["0001"] * 6, ids,
                 config={"fold": 1})
    result = CliRunner().invoke(compare_cmd, [str(a), str(b), "-o", str(tmp_path / "cmp")])
    assert result.exit_code == 1
    assert "cannot be compared" in result.output and "fold 1 vs 0" in result.output
    assert not (tmp_path / "cmp" / "report.md").exists()


@pytest.mark.slow
@pytest.mark.real
def test_real_rgb_and_skeleton_runs_compare_into_one_report(real_split, tmp_path: Path):
    """The issue's smoke test: a skeleton run and an RGB run on the 4 real MA-52 clips, one report."""
    if not (SHARED_MA52 / "videos").is_dir():
        pytest.skip(f"real MA-52 clips not found in {SHARED_MA52 / 'videos'} (../shared is absent)")
    from cli.compare import compare_cmd
    from piumr_skel.engine.train import train
    from pose_extract import extract_videos

    videos = SHARED_MA52 / "videos"
    labels_csv, split_json = real_split.labels, real_split.split
    store = tmp_path / "store"
    report = extract_videos(videos, store, workers=1, progress=False)
    assert not report.failed, report.failed

    common = dict(labels=str(labels_csv), split="file", split_file=str(split_json), epochs=1, batch_size=2,
                  warmup_epochs=0, max_steps_per_epoch=1, num_workers=0, test_clips=1, device="cpu",
                  out_dir=str(tmp_path / "runs"), tfam=False, girl=False)
    skel = train(make_config(dict(common, name="skeleton", store=str(store), cache_dir=str(tmp_path / "cache"),
                                  layout="mp_pose", backbone="stgcn", base_channels=4, num_blocks=3,
                                  clip_len=16)), echo=lambda s: None)
    rgb = train(make_config(dict(common, name="rgb", modality="rgb", store=str(videos), backbone="tsm_r18",
                                 base_channels=4, clip_len=4, image_size=64)), echo=lambda s: None)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(compare_cmd, [str(skel), str(rgb), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "2 shared clips" in text and "late fusion: skeleton + rgb" in text
    assert "RGB tsm_r18" in text and "skeleton stgcn" in text
    assert len(list(out.glob("*.png"))) == 2
