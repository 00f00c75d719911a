"""TrainConfig: YAML + overrides, and a clear ConfigError for every kind of bad value."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from piumr_skel.engine.config import FIELDS, ConfigError, TrainConfig, load_config, make_config, save_config
from piumr_skel.models import BACKBONES
from piumr_skel.skeleton.layouts import LAYOUTS


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "backbone: ctrgcn\nepochs: 7\nlayout: mp_pose\ntfam: false\nlr: 0.02\n")
    cfg = load_config(path, {"epochs": 3, "stream": "bone", "lr": None})
    assert isinstance(cfg, TrainConfig)
    assert cfg.backbone == "ctrgcn" and cfg.layout == "mp_pose" and cfg.tfam is False
    assert cfg.epochs == 3            # an option beats the file
    assert cfg.stream == "bone"
    assert cfg.lr == 0.02             # None means "not given": the file's value stands
    assert cfg.girl is False          # untouched default (ERM)


def test_defaults_and_derived_values() -> None:
    cfg = make_config({})
    assert cfg.frames == 64 and cfg.drop_rate == 0.0
    assert cfg.base_lr == pytest.approx(0.1)                       # 0.1 × 128/128 (PYSKL)
    assert make_config({"batch_size": 32}).base_lr == pytest.approx(0.025)
    assert make_config({"optimizer": "adamw"}).base_lr == pytest.approx(1e-3)
    assert make_config({"epochs": 80}).warmup_girl == 5
    assert make_config({"epochs": 20}).warmup_girl == 2
    assert make_config({"modality": "rgb", "backbone": "tsm_r18"}).frames == 8
    assert cfg.recipe_name() == "stgcn_j-erm_xsub-f0_s0"          # ERM is the default (README)
    assert make_config({"tfam": False, "girl": False, "stream": "bone_motion", "split": "official"}
                       ).recipe_name() == "stgcn_bm-erm_official_s0"


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = make_config({"backbone": "ctrgcn", "epochs": 4, "tfam_after": 5, "stream": "joint_motion"})
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert set(yaml.safe_load((tmp_path / "config.yaml").read_text())) == FIELDS


def test_unknown_key_lists_valid_keys(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "epochs: 3\nbatchsize: 16\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "'batchsize'" in msg and "did you mean 'batch_size'" in msg
    assert "valid keys:" in msg and all(k in msg for k in FIELDS)


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'nonsense'"):
        make_config({"nonsense": 1})


@pytest.mark.parametrize("key,value,choices", [
    ("stream", "skeleton", ["joint", "bone", "joint_motion", "bone_motion"]),
    ("split", "random", ["official", "xsub", "file"]),
    ("optimizer", "adam", ["sgd", "adamw"]),
    ("girl_groups", "people", ["kmeans", "subject", "random"]),
    ("graph_mode", "full", ["spatial", "distance"]),
])
def test_bad_choice_lists_choices(key: str, value: str, choices: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        make_config({key: value})
    msg = str(err.value)
    assert key in msg and repr(value) in msg
    assert all(repr(c) in msg for c in choices), msg


def test_bad_backbone_and_layout_list_the_registry() -> None:
    with pytest.raises(ConfigError) as err:
        make_config({"backbone": "resnet", "layout": "smpl"})
    msg = str(err.value)
    assert "backbone: unknown 'resnet'" in msg and "layout: unknown 'smpl'" in msg  # both reported at once
    assert all(b in msg for b in BACKBONES) and all(name in msg for name in LAYOUTS)


def test_rgb_backbones_and_groupings_come_from_their_owners(monkeypatch: pytest.MonkeyPatch) -> None:
    """The config lists no RGB architecture or GIRL grouping of its own: it reads rgb.RGB_ARCHS and
    method.groupings, the lists RGBRecognizer and the GIRL losses check against."""
    from piumr_skel.method import girl
    from piumr_skel.rgb import model as rgb_model

    monkeypatch.setitem(rgb_model.RGB_ARCHS, "tsm_test", "resnet18")
    assert make_config({"modality": "rgb", "backbone": "tsm_test"}).backbone == "tsm_test"
    with pytest.raises(ConfigError) as err:
        make_config({"modality": "rgb", "backbone": "tsm_r101"})
    assert all(a in str(err.value) for a in rgb_model.RGB_ARCHS)
    for version, groupings in ((1, girl.GROUPINGS), (2, girl.GROUPINGS_V2)):
        for g in groupings:
            assert make_config({"girl_version": version, "girl_groups": g}).girl_groups == g


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"epochs: .*integer.*'many'"):
        make_config({"epochs": "many"})


@pytest.mark.parametrize("values,needle", [
    ({"epochs": 0}, "epochs: must be >= 1"),
    ({"batch_size": -4}, "batch_size: must be >= 1"),
    ({"clip_len": 0}, "clip_len: must be >= 1"),
    ({"num_blocks": 0}, "num_blocks: must be >= 1"),
    ({"fold": 5, "folds": 5}, "fold: must be in 0..4"),
    ({"fold": -1}, "fold: must be in 0..4"),
    ({"tfam_p": 1.5}, "tfam_p: must be a probability"),
    ({"aug_flip": -0.1}, "aug_flip: must be a probability"),
    ({"lr": 0.0}, "lr: must be a finite number > 0"),
    ({"lr": float("nan")}, "lr: must be a finite number > 0"),
    ({"tfam_eps": -1.0}, "tfam_eps: must be a finite number > 0"),
    ({"weight_decay": -1e-4}, "weight_decay: must be >= 0"),
    ({"momentum": 1.0}, "momentum: must be in [0, 1)"),
    ({"label_smoothing": 1.0}, "label_smoothing: must be in [0, 1)"),
    ({"dropout": 1.2}, "dropout: must be in [0, 1)"),
    ({"max_steps_per_epoch": 0}, "max_steps_per_epoch: must be >= 1"),
    ({"num_blocks": 10, "tfam_after": 10}, "tfam_after: must be a block index in 1..9"),
    ({"tfam_after": 0}, "tfam_after: must be a block index"),
    ({"split": "file"}, "split_file: required with split = file"),
    ({"device": "gpu"}, "device: must be auto, cpu, cuda"),
])
def test_ranges(values: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert needle in str(err.value)


def test_edges_of_ranges_are_accepted() -> None:
    cfg = make_config({"fold": 4, "folds": 5, "tfam_p": 1.0, "aug_flip": 0.0, "momentum": 0.0,
                       "num_blocks": 3, "tfam_after": 2, "device": "cuda:1", "max_steps_per_epoch": 1})
    assert cfg.fold == 4 and cfg.tfam_after == 2


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_yaml(tmp_path, "epochs: [1, 2\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(_yaml(tmp_path, "- epochs\n- 3\n"))
    assert load_config(_yaml(tmp_path, "")) == make_config({})  # an empty file is the defaults


def test_shipped_configs_load() -> None:
    """Every recipe in configs/ is a valid TrainConfig (a typo there must fail here, not mid-run)."""
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    train_recipes = [p for p in configs if not p.name.startswith("ablate")]
    if not train_recipes:
        pytest.skip("no training recipes in configs/")
    for path in train_recipes:
        load_config(path)
