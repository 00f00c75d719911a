"""`piumr ablate`: ERM, +TFAM, +GIRL and full trained on the same subject-disjoint folds and seeds.

Every run is an ordinary training run folder, OUT/runs/<variant>_f<fold>_s<seed>, made by
`train.train` and scored on the xsub test part (people never seen in training) by
`evaluate.evaluate_run`. A run is finished when its eval_test.json exists, so the same command run
again trains only what is missing; a run killed half-way continues from its last.pt. The results
become one table (mean ± std over folds × seeds, ERM as the reference row) in Markdown and CSV,
plus figures: per-subject accuracy, validation curves and the per-class change from ERM to full.
"""
from __future__ import annotations

import dataclasses
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from .config import FIELDS, ConfigError, TrainConfig, make_config, read_yaml_mapping

# variant -> (tfam, girl). ERM is the plain backbone with cross-entropy: the reference row.
VARIANTS: dict[str, tuple[bool, bool]] = {
    "erm": (False, False), "tfam": (True, False), "girl": (False, True), "full": (True, True)}
REFERENCE = "erm"
GROUPINGS = ("kmeans", "subject", "random")
TITLES = {"erm": "ERM", "tfam": "+TFAM", "girl": "+GIRL", "full": "full (TFAM + GIRL)"}
GROUPING_TITLES = {"kmeans": "k-means pseudo-groups", "subject": "true subjects", "random": "random groups"}
SYNTH_PRESETS = ("demo", "benchmark")
RESULT_SPLIT = "test"            # the xsub test part: held-out subjects
METRICS = ("action_top1", "action_top5", "body_top1", "f1_macro_action", "f1_micro_action",
           "f1_macro_body", "f1_micro_body", "f1_mean", "subj_acc_mean", "subj_acc_std", "subj_acc_worst10")
DELTAS = {"action_top1": "Δ Top-1 vs ERM", "subj_acc_std": "Δ subj. std vs ERM"}

# Keys the ablation sets for each run itself.
CONTROLLED_KEYS = ("tfam", "girl", "fold", "seed", "name", "out_dir")
# Keys of an ablation YAML that are not TrainConfig keys.
ABLATION_KEYS = ("seeds", "synthetic", "grouping_study")
# Keys a finished run may differ in from the plan and still be the same experiment.
_FREE_KEYS = {"device", "num_workers", "out_dir", "cache_dir", "amp"}


class AblationError(ValueError):
    """An ablation that cannot run as asked (bad option, a run folder from another recipe, ...)."""


# ----------------------------------------------------------------------------- spec
@dataclass
class AblationSpec:
    """What to run: the shared training options, the seeds, and the optional extras."""

    base: TrainConfig                          # shared options; tfam/girl/fold/seed are set per run
    seeds: list[int]
    grouping_study: bool = False
    synthetic: dict[str, Any] | None = None    # {"preset", "seed", "overrides"}; None = a real store


def parse_seeds(spec: int | str | Sequence[int]) -> list[int]:
    """Seeds from a count (3 -> [0, 1, 2]), a comma list ("0,5" or "7,") or a list of ints."""
    if isinstance(spec, bool):
        raise AblationError(f"seeds: expected a count or a list of seeds, got {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise AblationError(f"seeds: the count must be >= 1, got {spec}")
        return list(range(spec))
    if isinstance(spec, str):
        text = spec.strip()
        if "," not in text:
            try:
                return parse_seeds(int(text))
            except ValueError:
                raise AblationError(f"seeds: expected a count or a comma list, got {spec!r}") from None
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            seeds = [int(p) for p in parts]
        except ValueError:
            raise AblationError(f"seeds: expected integers in {spec!r}") from None
    else:
        seeds = [int(s) for s in spec]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise AblationError(f"seeds: need distinct non-negative seeds, got {spec!r}")
    return seeds


def _normalise_synthetic(value: Any, source: str) -> dict[str, Any] | None:
    """YAML `synthetic: benchmark` or `{preset, seed, <SynthConfig field>: value}` -> {preset, seed, overrides}."""
    from .synth import SynthConfig

    if value is None or value is False:
        return None
    if isinstance(value, str):
        value = {"preset": value}
    if not isinstance(value, Mapping):
        raise AblationError(f"{source}: synthetic must be a preset name or a mapping, got {value!r}")
    value = dict(value)
    preset = value.pop("preset", "benchmark")
    if preset not in SYNTH_PRESETS:
        raise AblationError(f"{source}: unknown synthetic preset {preset!r}; choices: {', '.join(SYNTH_PRESETS)}")
    seed = value.pop("seed", 0)
    knobs = {f.name for f in dataclasses.fields(SynthConfig)}
    unknown = sorted(set(value) - knobs)
    if unknown:
        raise AblationError(f"{source}: unknown synthetic key(s) {', '.join(unknown)}; valid: preset, seed, "
                            f"{', '.join(sorted(knobs))}")
    # YAML has no tuples; SynthConfig's ranges are tuples
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    return {"preset": preset, "seed": int(seed), "overrides": overrides}


def read_ablation_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ablation YAML -> (TrainConfig values, ablation values: seeds / synthetic / grouping_study)."""
    path = Path(path)
    loaded = read_yaml_mapping(path)
    unknown = sorted(set(loaded) - FIELDS - set(ABLATION_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; an ablation recipe holds "
                          f"{', '.join(ABLATION_KEYS)} and any training key ({', '.join(sorted(FIELDS))})")
    ablation = {k: loaded.pop(k) for k in ABLATION_KEYS if k in loaded}
    return loaded, ablation


def make_spec(out: str | Path, *, config: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
              seeds: int | str | Sequence[int] | None = None, grouping_study: bool | None = None,
              synthetic: str | None = None, synthetic_seed: int | None = None,
              echo: Callable[[str], None] = print) -> AblationSpec:
    """The ablation of a YAML recipe (optional) overlaid by options whose value is not None.

    Runs go to OUT/runs and the clip cache to OUT/cache unless cache_dir is given. With a synthetic
    preset the store, labels and class names are the ones `prepare_synthetic` writes into OUT.
    Keys the ablation sets itself (tfam, girl, fold, seed, name, out_dir) are an error as options
    and are dropped, with a note, from a YAML (so a `piumr train` recipe can be reused).
    """
    out = Path(out).resolve()
    values: dict[str, Any] = {}
    ablation: dict[str, Any] = {}
    source = "options"
    if config is not None:
        values, ablation = read_ablation_file(config)
        source = str(config)
        dropped = sorted(k for k in CONTROLLED_KEYS if k in values)
        if dropped:
            echo(f"note: {config}: ignoring {', '.join(dropped)} (the ablation sets them for each run)")
            for k in dropped:
                values.pop(k)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    clash = sorted(k for k in CONTROLLED_KEYS if k in given)
    if clash:
        raise AblationError(f"option(s) {', '.join('--' + k.replace('_', '-') for k in clash)} cannot be used: "
                            f"the ablation sets them for each run (use --seeds, --folds and --out instead)")
    values.update(given)

    synth = _normalise_synthetic(ablation.get("synthetic"), source)
    if synthetic is not None:
        # the option picks the preset; a YAML's seed and knob overrides still apply
        kept = {"seed": synth["seed"], **synth["overrides"]} if synth else {}
        synth = _normalise_synthetic({**kept, "preset": synthetic}, "--synthetic")
    if synthetic_seed is not None:
        if synth is None:
            raise AblationError("--synthetic-seed needs --synthetic (or `synthetic:` in the config)")
        synth["seed"] = int(synthetic_seed)
    if synth is not None:
        given_paths = sorted(k for k in ("store", "labels", "class_names") if k in values)
        if given_paths:
            raise AblationError(f"a synthetic ablation makes its own store; do not also give "
                                f"{', '.join(given_paths)}")
        values.update(store=str(out / "store"), labels=str(out / "labels.txt"),
                      class_names=str(out / "label_name.txt"))
    else:
        # absolute paths, so that a run's saved config matches however the command was typed
        for k in ("store", "labels", "class_names", "split_file"):
            if values.get(k) is not None:
                values[k] = str(Path(values[k]).resolve())
        if values.get("store") is None or values.get("labels") is None:
            raise AblationError("give --store and --labels, or --synthetic PRESET "
                                f"({', '.join(SYNTH_PRESETS)}) to generate a synthetic store")
    values["out_dir"] = str(out / "runs")
    values.setdefault("cache_dir", str(out / "cache" / str(values.get("layout", "mp_holistic"))))
    base = make_config(values, source)
    if base.split != "xsub":
        raise AblationError(f"the ablation needs --split xsub (subject-disjoint folds with held-out test "
                            f"subjects), got {base.split!r}")
    if base.folds < 2:
        raise AblationError(f"--folds must be >= 2 for subject-disjoint folds, got {base.folds}")
    if base.modality != "skeleton":
        raise AblationError("the ablation runs skeleton models only (--modality skeleton)")
    seed_spec = seeds if seeds is not None else ablation.get("seeds", 1)
    study = grouping_study if grouping_study is not None else bool(ablation.get("grouping_study", False))
    return AblationSpec(base=base, seeds=parse_seeds(seed_spec), grouping_study=study, synthetic=synth)


# ----------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class AblationRun:
    """One training run of the ablation: a row key (variant or grouping), a fold and a seed."""

    key: str
    fold: int
    seed: int
    cfg: TrainConfig

    @property
    def name(self) -> str:
        return f"{self.key}_f{self.fold}_s{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out_dir) / self.name

    @property
    def eval_path(self) -> Path:
        return self.run_dir / f"eval_{RESULT_SPLIT}.json"

    def result(self) -> dict[str, Any] | None:
        """The saved test result, or None when the run is not finished (an unreadable file counts as unfinished)."""
        try:
            return json.loads(self.eval_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def grouping_key(base_grouping: str, grouping: str) -> str:
    """Row key of the full model with GIRL grouping `grouping`; the base grouping is the `full` row itself."""
    return "full" if grouping == base_grouping else f"full-{grouping}"


def plan_runs(spec: AblationSpec) -> list[AblationRun]:
    """Every run, ordered seed → fold → variant, so that partial results cover whole folds first."""
    base = spec.base
    rows: list[tuple[str, dict[str, Any]]] = [(k, {"tfam": t, "girl": g}) for k, (t, g) in VARIANTS.items()]
    if spec.grouping_study:
        for g in GROUPINGS:
            key = grouping_key(base.girl_groups, g)
            if key != "full":
                rows.append((key, {"tfam": True, "girl": True, "girl_groups": g}))
    runs = []
    values = base.to_dict()
    for seed in spec.seeds:
        for fold in range(base.folds):
            for key, changes in rows:
                cfg = make_config({**values, **changes, "fold": fold, "seed": seed,
                                   "name": f"{key}_f{fold}_s{seed}"}, source=f"ablation run {key}")
                runs.append(AblationRun(key, fold, seed, cfg))
    return runs


def check_same_recipe(run: AblationRun) -> None:
    """A run folder trained with other options than planned is an error, not a silent mix of recipes."""
    saved_path = run.run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    try:
        saved = yaml.safe_load(saved_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise AblationError(f"{saved_path}: not valid YAML ({err}); delete {run.run_dir} to retrain it") from None
    planned = run.cfg.to_dict()
    # A key that did not exist when the run was trained had its (current) default then.
    defaults = TrainConfig().to_dict()
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    diff = [f"{k}: {saved.get(k)!r} there, {planned.get(k)!r} now" for k in sorted(set(planned) | set(saved))
            if k not in _FREE_KEYS and saved.get(k) != planned.get(k)]
    if diff:
        raise AblationError(f"{run.run_dir} was trained with other options than this ablation asks for "
                            f"({'; '.join(diff[:6])}{' ...' if len(diff) > 6 else ''}). Use another --out, "
                            f"or delete that folder to retrain it")


def prepare_synthetic(out: str | Path, preset: str, *, seed: int = 0, overrides: Mapping[str, Any] | None = None,
                      echo: Callable[[str], None] = print):
    """Generate the synthetic store of a preset into OUT/store (labels into OUT), or reuse the one there.

    An existing store made with other generator settings is an error: its clips would not be the
    benchmark's. Returns `synth.SynthResult`.
    """
    from .synth import SynthConfig, SynthResult, generate_store

    if preset not in SYNTH_PRESETS:
        raise AblationError(f"unknown synthetic preset {preset!r}; choices: {', '.join(SYNTH_PRESETS)}")
    config = dataclasses.replace(getattr(SynthConfig, preset)(), **dict(overrides or {}))
    out = Path(out)
    store = out / "store"
    res = SynthResult(store=store, labels=out / "labels.txt", class_names=out / "label_name.txt")
    info_path = store / "store.json"
    if info_path.is_file():
        settings = json.loads(info_path.read_text()).get("settings", {})
        wanted = {"seed": seed, "synth": config.to_dict()}
        if settings.get("seed") != seed or settings.get("synth") != wanted["synth"]:
            raise AblationError(f"{info_path}: this synthetic store was generated with other settings than "
                                f"preset {preset!r} (seed {seed}); use another --out or delete {store}")
        missing = [p for p in (res.labels, res.class_names) if not p.is_file()]
        if missing:
            raise AblationError(f"{store} exists but {', '.join(map(str, missing))} is missing; delete {store} "
                                f"to regenerate it")
        echo(f"synthetic store already in {store} ({preset}), reusing it")
        return res
    echo(f"generating the synthetic store ({preset}: {config.num_subjects} people × {config.clips_per_subject} "
         f"clips, {config.num_classes} classes) into {store} ...")
    return generate_store(store, config=config, seed=seed, labels_dir=out, overwrite=True)


# ----------------------------------------------------------------------------- results
@dataclass
class AblationResult:
    """What `run_ablation` did and wrote."""

    out: Path
    per_run: pd.DataFrame                     # one row per finished run: key, fold, seed, run_dir, metrics
    table: pd.DataFrame                       # numeric summary of the main variants (index = row key)
    markdown: str
    grouping_table: pd.DataFrame | None = None
    grouping_markdown: str | None = None
    files: dict[str, Path] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


def collect_results(runs: Sequence[AblationRun]) -> pd.DataFrame:
    """One row per finished run: key, fold, seed, run_dir and every test metric."""
    rows = []
    for run in runs:
        result = run.result()
        if result is None:
            continue
        rows.append({"key": run.key, "fold": run.fold, "seed": run.seed, "run_dir": str(run.run_dir),
                     **{m: result["metrics"].get(m, np.nan) for m in METRICS}})
    return pd.DataFrame(rows, columns=["key", "fold", "seed", "run_dir", *METRICS])


def summary_table(per_run: pd.DataFrame, keys: Sequence[str], reference: str = REFERENCE) -> pd.DataFrame:
    """Mean and population std (as `metrics.mean_std`) over folds × seeds of every metric, per row key.

    Columns: runs, <metric>_mean, <metric>_std, and for Action Top-1 and subject std the paired
    difference to the reference run of the same fold and seed: delta_<metric>_mean / _std (NaN when
    the reference has no run to pair with).
    """
    out = []
    ref = per_run[per_run["key"] == reference].set_index(["fold", "seed"])
    for key in keys:
        rows = per_run[per_run["key"] == key]
        if rows.empty:
            continue
        rec: dict[str, Any] = {"key": key, "runs": len(rows)}
        for m in METRICS:
            vals = rows[m].to_numpy(dtype=np.float64)
            rec[f"{m}_mean"], rec[f"{m}_std"] = float(vals.mean()), float(vals.std(ddof=0))
        paired = rows.set_index(["fold", "seed"]).join(ref[list(DELTAS)], rsuffix="_ref", how="inner")
        for m in DELTAS:
            diff = (paired[m] - paired[f"{m}_ref"]).to_numpy(dtype=np.float64)
            rec[f"delta_{m}_mean"] = float(diff.mean()) if diff.size else np.nan
            rec[f"delta_{m}_std"] = float(diff.std(ddof=0)) if diff.size else np.nan
        out.append(rec)
    return pd.DataFrame(out).set_index("key") if out else pd.DataFrame()


def markdown_table(table: pd.DataFrame, titles: Mapping[str, str], reference: str = REFERENCE,
                   digits: int = 2) -> str:
    """The summary as Markdown: "mean ± std" cells, the run count, and the deltas; the reference row says so."""
    from .metrics import format_metrics_table

    shown = pd.DataFrame(index=[titles.get(k, k) for k in table.index])
    for m in METRICS:
        shown[m] = [f"{a:.{digits}f} ± {b:.{digits}f}" for a, b in zip(table[f"{m}_mean"], table[f"{m}_std"])]
    shown["runs"] = table["runs"].to_numpy()
    for m, title in DELTAS.items():
        shown[title] = ["reference" if k == reference else
                        ("–" if np.isnan(a) else f"{a:+.{digits}f} ± {b:.{digits}f}")
                        for k, a, b in zip(table.index, table[f"delta_{m}_mean"], table[f"delta_{m}_std"])]
    return format_metrics_table(shown, digits=digits)


def _per_subject(runs: Sequence[AblationRun]) -> pd.Series:
    """Per-subject test accuracy in percent, averaged over seeds (each seed tests every subject once)."""
    frames = [pd.read_csv(r.run_dir / f"per_subject_{RESULT_SPLIT}.csv", dtype={"subject": str})
              for r in runs if (r.run_dir / f"per_subject_{RESULT_SPLIT}.csv").is_file()]
    if not frames:
        return pd.Series(dtype=np.float64)
    # evaluate_run stores the accuracy as a fraction; the metrics and plots speak percent
    return 100.0 * pd.concat(frames).groupby("subject")["accuracy"].mean()


def _val_history(runs: Sequence[AblationRun], metric: str = "val_action_top1") -> pd.DataFrame:
    """The validation metric per epoch, averaged over the runs that have it."""
    frames = []
    for r in runs:
        path = r.run_dir / "metrics.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            if metric in frame.columns:
                frames.append(frame[["epoch", metric]].dropna())
    if not frames:
        return pd.DataFrame(columns=["epoch", metric])
    return pd.concat(frames).groupby("epoch", as_index=False)[metric].mean()


def _per_class(runs: Sequence[AblationRun], num_classes: int) -> np.ndarray:
    """Per-class test recall (num_classes,) in percent from the pooled predictions of the runs."""
    from .metrics import per_class_accuracy

    frames = [pd.read_csv(r.run_dir / f"predictions_{RESULT_SPLIT}.csv") for r in runs
              if (r.run_dir / f"predictions_{RESULT_SPLIT}.csv").is_file()]
    if not frames:
        return np.full(num_classes, np.nan)
    pooled = pd.concat(frames)
    return per_class_accuracy(pooled["label"].to_numpy(np.int64), pooled["pred"].to_numpy(np.int64), num_classes)


def _short_title(key: str) -> str:
    if key in VARIANTS:
        return {"full": "full"}.get(key, TITLES[key])
    return key


def make_plots(runs: Sequence[AblationRun], out: Path, base_grouping: str = "kmeans",
               warn: Callable[[str], None] = print) -> dict[str, Path]:
    """subject_accuracy.png, val_curves.png, per_class_change.png (and grouping_subject_accuracy.png)."""
    from .data_setup import class_names_for
    from .plots import plot_per_class_change, plot_subject_accuracy, plot_validation_curves

    done = [r for r in runs if r.result() is not None]
    by_key: dict[str, list[AblationRun]] = {}
    for r in done:
        by_key.setdefault(r.key, []).append(r)
    files: dict[str, Path] = {}

    def attempt(name: str, draw: Callable[[], Path]) -> None:
        try:
            files[name] = draw()
        except Exception as err:  # a figure is never worth losing the table for
            warn(f"warning: could not draw {name}: {err}")

    subj = {_short_title(k): _per_subject(by_key[k]) for k in VARIANTS if k in by_key}
    subj = {k: v for k, v in subj.items() if len(v)}
    if subj:
        attempt("subject_accuracy", lambda: plot_subject_accuracy(
            subj, out / "subject_accuracy.png", title="per-subject test accuracy (held-out people)"))
    curves = {_short_title(k): _val_history(by_key[k]) for k in VARIANTS if k in by_key}
    curves = {k: v for k, v in curves.items() if len(v)}
    if curves:
        attempt("val_curves", lambda: plot_validation_curves(curves, out / "val_curves.png"))
    if REFERENCE in by_key and "full" in by_key:
        class_names = class_names_for(by_key["full"][0].cfg)
        ref = _per_class(by_key[REFERENCE], len(class_names))
        full = _per_class(by_key["full"], len(class_names))
        attempt("per_class_change", lambda: plot_per_class_change(
            {"full (TFAM + GIRL)": full}, ref, class_names, out / "per_class_change.png",
            reference_name="ERM"))
    group_keys = {GROUPING_TITLES[g]: grouping_key(base_grouping, g) for g in GROUPINGS}
    if any(k != "full" and k in by_key for k in group_keys.values()):
        gsubj = {t: _per_subject(by_key[k]) for t, k in group_keys.items() if k in by_key}
        attempt("grouping_subject_accuracy", lambda: plot_subject_accuracy(
            {t: v for t, v in gsubj.items() if len(v)}, out / "grouping_subject_accuracy.png",
            title="GIRL grouping: per-subject test accuracy"))
    return files


def summarise(spec: AblationSpec, out: str | Path, runs: Sequence[AblationRun] | None = None,
              warn: Callable[[str], None] = print) -> AblationResult:
    """Tables (ablation.md/.csv, ablation_runs.csv, grouping.md/.csv) and figures from the finished runs."""
    out = Path(out)
    runs = list(runs) if runs is not None else plan_runs(spec)
    per_run = collect_results(runs)
    files: dict[str, Path] = {}
    per_run.to_csv(out / "ablation_runs.csv", index=False)
    files["runs_csv"] = out / "ablation_runs.csv"
    table = summary_table(per_run, list(VARIANTS))
    markdown = markdown_table(table, TITLES) if len(table) else "(no finished runs yet)"
    if len(table):
        table.insert(0, "title", [TITLES[k] for k in table.index])
        table.to_csv(out / "ablation.csv")
        files["csv"] = out / "ablation.csv"
    n_folds, n_seeds = spec.base.folds, len(spec.seeds)
    header = (f"# Ablation: {spec.base.backbone}, {spec.base.stream} stream, xsub test subjects, "
              f"mean ± std over {n_folds} folds × {n_seeds} seed(s)\n\n")
    (out / "ablation.md").write_text(header + markdown + "\n")
    files["markdown"] = out / "ablation.md"
    result = AblationResult(out=out, per_run=per_run, table=table, markdown=markdown, files=files)
    if spec.grouping_study:
        keys = [grouping_key(spec.base.girl_groups, g) for g in GROUPINGS]
        gtable = summary_table(per_run, [REFERENCE] + keys)
        titles = {REFERENCE: TITLES[REFERENCE],
                  **{grouping_key(spec.base.girl_groups, g): f"full, GIRL groups: {GROUPING_TITLES[g]}"
                     for g in GROUPINGS}}
        if len(gtable):
            result.grouping_markdown = markdown_table(gtable, titles)
            gtable.insert(0, "title", [titles[k] for k in gtable.index])
            gtable.to_csv(out / "grouping.csv")
            (out / "grouping.md").write_text(
                f"# GIRL grouping study (full model), mean ± std over {n_folds} folds × {n_seeds} seed(s)\n\n"
                + result.grouping_markdown + "\n")
            files.update(grouping_csv=out / "grouping.csv", grouping_markdown=out / "grouping.md")
            result.grouping_table = gtable
    files.update(make_plots(runs, out, spec.base.girl_groups, warn=warn))
    return result


# ----------------------------------------------------------------------------- driver
def run_ablation(spec: AblationSpec, out: str | Path, *, echo: Callable[[str], None] = print,
                 verbose: bool = False) -> AblationResult:
    """Train and test every missing run of the ablation in turn, then write the tables and figures.

    A run that fails (divergence, bad data, ...) is recorded and the others go on; the failures are
    in the result and in OUT/ablate.log. `verbose` also shows the per-epoch lines of each run
    (they are always in the run's train.log).
    """
    from .evaluate import evaluate_run
    from .train import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "ablate.log"

    def say(msg: str) -> None:
        echo(msg)
        with log_path.open("a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    if spec.synthetic is not None:
        prepare_synthetic(out, spec.synthetic["preset"], seed=spec.synthetic["seed"],
                          overrides=spec.synthetic["overrides"], echo=say)
    if spec.base.modality == "skeleton":  # one clear error now, not the same one for every run
        from pose_extract import StoreError, open_store

        if not spec.base.store:
            raise AblationError("no store given: pass --store or --synthetic")
        try:
            open_store(spec.base.store)
        except StoreError as err:
            raise AblationError(str(err)) from None
    runs = plan_runs(spec)
    for run in runs:
        check_same_recipe(run)  # before training anything: a mixed-up OUT folder stops at once
    trained, skipped, failures = [], [], {}
    say(f"ablation: {len(runs)} runs ({len({r.key for r in runs})} variants × {spec.base.folds} folds × "
        f"{len(spec.seeds)} seed(s)) into {out / 'runs'}")
    train_echo = echo if verbose else (lambda s: None)
    for i, run in enumerate(runs, 1):
        label = f"[{i}/{len(runs)}] {run.name}"
        if run.result() is not None:
            skipped.append(run.name)
            say(f"{label}: finished earlier, skipped")
            continue
        t0 = time.perf_counter()
        try:
            train(run.cfg, resume=True, echo=train_echo)
            res = evaluate_run(run.run_dir, split=RESULT_SPLIT, device=run.cfg.device, quiet=True)
        except Exception as err:  # one failed run must not cost the others; it is reported at the end
            failures[run.name] = f"{type(err).__name__}: {err}"
            say(f"{label}: FAILED after {time.perf_counter() - t0:.0f} s: {type(err).__name__}: {err}")
            with log_path.open("a") as fh:
                fh.write(traceback.format_exc())
            continue
        trained.append(run.name)
        m = res["metrics"]
        say(f"{label}: done in {time.perf_counter() - t0:.1f} s; test ({res['clips']} clips) "
            f"Action Top-1 {m['action_top1']:.2f}, F1_mean {m['f1_mean']:.2f}, subj. std {m['subj_acc_std']:.2f}")
    result = summarise(spec, out, runs, warn=say)
    result.trained, result.skipped, result.failures = trained, skipped, failures
    return result
