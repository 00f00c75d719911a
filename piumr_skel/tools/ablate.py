"""`piumr ablate`: named variants (ERM, +TFAM, +GIRL, full, baselines) trained on the same folds and seeds.

Every run is an ordinary training run folder, OUT/runs/<variant>_f<fold>_s<seed>, made by
`train.train` and scored on the xsub test part (people never seen in training) by
`evaluate.evaluate_run`. A run is finished when its eval_test.json exists, so the same command run
again trains only what is missing; a run killed half-way continues from its last.pt. The folds come
from one split seed for every run while the training seed varies, so each run pairs with the ERM run
of the same (fold, seed). The results become one table (mean ± std over folds × seeds, the paired
difference to ERM with a paired test, validation Top-1 beside test Top-1) in Markdown and CSV, plus
figures: per-subject accuracy, training and validation curves, the per-class change from ERM to full.
"""
from __future__ import annotations

import dataclasses
import json
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from piumr_skel.engine.atomic import atomic_to_csv, atomic_write_text
from piumr_skel.engine.config import (
    DATA_PATH_KEYS,
    FIELDS,
    ConfigError,
    TrainConfig,
    make_config,
    read_yaml_mapping,
)
from piumr_skel.engine.runguard import RunBusyError
from piumr_skel.method.groupings import GROUPINGS_V2
from piumr_skel.models.base import stage_plan
from pose_extract.locking import exclusive_lock


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: its title and the config keys it sets over the shared recipe."""

    title: str
    overrides: Mapping[str, Any]
    epochs_factor: int = 1     # 2: the same recipe at twice the epochs (METHOD.md's convergence check)
    tfam_early: bool = False   # TFAM after the backbone's first stage (more time steps), not before the last

    def changes(self, base: TrainConfig) -> dict[str, Any]:
        """The config keys this row sets over the recipe `base` (its epochs, TFAM's place included)."""
        out = {**self.overrides, "epochs": base.epochs * self.epochs_factor}
        if self.tfam_early and base.num_blocks >= 3:   # fewer: the backbone check names the row
            out["tfam_after"] = stage_plan(base.num_blocks, base.base_channels, 3)[1][0]
        return out


# Every row states the three switches (tfam, girl, aug_person); the GIRL rows also their version.
_OFF = {"tfam": False, "girl": False, "aug_person": False}
_GIRL_V2 = {"girl": True, "girl_version": 2}
_GIRL_V1 = {"girl": True, "girl_version": 1, "girl_groups": "kmeans", "girl_num_groups": 4}
_TRUE_SUBJECTS = {**_GIRL_V2, "girl_groups": "subject", "girl_beta": 0.0}   # plain group risks, no boundary weights
VARIANTS: dict[str, Variant] = {
    "erm": Variant("ERM", _OFF),
    "tfam": Variant("+TFAM", {**_OFF, "tfam": True}),
    "girl": Variant("+GIRL", {**_OFF, **_GIRL_V2}),
    "full": Variant("full (TFAM + GIRL)", {**_OFF, "tfam": True, **_GIRL_V2}),
    "aug": Variant("+person-style aug.", {**_OFF, "aug_person": True}),
    "full+aug": Variant("full + person-style aug.", {**_OFF, "tfam": True, **_GIRL_V2, "aug_person": True}),
    "groupdro": Variant("GroupDRO (true subjects)",
                        {**_OFF, **_TRUE_SUBJECTS, "girl_lambda_var": 0.0, "girl_eta": 1.0}),
    "vrex": Variant("V-REx (true subjects)", {**_OFF, **_TRUE_SUBJECTS, "girl_lambda_var": 1.0, "girl_eta": 0.0}),
    # Weight averaging (--ema), a domain-generalisation baseline; the other rows take `ema` from the recipe.
    "ema": Variant("+weight average (EMA)", {**_OFF, "ema": True}),
    "full+ema": Variant("full + weight average (EMA)", {**_OFF, "tfam": True, **_GIRL_V2, "ema": True}),
    # GIRL v2's near-boundary weights alone: no variance term (lambda_V = 0), no GroupDRO term.
    "girl-w": Variant("+GIRL, boundary weights only", {**_OFF, **_GIRL_V2, "girl_lambda_var": 0.0, "girl_eta": 0.0}),
    # TFAM after the first stage, where the clip still has all its time steps (T' = T, not T/2).
    "tfam-early": Variant("+TFAM after the first stage", {**_OFF, "tfam": True}, tfam_early=True),
    "full-early": Variant("full, TFAM after the first stage", {**_OFF, "tfam": True, **_GIRL_V2}, tfam_early=True),
    # The two rows best against ERM on real signers so far, together: full-early and the person-style augmentation.
    "full-early+aug": Variant("full, TFAM after the first stage, + person-style aug.",
                              {**_OFF, "tfam": True, **_GIRL_V2, "aug_person": True}, tfam_early=True),
    "girl-v1": Variant("+GIRL v1", {**_OFF, **_GIRL_V1}),
    "full-v1": Variant("full, GIRL v1", {**_OFF, "tfam": True, **_GIRL_V1}),
}
# The same rows at twice the epochs: erm-2x is METHOD.md's convergence check; the method's rows at that
# budget, paired with erm-2x, show whether their gap to ERM closes with training.
VARIANTS.update({f"{key}-2x": replace(VARIANTS[key], title=title, epochs_factor=2) for key, title in (
    ("erm", "ERM, 2× epochs (convergence check)"), ("tfam", "+TFAM, 2× epochs"),
    ("girl", "+GIRL, 2× epochs"), ("full", "full, 2× epochs"), ("aug", "+person-style aug., 2× epochs"),
    ("full-early+aug", "full, TFAM after the first stage, + aug., 2× epochs"))})
DEFAULT_VARIANTS = ("erm", "tfam", "girl", "full")   # the paper's four
REFERENCE = "erm"
CHECK = "erm-2x"                 # the convergence check: ERM at twice the epochs
TITLES = {k: v.title for k, v in VARIANTS.items()}
# The grouping study: the full model with each GIRL v2 grouping.
GROUPINGS = GROUPINGS_V2
GROUPING_TITLES = {"input": "person-style descriptors (input)", "features": "backbone feature statistics",
                   "subject": "true subjects (oracle)", "random": "random groups"}
SYNTH_PRESETS = ("demo", "benchmark")
RESULT_SPLIT = "test"            # the xsub test part: held-out subjects
METRICS = ("action_top1", "action_top5", "body_top1", "f1_macro_action", "f1_micro_action",
           "f1_macro_body", "f1_micro_body", "f1_mean", "subj_acc_mean", "subj_acc_std", "subj_acc_worst10")
VAL_METRIC = "val_action_top1"   # of each run's best validation epoch: what choices are made on
DELTAS = {"action_top1": "Δ Top-1 vs ERM", "subj_acc_std": "Δ subj. std vs ERM"}
P_TITLES = {"action_top1": "p (Top-1)", "subj_acc_std": "p (subj. std)"}
MIN_WILCOXON = 6                 # nonzero pairs needed for the signed-rank test; fewer: exact sign test

# Keys the ablation sets for each run itself (the variants set tfam, girl, girl_version, aug_person).
CONTROLLED_KEYS = ("tfam", "girl", "girl_version", "aug_person", "fold", "seed", "name", "out_dir")
# Keys of an ablation YAML that are not TrainConfig keys.
ABLATION_KEYS = ("seeds", "synthetic", "grouping_study", "variants", "checkpoint")
# Which weights of each run are scored: the best validation epoch's (best.pt) or the last epoch's (last.pt).
CHECKPOINTS = ("best", "last")
LAST_DIR = "last_epoch"          # a run's scores of last.pt, beside those of best.pt
# Keys a finished run may differ in from the plan and still be the same experiment.
_FREE_KEYS = {"device", "num_workers", "out_dir", "cache_dir", "amp", "plot_every"}
# Keys that change nothing while their module is off (both in the saved run and in the plan).
_INERT_WHEN_OFF = {"girl": {k for k in FIELDS if k.startswith("girl_")}, "ema": {"ema_epochs"},
                   "tfam": {k for k in FIELDS if k.startswith("tfam_")} | {"lambda_w", "lambda_c"}}


def folder_name(key: str) -> str:
    """A row key as it appears in run folder names: '+' becomes '-' (full+aug -> full-aug)."""
    return key.replace("+", "-")


assert len({folder_name(k) for k in VARIANTS} | {f"full-{g}" for g in GROUPINGS}) == len(VARIANTS) + len(GROUPINGS)


class AblationError(ValueError):
    """An ablation that cannot run as asked (bad option, a run folder from another recipe, ...)."""


# ----------------------------------------------------------------------------- spec
@dataclass
class AblationSpec:
    """What to run: the shared training options, the variants, the seeds, and the optional extras."""

    base: TrainConfig                          # shared options; each variant sets its keys over them
    seeds: list[int]
    grouping_study: bool = False
    synthetic: dict[str, Any] | None = None    # {"preset", "seed", "overrides"}; None = a real store
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    checkpoint: str = "best"                   # "last": score last.pt (the budget's end), not best.pt


def parse_variants(spec: str | Sequence[str] | None) -> list[str]:
    """Row keys from a comma list ("erm,full,vrex") or a list; ERM, the reference row, always comes first."""
    if spec is None:
        return list(DEFAULT_VARIANTS)
    names = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else map(str, spec)) if p.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise AblationError(f"variants: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
                            f"choices: {', '.join(VARIANTS)}")
    return [REFERENCE] + [n for n in dict.fromkeys(names) if n != REFERENCE]


def parse_seeds(spec: int | str | Sequence[int]) -> list[int]:
    """Seeds from a count (3 -> [0, 1, 2]), a comma list ("0,5" or "7,") or a list of ints."""
    if isinstance(spec, bool):
        raise AblationError(f"seeds: expected a count or a list of seeds, got {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise AblationError(f"seeds: {spec} is a count (seeds 0..N-1) and must be >= 1"
                                + ("; for seed 0 alone write '0,' (a list)" if spec == 0 else ""))
        return list(range(spec))
    if isinstance(spec, str):
        text = spec.strip()
        if "," not in text:
            try:
                count = int(text)
            except ValueError:
                raise AblationError(f"seeds: expected a count or a comma list, got {spec!r}") from None
            return parse_seeds(count)
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
    from piumr_skel.tools.synth import SynthConfig

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
    """An ablation YAML -> (TrainConfig values, ablation values: seeds / synthetic / grouping_study / variants)."""
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
              variants: str | Sequence[str] | None = None, checkpoint: str | None = None,
              echo: Callable[[str], None] = print) -> AblationSpec:
    """The ablation of a YAML recipe (optional) overlaid by options whose value is not None.

    Runs go to OUT/runs and the clip cache to OUT/cache unless cache_dir is given. With a synthetic
    preset the store, labels and class names are the ones `prepare_synthetic` writes into OUT.
    Keys the ablation sets itself (CONTROLLED_KEYS) are an error as options and are dropped, with a
    note, from a YAML (so a `piumr train` recipe can be reused). The folds come from `split_seed`
    (default 0), the same for every run.
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
                            f"the ablation sets them for each run (use --variants, --seeds, --folds and --out "
                            f"instead)")
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
        for k in DATA_PATH_KEYS:
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
    rows = parse_variants(variants if variants is not None else ablation.get("variants"))
    scored = checkpoint if checkpoint is not None else ablation.get("checkpoint", "best")
    if scored not in CHECKPOINTS:
        raise AblationError(f"checkpoint: expected one of {', '.join(CHECKPOINTS)}, got {scored!r}")
    return AblationSpec(base=base, seeds=parse_seeds(seed_spec), grouping_study=study, synthetic=synth,
                        variants=rows, checkpoint=scored)


# ----------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class AblationRun:
    """One training run of the ablation: a row key (variant or grouping), a fold and a seed."""

    key: str
    fold: int
    seed: int
    cfg: TrainConfig
    checkpoint: str = "best"     # which weights the table scores: best.pt or last.pt (see score_dir)

    @property
    def name(self) -> str:
        return f"{folder_name(self.key)}_f{self.fold}_s{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out_dir) / self.name

    @property
    def eval_path(self) -> Path:
        return self.run_dir / f"eval_{RESULT_SPLIT}.json"

    @property
    def score_dir(self) -> Path:
        """Where the scored checkpoint's eval files are: the run folder (best.pt) or its last_epoch/ (last.pt)."""
        return self.run_dir if self.checkpoint == "best" else self.run_dir / LAST_DIR

    def result(self) -> dict[str, Any] | None:
        """The saved test result of best.pt, or None when the run is not finished (an unreadable file counts
        as unfinished)."""
        return _read_json(self.eval_path)

    def scored(self, split: str = RESULT_SPLIT) -> dict[str, Any] | None:
        """The saved result on `split` of the checkpoint the table scores; None when it is not there yet."""
        return _read_json(self.score_dir / f"eval_{split}.json")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def score_last_epochs(runs: Sequence["AblationRun"], warn: Callable[[str], None] = print) -> None:
    """Score last.pt of every finished run on the test and validation people (into run/last_epoch/),
    where it has not been scored yet. Evaluation only: cheap next to training, and atomic, so two
    processes doing it at once leave whole files."""
    from piumr_skel.engine.evaluate import evaluate_run

    for run in runs:
        if run.checkpoint != "last" or run.result() is None:
            continue
        for split in ("val", RESULT_SPLIT):
            if run.scored(split) is not None:
                continue
            try:
                evaluate_run(run.run_dir / "last.pt", split=split, device=run.cfg.device, out_dir=run.score_dir,
                             quiet=True)
            except Exception as err:  # one unreadable run must not cost the table
                warn(f"warning: {run.name}: cannot score last.pt on {split}: {type(err).__name__}: {err}")


def _headline(m: dict[str, Any]) -> str:
    """A run's test result in one phrase: Action Top-1 (and F1_mean where there are body labels), subj. std."""
    return (f"Action Top-1 {m['action_top1']:.2f}" + (f", F1_mean {m['f1_mean']:.2f}" if "f1_mean" in m else "")
            + f", subj. std {m['subj_acc_std']:.2f}")


def grouping_key(base_grouping: str, grouping: str) -> str:
    """Row key of the full model with GIRL grouping `grouping`; the base grouping is the `full` row itself."""
    return "full" if grouping == base_grouping else f"full-{grouping}"


def grouping_rows(base_grouping: str) -> dict[str, dict[str, Any]]:
    """Row key -> overrides of the grouping study: the full model with each GIRL v2 grouping."""
    return {grouping_key(base_grouping, g): {**VARIANTS["full"].overrides, "girl_groups": g} for g in GROUPINGS}


def plan_runs(spec: AblationSpec) -> list[AblationRun]:
    """Every run, ordered seed → fold → row, so that partial results cover whole folds first.

    Every run shares the base's split_seed: the folds stay put while the seed varies.
    """
    base = spec.base
    rows = {k: VARIANTS[k].changes(base) for k in spec.variants}
    if spec.grouping_study:
        rows.update({k: v for k, v in grouping_rows(base.girl_groups).items() if k not in rows})
    runs = []
    values = base.to_dict()
    for seed in spec.seeds:
        for fold in range(base.folds):
            for key, changes in rows.items():
                name = f"{folder_name(key)}_f{fold}_s{seed}"
                cfg = make_config({**values, **changes, "fold": fold, "seed": seed, "name": name},
                                  source=f"ablation run {key}")
                runs.append(AblationRun(key, fold, seed, cfg, spec.checkpoint))
    return runs


def check_same_recipe(run: AblationRun) -> None:
    """A run folder trained with other options than planned is an error, not a silent mix of recipes.

    The saved config is read by `config.saved_config`: a run from before girl_version or split_seed
    existed means what it did then (GIRL v1, folds drawn from its seed), while any other key added
    since counts as its default. Keys of a module that is off in both (girl_* without GIRL, tfam_*
    without TFAM) change nothing and are not compared.
    """
    from piumr_skel.engine.config import saved_config

    saved_path = run.run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    try:
        values = read_yaml_mapping(saved_path)
        saved = saved_config(values, str(saved_path)).to_dict()
    except ConfigError as err:
        raise AblationError(f"{err}; delete {run.run_dir} to retrain it") from None
    planned = run.cfg.to_dict()
    ignored = set(_FREE_KEYS)
    for switch, keys in _INERT_WHEN_OFF.items():
        if not saved[switch] and not planned[switch]:
            ignored |= keys
    diff = [f"{k}: {saved.get(k)!r} there, {planned.get(k)!r} now" for k in sorted(set(planned) | set(saved))
            if k not in ignored and saved.get(k) != planned.get(k)]
    if diff:
        legacy = {"girl_version": "GIRL v1", "split_seed": "folds drawn from its seed"}
        legacy = {k: v for k, v in legacy.items() if k not in values}
        why = (f" It was made before {' and '.join(legacy)} existed, so it means {' and '.join(legacy.values())}."
               if legacy else "")
        raise AblationError(f"{run.run_dir} was trained with other options than this ablation asks for "
                            f"({'; '.join(diff[:6])}{' ...' if len(diff) > 6 else ''}).{why} Use another --out, "
                            f"or delete that folder to retrain it")


def prepare_synthetic(out: str | Path, preset: str, *, seed: int = 0, overrides: Mapping[str, Any] | None = None,
                      echo: Callable[[str], None] = print):
    """Generate the synthetic store of a preset into OUT/store (labels into OUT), or reuse the one there.

    An existing store made with other generator settings is an error: its clips would not be the
    benchmark's. Returns `synth.SynthResult`.
    """
    from piumr_skel.tools.synth import SynthConfig, SynthResult, generate_store

    if preset not in SYNTH_PRESETS:
        raise AblationError(f"unknown synthetic preset {preset!r}; choices: {', '.join(SYNTH_PRESETS)}")
    config = dataclasses.replace(getattr(SynthConfig, preset)(), **dict(overrides or {}))
    out = Path(out)
    store = out / "store"
    res = SynthResult(store=store, labels=out / "labels.txt", class_names=out / "label_name.txt")
    # Another process generating this store holds the lock: wait for it, then reuse its store.
    with exclusive_lock(out / ".synthetic.lock", f"synthetic store {store}", blocking=True):
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
    table: pd.DataFrame                       # numeric summary of the main rows (index = row key)
    markdown: str
    grouping_table: pd.DataFrame | None = None
    grouping_markdown: str | None = None
    best_on_val: str | None = None            # row key with the best validation Top-1
    files: dict[str, Path] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)     # being trained by another job on the same folder
    failures: dict[str, str] = field(default_factory=dict)


def check_buildable(runs: Sequence[AblationRun]) -> None:
    """Build each row's model and loss once, untrained, before any run starts.

    A recipe value the backbone, TFAM or GIRL refuses (e.g. --num-blocks 2) is then one error
    naming the row and the problem, not the same failure once per run after the others trained.
    """
    from piumr_skel.engine.build import build_loss, build_model
    from piumr_skel.skeleton.layouts import get_layout

    seen: set[str] = set()
    for run in runs:
        if run.key in seen:
            continue
        seen.add(run.key)
        try:
            layout = get_layout(run.cfg.layout) if run.cfg.modality == "skeleton" else None
            build_model(run.cfg, num_classes=2, layout=layout)
            build_loss(run.cfg, num_groups=max(2, run.cfg.girl_num_groups))
        except (ValueError, KeyError, TypeError) as err:
            raise AblationError(f"row {run.key!r} cannot be built with this recipe: {err}") from None


def best_val_top1(run_dir: Path) -> float:
    """Validation Action Top-1 of the run's best epoch (the one best.pt holds), from its metrics.json; NaN if none."""
    try:
        history = json.loads((Path(run_dir) / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return float("nan")
    vals = [row[VAL_METRIC] for row in history if isinstance(row, Mapping) and row.get(VAL_METRIC) is not None]
    return float(max(vals)) if vals else float("nan")


def collect_results(runs: Sequence[AblationRun]) -> pd.DataFrame:
    """One row per finished run: key, fold, seed, run_dir, every test metric (NaN where the run has none,
    e.g. body metrics for classes that are not MA-52's) and the best validation Top-1."""
    rows = []
    for run in runs:
        result = run.scored()
        if result is None:
            continue
        if run.checkpoint == "best":
            val = best_val_top1(run.run_dir)
        else:
            val_result = run.scored("val")
            val = float(val_result["metrics"]["action_top1"]) if val_result else float("nan")
        rows.append({"key": run.key, "fold": run.fold, "seed": run.seed, "run_dir": str(run.run_dir),
                     **{m: result["metrics"].get(m, np.nan) for m in METRICS}, VAL_METRIC: val})
    return pd.DataFrame(rows, columns=["key", "fold", "seed", "run_dir", *METRICS, VAL_METRIC])


def paired_test(diff: Sequence[float] | np.ndarray) -> tuple[str, float]:
    """(test name, two-sided p) for paired differences: Wilcoxon signed-rank with >= MIN_WILCOXON nonzero
    differences, else the exact sign test (binomial, zeros dropped). No pairs: ("–", NaN)."""
    from scipy import stats

    diff = np.asarray(diff, dtype=np.float64)
    if diff.size == 0:
        return "–", float("nan")
    nonzero = diff[np.abs(diff) > 1e-9]
    if nonzero.size >= MIN_WILCOXON:
        return "Wilcoxon", float(stats.wilcoxon(nonzero).pvalue)
    if nonzero.size == 0:
        return "sign", 1.0
    return "sign", float(stats.binomtest(int((nonzero > 0).sum()), int(nonzero.size), 0.5).pvalue)


def _paired_diff(rows: pd.DataFrame, ref: pd.DataFrame, metric: str) -> np.ndarray:
    """Row minus reference per (fold, seed); a seed-independent row (seed NaN) pairs per fold with the
    reference's mean over seeds."""
    if rows["seed"].isna().all():
        mine, theirs = rows.set_index("fold")[metric], ref.groupby("fold")[metric].mean()
    else:
        mine, theirs = rows.set_index(["fold", "seed"])[metric], ref.set_index(["fold", "seed"])[metric]
    both = pd.concat([mine.rename("a"), theirs.rename("b")], axis=1, join="inner").dropna()
    return (both["a"] - both["b"]).to_numpy(dtype=np.float64)


def summary_table(per_run: pd.DataFrame, keys: Sequence[str], reference: str = REFERENCE) -> pd.DataFrame:
    """Mean and population std (as `metrics.mean_std`) over folds × seeds of every metric, per row key.

    Columns: runs, <metric>_mean / _std (test metrics and the best validation Top-1), and for Action
    Top-1 and subject std the paired difference to the reference run of the same fold and seed:
    delta_<metric>_mean / _std / _p (NaN when the reference has no run to pair with), with `pairs`
    and `test` naming the paired test (`paired_test`).
    """
    out = []
    ref = per_run[per_run["key"] == reference]
    for key in keys:
        rows = per_run[per_run["key"] == key]
        if rows.empty:
            continue
        rec: dict[str, Any] = {"key": key, "runs": len(rows)}
        for m in (*METRICS, VAL_METRIC):
            vals = rows[m].to_numpy(dtype=np.float64)
            ok = vals[np.isfinite(vals)]
            rec[f"{m}_mean"], rec[f"{m}_std"] = (float(ok.mean()), float(ok.std(ddof=0))) if ok.size else (np.nan,) * 2
        for m in DELTAS:
            diff = _paired_diff(rows, ref, m)
            test, p = paired_test(diff) if key != reference else ("reference", np.nan)
            rec[f"delta_{m}_mean"] = float(diff.mean()) if diff.size else np.nan
            rec[f"delta_{m}_std"] = float(diff.std(ddof=0)) if diff.size else np.nan
            rec[f"delta_{m}_p"] = p
            if m == "action_top1":
                rec["pairs"], rec["test"] = int(diff.size), test
        out.append(rec)
    return pd.DataFrame(out).set_index("key") if out else pd.DataFrame()


def reported_metrics(table: pd.DataFrame) -> list[str]:
    """The test metrics some row has (body-level ones only exist for MA-52's classes)."""
    return [m for m in METRICS if f"{m}_mean" in table and table[f"{m}_mean"].notna().any()]


def _p_cell(p: float) -> str:
    return "–" if not np.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def markdown_table(table: pd.DataFrame, titles: Mapping[str, str], reference: str = REFERENCE,
                   digits: int = 2, checkpoint: str = "best") -> str:
    """The summary as Markdown: validation Top-1 beside the test metrics ("mean ± std"), the paired
    differences to the reference with their p-values, the test used and the run count."""
    from piumr_skel.engine.metrics import format_metrics_table

    def pm(mean: float, std: float, sign: str = "") -> str:
        return "–" if np.isnan(mean) else f"{mean:{sign}.{digits}f} ± {std:.{digits}f}"

    shown = pd.DataFrame(index=[titles.get(k, k) for k in table.index])
    val_title = f"Val Top-1 ({checkpoint} epoch)"
    shown[val_title] = [pm(a, b) for a, b in zip(table[f"{VAL_METRIC}_mean"], table[f"{VAL_METRIC}_std"])]
    columns = [val_title]
    for m in reported_metrics(table):
        shown[m] = [pm(a, b) for a, b in zip(table[f"{m}_mean"], table[f"{m}_std"])]
        columns.append(m)
        if m in DELTAS:
            is_ref = table.index == reference
            shown[DELTAS[m]] = ["reference" if r else pm(a, b, "+") for r, a, b in
                                zip(is_ref, table[f"delta_{m}_mean"], table[f"delta_{m}_std"])]
            shown[P_TITLES[m]] = ["–" if r else _p_cell(p) for r, p in zip(is_ref, table[f"delta_{m}_p"])]
            columns += [DELTAS[m], P_TITLES[m]]
    shown["paired test"] = [t if t in ("reference", "–") else f"{t}, n = {n}"
                            for t, n in zip(table["test"], table["pairs"])]
    shown["runs"] = table["runs"].to_numpy()
    return format_metrics_table(shown, digits=digits, columns=columns + ["paired test", "runs"])


def seed_noise(per_run: pd.DataFrame, reference: str = REFERENCE,
               metric: str = "action_top1") -> tuple[float, int, int] | None:
    """(sigma, folds, runs): the pooled within-fold std (ddof 1) of the reference row's metric across
    seeds, i.e. how much one run moves with the seed alone, over the folds that have >= 2 seeds and
    the reference runs there. None when no fold has two seeds."""
    rows = per_run[(per_run["key"] == reference) & per_run["seed"].notna()]
    variances, runs = [], 0
    for _, fold in rows.groupby("fold"):
        vals = fold[metric].to_numpy(dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size >= 2:
            variances.append(float(vals.var(ddof=1)))
            runs += int(vals.size)
    if not variances:
        return None
    return float(np.sqrt(np.mean(variances))), len(variances), runs


def _noise_line(per_run: pd.DataFrame, titles: Mapping[str, str]) -> str:
    """The seed-noise floor of the table, in words (empty without two seeds on a fold)."""
    noise = seed_noise(per_run)
    if noise is None:
        return ""
    sigma, folds, runs = noise
    pairs = int(((per_run["key"] == REFERENCE) & per_run["seed"].notna()).sum())
    floor = 2.8 * sigma * np.sqrt(2.0) / np.sqrt(max(pairs, 1))
    return (f"Seed noise: {titles.get(REFERENCE, REFERENCE)}'s test Action Top-1 moves by σ = {sigma:.2f} points with "
            f"the seed alone (pooled within-fold std over {folds} folds, {runs} runs). A row that changed "
            f"nothing would show a paired Δ std of about σ√2 = {sigma * np.sqrt(2.0):.2f}; with {pairs} pairs a "
            f"mean Δ smaller than about 2.8·σ√2/√{pairs} = {floor:.2f} points cannot be told from that noise "
            f"(two-sided 5%, 80% power).")


def at_recipe_budget(key: str) -> bool:
    """False for the rows trained at another number of epochs than the recipe's (erm-2x, full-2x, ...)."""
    return key not in VARIANTS or VARIANTS[key].epochs_factor == 1


def best_on_validation(table: pd.DataFrame) -> str | None:
    """Row key with the highest mean validation Top-1 (None when no row has one). Check rows at
    another budget than the recipe's (erm-2x) are not candidates: they are not the recipe."""
    table = table[[at_recipe_budget(k) for k in table.index]]
    if not len(table) or table[f"{VAL_METRIC}_mean"].isna().all():
        return None
    return str(table[f"{VAL_METRIC}_mean"].idxmax())


def _best_line(table: pd.DataFrame, titles: Mapping[str, str]) -> str:
    key = best_on_validation(table)
    if key is None:
        return "Best on validation people: – (no run has a validation score yet)."
    row = table.loc[key]
    return (f"Best on validation people: **{titles.get(key, key)}** (Val Top-1 {row[f'{VAL_METRIC}_mean']:.2f} ± "
            f"{row[f'{VAL_METRIC}_std']:.2f}; its test Action Top-1 {row['action_top1_mean']:.2f} ± "
            f"{row['action_top1_std']:.2f}).")


def _notes(table: pd.DataFrame, n_folds: int, n_seeds: int, split_seed: int, checkpoint: str = "best") -> str:
    bodies = ("body-level metrics from MA-52's action-to-body table"
              if any(m in reported_metrics(table) for m in ("body_top1", "f1_mean"))
              else "no body-level metrics: the classes are not MA-52's")
    chosen = ("best.pt is chosen on validation people from the training side" if checkpoint == "best" else
              "the last epoch's weights (last.pt) are scored, on the test people and on the validation people "
              "from the training side (Val Top-1); no epoch is picked")
    return (f"Headline: Action Top-1 (action level) on each fold's held-out test people; {chosen}; {bodies}. "
            f"Folds from split_seed {split_seed}, the "
            f"same for every run, {n_folds} folds × {n_seeds} seed(s). Δ: the per-(fold, seed) difference to "
            f"ERM, mean ± std over the pairs; p: its two-sided paired test (Wilcoxon signed-rank with ≥ "
            f"{MIN_WILCOXON} nonzero pairs, else the exact sign test).")


def _per_subject(runs: Sequence[AblationRun]) -> pd.Series:
    """Per-subject test accuracy in percent, averaged over seeds (each seed tests every subject once)."""
    frames = [pd.read_csv(r.score_dir / f"per_subject_{RESULT_SPLIT}.csv", dtype={"subject": str})
              for r in runs if (r.score_dir / f"per_subject_{RESULT_SPLIT}.csv").is_file()]
    if not frames:
        return pd.Series(dtype=np.float64)
    # evaluate_run stores the accuracy as a fraction; the metrics and plots speak percent
    return 100.0 * pd.concat(frames).groupby("subject")["accuracy"].mean()


CURVE_METRICS = ("train_acc", VAL_METRIC)


def _history(runs: Sequence[AblationRun]) -> pd.DataFrame:
    """Training accuracy and validation Top-1 per epoch, averaged over the runs that have them."""
    frames = []
    for r in runs:
        path = r.run_dir / "metrics.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            cols = [c for c in CURVE_METRICS if c in frame.columns]
            if cols:
                frames.append(frame[["epoch", *cols]])
    if not frames:
        return pd.DataFrame(columns=["epoch", *CURVE_METRICS])
    return pd.concat(frames).groupby("epoch", as_index=False).mean()


def _per_class(runs: Sequence[AblationRun], num_classes: int) -> np.ndarray:
    """Per-class test recall (num_classes,) in percent from the pooled predictions of the runs."""
    from piumr_skel.engine.metrics import per_class_accuracy

    frames = [pd.read_csv(r.score_dir / f"predictions_{RESULT_SPLIT}.csv") for r in runs
              if (r.score_dir / f"predictions_{RESULT_SPLIT}.csv").is_file()]
    if not frames:
        return np.full(num_classes, np.nan)
    pooled = pd.concat(frames)
    return per_class_accuracy(pooled["label"].to_numpy(np.int64), pooled["pred"].to_numpy(np.int64), num_classes)


def _short_title(key: str) -> str:
    return {"full": "full", "full+aug": "full+aug", "full-early+aug": "full-early+aug"}.get(key, TITLES.get(key, key))


def make_plots(runs: Sequence[AblationRun], out: Path, keys: Sequence[str] = DEFAULT_VARIANTS,
               base_grouping: str = "input", warn: Callable[[str], None] = print) -> dict[str, Path]:
    """subject_accuracy.png, train_val_curves.png, per_class_change.png (and grouping_subject_accuracy.png)
    for the rows `keys` (and the grouping study's rows when they ran)."""
    from piumr_skel.engine.data_setup import class_names_for
    from piumr_skel.engine.plots import plot_per_class_change, plot_subject_accuracy, plot_validation_curves

    by_key: dict[str, list[AblationRun]] = {}
    for r in runs:
        if r.result() is not None:
            by_key.setdefault(r.key, []).append(r)
    keys = [k for k in keys if k in by_key]
    files: dict[str, Path] = {}

    def attempt(name: str, draw: Callable[[], Path]) -> None:
        try:
            files[name] = draw()
        except Exception as err:  # a figure is never worth losing the table for
            warn(f"warning: could not draw {name}: {err}")

    subj = {_short_title(k): _per_subject(by_key[k]) for k in keys}
    subj = {k: v for k, v in subj.items() if len(v)}
    if subj:
        attempt("subject_accuracy", lambda: plot_subject_accuracy(
            subj, out / "subject_accuracy.png", title="per-subject test accuracy (held-out people)"))
    curves = {_short_title(k): _history(by_key[k]) for k in keys}
    curves = {k: v for k, v in curves.items() if len(v) and v[VAL_METRIC].notna().any()}
    if curves:
        attempt("train_val_curves", lambda: plot_validation_curves(
            curves, out / "train_val_curves.png", train_metric="train_acc"))
    changed = [k for k in ("full", "full+aug", "full-early", "full-early+aug") if k in by_key]
    if REFERENCE in by_key and changed:
        class_names = class_names_for(by_key[changed[0]][0].cfg)
        ref = _per_class(by_key[REFERENCE], len(class_names))
        attempt("per_class_change", lambda: plot_per_class_change(
            {TITLES[k]: _per_class(by_key[k], len(class_names)) for k in changed}, ref, class_names,
            out / "per_class_change.png", reference_name=TITLES[REFERENCE]))
    group_keys = {GROUPING_TITLES[g]: grouping_key(base_grouping, g) for g in GROUPINGS}
    if any(k != "full" and k in by_key for k in group_keys.values()):
        gsubj = {t: _per_subject(by_key[k]) for t, k in group_keys.items() if k in by_key}
        attempt("grouping_subject_accuracy", lambda: plot_subject_accuracy(
            {t: v for t, v in gsubj.items() if len(v)}, out / "grouping_subject_accuracy.png",
            title="GIRL grouping: per-subject test accuracy"))
    return files


def _write_table(table: pd.DataFrame, titles: Mapping[str, str], csv_path: Path) -> None:
    table.insert(0, "title", [titles.get(k, k) for k in table.index])
    atomic_to_csv(table, csv_path)


def summarise(spec: AblationSpec, out: str | Path, runs: Sequence[AblationRun] | None = None,
              warn: Callable[[str], None] = print) -> AblationResult:
    """Tables (ablation.md/.csv, ablation_runs.csv, grouping.md/.csv) and figures from the finished runs
    (and the logistic-regression reference of OUT/reference, when it was computed). With
    spec.checkpoint "last" they score each run's last.pt (computed here where missing) and go to
    OUT/last_epoch/, so the best-epoch tables in OUT stay as they are."""
    from piumr_skel.tools.reference import REFERENCE_KEY, REFERENCE_TITLE, load_reference

    out = Path(out)
    tables = out if spec.checkpoint == "best" else out / LAST_DIR   # the last-epoch tables beside the others
    tables.mkdir(parents=True, exist_ok=True)
    runs = list(runs) if runs is not None else plan_runs(spec)
    score_last_epochs(runs, warn=warn)
    per_run = collect_results(runs)
    lr_rows = load_reference(out / "reference", spec.base)
    if lr_rows:
        per_run = pd.concat([per_run, pd.DataFrame(
            [{"key": REFERENCE_KEY, "fold": r["fold"], "seed": np.nan, "run_dir": "",
              **{m: r["metrics"].get(m, np.nan) for m in METRICS}, VAL_METRIC: np.nan} for r in lr_rows])],
            ignore_index=True)
    titles = {**TITLES, REFERENCE_KEY: REFERENCE_TITLE}
    files: dict[str, Path] = {}
    atomic_to_csv(per_run, tables / "ablation_runs.csv", index=False)
    files["runs_csv"] = tables / "ablation_runs.csv"
    n_folds, n_seeds = spec.base.folds, len(spec.seeds)
    table = summary_table(per_run, [*spec.variants, REFERENCE_KEY])
    best = best_on_validation(table[table.index != REFERENCE_KEY]) if len(table) else None
    if len(table):
        markdown = (markdown_table(table, titles, checkpoint=spec.checkpoint) + "\n\n"
                    + _best_line(table[table.index != REFERENCE_KEY], titles))
        noise = _noise_line(per_run, titles)
        if noise:
            markdown += "\n\n" + noise
        if lr_rows:
            markdown += (f"\n\n{REFERENCE_TITLE}: a non-deep check on the same folds (one fit per fold, "
                         f"seed-independent; paired with ERM's mean over seeds of the same fold).")
        _write_table(table, titles, tables / "ablation.csv")
        files["csv"] = tables / "ablation.csv"
    else:
        markdown = "(no finished runs yet)"
    header = (f"# Ablation: {spec.base.backbone}, {spec.base.stream} stream, xsub test subjects, "
              f"mean ± std over {n_folds} folds × {n_seeds} seed(s)"
              + (", the last epoch's weights" if spec.checkpoint == "last" else "") + "\n\n")
    notes = _notes(table, n_folds, n_seeds, spec.base.split_seed, spec.checkpoint) + "\n\n" if len(table) else ""
    atomic_write_text(tables / "ablation.md", header + notes + markdown + "\n")
    files["markdown"] = tables / "ablation.md"
    result = AblationResult(out=tables, per_run=per_run, table=table, markdown=markdown, files=files, best_on_val=best)
    longer = [k for k in spec.variants if not at_recipe_budget(k)]
    if CHECK in longer and len(longer) > 1:
        # The rows at the check's budget, paired with ERM at that budget: does a gap close with training?
        ltable = summary_table(per_run, longer, reference=CHECK)
        if len(ltable):
            epochs = spec.base.epochs * VARIANTS[CHECK].epochs_factor
            atomic_write_text(
                tables / "ablation_2x.md",
                f"# The same rows at twice the epochs ({epochs}), paired with ERM at that budget\n\n"
                f"Δ and p here are against {TITLES[CHECK]}, per (fold, seed).\n\n"
                + markdown_table(ltable, titles, reference=CHECK, checkpoint=spec.checkpoint) + "\n")
            files["markdown_2x"] = tables / "ablation_2x.md"
    if spec.grouping_study:
        gkeys = list(grouping_rows(spec.base.girl_groups))
        gtable = summary_table(per_run, [REFERENCE] + gkeys)
        gtitles = {REFERENCE: TITLES[REFERENCE],
                   **{grouping_key(spec.base.girl_groups, g): f"full, GIRL groups: {GROUPING_TITLES[g]}"
                      for g in GROUPINGS}}
        if len(gtable):
            result.grouping_markdown = (markdown_table(gtable, gtitles, checkpoint=spec.checkpoint) + "\n\n"
                                        + _best_line(gtable, gtitles))
            _write_table(gtable, gtitles, tables / "grouping.csv")
            atomic_write_text(
                tables / "grouping.md",
                f"# GIRL grouping study: do the pseudo-groups carry person style?\n\n"
                f"The full model (TFAM + GIRL v2) with each grouping, mean ± std over {n_folds} folds × "
                f"{n_seeds} seed(s). Pseudo-groups that carry person style should score near the true-subject "
                f"oracle and above random groups.\n\n"
                + _notes(gtable, n_folds, n_seeds, spec.base.split_seed, spec.checkpoint)
                + "\n\n" + result.grouping_markdown + "\n")
            files.update(grouping_csv=tables / "grouping.csv", grouping_markdown=tables / "grouping.md")
            result.grouping_table = gtable
    files.update(make_plots(runs, tables, spec.variants, spec.base.girl_groups, warn=warn))
    return result


# ----------------------------------------------------------------------------- driver
def _summarise_finished(spec: AblationSpec, out: Path, say: Callable[[str], None]) -> AblationResult:
    """run_ablation(summary_only=True): the tables of the finished runs; nothing is trained."""
    runs = plan_runs(spec)
    for run in runs:
        check_same_recipe(run)   # a summary of runs of another recipe would mislead as much as training them
    done = {r.name: r.result() is not None for r in runs}   # one read of each run's result file
    finished = [r for r in runs if done[r.name]]
    if not finished:
        raise AblationError(f"none of the {len(runs)} runs of this ablation has finished in {out / 'runs'}: "
                            "nothing to summarise (check -o, --config and --variants)")
    missing = [r.name for r in runs if not done[r.name]]
    more = f", ... (+{len(missing) - 8})" if len(missing) > 8 else ""
    say(f"ablation summary: {len(finished)} of {len(runs)} runs finished"
        + (f"; not finished (left out): {', '.join(missing[:8])}{more}" if missing else ""))
    result = summarise(spec, out, finished, warn=say)
    result.skipped = [r.name for r in finished]
    return result


def run_ablation(spec: AblationSpec, out: str | Path, *, echo: Callable[[str], None] = print,
                 verbose: bool = False, summary_only: bool = False) -> AblationResult:
    """Train and test every missing run of the ablation in turn, then the logistic-regression
    reference (layouts with a right hand), then write the tables and figures.

    A run that fails (divergence, bad data, ...) is recorded and the others go on; the failures are
    in the result and in OUT/ablate.log. `verbose` also shows the per-epoch lines of each run
    (they are always in the run's train.log). `summary_only` trains and computes nothing: the
    tables and figures come from the runs (and the reference) finished so far, e.g. while other
    processes are still training into OUT; the unfinished runs are named, not counted.
    """
    from piumr_skel.engine.evaluate import evaluate_run
    from piumr_skel.engine.train import train
    from piumr_skel.tools.reference import run_reference

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "ablate.log"

    def say(msg: str) -> None:
        echo(msg)
        with log_path.open("a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    if summary_only:
        return _summarise_finished(spec, out, say)
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
    check_buildable(runs)
    trained, skipped, held, failures = [], [], [], {}
    say(f"ablation: {len(runs)} runs ({len({r.key for r in runs})} variants × {spec.base.folds} folds × "
        f"{len(spec.seeds)} seed(s), folds from split_seed {spec.base.split_seed}) into {out / 'runs'}")
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
        except RunBusyError as err:  # another ablation on this folder trains it: not a failure, its run
            held.append(run.name)
            say(f"{label}: left to the job training it: {err}")
            continue
        except Exception as err:  # one failed run must not cost the others; it is reported at the end
            failures[run.name] = f"{type(err).__name__}: {err}"
            say(f"{label}: FAILED after {time.perf_counter() - t0:.0f} s: {type(err).__name__}: {err}")
            with log_path.open("a") as fh:
                fh.write(traceback.format_exc())
            continue
        trained.append(run.name)
        seconds = time.perf_counter() - t0
        scores = [("best epoch", res)]
        if run.checkpoint == "last":  # the line reports the weights the table scores, the best epoch beside
            score_last_epochs([run], warn=say)
            if (last := run.scored()) is not None:
                scores.insert(0, ("last epoch", last))
        say(f"{label}: done in {seconds:.1f} s; test ({res['clips']} clips) "
            + "; ".join(f"{name} {_headline(r['metrics'])}" for name, r in scores))
    try:
        run_reference(spec.base, out / "reference", echo=say)
    except Exception as err:  # the reference row is a check beside the table, never worth losing it for
        say(f"warning: no logistic-regression reference row: {type(err).__name__}: {err}")
        with log_path.open("a") as fh:
            fh.write(traceback.format_exc())
    result = summarise(spec, out, runs, warn=say)
    result.trained, result.skipped, result.held, result.failures = trained, skipped, held, failures
    return result
