"""Every bad input of issue 10 ends in one `Error:` line and a nonzero exit, never a traceback; the
cases and their exact messages are the table in docs/BAD_INPUTS.md, which this test (re)writes.

Regenerate the table after changing a message: PIUMR_REGEN_DOCS=1 python -m pytest tests/test_bad_inputs.py
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_recipe

from cli.main import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "BAD_INPUTS.md"


class Env(NamedTuple):
    """A trained tiny run, its store, and broken copies of both."""

    root: Path
    store: Path
    run: Path
    train: list[str]          # the tiny recipe as `piumr train` options, without --store
    clip: str
    labels: Path


class Case(NamedTuple):
    name: str
    args: Callable[[Env], list[str]]
    setup: Callable[[Env, pytest.MonkeyPatch, contextlib.ExitStack], None] | None = None
    check: Callable[[Env], None] | None = None   # e.g. nothing was written


def _train_options(recipe: dict) -> list[str]:
    out = []
    for key, value in recipe.items():
        if key == "store":
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            out += [flag, str(value)]
    return out


@pytest.fixture(scope="module")
def env(tiny_store, tmp_path_factory) -> Env:
    import cv2

    from piumr_skel.engine.config import make_config
    from piumr_skel.engine.train import train
    from pose_extract import open_store

    root = tmp_path_factory.mktemp("bad")
    recipe = tiny_recipe(tiny_store, root / "runs", name="run", girl=False, cache_dir=str(root / "cache"))
    run = train(make_config(recipe), echo=lambda s: None)
    (root / "plain").mkdir()
    (root / "badjson").mkdir()
    (root / "badjson" / "store.json").write_text("{oops")
    shutil.copytree(tiny_store.store, root / "trunc")
    unit = sorted((root / "trunc" / "clips").glob("*.parquet"))[0]
    unit.write_bytes(unit.read_bytes()[:100])
    for name, cut in (("empty_best", 0), ("trunc_best", 2)):
        shutil.copytree(run, root / name)
        best = root / name / "best.pt"
        best.write_bytes(best.read_bytes()[: len(best.read_bytes()) // cut] if cut else b"")
    writer = cv2.VideoWriter(str(root / "short.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    (root / "videos").mkdir()
    shutil.copy(root / "short.mp4", root / "videos" / "0001_01_0001.mp4")
    (root / "poses").mkdir()
    (root / "poses" / "a.pose").write_bytes(b"not a pose file")
    (root / "poses.csv").write_text("clip_id,label\na,0\n")
    (root / "fake.npz").write_bytes(b"PK not a zip")
    train_opts = _train_options(dict(recipe, out_dir=str(root / "runs2"), cache_dir=str(root / "cache2")))
    clip = str(open_store(tiny_store.store).clips()["clip_id"][0])
    return Env(root=root, store=Path(tiny_store.store), run=run, train=train_opts, clip=clip,
               labels=Path(tiny_store.labels))


def _no_cuda(env: Env, mp: pytest.MonkeyPatch, stack: contextlib.ExitStack) -> None:
    import torch

    mp.setattr(torch.cuda, "is_available", lambda: False)


def _hold_store(env: Env, mp: pytest.MonkeyPatch, stack: contextlib.ExitStack) -> None:
    from pose_extract import writer_lock

    stack.enter_context(writer_lock(env.root / "busy"))  # as a running `piumr extract` would


def _hold_run(env: Env, mp: pytest.MonkeyPatch, stack: contextlib.ExitStack) -> None:
    from piumr_skel.engine.runguard import LOCK_FILE
    from pose_extract.locking import exclusive_lock

    stack.enter_context(exclusive_lock(env.run / LOCK_FILE, "a running training"))


def _other_settings(env: Env, mp: pytest.MonkeyPatch, stack: contextlib.ExitStack) -> None:
    from pose_extract import StoreWriter

    for name, side in (("merged", 0), ("other", 64)):
        if not (env.root / name).exists():
            with StoreWriter(env.root / name, kind="mediapipe_holistic", parts={"pose": (3, 4)},
                             settings={"max_side": side}) as w:
                w.write_clip({"clip_id": name}, {"pose": np.zeros((2, 3, 4), np.float32)})


def _no_run_folder(name: str) -> Callable[[Env], None]:
    def check(env: Env) -> None:
        assert not (env.root / "runs2" / name).exists(), f"a failed run left {env.root / 'runs2' / name}"
    return check


CASES = [
    Case("train: --store missing", lambda e: ["train", "--store", str(e.root / "nope"), *e.train],
         check=_no_run_folder("run")),
    Case("train: --store is not a store", lambda e: ["train", "--store", str(e.root / "plain"), *e.train],
         check=_no_run_folder("run")),
    Case("train: corrupt store.json", lambda e: ["train", "--store", str(e.root / "badjson"), *e.train],
         check=_no_run_folder("run")),
    Case("train: truncated clips Parquet file", lambda e: ["train", "--store", str(e.root / "trunc"), *e.train],
         check=_no_run_folder("run")),
    Case("train: --resume with another --seed",
         lambda e: ["train", "--store", str(e.store), *e.train, "--out-dir", str(e.run.parent), "--resume",
                    "--seed", "8"]),
    Case("train: --resume with more --epochs",
         lambda e: ["train", "--store", str(e.store), *e.train, "--out-dir", str(e.run.parent), "--resume",
                    "--epochs", "3"]),
    Case("train: into a run folder another training uses",
         lambda e: ["train", "--store", str(e.store), *e.train, "--out-dir", str(e.run.parent), "--resume"],
         setup=_hold_run),
    Case("train: --device cuda without CUDA",
         lambda e: ["train", "--store", str(e.store), *e.train, "--device", "cuda"], setup=_no_cuda),
    Case("train: --num-workers -1", lambda e: ["train", "--store", str(e.store), *e.train, "--num-workers", "-1"]),
    Case("eval: --store missing", lambda e: ["eval", str(e.run), "--store", str(e.root / "nope"), "--device", "cpu"]),
    Case("eval: corrupt store.json", lambda e: ["eval", str(e.run), "--store", str(e.root / "badjson"),
                                                "--device", "cpu"]),
    Case("eval: empty best.pt", lambda e: ["eval", str(e.root / "empty_best"), "--device", "cpu"]),
    Case("eval: truncated best.pt", lambda e: ["eval", str(e.root / "trunc_best"), "--device", "cpu"]),
    Case("eval: --device cuda without CUDA", lambda e: ["eval", str(e.run), "--device", "cuda"], setup=_no_cuda),
    Case("predict: --store is not a store", lambda e: ["predict", str(e.run), "--store", str(e.root / "plain"),
                                                       "-o", str(e.root / "pred"), "--device", "cpu"]),
    Case("viz: STORE is not a store", lambda e: ["viz", str(e.root / "plain"), "x", "-o", str(e.root / "a.png")]),
    Case("viz: corrupt store.json", lambda e: ["viz", str(e.root / "badjson"), "x", "-o", str(e.root / "a.png")]),
    Case("viz: truncated clips Parquet file", lambda e: ["viz", str(e.root / "trunc"), e.clip, "-o",
                                                         str(e.root / "a.png")]),
    Case("viz: --scale 0", lambda e: ["viz", str(e.store), e.clip, "-o", str(e.root / "a.png"), "--scale", "0"]),
    Case("viz: --sheet -3", lambda e: ["viz", str(e.store), e.clip, "-o", str(e.root / "a.png"), "--sheet", "-3"]),
    Case("viz: --video with another frame count", lambda e: ["viz", str(e.store), e.clip, "-o",
                                                             str(e.root / "a.png"), "--video",
                                                             str(e.root / "short.mp4")]),
    Case("ablate: --store is not a store", lambda e: ["ablate", "-o", str(e.root / "abl"), "--store",
                                                      str(e.root / "plain"), "--labels", str(e.labels),
                                                      "--epochs", "1"],
         check=lambda e: pytest.fail("ablate started runs") if (e.root / "abl" / "runs").exists() else None),
    Case("extract: into a store another job is writing",
         lambda e: ["extract", str(e.root / "videos"), "-o", str(e.root / "busy"), "--no-progress"],
         setup=_hold_store),
    Case("import pose: a .pose file that is not one",
         lambda e: ["import", "pose", str(e.root / "poses"), "-o", str(e.root / "pose_store"), "--labels",
                    str(e.root / "poses.csv")],
         check=lambda e: pytest.fail("a store was left") if (e.root / "pose_store").exists() else None),
    Case("import pose: a folder without .pose files",
         lambda e: ["import", "pose", str(e.root / "plain"), "-o", str(e.root / "pose_store"), "--labels",
                    str(e.root / "poses.csv")]),
    Case("import landmarks: not an .npz archive",
         lambda e: ["import", "landmarks", str(e.root / "fake.npz"), "-o", str(e.root / "npz_store")],
         check=lambda e: pytest.fail("a store was left") if (e.root / "npz_store").exists() else None),
    Case("merge-stores: into a store made with other settings",
         lambda e: ["merge-stores", str(e.root / "merged"), str(e.root / "other")], setup=_other_settings),
]


def _normalise(text: str, env: Env) -> str:
    """Paths and run-specific values (unit names, pids, times) as placeholders, for a stable table."""
    text = text.replace(str(env.store), "<store>").replace(str(env.labels), "<labels>")
    text = text.replace(str(env.root), "<tmp>")
    text = re.sub(r"\d{20}-[cp]-[0-9a-f]+\.parquet", "<unit>.parquet", text)
    text = re.sub(r"pid \d+ on host \S+, started \S+ \d\d:\d\d:\d\d(: [^(]*)? \(",
                  "pid <pid> on host <host>, started <time>: <command> (", text)
    # the reader's own words differ between pose-format (and Python) versions; ours must not
    text = re.sub(r"(as a \.pose file, truncated or corrupt) \(.*\)$", r"\1 (<pose-format's message>)", text)
    return text


def _run_case(case: Case, env: Env, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(normalised command, normalised error line) after the checks every case must pass."""
    with monkeypatch.context() as mp, contextlib.ExitStack() as stack:
        if case.setup is not None:
            case.setup(env, mp, stack)
        res = CliRunner().invoke(cli, case.args(env), prog_name="piumr")
    out = res.output
    assert res.exit_code != 0, f"{case.name}: exit 0\n{out}"
    assert "Traceback" not in out and (res.exception is None or isinstance(res.exception, SystemExit)), \
        f"{case.name}: {res.exception!r}\n{out}"
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"{case.name}: expected one 'Error:' line\n{out}"
    after = out.split(errors[0], 1)[1].strip()
    assert after == "", f"{case.name}: the error goes on past one line: {after!r}"
    if case.check is not None:
        case.check(env)
    command = "piumr " + " ".join(case.args(env)).replace(" ".join(env.train), "...")
    return _normalise(command, env), _normalise(errors[0], env)


@pytest.mark.slow
def test_bad_inputs_give_one_error_line_and_the_table_is_current(env: Env, monkeypatch) -> None:
    rows = [(case.name, *_run_case(case, env, monkeypatch)) for case in CASES]
    lines = ["# Bad inputs and what piumr says",
             "",
             "Generated by `tests/test_bad_inputs.py` (regenerate: `PIUMR_REGEN_DOCS=1 python -m pytest "
             "tests/test_bad_inputs.py`). Each case exits nonzero with this one `Error:` line and no "
             "traceback. `<tmp>` is the test's folder, `<store>` a small synthetic store; the train "
             "options of the tiny test recipe are shortened to `...`.",
             "",
             "| case | command | message |",
             "|---|---|---|"]
    for name, command, message in rows:
        cells = [c.replace("|", "\\|") for c in (name, f"`{command}`", message)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if os.environ.get("PIUMR_REGEN_DOCS") == "1":
        DOC.write_text(text)
    assert DOC.is_file() and DOC.read_text() == text, (
        f"{DOC} is out of date with the messages; regenerate it with "
        f"PIUMR_REGEN_DOCS=1 python -m pytest tests/test_bad_inputs.py")
