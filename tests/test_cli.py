"""The `piumr` command line: every command is listed, train's options mirror TrainConfig, bad values are
usage errors."""
from __future__ import annotations

import dataclasses
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import _COMMAND_MODULES, cli
from piumr_skel.engine.config import TrainConfig

EXPECTED_CORE = {"extract", "train", "eval", "predict", "demo"}


def _all_command_names() -> set[str]:
    names = set()
    for mod in _COMMAND_MODULES:
        names |= {cmd.name for cmd in importlib.import_module(f"cli.{mod}").COMMANDS}
    return names


def test_help_lists_every_command() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0, res.output
    listed = {line.split()[0] for line in res.output.split("Commands:")[1].splitlines() if line.strip()}
    assert EXPECTED_CORE <= listed
    assert listed == _all_command_names()


def test_console_script_runs() -> None:
    """The installed entry point (pyproject [project.scripts]) resolves and prints the group help."""
    exe = shutil.which("piumr", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the piumr console script is not installed next to this Python (pip install -e .)")
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert all(name in res.stdout for name in EXPECTED_CORE)


def test_train_help_shows_every_config_option() -> None:
    res = CliRunner().invoke(cli, ["train", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in res.output, f"train --help does not show {flag}"
    assert "--config" in res.output and "--resume" in res.output
    assert "--no-tfam" in res.output and "--no-girl" in res.output   # switches for the ablation
    assert "joint|bone|joint_motion|bone_motion" in res.output       # choices shown


@pytest.mark.parametrize("command", ["eval", "predict", "demo"])
def test_other_training_commands_have_help(command: str) -> None:
    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


@pytest.mark.parametrize("args,needle", [
    (["--epochs", "many"], "'many' is not a valid integer"),
    (["--stream", "skeleton"], "'skeleton' is not one of 'joint', 'bone', 'joint_motion', 'bone_motion'"),
    (["--epochs", "0"], "epochs: must be >= 1"),
    (["--backbone", "resnet"], "backbone: unknown 'resnet'; choices: ctrgcn, stgcn"),
    (["--lr", "-1"], "lr: must be a finite number > 0"),
    (["--no-such-option"], "No such option"),
])
def test_bad_option_is_a_usage_error(args: list[str], needle: str) -> None:
    res = CliRunner().invoke(cli, ["train", *args])
    assert res.exit_code == 2, res.output  # click's usage-error code, not a traceback
    assert needle in res.output
    assert "Traceback" not in res.output


def test_bad_yaml_key_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("epochz: 3\n")
    res = CliRunner().invoke(cli, ["train", "--config", str(tmp_path / "r.yaml")])
    assert res.exit_code == 2
    assert "unknown key(s) 'epochz' (did you mean 'epochs'?)" in res.output


def test_demo_rejects_bad_epochs() -> None:
    res = CliRunner().invoke(cli, ["demo", "--epochs", "0"])
    assert res.exit_code == 2 and "--epochs" in res.output
