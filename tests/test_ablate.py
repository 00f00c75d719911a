"""`piumr ablate`: seeds, variants, spec checks, the summary table with paired tests, resume, the grouping
study, end to end."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from cli.ablate import ablate_cmd
from piumr_skel.tools import ablate
from piumr_skel.tools.ablate import (
    AblationError,
    make_spec,
    paired_test,
    parse_seeds,
    parse_variants,
    plan_runs,
    summary_table,
)

REPO = Path(__file__).resolve().parents[1]

# Tiny synthetic people and the tiniest model that still runs every part (TFAM, GIRL) on CPU.
TINY_SYNTH = {"preset": "demo", "num_subjects": 8, "clips_per_subject": 4, "num_classes": 3,
              "frames_range": [20, 30]}
TINY_TRAIN = dict(folds=2, layout="mp_pose", backbone="stgcn", base_channels=4, num_blocks=3, clip_len=8,
                  test_clips=1, batch_size=8, epochs=1, warmup_epochs=0, girl_warmup=0, max_steps_per_epoch=1,
                  num_workers=0, tfam_iters=5, tfam_anchors=4, girl_num_groups=2, device="cpu")


def _tiny_yaml(path: Path, **extra) -> Path:
    path.write_text(yaml.safe_dump({"synthetic": TINY_SYNTH, "seeds": 1, **TINY_TRAIN, **extra}))
    return path


# ----------------------------------------------------------------------------- small pieces
def test_parse_seeds_count_and_lists() -> None:
    assert parse_seeds(3) == [0, 1, 2]
    assert parse_seeds("2") == [0, 1]
    assert parse_seeds("0,5") == [0, 5]
    assert parse_seeds("7,") == [7]
    assert parse_seeds([4, 1]) == [4, 1]
    for bad in (0, "x", "1,1", "-1,2", [], True):
        with pytest.raises(AblationError, match="seeds"):
            parse_seeds(bad)
    with pytest.raises(AblationError, match="for seed 0 alone write '0,'"):
        parse_seeds("0")


def test_spec_refuses_what_the_ablation_controls(tmp_path: Path) -> None:
    store = dict(store=str(tmp_path / "s"), labels=str(tmp_path / "l.txt"))
    with pytest.raises(AblationError, match="--tfam"):
        make_spec(tmp_path, overrides={**store, "tfam": True})
    with pytest.raises(AblationError, match="--seed"):
        make_spec(tmp_path, overrides={**store, "seed": 3})
    with pytest.raises(AblationError, match="xsub"):
        make_spec(tmp_path, overrides={**store, "split": "official"})
    with pytest.raises(AblationError, match="--store and --labels"):
        make_spec(tmp_path, overrides={})
    with pytest.raises(AblationError, match="makes its own store"):
        make_spec(tmp_path, overrides=store, synthetic="demo")
    with pytest.raises(AblationError, match="unknown synthetic preset"):
        make_spec(tmp_path, config=_tiny_yaml(tmp_path / "a.yaml", synthetic={"preset": "huge"}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nfoo: 1\n")
    with pytest.raises(ValueError, match="bad.yaml.*'foo'"):
        make_spec(tmp_path, config=bad, overrides=store)


def test_yaml_controlled_keys_are_dropped_with_a_note(tmp_path: Path) -> None:
    cfg = _tiny_yaml(tmp_path / "r.yaml", tfam=True, seed=9, name="x")
    notes: list[str] = []
    spec = make_spec(tmp_path / "out", config=cfg, echo=notes.append)
    assert any("ignoring name, seed, tfam" in n for n in notes)
    assert spec.seeds == [0]
    assert spec.base.out_dir == str((tmp_path / "out" / "runs").resolve())


def test_parse_variants_picks_rows_with_erm_first() -> None:
    assert parse_variants(None) == list(ablate.DEFAULT_VARIANTS) == ["erm", "tfam", "girl", "full"]
    assert parse_variants("full,vrex") == ["erm", "full", "vrex"]          # the reference always runs
    assert parse_variants(["girl", "erm", "girl"]) == ["erm", "girl"]
    with pytest.raises(AblationError, match=r"unknown 'nope'.*choices: erm, tfam, girl, full, aug, full\+aug"):
        parse_variants("erm,nope")
    with pytest.raises(AblationError, match="choices"):
        parse_variants(" , ")


def test_variant_table_sets_the_switches_of_every_row(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, config=_tiny_yaml(tmp_path / "t.yaml", split_seed=3, aug_person=True),
                     variants=",".join(ablate.VARIANTS), seeds=2, echo=lambda s: None)
    runs = plan_runs(spec)
    cfg = {r.key: r.cfg for r in runs if (r.fold, r.seed) == (0, 0)}
    assert list(cfg) == list(ablate.VARIANTS)
    switches = {k: (c.tfam, c.girl, c.aug_person) for k, c in cfg.items()}
    assert switches["erm"] == (False, False, False)           # the YAML's aug_person is the ablation's to set
    assert switches["aug"] == (False, False, True) and switches["full+aug"] == (True, True, True)
    assert cfg["girl"].girl_version == cfg["full"].girl_version == 2 and cfg["full"].girl_groups == "input"
    for key in ("groupdro", "vrex"):
        c = cfg[key]
        assert (c.tfam, c.girl_version, c.girl_groups, c.girl_beta) == (False, 2, "subject", 0)
    assert (cfg["groupdro"].girl_lambda_var, cfg["groupdro"].girl_eta) == (0, 1)
    assert (cfg["vrex"].girl_lambda_var, cfg["vrex"].girl_eta) == (1, 0)
    # the weight-average rows: ERM and full with --ema; every other row keeps the recipe's (off)
    assert [k for k, c in cfg.items() if c.ema] == ["ema", "full+ema"]
    assert switches["ema"] == (False, False, False) and switches["full+ema"] == (True, True, False)
    for key, tfam in (("girl-v1", False), ("full-v1", True)):
        c = cfg[key]
        assert (c.tfam, c.girl_version, c.girl_groups, c.girl_num_groups) == (tfam, 1, "kmeans", 4)
    # GIRL's boundary weights alone: v2 with neither the variance nor the GroupDRO term
    c = cfg["girl-w"]
    assert (c.tfam, c.girl, c.girl_version, c.girl_lambda_var, c.girl_eta) == (False, True, 2, 0, 0)
    assert c.girl_beta == cfg["girl"].girl_beta > 0
    # TFAM after the first stage (the tiny YAML's 3 blocks: block 1) instead of before the last (block 2)
    assert (cfg["tfam-early"].tfam, cfg["tfam-early"].girl, cfg["full-early"].girl) == (True, False, True)
    assert cfg["tfam-early"].tfam_after == cfg["full-early"].tfam_after == 1
    assert cfg["tfam"].tfam_after is None and cfg["full"].tfam_after is None
    assert switches["full-early+aug"] == (True, True, True) and cfg["full-early+aug"].tfam_after == 1
    # the convergence check and every 2x row: its row's recipe at twice the epochs, nothing else changed
    # (TFAM's place included: full-early+aug-2x keeps TFAM after the first stage)
    assert cfg["erm-2x"].epochs == 2 * cfg["erm"].epochs
    for key in (k for k in cfg if k.endswith("-2x")):
        plain = key.removesuffix("-2x")
        assert {k: v for k, v in cfg[key].to_dict().items() if k not in ("epochs", "name")} == \
            {k: v for k, v in cfg[plain].to_dict().items() if k not in ("epochs", "name")}, key
    assert all(c.epochs == (2 if k.endswith("-2x") else 1) * cfg["erm"].epochs for k, c in cfg.items())
    switches_2x = (cfg["full-2x"].tfam, cfg["full-2x"].girl, cfg["girl-2x"].tfam, cfg["tfam-2x"].girl)
    assert switches_2x == (True, True, False, False)
    # folder names stay plain; the folds stay put while the seed varies
    assert {r.name for r in runs if r.key == "full+aug"} == {f"full-aug_f{f}_s{s}" for f in (0, 1) for s in (0, 1)}
    assert {r.cfg.split_seed for r in runs} == {3} and {r.seed for r in runs} == {0, 1}
    assert all(r.cfg.name == r.name for r in runs)


def test_cli_unknown_variant_is_one_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(ablate_cmd, ["-o", str(tmp_path / "o"), "--config", str(_tiny_yaml(tmp_path / "t.yaml")),
                                          "--variants", "erm,full,fancy"])
    assert res.exit_code == 2 and "unknown 'fancy'" in res.output
    assert "choices: " + ", ".join(ablate.VARIANTS) in res.output
    assert not (tmp_path / "o").exists()


def test_checkpoint_from_yaml_or_option_and_a_bad_one(tmp_path: Path) -> None:
    assert make_spec(tmp_path, config=_tiny_yaml(tmp_path / "a.yaml"), echo=lambda s: None).checkpoint == "best"
    spec = make_spec(tmp_path, config=_tiny_yaml(tmp_path / "b.yaml", checkpoint="last"), echo=lambda s: None)
    assert spec.checkpoint == "last" and {r.checkpoint for r in plan_runs(spec)} == {"last"}
    run = plan_runs(spec)[0]
    assert run.score_dir == run.run_dir / "last_epoch" and run.scored() is None
    assert make_spec(tmp_path, config=_tiny_yaml(tmp_path / "c.yaml", checkpoint="last"), checkpoint="best",
                     echo=lambda s: None).checkpoint == "best"          # the option wins over the YAML
    with pytest.raises(AblationError, match="checkpoint: expected one of best, last, got 'latest'"):
        make_spec(tmp_path, config=_tiny_yaml(tmp_path / "d.yaml", checkpoint="latest"), echo=lambda s: None)


def test_variants_from_yaml_and_controlled_switches(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, config=_tiny_yaml(tmp_path / "v.yaml", variants=["full", "aug"]), echo=lambda s: None)
    assert spec.variants == ["erm", "full", "aug"]
    assert make_spec(tmp_path, config=_tiny_yaml(tmp_path / "w.yaml", variants="tfam"), variants="vrex",
                     echo=lambda s: None).variants == ["erm", "vrex"]          # the option wins
    store = dict(store=str(tmp_path / "s"), labels=str(tmp_path / "l.txt"))
    for key in ("aug_person", "girl_version"):
        with pytest.raises(AblationError, match="--variants"):
            make_spec(tmp_path, overrides={**store, key: True if key == "aug_person" else 1})


def test_benchmark_recipe_parses_and_plans(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, config=REPO / "configs" / "ablate_synth.yaml")
    assert spec.synthetic == {"preset": "benchmark", "seed": 0, "overrides": {}}
    assert spec.base.split == "xsub" and spec.base.store == str(tmp_path.resolve() / "store")
    runs = plan_runs(spec)
    assert len(runs) == 4 * spec.base.folds * len(spec.seeds)
    assert {(r.cfg.tfam, r.cfg.girl) for r in runs} == {(False, False), (True, False), (False, True), (True, True)}
    # every variant sees the same (fold, seed) pairs, on the same folds
    pairs = {k: {(r.fold, r.seed) for r in runs if r.key == k} for k in ablate.DEFAULT_VARIANTS}
    assert len({frozenset(p) for p in pairs.values()}) == 1
    assert {r.cfg.split_seed for r in runs} == {0}
    spec.grouping_study = True
    keys = {r.key for r in plan_runs(spec)}
    assert keys == set(ablate.DEFAULT_VARIANTS) | {"full-features", "full-subject", "full-random"}
    assert {r.cfg.girl_groups for r in plan_runs(spec) if r.key.startswith("full")} == set(ablate.GROUPINGS)


def test_signs_dev_recipe_parses(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, config=REPO / "configs" / "ablate_signs_dev.yaml", echo=lambda s: None)
    assert (spec.base.layout, spec.base.folds, spec.base.split_seed, spec.seeds) == ("mp_holistic", 5, 0, [0, 1])
    assert spec.base.modality == "skeleton" and len(spec.seeds) >= 2          # the benchmark needs >= 2 seeds
    assert spec.base.store.endswith("artifacts/keypoints/signs_dev")


def _pairs_frame(pairs: dict, extra: dict | None = None) -> pd.DataFrame:
    rows = []
    for (fold, seed), (erm, full) in pairs.items():
        for key, top1, sstd in (("erm", erm, 10.0 + fold), ("full", full, 8.0)):
            rows.append({"key": key, "fold": fold, "seed": seed, "run_dir": "",
                         **{m: 1.0 for m in ablate.METRICS}, "action_top1": top1, "subj_acc_std": sstd,
                         "val_action_top1": top1 + 1, **(extra or {})})
    return pd.DataFrame(rows)


def test_summary_table_means_and_paired_deltas() -> None:
    table = summary_table(_pairs_frame({(0, 0): (50.0, 56.0), (1, 0): (60.0, 62.0)}), ["erm", "tfam", "full"])
    assert list(table.index) == ["erm", "full"]          # no tfam runs: no row
    assert table.loc["erm", "action_top1_mean"] == pytest.approx(55.0)
    assert table.loc["erm", "action_top1_std"] == pytest.approx(5.0)       # population std, as mean_std
    assert table.loc["full", "delta_action_top1_mean"] == pytest.approx(4.0)  # (6 + 2) / 2, paired by fold
    assert table.loc["full", "delta_action_top1_std"] == pytest.approx(2.0)
    assert table.loc["full", "delta_subj_acc_std_mean"] == pytest.approx(-2.5)
    assert table.loc["erm", "delta_action_top1_mean"] == 0.0
    assert table.loc["full", "val_action_top1_mean"] == pytest.approx(60.0)
    # 2 pairs, both positive: exact sign test, p = 2 * 0.5**2
    assert (table.loc["full", "test"], table.loc["full", "pairs"]) == ("sign", 2)
    assert table.loc["full", "delta_action_top1_p"] == pytest.approx(0.5)
    md = ablate.markdown_table(table, ablate.TITLES)
    lines = md.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[:5] == ["run", "Val Top-1 (best epoch)", "Action Top-1", "Δ Top-1 vs ERM", "p (Top-1)"]
    assert "Δ subj. std vs ERM" in head and "p (subj. std)" in head and head[-2:] == ["paired test", "runs"]
    erm = [c.strip() for c in lines[2].strip("|").split("|")]
    full = [c.strip() for c in lines[3].strip("|").split("|")]
    assert erm[0] == "ERM" and erm[2] == "55.00 ± 5.00" and erm[3] == "reference" and erm[-2] == "reference"
    assert full[3] == "+4.00 ± 2.00" and full[4] == "0.500" and full[-2] == "sign, n = 2"
    assert "Body Top-1" in lines[0]                      # the runs have body metrics: shown
    assert ablate.best_on_validation(table) == "full"
    # the convergence-check row is not a candidate, however well it scores on validation people
    frame = _pairs_frame({(0, 0): (50.0, 56.0), (1, 0): (60.0, 62.0)})
    check = frame[frame["key"] == "erm"].assign(key="erm-2x", val_action_top1=99.0)
    table = summary_table(pd.concat([frame, check]), ["erm", "full", "erm-2x"])
    assert table.loc["erm-2x", "val_action_top1_mean"] == 99.0 and ablate.best_on_validation(table) == "full"


def test_summary_table_leaves_out_body_metrics_nobody_has() -> None:
    body = {m: np.nan for m in ("body_top1", "f1_macro_body", "f1_micro_body", "f1_mean")}
    table = summary_table(_pairs_frame({(0, 0): (50.0, 56.0)}, body), ["erm", "full"])
    assert ablate.reported_metrics(table) == [m for m in ablate.METRICS if m not in body]
    md = ablate.markdown_table(table, ablate.TITLES)
    assert "Body" not in md and "F1_mean" not in md and "Action Top-1" in md
    assert "no body-level metrics" in ablate._notes(table, 2, 1, 0)


def test_paired_test_wilcoxon_with_enough_pairs_else_sign() -> None:
    from scipy import stats

    diff = [1.0, 2.0, -0.5, 3.0, 4.0, 2.5, 0.0]              # 6 nonzero: signed-rank on them
    name, p = paired_test(diff)
    assert name == "Wilcoxon" and p == pytest.approx(stats.wilcoxon([1.0, 2.0, -0.5, 3.0, 4.0, 2.5]).pvalue)
    name, p = paired_test([1.0, 2.0, 3.0, -1.0, 0.0])         # 4 nonzero, 3 up
    assert name == "sign" and p == pytest.approx(stats.binomtest(3, 4, 0.5).pvalue)
    assert paired_test([0.0, 0.0]) == ("sign", 1.0)
    assert paired_test([])[0] == "–"


def test_seed_independent_row_pairs_per_fold_with_erm_mean() -> None:
    frame = _pairs_frame({(0, 0): (50.0, 0.0), (0, 1): (54.0, 0.0), (1, 0): (60.0, 0.0)})
    frame = frame[frame["key"] == "erm"]
    lr = pd.DataFrame([{"key": "reference-lr", "fold": f, "seed": np.nan, "action_top1": a, "subj_acc_std": 5.0}
                       for f, a in ((0, 40.0), (1, 41.0))])
    table = summary_table(pd.concat([frame, lr], ignore_index=True), ["erm", "reference-lr"])
    assert table.loc["reference-lr", "runs"] == 2 and table.loc["reference-lr", "pairs"] == 2
    assert table.loc["reference-lr", "delta_action_top1_mean"] == pytest.approx(((40 - 52) + (41 - 60)) / 2)
    assert np.isnan(table.loc["reference-lr", "val_action_top1_mean"])


def test_seed_noise_is_the_pooled_within_fold_spread_of_erm() -> None:
    rows = [("erm", 0, 0, 40.0), ("erm", 0, 1, 44.0), ("erm", 1, 0, 50.0), ("erm", 1, 1, 54.0),
            ("full", 0, 0, 90.0), ("full", 0, 1, 10.0)]        # other rows do not count
    frame = pd.DataFrame(rows, columns=["key", "fold", "seed", "action_top1"])
    sigma, folds, runs = ablate.seed_noise(frame)
    assert sigma == pytest.approx(np.sqrt(8.0)) and (folds, runs) == (2, 4)
    line = ablate._noise_line(frame, {"erm": "ERM"})
    assert "σ = 2.83" in line and "with 4 pairs" in line and f"= {2.8 * 4.0 / 2:.2f} points" in line
    one_seed = frame[frame["seed"] == 0]
    assert ablate.seed_noise(one_seed) is None and ablate._noise_line(one_seed, {}) == ""


def test_prepare_synthetic_reuses_and_refuses_other_settings(tmp_path: Path) -> None:
    small = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_SYNTH.items() if k != "preset"}
    res = ablate.prepare_synthetic(tmp_path, "demo", overrides=small, echo=lambda s: None)
    stamp = (res.store / "store.json").stat().st_mtime_ns
    notes: list[str] = []
    ablate.prepare_synthetic(tmp_path, "demo", overrides=small, echo=notes.append)
    assert "reusing" in notes[0] and (res.store / "store.json").stat().st_mtime_ns == stamp
    with pytest.raises(AblationError, match="other settings"):
        ablate.prepare_synthetic(tmp_path, "demo", seed=1, overrides=small, echo=lambda s: None)


def test_two_ablations_starting_together_generate_the_store_once(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The second waits for the first's store instead of finding it half-written (and being told to delete it)."""
    import threading
    import time

    from piumr_skel.tools import synth

    small = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_SYNTH.items() if k != "preset"}
    real, calls = synth.generate_store, []

    def slow_generate(*args, **kw):
        calls.append(1)
        out = real(*args, **kw)
        time.sleep(0.5)          # the store is complete, the other process would see it unlocked now
        return out

    monkeypatch.setattr(synth, "generate_store", slow_generate)
    notes: list[str] = []
    errors: list[BaseException] = []

    def job() -> None:
        try:
            ablate.prepare_synthetic(tmp_path, "demo", overrides=small, echo=notes.append)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert errors == [] and len(calls) == 1
    assert sum("reusing" in n for n in notes) == 1 and sum("generating" in n for n in notes) == 1


# ----------------------------------------------------------------------------- driver with stand-ins
def _stand_ins(monkeypatch: pytest.MonkeyPatch, top1: dict[str, float], calls: list[str],
               fail: str | None = None, busy: str | None = None) -> None:
    """Replace train/evaluate by stand-ins: a run's test Top-1 is top1[its key] + its fold; `fail` diverges;
    `busy` is held by another job (its run folder's lock is taken)."""
    import piumr_skel.engine.evaluate as evaluate_mod
    import piumr_skel.engine.train as train_mod
    import pose_extract

    def fake_train(cfg, *, resume, echo):
        assert resume  # the ablation always resumes half-finished runs
        calls.append(cfg.name)
        if cfg.name == fail:
            raise train_mod.DivergenceError("loss became nan")
        if cfg.name == busy:
            from piumr_skel.engine.runguard import RunBusyError
            raise RunBusyError(f"run folder {cfg.name} is in use by pid 1 on host h, started t: piumr ablate")
        run = Path(cfg.out_dir) / cfg.name
        run.mkdir(parents=True, exist_ok=True)
        history = pd.DataFrame({"epoch": [1, 2], "train_acc": [30.0, 40.0],
                                "val_action_top1": [10.0, 20.0 + len(cfg.name)]})
        history.to_csv(run / "metrics.csv", index=False)
        (run / "metrics.json").write_text(history.to_json(orient="records"))
        return run

    def fake_evaluate(run_dir, *, split, device, quiet, out_dir=None):
        last = Path(run_dir).suffix == ".pt"    # last.pt scores 5 points below best.pt
        run_dir = Path(run_dir).parent if last else Path(run_dir)
        key, fold = run_dir.name.split("_")[0], int(run_dir.name.split("_")[1][1:])
        metrics = {m: 0.0 for m in ablate.METRICS if "body" not in m and m != "f1_mean"}  # not MA-52's classes
        metrics["action_top1"] = top1[key] + fold - 5 * last
        result = {"epoch": 1, "clips": 4, "metrics": metrics}
        if out_dir is not None:
            run_dir = Path(out_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / f"eval_{split}.json").write_text(json.dumps(result))
        pd.DataFrame({"subject": ["0001", "0002"], "accuracy": [0.5, 1.0], "clips": [2, 2]}).to_csv(
            run_dir / "per_subject_test.csv", index=False)
        pd.DataFrame({"clip_id": ["a", "b"], "subject": ["0001", "0002"], "label": [9, 24],
                      "pred": [9, 9 if key == "erm" else 24], "correct": [True, key != "erm"]}).to_csv(
            run_dir / "predictions_test.csv", index=False)
        return result

    monkeypatch.setattr(train_mod, "train", fake_train)
    monkeypatch.setattr(evaluate_mod, "evaluate_run", fake_evaluate)
    monkeypatch.setattr(pose_extract, "open_store", lambda path: None)   # no store behind the stand-ins


def test_driver_records_failures_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train/evaluate replaced by stand-ins: a failing run is reported, the others still make the table."""
    calls: list[str] = []
    _stand_ins(monkeypatch, {"erm": 40.0, "tfam": 45.0, "girl": 42.0, "full": 50.0}, calls, fail="girl_f1_s0")
    spec = make_spec(tmp_path, overrides={**TINY_TRAIN, "store": str(tmp_path / "s"),
                                          "labels": str(tmp_path / "l.txt")}, seeds=1)
    lines: list[str] = []
    result = ablate.run_ablation(spec, tmp_path, echo=lines.append)
    assert len(calls) == 8 and list(result.failures) == ["girl_f1_s0"]
    assert "DivergenceError" in result.failures["girl_f1_s0"]
    assert any("girl_f1_s0: FAILED" in line for line in lines)
    table = pd.read_csv(tmp_path / "ablation.csv", index_col="key")
    assert table.loc["girl", "runs"] == 1 and table.loc["erm", "runs"] == 2
    assert table.loc["full", "delta_action_top1_mean"] == pytest.approx(10.0)
    assert table.loc["girl", "delta_action_top1_mean"] == pytest.approx(2.0)   # only fold 0 pairs
    assert table.loc["full", "val_action_top1_mean"] == pytest.approx(20.0 + len("full_f0_s0"))
    assert "body_top1_mean" in table and table["body_top1_mean"].isna().all()
    md = (tmp_path / "ablation.md").read_text()
    assert "Body" not in md and "F1_mean" not in md and "Headline: Action Top-1 (action level)" in md
    assert "Best on validation people: **" in md
    assert "logistic regression" not in md                      # mp_pose has no right hand
    for png in ("subject_accuracy.png", "train_val_curves.png", "per_class_change.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    # again: only the failed run is tried
    calls.clear()
    ablate.run_ablation(spec, tmp_path, echo=lines.append)
    assert calls == ["girl_f1_s0"]



def test_a_run_another_job_trains_is_left_to_it_not_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ablations on one folder share the runs: a held run is that job's, not a failure (exit 0)."""
    calls: list[str] = []
    _stand_ins(monkeypatch, {"erm": 40.0, "tfam": 45.0, "girl": 42.0, "full": 50.0}, calls, busy="tfam_f0_s0")
    spec = make_spec(tmp_path, overrides={**TINY_TRAIN, "store": str(tmp_path / "s"),
                                          "labels": str(tmp_path / "l.txt")}, seeds=1, echo=lambda s: None)
    lines: list[str] = []
    result = ablate.run_ablation(spec, tmp_path, echo=lines.append)
    assert result.held == ["tfam_f0_s0"] and not result.failures and len(result.trained) == 7
    assert any("tfam_f0_s0: left to the job training it: run folder tfam_f0_s0 is in use by pid 1" in line
               for line in lines)
    assert "Traceback" not in (tmp_path / "ablate.log").read_text()
    assert pd.read_csv(tmp_path / "ablation.csv", index_col="key").loc["tfam", "runs"] == 1   # the table waits for it


def test_each_run_line_reports_the_weights_the_table_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With checkpoint: last the table scores last.pt, so the run's line gives last.pt's test result first."""
    _stand_ins(monkeypatch, {"erm": 40.0, "tfam": 45.0, "girl": 42.0, "full": 50.0}, [])
    overrides = {**TINY_TRAIN, "store": str(tmp_path / "s"), "labels": str(tmp_path / "l.txt")}
    for checkpoint, expected in (("last", "test (4 clips) last epoch Action Top-1 35.00, subj. std 0.00; "
                                          "best epoch Action Top-1 40.00"),
                                 ("best", "test (4 clips) best epoch Action Top-1 40.00, subj. std 0.00\n")):
        out = tmp_path / checkpoint
        spec = make_spec(out, overrides=overrides, seeds=1, checkpoint=checkpoint, echo=lambda s: None)
        lines: list[str] = []
        ablate.run_ablation(spec, out, echo=lines.append)
        erm = next(line for line in lines if line.startswith("[1/8] erm_f0_s0: done in"))
        assert expected in erm + "\n", erm
        assert (out / "runs" / "erm_f0_s0" / "last_epoch" / "eval_test.json").is_file() == (checkpoint == "last")


def test_a_recipe_the_backbone_refuses_stops_before_any_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--num-blocks 2 passes the config's checks but not ST-GCN's: one error naming the row, nothing trained."""
    calls: list[str] = []
    _stand_ins(monkeypatch, {"erm": 40.0, "tfam": 45.0, "girl": 42.0, "full": 50.0}, calls)
    spec = make_spec(tmp_path, overrides={**TINY_TRAIN, "num_blocks": 2, "store": str(tmp_path / "s"),
                                          "labels": str(tmp_path / "l.txt")}, seeds=1, echo=lambda s: None)
    with pytest.raises(AblationError, match=r"row 'erm' cannot be built with this recipe: num_blocks must be >= 3"):
        ablate.run_ablation(spec, tmp_path, echo=lambda s: None)
    assert calls == [] and not (tmp_path / "runs").exists()


def test_summary_only_trains_nothing_and_names_the_unfinished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _stand_ins(monkeypatch, {"erm": 40.0, "tfam": 45.0, "girl": 42.0, "full": 50.0}, calls, fail="girl_f1_s0")
    spec = make_spec(tmp_path, overrides={**TINY_TRAIN, "store": str(tmp_path / "s"),
                                          "labels": str(tmp_path / "l.txt")}, seeds=1, echo=lambda s: None)
    with pytest.raises(AblationError, match="none of the 8 runs .* has finished"):
        ablate.run_ablation(spec, tmp_path, echo=lambda s: None, summary_only=True)
    assert calls == [] and not (tmp_path / "ablation.csv").exists()
    ablate.run_ablation(spec, tmp_path, echo=lambda s: None)
    (tmp_path / "ablation.csv").unlink()
    calls.clear()
    lines: list[str] = []
    result = ablate.run_ablation(spec, tmp_path, echo=lines.append, summary_only=True)
    assert calls == [] and not result.trained and len(result.skipped) == 7
    assert any("7 of 8 runs finished; not finished (left out): girl_f1_s0" in line for line in lines)
    table = pd.read_csv(tmp_path / "ablation.csv", index_col="key")
    assert table.loc["girl", "runs"] == 1 and table.loc["full", "delta_action_top1_mean"] == pytest.approx(10.0)


def test_twice_the_epochs_rows_get_their_own_paired_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _stand_ins(monkeypatch, {"erm": 40.0, "full": 36.0, "erm-2x": 50.0, "full-2x": 53.0}, calls)
    spec = make_spec(tmp_path, overrides={**TINY_TRAIN, "store": str(tmp_path / "s"),
                                          "labels": str(tmp_path / "l.txt")}, seeds=1,
                     variants="erm,full,erm-2x,full-2x", echo=lambda s: None)
    result = ablate.run_ablation(spec, tmp_path, echo=lambda s: None)
    assert not result.failures and sorted(calls) == sorted(f"{k}_f{f}_s0" for k in ("erm", "full", "erm-2x", "full-2x")
                                                          for f in (0, 1))
    assert result.table.loc["erm-2x", "delta_action_top1_mean"] == pytest.approx(10.0)   # the convergence check
    assert result.best_on_val != "erm-2x"
    md = (tmp_path / "ablation_2x.md").read_text()
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ") and "---" not in line}
    assert "reference" in rows["| ERM, 2× epochs (convergence check)"]
    assert "+3.00 ± 0.00" in rows["| full, 2× epochs"]                  # against ERM at 2x, not at 1x
    assert "| full (TFAM + GIRL)" not in rows


# ----------------------------------------------------------------------------- end to end
def _mtimes(runs: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/last.pt")}


def test_ablate_end_to_end_resume_and_grouping_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2 folds × 1 seed × 4 variants on tiny synthetic people, through the CLI; then resume + grouping study."""
    import piumr_skel.engine.plots as plots_mod

    # The 52-class confusion matrices that evaluate_run draws cost seconds per run on a loaded
    # 2-core machine and are not what this test is about.
    monkeypatch.setattr(plots_mod, "plot_confusion_matrix", lambda *a, **k: None)
    out = tmp_path / "abl"
    recipe = _tiny_yaml(tmp_path / "tiny.yaml")
    runner = CliRunner()
    res = runner.invoke(ablate_cmd, ["-o", str(out), "--config", str(recipe)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (out / "store" / "store.json").is_file()
    assert res.output.count(": done in ") == 8 and "trained 8, already finished 0, failed 0" in res.output

    md = (out / "ablation.md").read_text().splitlines()
    rows = [line for line in md if line.startswith("| ") and not line.startswith("| run")]
    assert [r.split(" | ")[0] for r in rows] == ["| ERM", "| +TFAM", "| +GIRL", "| full (TFAM + GIRL)"]
    assert rows[0].rstrip(" |").endswith("reference | 2")
    assert all(" ± " in r for r in rows) and all("sign, n = 2" in r for r in rows[1:])
    table = pd.read_csv(out / "ablation.csv", index_col="key")
    assert list(table.index) == ["erm", "tfam", "girl", "full"] and (table["runs"] == 2).all()
    assert table.loc["erm", "delta_action_top1_mean"] == 0.0
    per_run = pd.read_csv(out / "ablation_runs.csv")
    assert len(per_run) == 8 and set(per_run["fold"]) == {0, 1}
    for key in ablate.DEFAULT_VARIANTS:  # the table's means are the per-run test results
        got = per_run.loc[per_run["key"] == key, "action_top1"].mean()
        assert table.loc[key, "action_top1_mean"] == pytest.approx(got)
        assert per_run.loc[per_run["key"] == key, "val_action_top1"].notna().all()
    for png in ("subject_accuracy.png", "train_val_curves.png", "per_class_change.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    # the variants differ where they should
    saved = {p.parent.name: yaml.safe_load(p.read_text()) for p in (out / "runs").glob("*/config.yaml")}
    assert {(c["tfam"], c["girl"]) for n, c in saved.items() if n.endswith("_f0_s0")} == {
        (False, False), (True, False), (False, True), (True, True)}

    # the same runs scored with their last epoch's weights: evaluation only, tables in OUT/last_epoch
    best_md = (out / "ablation.md").read_text()
    before = _mtimes(out / "runs")
    res = runner.invoke(ablate_cmd, ["-o", str(out), "--config", str(recipe), "--summary-only",
                                     "--checkpoint", "last"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert _mtimes(out / "runs") == before and (out / "ablation.md").read_text() == best_md
    last_md = (out / "last_epoch" / "ablation.md").read_text()
    assert "Val Top-1 (last epoch)" in last_md and "the last epoch's weights (last.pt) are scored" in last_md
    last_runs = pd.read_csv(out / "last_epoch" / "ablation_runs.csv")
    assert len(last_runs) == 8 and last_runs["val_action_top1"].notna().all()
    for run_dir in (out / "runs").iterdir():
        scored = {s: json.loads((run_dir / "last_epoch" / f"eval_{s}.json").read_text()) for s in ("val", "test")}
        assert {r["checkpoint"] for r in scored.values()} == {str(run_dir / "last.pt")}
        assert scored["test"]["epoch"] == 1 and json.loads((run_dir / "eval_test.json").read_text())["epoch"] == 1
        # one epoch: best.pt and last.pt hold the same weights, so they score the same
        best = json.loads((run_dir / "eval_test.json").read_text())["metrics"]["action_top1"]
        assert scored["test"]["metrics"]["action_top1"] == pytest.approx(best)
    # an unreadable last.pt: one warning line naming the run, the other runs still make the table
    broken = out / "runs" / "girl_f1_s0"
    good = (broken / "last.pt").read_bytes()
    shutil.rmtree(broken / "last_epoch")
    (broken / "last.pt").write_bytes(b"not a checkpoint")
    res = runner.invoke(ablate_cmd, ["-o", str(out), "--config", str(recipe), "--summary-only",
                                     "--checkpoint", "last"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "warning: girl_f1_s0: cannot score last.pt on val" in res.output and "Traceback" not in res.output
    assert len(pd.read_csv(out / "last_epoch" / "ablation_runs.csv")) == 7
    (broken / "last.pt").write_bytes(good)
    res = runner.invoke(ablate_cmd, ["-o", str(out), "--config", str(recipe), "--checkpoint", "middle"])
    assert res.exit_code == 2 and "'middle' is not one of 'best', 'last'" in res.output

    # resume: one run lost its evaluation (killed after training): it is re-evaluated, not retrained
    before = _mtimes(out / "runs")
    (out / "runs" / "tfam_f1_s0" / "eval_test.json").unlink()
    res = runner.invoke(ablate_cmd, ["-o", str(out), "--config", str(recipe), "--grouping-study"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    # 6 new runs + 1 re-evaluated
    assert res.output.count("finished earlier, skipped") == 7 and res.output.count(": done in ") == 7
    after = _mtimes(out / "runs")
    assert {k: after[k] for k in before} == before             # no run was trained again
    assert (out / "runs" / "tfam_f1_s0" / "eval_test.json").is_file()
    assert set(after) - set(before) == {f"full-{g}_f{f}_s0" for g in ("features", "subject", "random") for f in (0, 1)}
    grouping = pd.read_csv(out / "grouping.csv", index_col="key")
    assert list(grouping.index) == ["erm", "full", "full-features", "full-subject", "full-random"]
    gmd = (out / "grouping.md").read_text()
    assert "do the pseudo-groups carry person style?" in gmd
    for title in ablate.GROUPING_TITLES.values():
        assert f"full, GIRL groups: {title}" in gmd
    assert (out / "grouping_subject_accuracy.png").is_file()

    # the same folder with other training options is refused before anything is trained
    res = runner.invoke(ablate_cmd, ["-o", str(out), "--config", str(recipe), "--epochs", "2"])
    assert res.exit_code != 0 and "erm_f0_s0 was trained with other options" in res.output
    assert "epochs: 1 there, 2 now" in res.output
    assert _mtimes(out / "runs") == after


def test_recipe_check_reads_keys_added_since_a_run_as_their_defaults(tmp_path: Path) -> None:
    """A finished run whose config.yaml predates a new option (absent = its default) still counts as done."""
    from piumr_skel.engine.config import TrainConfig, make_config

    cfg = make_config({"name": "girl_f0_s0", "girl": True, "out_dir": str(tmp_path)})  # girl_tau matters
    run = ablate.AblationRun("girl", 0, 0, cfg)
    run.run_dir.mkdir(parents=True)
    old = cfg.to_dict()
    del old["girl_ramp"]
    (run.run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    ablate.check_same_recipe(run)                                # no error
    old["girl_tau"] = 2 * TrainConfig().girl_tau
    (run.run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(AblationError, match="girl_tau"):
        ablate.check_same_recipe(run)


def _legacy_run(tmp_path: Path, key: str, seed: int, **values) -> ablate.AblationRun:
    """A run folder whose config.yaml predates girl_version and split_seed (GIRL v1, folds from its seed)."""
    from piumr_skel.engine.config import make_config

    planned = make_config({**ablate.VARIANTS[key].overrides, "name": f"{key}_f0_s{seed}", "seed": seed,
                           "out_dir": str(tmp_path)})
    run = ablate.AblationRun(key, 0, seed, planned)
    run.run_dir.mkdir(parents=True)
    old = {k: v for k, v in planned.to_dict().items() if k not in ("girl_version", "split_seed", "aug_person",
                                                                  "girl_beta", "girl_eta_q", "plot_every")}
    old.update({"girl_groups": "kmeans", "girl_num_groups": 4, "girl_ramp": None, **values})
    (run.run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    return run


def test_recipe_check_reads_legacy_runs_as_what_they_trained(tmp_path: Path) -> None:
    """saved_config: a run from before GIRL v2 / split_seed was GIRL v1 on folds drawn from its seed."""
    ablate.check_same_recipe(_legacy_run(tmp_path / "a", "erm", 0))     # GIRL off, seed 0 = split_seed 0: reusable
    ablate.check_same_recipe(_legacy_run(tmp_path / "b", "tfam", 0))
    with pytest.raises(AblationError, match=r"split_seed: 1 there, 0 now.*made before girl_version and "
                                            r"split_seed existed, so it means GIRL v1 and folds drawn from its seed"):
        ablate.check_same_recipe(_legacy_run(tmp_path / "c", "erm", 1))
    with pytest.raises(AblationError, match="girl_version: 1 there, 2 now"):
        ablate.check_same_recipe(_legacy_run(tmp_path / "d", "girl", 0, girl=True))
    # with GIRL on in both, its keys count again
    with pytest.raises(AblationError, match="girl_num_groups: 4 there, 8 now"):
        ablate.check_same_recipe(_legacy_run(tmp_path / "e", "girl", 0, girl=True, girl_version=2,
                                             girl_groups="input", split_seed=0))
