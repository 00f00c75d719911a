"""The trainer end to end on a tiny synthetic store: run folder, SIGKILL + resume, divergence, DDP,
eval / predict, bad inputs, and `piumr demo`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from piumr_skel.engine.config import load_config, make_config, save_config
from piumr_skel.engine.evaluate import evaluate_run, load_checkpoint, predict_run
from piumr_skel.engine.metrics import METRIC_ORDER
from piumr_skel.engine.train import DivergenceError, RunExistsError, run_dir_for, train

REPO = Path(__file__).resolve().parents[1]
ROBUSTNESS = ("subj_acc_mean", "subj_acc_std", "subj_acc_worst10")


def _quiet(_: str) -> None:
    pass


def _history(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "metrics.json").read_text())


def _comparable(history: list[dict]) -> list[dict]:
    """Per-epoch losses and val metrics; wall-clock time is the one thing allowed to differ."""
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ----------------------------------------------------------------------------- (a) run folder
@pytest.mark.slow
def test_run_folder_contents(tiny_recipe_factory) -> None:
    cfg = make_config(tiny_recipe_factory(epochs=2))
    run_dir = train(cfg, echo=_quiet)
    assert run_dir.name == cfg.recipe_name()
    for name in ("config.yaml", "metrics.csv", "metrics.json", "best.pt", "last.pt", "train.log",
                 "curves.png", "split/split.json", "eval_val.json"):
        assert (run_dir / name).is_file(), f"missing {name}"
    assert load_config(run_dir / "config.yaml") == cfg
    split = json.loads((run_dir / "split" / "split.json").read_text())
    assert set(split["splits"]) == {"train", "val", "test"} and split["splits"]["train"]
    assert not set(split["splits"]["train"]) & set(split["splits"]["test"])
    history = _history(run_dir)
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and "val_action_top1" in r for r in history)
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 2
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(run_dir / name, map_location="cpu", weights_only=False)
        assert ckpt["config"] == cfg.to_dict()
        assert ckpt["layout"]["name"] == "mp_pose" and len(ckpt["layout"]["joints"]) == 35
        assert len(ckpt["class_names"]) == 52 and ckpt["class_names"][0]
    assert torch.load(run_dir / "last.pt", weights_only=False)["epoch"] == 2
    log = (run_dir / "train.log").read_text()
    assert "epoch   2/2" in log and "train / " in log
    # the software and processor, on which bit-for-bit reproduction depends
    assert f"machine: torch {torch.__version__}, numpy " in log and "thread(s)" in log
    # the model comes back from the checkpoint alone
    cfg2, model, _ = load_checkpoint(run_dir)
    assert cfg2 == cfg and not model.training
    # an existing run is never overwritten silently
    with pytest.raises(RunExistsError, match="--resume"):
        train(cfg, echo=_quiet)


# ----------------------------------------------------------------------------- (b) SIGKILL + resume
_KILLABLE = textwrap.dedent("""
    # Trains a recipe, but once epoch 2 has taken one optimiser step it writes a marker and
    # sleeps, so the parent can SIGKILL it mid-epoch (after last.pt of epoch 1 is on disk).
    import sys, time
    from pathlib import Path
    from piumr_skel.engine import runtime
    from piumr_skel.engine.config import load_config
    from piumr_skel.engine.train import train

    cfg = load_config(sys.argv[1])
    marker = Path(sys.argv[2])
    steps_per_epoch = int(sys.argv[3])
    lr_at = runtime.lr_at

    def lr_at_then_hang(step, **kw):
        if step == steps_per_epoch + 1:
            marker.write_text("in epoch 2")
            time.sleep(600)
        return lr_at(step, **kw)

    runtime.lr_at = lr_at_then_hang
    train(cfg, echo=print)
""")


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tiny_recipe_factory, tmp_path: Path) -> None:
    common = dict(epochs=3, warmup_epochs=1, girl_warmup=1, max_steps_per_epoch=2, aug_flip=0.5)
    straight = make_config(tiny_recipe_factory(name="straight", **common))
    straight_dir = train(straight, echo=_quiet)  # also builds the shared clip cache first

    killed = make_config(tiny_recipe_factory(name="killed", **common))
    save_config(killed, tmp_path / "killed.yaml")
    (tmp_path / "child.py").write_text(_KILLABLE)
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(tmp_path / "killed.yaml"),
                             str(marker), "2"], env=_child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the child ended before epoch 2:\n{proc.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the child never reached epoch 2")
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    run_dir = tmp_path / "runs" / "killed"
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1, "the kill must land after epoch 1's checkpoint and before epoch 2's"
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]   # no temporary checkpoint left

    resumed_dir = train(killed, resume=True, echo=_quiet)
    assert resumed_dir == run_dir
    got, want = _comparable(_history(run_dir)), _comparable(_history(straight_dir))
    assert [r["epoch"] for r in got] == [1, 2, 3]
    assert [r["girl"] for r in got] == [False, True, True]
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), f"epoch {a['epoch']}: {key}"
    log = (run_dir / "train.log").read_text()
    assert "resumed" in log and "at epoch 1/3" in log


def test_resume_of_finished_run_changes_nothing(tiny_recipe_factory) -> None:
    cfg = make_config(tiny_recipe_factory(epochs=1))
    run_dir = train(cfg, echo=_quiet)
    before = _history(run_dir)
    train(cfg, resume=True, echo=_quiet)
    assert _history(run_dir) == before


# ----------------------------------------------------------------------------- (c) divergence
def test_nan_input_stops_with_divergence_error(tiny_recipe_factory, monkeypatch) -> None:
    from piumr_skel.data import dataset as data_mod

    cfg = make_config(tiny_recipe_factory(epochs=3, max_steps_per_epoch=1))
    getitem = data_mod.SkeletonDataset.__getitem__

    def poisoned(self, index):  # clean in epoch 1, NaN from epoch 2 on: a corrupted clip
        x, y, i = getitem(self, index)
        if self.train and self.epoch >= 1:
            x = torch.full_like(x, float("nan"))
        return x, y, i

    monkeypatch.setattr(data_mod.SkeletonDataset, "__getitem__", poisoned)
    with pytest.raises(DivergenceError) as err:
        train(cfg, echo=_quiet)
    msg = str(err.value)
    assert "nan" in msg.lower() and "epoch 2" in msg and "last.pt" in msg and "NaN" in msg
    run_dir = Path(cfg.out_dir) / cfg.recipe_name()
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1  # the last good checkpoint stays
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert (run_dir / "best.pt").is_file()


def test_huge_lr_stops_with_divergence_error(tiny_recipe_factory) -> None:
    cfg = make_config(tiny_recipe_factory(epochs=2, max_steps_per_epoch=3, lr=1e30, girl=False,
                                          tfam=False, momentum=0.0))
    with pytest.raises(DivergenceError, match=r"loss became (nan|inf).*Lower --lr"):
        train(cfg, echo=_quiet)
    # The error came after the run folder was made: its train.log records it, with the traceback.
    log_text = (run_dir_for(cfg) / "train.log").read_text()
    assert "ERROR training stopped by an error" in log_text and "Lower --lr" in log_text
    assert "Traceback" in log_text


# ----------------------------------------------------------------------------- (d) DDP
_DDP_SCRIPT = textwrap.dedent("""
    import sys
    from piumr_skel.engine.config import load_config
    from piumr_skel.engine.train import train

    train(load_config(sys.argv[1]), echo=print)
""")


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_recipe_factory, tmp_path: Path) -> None:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    cfg = make_config(tiny_recipe_factory(epochs=1, batch_size=4, name="ddp"))
    train(make_config(tiny_recipe_factory(epochs=1, name="warm_cache")), echo=_quiet)  # cache built once
    save_config(cfg, tmp_path / "ddp.yaml")
    (tmp_path / "ddp_train.py").write_text(_DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(tmp_path / "ddp_train.py"), str(tmp_path / "ddp.yaml")]
    env = _child_env()
    env.update(OMP_NUM_THREADS="1")
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("torchrun with 2 CPU processes did not finish in 300 s")
    out = res.stdout + res.stderr
    if res.returncode != 0 and ("EADDRINUSE" in out or "Address already in use" in out
                                or "Operation not permitted" in out):
        pytest.skip(f"cannot start a 2-process gloo group here: {out[-500:]}")
    assert res.returncode == 0, out[-4000:]
    run_dir = tmp_path / "runs" / "ddp"
    assert "world 2" in out
    for name in ("config.yaml", "metrics.json", "best.pt", "last.pt", "train.log"):
        assert (run_dir / name).is_file(), f"missing {name}\n{out[-2000:]}"
    history = _history(run_dir)
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    assert "module." not in next(iter(torch.load(run_dir / "last.pt", weights_only=False)["model"]))


# ----------------------------------------------------------------------------- (e) eval / predict
@pytest.fixture(scope="module")
def trained_run(tiny_recipe_in, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    return train(make_config(tiny_recipe_in(out / "runs", epochs=1)), echo=_quiet)


def test_eval_prints_and_saves_every_metric(trained_run: Path, capsys) -> None:
    result = evaluate_run(trained_run, split="test", device="cpu")
    printed = capsys.readouterr().out
    expected = set(METRIC_ORDER) | set(ROBUSTNESS)
    assert set(result["metrics"]) == expected
    saved = json.loads((trained_run / "eval_test.json").read_text())
    assert saved["metrics"] == pytest.approx(result["metrics"]) and saved["split"] == "test"
    for title in ("Top-1", "F1"):
        assert title in printed
    pred = pd.read_csv(trained_run / "predictions_test.csv", dtype={"subject": str, "clip_id": str})
    assert list(pred.columns) == ["clip_id", "subject", "label", "pred", "correct"]
    scores = np.load(trained_run / "scores_test.npy")
    assert scores.shape == (len(pred), 52)
    np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-5)
    assert (scores.argmax(1) == pred["pred"].to_numpy()).all()
    assert result["metrics"]["action_top1"] == pytest.approx(100 * pred["correct"].mean())
    split = json.loads((trained_run / "split" / "split.json").read_text())
    test_ids = split["splits"]["test"]
    assert sorted(pred["clip_id"]) == sorted(test_ids)
    per_subject = pd.read_csv(trained_run / "per_subject_test.csv", dtype={"subject": str})
    assert per_subject["clips"].sum() == len(pred)
    assert (trained_run / "confusion_test.png").is_file()


def test_predict_writes_codabench_csv(trained_run: Path, tiny_store, tmp_path: Path) -> None:
    labels = pd.read_csv(tiny_store.labels, sep=" ", header=None, names=["file", "label"])
    test_list = tmp_path / "test_list_videos.txt"
    chosen = labels["file"].iloc[[0, 7, 20]].tolist()
    test_list.write_text("".join(f"{f} 0\r\n" for f in chosen))  # hidden labels, CRLF, as MA-52 ships it
    path = predict_run(trained_run, out=tmp_path / "sub", test_list=str(test_list), device="cpu")
    assert path.name == "submission.zip"
    csv_path = tmp_path / "sub" / "prediction.csv"
    header = csv_path.read_text().splitlines()[0]
    assert header == ("vid," + ",".join(f"action_pred_{i}" for i in range(1, 6)) + ","
                      + ",".join(f"body_pred_{i}" for i in range(1, 6)))
    table = pd.read_csv(csv_path)
    assert sorted(table["vid"]) == sorted(chosen)
    actions = table[[f"action_pred_{i}" for i in range(1, 6)]].to_numpy()
    bodies = table[[f"body_pred_{i}" for i in range(1, 6)]].to_numpy()
    assert ((0 <= actions) & (actions < 52)).all() and all(len(set(r)) == 5 for r in actions)
    # default --body-from actions, the official packers' rule: body_pred_k = body of action_pred_k
    from piumr_skel.data.labels import body_of_action

    assert (bodies == body_of_action(actions)).all()


def test_eval_of_missing_run_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no best.pt or last.pt"):  # CheckpointError
        evaluate_run(tmp_path, split="val", device="cpu")


# ----------------------------------------------------------------------------- (f) bad inputs
def test_missing_labels_file(tiny_recipe_factory, tmp_path: Path) -> None:
    cfg = make_config(tiny_recipe_factory(labels=str(tmp_path / "nope.txt")))
    with pytest.raises(FileNotFoundError, match=r"labels file not found: .*nope\.txt"):
        train(cfg, echo=_quiet)


def test_saved_config_names_the_data_by_absolute_path(tiny_recipe_factory, tiny_store, tmp_path: Path,
                                                      monkeypatch) -> None:
    """Relative --store / --labels / --class-names are saved resolved, so the run evaluates from any folder."""
    monkeypatch.chdir(tiny_store.root)
    rel = {k: os.path.relpath(getattr(tiny_store, k), tiny_store.root) for k in ("store", "labels", "class_names")}
    cfg = make_config({**tiny_recipe_factory(), **rel})
    run_dir = train(cfg, echo=_quiet)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    for key in rel:
        assert saved[key] == ckpt["config"][key] == str(Path(getattr(tiny_store, key)).resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert evaluate_run(run_dir, split="val", device="cpu", quiet=True)["clips"] > 0


def test_labels_out_of_range(tiny_recipe_factory, tiny_store, tmp_path: Path) -> None:
    lines = tiny_store.labels.read_text().splitlines()
    bad = tmp_path / "labels.txt"
    bad.write_text("\n".join(lines[:-1] + [lines[-1].split()[0] + " 77"]) + "\n")
    cfg = make_config(tiny_recipe_factory(labels=str(bad)))
    with pytest.raises(ValueError, match=r"labels\.txt.*outside 0\.\.51") as err:
        train(cfg, echo=_quiet)
    assert lines[-1].split()[0].removesuffix(".mp4") in str(err.value)


def test_labels_matching_no_stored_clip(tiny_recipe_factory, tmp_path: Path) -> None:
    other = tmp_path / "labels.txt"
    other.write_text("".join(f"{9000 + s:04d}_00_{i:04d}.mp4 {i % 4}\n" for s in range(6) for i in range(6)))
    cfg = make_config(tiny_recipe_factory(labels=str(other)))
    with pytest.raises(ValueError, match=r"no labelled clip is in the store.*9000_00_0000"):
        train(cfg, echo=_quiet)


def test_empty_split(tiny_recipe_factory, tiny_store, tmp_path: Path) -> None:
    """A split file whose val clips are labelled but absent from the store: val is empty, and the message says why."""
    stored = [line.split()[0].removesuffix(".mp4") for line in tiny_store.labels.read_text().splitlines()]
    ghosts = [f"9999_00_{i:04d}" for i in range(3)]
    labels = tmp_path / "labels.txt"
    labels.write_text(tiny_store.labels.read_text() + "".join(f"{g}.mp4 0\n" for g in ghosts))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"splits": {"train": stored[:24], "val": ghosts, "test": stored[24:]}}))
    cfg = make_config(tiny_recipe_factory(labels=str(labels), split="file", split_file=str(split)))
    with pytest.raises(ValueError, match=r"the val split is empty: none of its 3 clips is both labelled and in"):
        train(cfg, echo=_quiet)


def test_bad_inputs_through_the_cli_are_usage_errors(tiny_recipe_factory, tmp_path: Path) -> None:
    from cli.train import train_cmd

    recipe = tiny_recipe_factory(labels=str(tmp_path / "nope.txt"))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = CliRunner().invoke(train_cmd, ["--config", str(tmp_path / "r.yaml")])
    assert res.exit_code == 1 and "labels file not found" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


# ----------------------------------------------------------------------------- (g) demo
@pytest.mark.slow
def test_demo_quick_through_cli(tmp_path: Path) -> None:
    from cli.train import demo_cmd

    res = CliRunner().invoke(demo_cmd, ["-o", str(tmp_path / "demo"), "--quick", "--device", "cpu"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    result = json.loads((tmp_path / "demo" / "demo_result.json").read_text())
    assert set(METRIC_ORDER) <= set(result["metrics"]) and result["split"] == "test"
    assert "Action Top-1" in res.output and "SYNTHETIC" in res.output and "what next" in res.output
    assert max(len(line) for line in res.output.splitlines() if line.startswith("|")) <= 100
    run_dir = Path(result["checkpoint"]).parent
    for name in ("config.yaml", "metrics.csv", "best.pt", "last.pt", "curves.png", "confusion_test.png",
                 "per_subject_test.csv", "train.log"):
        assert (run_dir / name).is_file(), name
    # a second call reuses the store and the finished run instead of failing or retraining
    again = CliRunner().invoke(demo_cmd, ["-o", str(tmp_path / "demo"), "--quick", "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert "reusing" in again.output


def test_girl_ramp_weight() -> None:
    from piumr_skel.engine.losses import ramp as girl_ramp_weight

    assert girl_ramp_weight(0.25, 0) == 1.0                      # no ramp: GIRL at once
    assert girl_ramp_weight(0.5, 2) == pytest.approx(0.25)
    assert girl_ramp_weight(2.0, 2) == 1.0 and girl_ramp_weight(7.0, 2) == 1.0
    assert girl_ramp_weight(-1.0, 2) == 0.0
    from piumr_skel.engine.config import ConfigError
    with pytest.raises(ConfigError, match="girl_ramp: must be >= 0"):
        make_config({"girl_ramp": -1})


@pytest.mark.slow
def test_girl_ramp_blends_cross_entropy_into_girl(tiny_recipe_factory) -> None:
    """Same seed, with and without a ramp: identical until GIRL starts, different once it blends."""
    recipe = tiny_recipe_factory(epochs=3, girl_warmup=1)
    switch = json.loads((train(make_config(dict(recipe, name="switch")), echo=_quiet) / "metrics.json").read_text())
    ramp = json.loads((train(make_config(dict(recipe, name="ramp", girl_ramp=2)), echo=_quiet)
                       / "metrics.json").read_text())
    assert [r["girl"] for r in ramp] == [False, True, True]
    assert ramp[0]["train_loss"] == pytest.approx(switch[0]["train_loss"], rel=1e-6)
    assert ramp[1]["train_loss"] != pytest.approx(switch[1]["train_loss"], rel=1e-6)


def test_history_records_how_the_girl_groups_agree_with_people_and_actions(tiny_recipe_factory) -> None:
    recipe = tiny_recipe_factory(epochs=2, girl_warmup=1, tfam=False)
    hist = {g: json.loads((train(make_config(dict(recipe, name=f"g-{g}", girl_groups=g)), echo=_quiet)
                           / "metrics.json").read_text()) for g in ("subject", "input")}
    assert "groups_nmi_subject" not in hist["subject"][0]            # warm-up epoch: no groups drawn
    assert hist["subject"][1]["groups_nmi_subject"] == pytest.approx(1.0)   # the true people, by definition
    assert 0.0 <= hist["input"][1]["groups_nmi_subject"] <= 1.0
    assert 0.0 <= hist["input"][1]["groups_nmi_action"] <= 1.0
