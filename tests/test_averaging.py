"""`--ema`: the moving average of the weights is what is validated, saved, evaluated and resumed."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from piumr_skel.engine import train as train_mod
from piumr_skel.engine.averaging import WeightEMA, ema_decay
from piumr_skel.engine.config import ConfigError, make_config, saved_config
from piumr_skel.engine.evaluate import evaluate_run, load_checkpoint


def _quiet(_: str) -> None:
    pass


def test_decay_follows_the_time_constant_after_a_warm_up() -> None:
    assert ema_decay(100.0, 0) == pytest.approx(0.1)            # (1 + 0) / (10 + 0): no memory of the init
    assert ema_decay(100.0, 10_000) == pytest.approx(math.exp(-0.01))
    assert ema_decay(5.0, 10_000) < ema_decay(50.0, 10_000) < 1.0


def test_update_blends_float_state_and_copies_integer_buffers() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(model, time_constant_steps=4.0)
    old = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()
    model(torch.randn(5, 3))                                      # moves BN's running stats and its counter
    ema.update(model, step=1000)
    d = math.exp(-1 / 4.0)
    new = model.state_dict()
    for key, value in ema.state_dict().items():
        if value.dtype.is_floating_point:
            assert torch.allclose(value, d * old[key] + (1 - d) * new[key], atol=1e-6), key
        else:
            assert torch.equal(value, new[key]), key
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_epochs_must_be_positive(tiny_recipe_factory) -> None:
    with pytest.raises(ConfigError, match="ema_epochs"):
        make_config(tiny_recipe_factory(ema=True, ema_epochs=0))
    cfg = make_config(tiny_recipe_factory(ema=True, epochs=40))
    assert cfg.ema_time_constant == 4.0 and cfg.recipe_name().split("_")[1].endswith("-ema")


def test_a_run_saved_before_ema_existed_did_not_average() -> None:
    old = {"epochs": 3, "girl_version": 2}
    assert saved_config(old, "old/config.yaml").ema is False
    assert saved_config({**old, "ema": True}, "new/config.yaml").ema is True


@pytest.mark.slow
def test_the_average_is_validated_saved_and_resumed_exactly(tiny_recipe_factory, monkeypatch) -> None:
    common = dict(epochs=3, warmup_epochs=1, max_steps_per_epoch=2, ema=True, ema_epochs=1.0,
                  tfam=True, girl=True, girl_warmup=1)   # TFAM fills a buffer lazily: resumed too
    straight_dir = train_mod.train(make_config(tiny_recipe_factory(name="straight", **common)), echo=_quiet)

    # the same run, stopped after epoch 2's checkpoint, then resumed
    save = train_mod._validate_and_save

    def save_then_stop(run, epoch, row):
        save(run, epoch, row)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_validate_and_save", save_then_stop)
    stopped = make_config(tiny_recipe_factory(name="stopped", **common))
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(stopped, echo=_quiet)
    monkeypatch.setattr(train_mod, "_validate_and_save", save)
    resumed_dir = train_mod.train(stopped, resume=True, echo=_quiet)

    def history(run_dir: Path) -> list[dict]:
        rows = json.loads((run_dir / "metrics.json").read_text())
        return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]

    assert history(resumed_dir) == history(straight_dir)
    a = torch.load(straight_dir / "last.pt", weights_only=False)
    b = torch.load(resumed_dir / "last.pt", weights_only=False)
    for part in ("model", "train_model"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    # "model" is the average, not the trained weights
    assert any(not torch.equal(a["model"][k], a["train_model"][k]) for k in a["model"]
               if a["model"][k].dtype.is_floating_point)
    # eval loads the average that validation chose: it scores what the history says
    _, model, _ = load_checkpoint(straight_dir)
    best = torch.load(straight_dir / "best.pt", weights_only=False)
    assert all(torch.equal(v, best["model"][k]) for k, v in model.state_dict().items())
    result = evaluate_run(straight_dir, split="val", device="cpu", quiet=True)
    assert result["metrics"]["action_top1"] == pytest.approx(best["best"]["action_top1"])
