"""Guards of a run folder for `piumr train`: a resumed run must be the same experiment as the one in
the folder, only one process trains into a folder at a time, and both checks (and the inputs) pass
before anything in the folder is written.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from piumr_skel.engine.config import TrainConfig

# What may differ on --resume: how the run is executed, not what it computes. The data pipeline is
# worker-independent by design; the cache is content-checked wherever it lives. eval_every is not
# free: it decides which epochs can become best.pt.
FREE_KEYS = frozenset({"num_workers", "device", "cache_dir"})
# Compared as resolved paths, so `--store data/s` and `--store /abs/data/s` are the same store.
PATH_KEYS = frozenset({"store", "labels", "class_names", "split_file", "cache_dir", "out_dir", "pretrained"})
LOCK_FILE = ".train.lock"

_HELD: dict[Path, contextlib.ExitStack] = {}


class RunGuardError(ValueError):
    """A run folder that cannot take this training: other options, or another process in it."""


class RunBusyError(RunGuardError):
    """Another process is training in the run folder (its lock is held): the run is that job's."""


def saved_run_config(run_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """(config dict, file) of the run in run_dir: last.pt's "config" (what really trained), else
    config.yaml; None for a folder without either."""
    last, yml = run_dir / "last.pt", run_dir / "config.yaml"
    if last.is_file():
        import torch

        try:
            ckpt = torch.load(last, map_location="cpu", weights_only=False)
            return dict(ckpt["config"]), last
        except Exception as err:  # torch raises many kinds for a damaged file
            raise RunGuardError(f"{last}: cannot read the run's checkpoint ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''}); move it away to start "
                                f"the run again") from None
    if yml.is_file():
        from piumr_skel.engine.config import read_yaml_mapping

        return read_yaml_mapping(yml), yml
    return None


def _norm(key: str, value: Any) -> Any:
    if key in PATH_KEYS and value is not None:
        return str(Path(value).expanduser().resolve())
    return value


def config_differences(saved: dict[str, Any], cfg: TrainConfig, *, extend_epochs: bool = False) -> list[str]:
    """"key: saved there, now here" for every option that changes the experiment.

    A key the saved run does not have (added to piumr since) counts as its default. More epochs
    than saved are allowed only with `extend_epochs` (the cosine schedule then stretches).
    """
    now = cfg.to_dict()
    defaults = TrainConfig().to_dict()
    diffs = []
    for key in sorted(now):
        if key in FREE_KEYS:
            continue
        there = _norm(key, saved.get(key, defaults.get(key)))
        here = _norm(key, now[key])
        if key == "epochs" and extend_epochs and isinstance(there, int) and here >= there:
            continue
        if there != here:
            diffs.append(f"{key}: {there!r} there, {here!r} now")
    return diffs


def check_inputs(cfg: TrainConfig) -> None:
    """The store and files named by the config exist (a clear error before the run folder is made)."""
    if cfg.modality == "skeleton" and cfg.store:
        from pose_extract import open_store

        open_store(cfg.store).clips()  # StoreError naming the path or the damaged clips file
    for key, what in (("labels", "labels file"), ("class_names", "class names file"),
                      ("split_file", "split file")):
        value = getattr(cfg, key)
        if value and not Path(value).exists():
            raise FileNotFoundError(f"{what} not found: {value}")


def guard_run(cfg: TrainConfig, run_dir: Path, *, resume: bool, extend_epochs: bool = False,
              lock: bool = True) -> None:
    """Refuse a resume with other options or into a folder another process trains in; check the
    inputs; then hold the folder's lock until `release_run(run_dir)`. Writes nothing before that."""
    run_dir = Path(run_dir)
    if resume:
        found = saved_run_config(run_dir)
        if found is not None:
            saved, source = found
            diffs = config_differences(saved, cfg, extend_epochs=extend_epochs)
            if diffs:
                hint = (" (more epochs: add --extend-epochs)" if any(d.startswith("epochs:") for d in diffs)
                        else "")
                raise RunGuardError(
                    f"{run_dir} was trained with other options ({source.name}): {'; '.join(diffs[:6])}"
                    f"{' ...' if len(diffs) > 6 else ''}. Resume with the same options{hint}, or "
                    f"choose another --name")
    check_inputs(cfg)
    if lock:
        from pose_extract.locking import LockBusyError, exclusive_lock

        stack = contextlib.ExitStack()
        try:
            stack.enter_context(exclusive_lock(run_dir / LOCK_FILE, f"run folder {run_dir}",
                                               hint="; wait for that training to finish, or choose another --name"))
        except LockBusyError as err:
            raise RunBusyError(str(err)) from None
        _HELD[run_dir.resolve()] = stack


def release_run(run_dir: Path) -> None:
    """Release the lock `guard_run` took on run_dir (nothing if it holds none)."""
    stack = _HELD.pop(Path(run_dir).resolve(), None)
    if stack is not None:
        stack.close()
