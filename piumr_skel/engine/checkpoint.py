"""The checkpoint format, written by the trainer and read by eval, predict and compare.

A checkpoint is a plain dict of tensors and Python values (no pickled piumr class), so old runs
keep loading across refactors. It carries its config, class names and a layout signature, which
is all `piumr eval` needs to rebuild the model.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from piumr_skel.skeleton.layouts import Layout

FORMAT = "piumr-checkpoint-1"
CHECKPOINT_NAMES = ("best.pt", "last.pt")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not match this version of piumr."""


def layout_record(layout: Layout | None) -> dict[str, Any] | None:
    """What a checkpoint stores of its skeleton layout: the name, joint names and edges."""
    return None if layout is None else _layout_fields(layout)


def _layout_fields(layout: Layout) -> dict[str, Any]:
    return {"name": layout.name, "joints": list(layout.joints), "edges": [list(e) for e in layout.edges]}


def make_checkpoint(*, model_state: dict, optimizer_state: dict | None, config: dict[str, Any],
                    class_names: list[str], layout, epoch: int, step: int, history: list, best: dict,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dict `torch.save` writes: weights, optimiser state, config, classes, layout, progress."""
    out = {
        "format": FORMAT,
        "config": config,
        "class_names": list(class_names),
        "layout": layout_record(layout),
        "model": model_state,
        "optimizer": optimizer_state,
        "epoch": epoch,
        "step": step,
        "history": history,
        "best": best,
    }
    out.update(extra or {})
    return out


def find_checkpoint(run: Path) -> Path | None:
    """best.pt, else last.pt, of a run folder; None when it has neither."""
    for name in CHECKPOINT_NAMES:
        if (run / name).is_file():
            return run / name
    return None


def resolve_checkpoint(run_or_ckpt: str | Path) -> Path:
    """A run folder (best.pt, else last.pt) or a checkpoint file; a clear error otherwise."""
    path = Path(run_or_ckpt)
    if path.is_dir():
        found = find_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: no best.pt or last.pt in this run folder")
        return found
    if path.is_file():
        return path
    raise CheckpointError(f"{path}: no such run folder or checkpoint")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load a piumr checkpoint onto the CPU; a corrupt or foreign file is a CheckpointError
    naming the file (and last.pt beside it when that one is sound)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, OSError...
        hint = ""
        sibling = path.with_name("last.pt")
        if path.name != "last.pt" and sibling.is_file():
            try:
                torch.load(sibling, map_location="cpu", weights_only=False)
                hint = f"; {sibling} loads: pass it instead"
            except Exception:
                pass
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({reason}){hint}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a piumr checkpoint")
    return ckpt


def check_layout(ckpt: dict[str, Any], layout: Layout | None, path: Path | str) -> None:
    """Refuse a checkpoint whose skeleton differs from this version's layout of the same name."""
    saved = ckpt.get("layout")
    if not saved or layout is None:
        return
    now = _layout_fields(layout)
    if saved["joints"] != now["joints"] or [list(e) for e in saved.get("edges", now["edges"])] != now["edges"]:
        raise CheckpointError(f"{path}: layout {layout.name!r} in this version of piumr differs from the "
                              f"one the checkpoint was trained with (joints or edges changed)")
