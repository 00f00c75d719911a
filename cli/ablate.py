"""`piumr ablate`: train named variants (ERM, +TFAM, +GIRL, full, baselines) on the same folds and seeds."""
from __future__ import annotations

from pathlib import Path

import click

from cli.train import config_options
from piumr_skel.engine.atomic import atomic_to_csv, atomic_write_text
from piumr_skel.engine.config import ConfigError
from piumr_skel.tools.ablate import CHECKPOINTS, DEFAULT_VARIANTS, SYNTH_PRESETS, VARIANTS, AblationError


@click.command("ablate")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="ablation folder: runs/, tables, figures (and the synthetic store)")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="ablation YAML: training keys plus seeds, synthetic, grouping_study, variants "
                   "(e.g. configs/ablate_synth.yaml)")
@click.option("--seeds", default=None,
              help="a count (3 = seeds 0, 1, 2) or a comma list (0,5 / 7,) [default: YAML, else 1]")
@click.option("--synthetic", default=None, type=click.Choice(SYNTH_PRESETS),
              help="generate this built-in synthetic store into OUT first and ablate on it")
@click.option("--synthetic-seed", default=None, type=int, help="seed of the synthetic people [default: 0]")
@click.option("--variants", default=None,
              help=f"comma list of rows ({', '.join(VARIANTS)}); ERM, the reference, is always run "
                   f"[default: YAML, else {','.join(DEFAULT_VARIANTS)}]")
@click.option("--grouping-study/--no-grouping-study", default=None,
              help="also run the full model with each GIRL v2 grouping (input, features, subject, random), "
                   "reported as its own table")
@click.option("--checkpoint", default=None, type=click.Choice(CHECKPOINTS),
              help="the weights each run is scored with: the best validation epoch's (best.pt) or the last "
                   "epoch's (last.pt, scored once the run has finished, also by --summary-only) "
                   "[default: YAML, else best]")
@click.option("-v", "--verbose", is_flag=True, help="show every epoch of every run (always in its train.log)")
@click.option("--summary-only", is_flag=True,
              help="train nothing: write the tables and figures from the runs finished so far "
                   "(safe while other processes train into OUT; with --checkpoint last it scores last.pt "
                   "of the finished runs that lack it)")
@config_options
def ablate_cmd(out: Path, config: str | None, seeds: str | None, synthetic: str | None,
               synthetic_seed: int | None, variants: str | None, grouping_study: bool | None,
               checkpoint: str | None, verbose: bool, summary_only: bool, **overrides) -> None:
    """Ablate TFAM and GIRL: --variants × --folds subject-disjoint folds × --seeds seeds.

    Runs go to OUT/runs/<variant>_f<fold>_s<seed> and are scored on each fold's held-out test
    subjects; the folds come from --split-seed (default 0) for every run, so each run pairs with
    the ERM run of its fold and seed. Running the same command again trains only what is not
    finished yet. Training options (--epochs, --backbone, --device, ...) apply to every run;
    --tfam/--girl/--girl-version/--aug-person, --fold, --seed and --name are set by the ablation.
    """
    from piumr_skel.tools.ablate import make_spec, run_ablation

    try:
        spec = make_spec(out, config=config, overrides=overrides, seeds=seeds, grouping_study=grouping_study,
                         variants=variants, synthetic=synthetic, synthetic_seed=synthetic_seed,
                         checkpoint=checkpoint, echo=click.echo)
    except (AblationError, ConfigError) as err:
        raise click.UsageError(str(err)) from None
    try:
        result = run_ablation(spec, out, echo=click.echo, verbose=verbose, summary_only=summary_only)
    except (AblationError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo("")
    click.echo(result.markdown)
    if result.grouping_markdown:
        click.echo("")
        click.echo("GIRL grouping study (do the pseudo-groups carry person style?):")
        click.echo(result.grouping_markdown)
    click.echo("")
    click.echo(f"trained {len(result.trained)}, already finished {len(result.skipped)}, "
               + (f"left to another job {len(result.held)}, " if result.held else "")
               + f"failed {len(result.failures)}")
    click.echo("wrote " + ", ".join(str(p) for p in result.files.values()))
    if result.failures:
        raise click.ClickException(
            f"{len(result.failures)} run(s) failed (details in {out / 'ablate.log'}): "
            + "; ".join(f"{k}: {v}" for k, v in result.failures.items()))


@click.command("groups")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="ablation folder (holds the synthetic store of a synthetic ablation); the tables go here")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="ablation or training YAML")
@config_options
def groups_cmd(out: Path, config: str | None, **overrides) -> None:
    """Do GIRL's pseudo-groups carry person style? Nothing is trained.

    For each fold's training clips: NMI of the `input` groups (k-means on person-style descriptors,
    as a run draws them) with the subjects and with the actions, against random groups and the
    people themselves dealt into as many groups; and how often a clip's nearest neighbour in
    descriptor space is the same person. Writes OUT/group_agreement.md and .csv.
    """
    from piumr_skel.tools.ablate import make_spec, prepare_synthetic
    from piumr_skel.tools.group_check import agreement_markdown, agreement_table

    try:
        spec = make_spec(out, config=config, overrides=overrides, echo=click.echo)
    except (AblationError, ConfigError) as err:
        raise click.UsageError(str(err)) from None
    if spec.synthetic is not None:
        prepare_synthetic(out, spec.synthetic["preset"], seed=spec.synthetic["seed"],
                          overrides=spec.synthetic["overrides"], echo=click.echo)
    try:
        per_fold, nn = agreement_table(spec.base, echo=click.echo)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    text = (f"# Do the GIRL pseudo-groups carry person style? ({spec.base.girl_num_groups} groups, "
            f"{spec.base.layout}, {spec.base.folds} folds, training clips)\n\n" + agreement_markdown(per_fold, nn))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "group_agreement.md", text + "\n")
    atomic_to_csv(per_fold.merge(nn, on="fold"), out / "group_agreement.csv", index=False)
    click.echo("")
    click.echo(text)
    click.echo(f"wrote {out / 'group_agreement.md'}, {out / 'group_agreement.csv'}")


COMMANDS = [ablate_cmd, groups_cmd]
