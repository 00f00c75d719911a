"""`piumr compare`: a thin click wrapper over piumr_skel.tools.compare.compare_runs."""
from __future__ import annotations

import click


def _positions(text: str | None, n_runs: int) -> list[int] | None:
    """"1,2" -> [0, 1]; None -> the first two runs; "none" -> no fusion."""
    if text is None:
        return [0, 1]
    if text.strip().lower() in ("none", "no", "off", ""):
        return None
    try:
        pos = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated run positions like 1,2, got {text!r}",
                                 param_hint="--fuse") from None
    bad = [p for p in pos if not 1 <= p <= n_runs]
    if len(set(pos)) < 2 or bad:
        raise click.BadParameter(f"give at least two distinct positions in 1..{n_runs}, got {text!r}",
                                 param_hint="--fuse")
    return [p - 1 for p in pos]


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", default="artifacts/compare", show_default=True, type=click.Path(file_okay=False),
              help="folder for report.md, the CSV tables and the PNGs")
@click.option("--split", default="val", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="which eval outputs to compare (test only when its labels are known)")
@click.option("--names", default=None, help="comma-separated display names, one per run (default: folder names)")
@click.option("--fuse", default=None,
              help="1-based positions of the runs to late-fuse (average of softmax scores), e.g. 1,2 "
                   "[default: the first two]; 'none' for no fusion row")
@click.option("--published/--no-published", default=None,
              help="add the published MA-52 rows (marked as such) [default: only on the official split]")
@click.option("--device", default="auto", show_default=True, help="device for runs that must be evaluated first")
def compare_cmd(runs, out, split, names, fuse, published, device):
    """Lay runs side by side (e.g. skeleton vs RGB) on their shared clips: metrics, per-body and
    per-class tables, McNemar tests and a late-fusion row, in OUT/report.md.

    Runs on different splits or class sets are refused. A run without predictions_<split>.csv and
    scores_<split>.npy is evaluated first.
    """
    from piumr_skel.tools.compare import CompareError, compare_runs

    name_list = [n.strip() for n in names.split(",")] if names else None
    if name_list is not None and len(name_list) != len(runs):
        raise click.BadParameter(f"{len(name_list)} names for {len(runs)} runs", param_hint="--names")
    positions = _positions(fuse, len(runs)) if len(runs) >= 2 else None
    try:
        compare_runs(runs, out, split=split, names=name_list, fuse=positions, published=published,
                     device=device, echo=click.echo)
    except (CompareError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None


@click.command("ensemble")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--weights", default=None,
              help="comma-separated fusion weights, one per run [default: 2 for joint, bone and hand_local "
                   "runs, 1 for motion streams: the 2:2:1:1 ensemble]")
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False),
              help="folder for ensemble_<split>.json/.md [default: print only]")
@click.option("--device", default="auto", show_default=True, help="device for runs that must be evaluated first")
def ensemble_cmd(runs, split, weights, out, device):
    """Late-fuse runs of different streams (same split, same classes) with weights, and score
    each run and the ensemble on their shared clips."""
    from piumr_skel.tools.compare import CompareError
    from piumr_skel.tools.ensemble import ensemble_runs

    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        raise click.BadParameter(f"expected numbers like 2,2,1,1, got {weights!r}", param_hint="--weights") from None
    if w is not None and len(w) != len(runs):
        raise click.BadParameter(f"{len(w)} weights for {len(runs)} runs", param_hint="--weights")
    try:
        ensemble_runs(runs, split=split, weights=w, out=out, device=device, echo=click.echo)
    except (CompareError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None


COMMANDS = [compare_cmd, ensemble_cmd]
