"""One typed training config: YAML file + command-line overrides, validated by pydantic.

An unknown key or a bad value is a `ConfigError` that names the key and lists the valid choices.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from piumr_skel.data.transforms import STREAMS  # numpy only
from piumr_skel.engine.atomic import atomic_write_text
from piumr_skel.method.groupings import GROUPINGS_BY_VERSION, Grouping  # no torch
from piumr_skel.skeleton.graph import GraphMode  # numpy only

Protocol = Literal["official", "xsub", "file"]

Stream = Literal[STREAMS]  # type: ignore[valid-type]


class ConfigError(ValueError):
    """A config file or option that cannot be used, with the reason."""


@dataclass(config=ConfigDict(extra="forbid", validate_assignment=True))
class TrainConfig:
    """Everything a training run needs; saved into the run folder and into every checkpoint."""

    # --- data
    modality: Literal["skeleton", "rgb"] = "skeleton"
    store: Optional[str] = None          # keypoint store (skeleton) or video folder (rgb)
    labels: Optional[str] = None         # MA-52 list / CSV, or a folder holding the three MA-52 lists
    class_names: Optional[str] = None    # label_name.txt; default: the MA-52 names
    split: Protocol = "xsub"
    fold: int = 0
    folds: int = 5
    split_file: Optional[str] = None
    split_seed: int = 0                  # seed of the xsub folds: fixed while --seed varies the run
    layout: str = "mp_holistic"
    stream: Stream = "joint"
    clip_len: Optional[int] = None       # T frames per clip (skeleton, default 64) / segments (rgb, default 8)
    test_clips: int = 5                  # clips averaged at test time
    num_workers: int = 2
    cache_dir: Optional[str] = None      # default: artifacts/cache/<store>-<layout>
    # augmentation (skeleton)
    aug_rotate: float = 10.0             # degrees, 0 = off
    aug_scale: float = 0.1               # +- fraction, 0 = off
    aug_flip: float = 0.5                # probability
    aug_crop: float = 0.5                # probability of temporal crop-resize
    # --- model
    backbone: str = "stgcn"
    base_channels: int = 64
    num_blocks: int = 10
    graph_mode: GraphMode = "spatial"
    dropout: Optional[float] = None      # default 0 (skeleton), 0.5 (rgb, as TSM)
    pretrained: Optional[str] = None     # rgb: ImageNet ResNet state dict (torchvision keys)
    image_size: int = 224                # rgb crop
    # --- TFAM
    tfam: bool = False                  # off by default: it measured below ERM on unseen people (README)
    tfam_after: Optional[int] = None     # 1-based block index; default: before the last stage
    tfam_anchors: int = 16
    tfam_gamma: float = 1.0
    tfam_eps: float = 0.1
    tfam_iters: int = 20
    tfam_alpha: float = 0.5
    tfam_p: float = 0.5
    tfam_joint_anchors: bool = False
    lambda_w: float = 0.1
    lambda_c: float = 0.1
    # --- GIRL
    girl: bool = False                  # off by default: the evidence says so (README); --girl for PIUmr
    girl_version: Literal[1, 2] = 2
    girl_groups: Grouping = "input"
    girl_num_groups: int = 8
    girl_tau: float = 1.0
    girl_beta: float = 1.0               # v2: a boundary case weighs at most (1 + beta) times another
    girl_lambda_var: float = 1.0
    girl_eta: float = 0.0                # weight of the online GroupDRO term (v2) / of max_g R_g (v1)
    girl_eta_q: float = 0.01             # v2: step size of the GroupDRO group weights
    girl_warmup: Optional[int] = None    # epochs of plain CE first; default: min(5, 10% of epochs)
    girl_ramp: Optional[int] = None      # v1: epochs blending CE into GIRL (default 0); v2: epochs over
                                         # which lambda_var rises from 0 (default 20% of the epochs)
    aug_person: bool = False             # person-style augmentation: limb lengths, tempo, amplitude, posture
    ema: bool = False                    # validate, select and save a moving average of the weights
    ema_epochs: Optional[float] = None   # its time constant in epochs; default 10% of the epochs
    # --- optimisation
    epochs: int = 80
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: Optional[float] = None           # default: 0.1 x batch/128 (sgd), 1e-3 (adamw)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 5
    label_smoothing: float = 0.0
    grad_clip: float = 5.0               # max gradient norm, 0 = off (GIRL diverged without it)
    # --- run
    name: Optional[str] = None           # recipe name; default derived, e.g. stgcn_j-tfam-girl_xsub-f0_s0
    out_dir: str = "artifacts/runs"
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    amp: bool = True                     # bf16 autocast on CUDA; ignored on CPU
    eval_every: int = 1
    plot_every: int = 0                  # redraw curves.png every N epochs; 0 = only at the end
    max_steps_per_epoch: Optional[int] = None   # for smoke tests and benchmarks

    # derived -----------------------------------------------------------------
    @property
    def base_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.1 * self.batch_size / 128 if self.optimizer == "sgd" else 1e-3

    @property
    def frames(self) -> int:
        """Frames sampled per clip: clip_len, else 64 for skeletons and 8 segments for RGB."""
        return self.clip_len if self.clip_len is not None else (64 if self.modality == "skeleton" else 8)

    @property
    def drop_rate(self) -> float:
        return self.dropout if self.dropout is not None else (0.0 if self.modality == "skeleton" else 0.5)

    @property
    def warmup_girl(self) -> int:
        if self.girl_warmup is not None:
            return self.girl_warmup
        return min(5, max(1, round(0.1 * self.epochs))) if self.epochs > 1 else 0

    @property
    def girl_ramp_epochs(self) -> int:
        if self.girl_ramp is not None:
            return self.girl_ramp
        return 0 if self.girl_version == 1 else max(1, round(0.2 * self.epochs))

    @property
    def ema_time_constant(self) -> float:
        """Time constant of the weight average (--ema), in epochs."""
        return self.ema_epochs if self.ema_epochs is not None else max(1.0, 0.1 * self.epochs)

    def recipe_name(self) -> str:
        """PYSKL-style recipe name: backbone_stream-variant_split."""
        if self.name:
            return self.name
        stream = {"joint": "j", "bone": "b", "joint_motion": "jm", "bone_motion": "bm", "hand_local": "hl"}[self.stream]
        variant = {(False, False): "erm", (True, False): "tfam", (False, True): "girl",
                   (True, True): "tfam-girl"}[(self.tfam, self.girl)] + ("-ema" if self.ema else "")
        split = self.split + (f"-f{self.fold}" if self.split == "xsub" else "")
        prefix = self.backbone if self.modality == "skeleton" else f"rgb-{self.backbone}"
        return f"{prefix}_{stream}-{variant}_{split}_s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(config)"
        if e["type"] == "unexpected_keyword_argument" or e["type"] == "extra_forbidden":
            lines.append(f"unknown key {loc!r}; valid keys: {', '.join(sorted(FIELDS))}")
        else:
            lines.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
    return f"invalid config ({source}):\n  " + "\n  ".join(lines)


def make_config(values: dict[str, Any], source: str = "options") -> TrainConfig:
    """Build a validated TrainConfig from a plain dict."""
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, FIELDS, 1))
                 else repr(k) for k in unknown]
        raise ConfigError(f"invalid config ({source}): unknown key(s) {', '.join(hints)}; "
                          f"valid keys: {', '.join(sorted(FIELDS))}")
    try:
        cfg = TrainConfig(**values)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None
    _check_ranges(cfg, source)
    return cfg


def _check_ranges(cfg: TrainConfig, source: str) -> None:
    from piumr_skel.models import BACKBONES  # registry, filled on import

    problems = []
    if cfg.modality == "skeleton" and cfg.backbone not in BACKBONES:
        problems.append(f"backbone: unknown {cfg.backbone!r}; choices: {', '.join(sorted(BACKBONES))}")
    if cfg.modality == "rgb":
        from piumr_skel.rgb.model import RGB_ARCHS

        if cfg.backbone not in RGB_ARCHS:
            problems.append(f"backbone: unknown RGB backbone {cfg.backbone!r}; choices: {', '.join(RGB_ARCHS)}")
    if cfg.modality == "skeleton":
        from piumr_skel.skeleton.layouts import LAYOUTS

        if cfg.layout not in LAYOUTS:
            problems.append(f"layout: unknown {cfg.layout!r}; choices: {', '.join(sorted(LAYOUTS))}")
    if cfg.clip_len is not None and cfg.clip_len < 1:
        problems.append(f"clip_len: must be >= 1 (got {cfg.clip_len})")
    for key in ("epochs", "batch_size", "test_clips", "image_size", "folds", "girl_num_groups",
                "tfam_anchors", "tfam_iters", "base_channels", "num_blocks", "eval_every"):
        if getattr(cfg, key) < 1:
            problems.append(f"{key}: must be >= 1 (got {getattr(cfg, key)})")
    if not 0 <= cfg.fold < cfg.folds:
        problems.append(f"fold: must be in 0..{cfg.folds - 1} (got {cfg.fold})")
    if cfg.girl_groups not in GROUPINGS_BY_VERSION[cfg.girl_version]:
        problems.append(f"girl_groups: {cfg.girl_groups!r} is not a GIRL v{cfg.girl_version} grouping; choices: "
                        f"{', '.join(GROUPINGS_BY_VERSION[cfg.girl_version])}")
    if cfg.split == "file" and not cfg.split_file:
        problems.append("split_file: required with split = file")
    for key in ("tfam_p", "aug_flip", "aug_crop"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            problems.append(f"{key}: must be a probability in [0, 1] (got {getattr(cfg, key)})")
    for key in ("momentum", "label_smoothing", "aug_scale", "dropout"):
        value = getattr(cfg, key)
        if value is not None and not 0.0 <= value < 1.0:
            problems.append(f"{key}: must be in [0, 1) (got {value})")
    for key in ("lr", "tfam_eps", "tfam_gamma", "girl_tau", "ema_epochs"):
        value = getattr(cfg, key)
        if value is not None and not (value > 0 and math.isfinite(value)):
            problems.append(f"{key}: must be a finite number > 0 (got {value})")
    for key in ("weight_decay", "grad_clip", "lambda_w", "lambda_c", "girl_lambda_var", "girl_eta",
                "girl_beta", "girl_eta_q", "plot_every", "split_seed",
                "tfam_alpha", "aug_rotate", "warmup_epochs", "girl_warmup", "girl_ramp", "seed",
                "num_workers"):
        value = getattr(cfg, key)
        if value is not None and not value >= 0:
            problems.append(f"{key}: must be >= 0 (got {value})")
    if cfg.max_steps_per_epoch is not None and cfg.max_steps_per_epoch < 1:
        problems.append(f"max_steps_per_epoch: must be >= 1 when given (got {cfg.max_steps_per_epoch})")
    if cfg.modality == "skeleton" and cfg.tfam_after is not None and not 1 <= cfg.tfam_after < cfg.num_blocks:
        # after the last block TFAM would feed only the pooling, where it does almost nothing (docs/METHOD.md)
        problems.append(f"tfam_after: must be a block index in 1..{cfg.num_blocks - 1} (got {cfg.tfam_after})")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.device):
        problems.append(f"device: must be auto, cpu, cuda, cuda:N or mps (got {cfg.device!r})")
    if problems:
        sep = "\n  " if len(problems) > 1 else " "  # one problem: one line
        raise ConfigError(f"invalid config ({source}):{sep}" + "\n  ".join(problems))


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping of keys to values, or a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(loaded).__name__}")
    return loaded


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """YAML file (optional) overlaid by overrides whose value is not None."""
    values: dict[str, Any] = {}
    source = "options"
    if path is not None:
        values.update(read_yaml_mapping(path))
        source = str(path)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return make_config(values, source)


# Keys added since the first saved runs, with the value that reproduces what those runs did.
_LEGACY = {"girl_version": 1, "girl_ramp": 0}


def saved_config(values: dict[str, Any], source: str) -> TrainConfig:
    """The config of a saved run (config.yaml or a checkpoint's "config"), read so that a run made
    before a key existed keeps meaning what it did: GIRL v1, and folds drawn from its seed."""
    values = dict(values)
    if "girl_version" not in values:
        values.update({k: v for k, v in _LEGACY.items() if k not in values or values[k] is None})
        values.setdefault("girl_num_groups", 4)
    values.setdefault("split_seed", values.get("seed", 0))
    values.setdefault("ema", False)  # before --ema existed no run averaged its weights, whatever the default
    return make_config(values, source)


def load_saved_config(path: str | Path) -> TrainConfig:
    """`saved_config` of a run's config.yaml."""
    return saved_config(read_yaml_mapping(path), str(path))


# The data a run reads: absolute in the run's saved config, so that the run folder can be evaluated
# from any working directory.
DATA_PATH_KEYS = ("store", "labels", "class_names", "split_file")


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """The config with its data paths (DATA_PATH_KEYS) made absolute against the working directory."""
    paths: dict[str, Any] = {k: str(Path(v).expanduser().resolve())
                             for k in DATA_PATH_KEYS if (v := getattr(cfg, k)) is not None}
    return dataclasses.replace(cfg, **paths)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
