"""`piumr train / eval / predict / demo`: thin click wrappers over piumr_skel."""
from __future__ import annotations

import os

# Before torch is imported (libgomp reads this once): OpenMP threads that spin while waiting make a
# 2-thread step ~10x slower as soon as another process holds a core; passive waiting costs little
# on an idle machine. setdefault leaves a user's own choice alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses
import sys
import typing
from pathlib import Path

import click

from piumr_skel.engine.config import ConfigError, TrainConfig, load_config

_HELP = {
    "store": "keypoint store (skeleton) or video folder (rgb)",
    "labels": "MA-52 list file / CSV (clip_id,label[,subject]) / folder with the three MA-52 lists",
    "split": "protocol: official lists, subject-disjoint folds, or your own split file",
    "tfam_after": "1-based block after which TFAM runs (default: before the last stage)",
    "girl_warmup": "epochs of plain cross-entropy before GIRL (default: min(5, 10% of epochs))",
    "girl_ramp": "epochs after the warm-up over which the loss moves linearly from cross-entropy to GIRL "
                 "(0: switch at once)",
    "name": "recipe name = run folder under --out-dir (default derived from the settings)",
    "device": "auto | cpu | cuda | cuda:N",
    "max_steps_per_epoch": "cap on optimiser steps per epoch (smoke tests, benchmarks)",
}


def _click_type(tp):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin is typing.Union and len(args) == 1:
        return _click_type(args[0])
    if origin is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(tp)])
    return {int: int, float: float, str: str, bool: bool}.get(tp, str)


def config_options(func):
    """One click option per TrainConfig field (default None, so the YAML value stands unless given)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in reversed(dataclasses.fields(TrainConfig)):
        flag = f.name.replace("_", "-")
        tp = _click_type(hints[f.name])
        help_ = _HELP.get(f.name, "") + f" [default: {f.default}]"
        if tp is bool:
            func = click.option(f"--{flag}/--no-{flag}", f.name, default=None, help=help_.strip())(func)
        else:
            func = click.option(f"--{flag}", f.name, type=tp, default=None, help=help_.strip())(func)
    return func


def _load(config: str | None, overrides: dict) -> TrainConfig:
    try:
        return load_config(config, overrides)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None


@click.command("train")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="YAML recipe (configs/*.yaml)")
@click.option("--resume", is_flag=True, help="continue the run from its last.pt after a kill")
@click.option("--extend-epochs", is_flag=True,
              help="with --resume: allow more --epochs than the run was started with (stretches the "
                   "learning-rate schedule, so the run no longer equals an uninterrupted one)")
@config_options
def train_cmd(config, resume, extend_epochs, **overrides):
    """Train a backbone (ERM by default; --tfam --girl for PIUmr) into artifacts/runs/<recipe>/."""
    from piumr_skel.engine.train import DivergenceError, RunExistsError, train

    cfg = _load(config, overrides)
    try:
        run_dir = train(cfg, resume=resume, echo=click.echo, extend_epochs=extend_epochs)
    except (RunExistsError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    except DivergenceError as err:
        click.echo(f"error: training diverged: {err}", err=True)
        sys.exit(3)
    click.echo(f"run folder: {run_dir}")


@click.command("eval")
@click.argument("run", type=click.Path(exists=True))
@click.option("--split", default="val", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--store", default=None, help="score another store than the one trained on")
@click.option("--labels", default=None, help="labels for that store")
@click.option("--device", default="auto", show_default=True)
@click.option("-o", "--out", default=None, help="output folder (default: the run folder)")
def eval_cmd(run, split, store, labels, device, out):
    """Print and save every MA-52 metric and the per-subject robustness of a run or checkpoint."""
    from piumr_skel.engine.evaluate import evaluate_run

    try:
        evaluate_run(run, split=split, device=device, store=store, labels=labels, out_dir=out)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None


@click.command("predict")
@click.argument("run", type=click.Path(exists=True))
@click.option("--store", default=None, help="keypoint store holding the test clips")
@click.option("--test-list", default=None, help="MA-52 test_list_videos.txt (default: the run's test split)")
@click.option("-o", "--out", required=True, help="folder for prediction.csv and submission.zip")
@click.option("--device", default="auto", show_default=True)
@click.option("--allow-missing", is_flag=True,
              help="write a uniform-score row for each listed clip the store lacks (listed in "
                   "OUT/missing_clips.txt) instead of refusing")
@click.option("--body-from", type=click.Choice(["actions", "scores"]), default="actions", show_default=True,
              help="actions: body_pred_k = body class of action_pred_k, as the official MA-52/MAC packers "
                   "derive it (bodies may repeat); scores: the 5 bodies ranked by their summed action scores")
def predict_cmd(run, store, test_list, out, device, allow_missing, body_from):
    """Write the Codabench prediction.csv (top-5 action and body), one row per clip of a test list;
    a clip missing from the store is an error unless --allow-missing."""
    from piumr_skel.engine.evaluate import predict_run

    try:
        path = predict_run(run, out=out, store=store, test_list=test_list, device=device,
                           allow_missing=allow_missing, body_from=body_from, echo=click.echo)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {path}")


@click.command("demo")
@click.option("-o", "--out", default="artifacts/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", default=None, type=int, help="override the demo recipe's epoch count")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--quick", is_flag=True,
              help="a seconds-long smoke run (tiny model, 48 clips) that checks the install; learns little")
def demo_cmd(out, epochs, device, seed, quick):
    """The whole pipeline on the built-in synthetic sample: generate, train on some people, test on others."""
    from piumr_skel.tools.demo import run_demo

    if epochs is not None and epochs < 1:
        raise click.BadParameter(f"must be >= 1 (got {epochs})", param_hint="--epochs")
    run_demo(Path(out), epochs=epochs, device=device, seed=seed, preset="quick" if quick else "demo",
             echo=click.echo)


COMMANDS = [train_cmd, eval_cmd, predict_cmd, demo_cmd]
