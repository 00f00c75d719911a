"""Run folders made by an older piumr still load and evaluate: tests/fixtures/old_run/ holds a
checkpoint and a clip cache written by the code of commit 01bf0e0, before piumr_skel/ became
subpackages (README.md there). The checkpoint loads with weights_only=True (no pickled piumr
class), the cache passes its layout check, and the model scores the val clips as it did then."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from piumr_skel.data.dataset import ClipCache, SkeletonDataset
from piumr_skel.data.labels import read_labels
from piumr_skel.engine.checkpoint import FORMAT
from piumr_skel.engine.data_setup import RunData
from piumr_skel.engine.evaluate import evaluate_run, load_checkpoint
from piumr_skel.skeleton.layouts import get_layout

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "old_run"


@pytest.fixture()
def old_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture, as the working directory (its config names paths relative to it)."""
    copy = tmp_path / "old_run"
    shutil.copytree(FIXTURE, copy, ignore=shutil.ignore_patterns("*.py", "*.md"))
    monkeypatch.chdir(copy)
    return copy


def test_the_checkpoint_holds_no_pickled_class(old_run: Path) -> None:
    ckpt = torch.load(old_run / "run" / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["format"] == FORMAT and ckpt["layout"]["name"] == "mp_pose"


def test_the_checkpoint_rebuilds_its_model(old_run: Path) -> None:
    cfg, model, ckpt = load_checkpoint(old_run / "run")
    assert cfg.recipe_name() == "old" and cfg.tfam and cfg.girl and not model.training
    assert ckpt["epoch"] == 1 and len(ckpt["class_names"]) == 52


def test_the_cache_reads(old_run: Path) -> None:
    cache = ClipCache.load(old_run / "cache", layout=get_layout("mp_pose"))
    assert len(cache) == 24 and cache.layout.name == "mp_pose"
    clip = cache.clip_ids[0]
    assert cache[clip].shape == (cache.length(clip), 35, 3) and np.isfinite(cache[clip]).all()


def test_the_run_evaluates_to_its_saved_scores(old_run: Path) -> None:
    cfg, _, ckpt = load_checkpoint(old_run / "run")
    layout = get_layout(cfg.layout)
    cache = ClipCache.load(cfg.cache_dir, layout=layout)
    split = json.loads((old_run / "run" / "split" / "split.json").read_text())["splits"]
    table = read_labels(cfg.labels).set_index("clip_id").loc[split["val"]]
    ids, y, subj = list(table.index), table["label"].to_numpy(), table["subject"].to_numpy()
    ds = SkeletonDataset(cache, ids, y, subj, T=cfg.frames, stream=cfg.stream, train=False,
                         num_clips=cfg.test_clips, seed=cfg.seed, layout=layout)
    data = RunData(datasets={"val": ds}, clip_ids={"val": ids}, labels={"val": y}, subjects={"val": subj},
                   class_names=ckpt["class_names"], split=split, layout=layout)
    result = evaluate_run(old_run / "run", split="val", device="cpu", data=data,
                          out_dir=old_run / "again", quiet=True)
    saved = json.loads((old_run / "run" / "eval_val.json").read_text())
    np.testing.assert_allclose(np.load(old_run / "again" / "scores_val.npy"),
                               np.load(old_run / "run" / "scores_val.npy"), rtol=1e-5, atol=1e-6)
    assert result["clips"] == saved["clips"] == 4
    assert result["metrics"] == pytest.approx(saved["metrics"])
