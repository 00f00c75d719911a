"""Shared fixtures: a tiny synthetic keypoint store and the tiniest training recipe that runs on it."""
from __future__ import annotations

import os

# Before torch is imported (libgomp reads this once): OpenMP threads that spin while waiting make a
# 2-thread step ~10x slower as soon as another process holds a core; passive waiting costs little
# on an idle machine. setdefault leaves a user's own choice alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path
from typing import Any, NamedTuple

import pytest


class TinyStore(NamedTuple):
    """A synthetic MA-52-like store (pose_extract schema) with its label and class-name files."""

    root: Path          # folder holding everything below
    store: Path
    labels: Path
    class_names: Path
    cache: Path         # a clip cache shared by the tests (built on first use by the trainer)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> TinyStore:
    """6 synthetic people × 6 clips of 4 classes: enough for a 3-fold subject-disjoint split."""
    from piumr_skel.tools.synth import generate_store

    root = tmp_path_factory.mktemp("tiny_store")
    res = generate_store(root / "store", num_subjects=6, clips_per_subject=6, num_classes=4, seed=0,
                         labels_dir=root)
    return TinyStore(root=root, store=res.store, labels=res.labels, class_names=res.class_names,
                     cache=root / "cache")


def tiny_recipe(store: TinyStore, out_dir: Path, **overrides: Any) -> dict[str, Any]:
    """The smallest recipe that exercises every part (ST-GCN 3 blocks × 4 channels, TFAM, GIRL) on CPU."""
    recipe: dict[str, Any] = dict(
        store=str(store.store), labels=str(store.labels), class_names=str(store.class_names),
        cache_dir=str(store.cache), layout="mp_pose", backbone="stgcn", base_channels=4, num_blocks=3,
        clip_len=8, test_clips=1, batch_size=8, epochs=1, warmup_epochs=0, girl_warmup=0,
        max_steps_per_epoch=2, num_workers=0, split="xsub", folds=3, fold=0, device="cpu",
        out_dir=str(out_dir), tfam=True, girl=True, tfam_iters=5, girl_num_groups=2,
    )
    recipe.update(overrides)
    return recipe


@pytest.fixture(scope="session")
def tiny_recipe_in(tiny_store: TinyStore):
    """`make(out_dir, **overrides) -> dict`, for fixtures wider than one test."""

    def make(out_dir: Path, **overrides: Any) -> dict[str, Any]:
        return tiny_recipe(tiny_store, out_dir, **overrides)

    return make


@pytest.fixture()
def tiny_recipe_factory(tiny_store: TinyStore, tmp_path: Path):
    """`make(**overrides) -> dict` for a recipe writing runs under this test's tmp_path."""

    def make(**overrides: Any) -> dict[str, Any]:
        return tiny_recipe(tiny_store, tmp_path / "runs", **overrides)

    return make


class RealSplit(NamedTuple):
    """Labels and a 2 / 2 split file for the 4 real MA-52 clips of ../shared/ma52/videos."""

    labels: Path        # CSV clip_id,label
    split: Path         # split.json: 2 clips train, the other 2 val = test
    ids: list[str]


@pytest.fixture()
def real_split(tmp_path: Path) -> RealSplit:
    """The real clips' MA-52 classes (read off the videos) as a labels CSV, and a file split of them."""
    from piumr_skel.data.labels import MA52_CLASSES
    from piumr_skel.data.splits import write_split

    names = {"0030_01_0002": "shaking body", "0078_01_0005": "turning around",
             "0019_02_0078": "nodding", "0010_02_0101": "turning head"}
    labels = tmp_path / "labels.csv"
    labels.write_text("clip_id,label\n" + "".join(f"{c},{MA52_CLASSES.index(n)}\n" for c, n in names.items()))
    ids = list(names)
    # The split validator keeps train disjoint from val/test, so: 2 clips to train, the other 2 as val = test.
    split = write_split(tmp_path / "split", {"train": ids[:2], "val": ids[2:], "test": ids[2:]})
    return RealSplit(labels=labels, split=split, ids=ids)
