"""From a TrainConfig to datasets: labels, the protocol's split, the clip cache (or videos), streams."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from piumr_skel.engine.config import TrainConfig


@dataclass
class RunData:
    """Datasets of one run and what is needed to report on them."""

    datasets: dict[str, Any]                   # split -> dataset (train, val, maybe test)
    clip_ids: dict[str, list[str]]             # split -> clip ids, in dataset order
    labels: dict[str, np.ndarray]              # split -> labels, in dataset order
    subjects: dict[str, np.ndarray]            # split -> subject ids (str), in dataset order
    class_names: list[str]
    split: dict[str, list[str]]
    layout: Any = None
    report: list[str] = field(default_factory=list)


def subject_codes(subjects: np.ndarray) -> np.ndarray:
    """Subject ids (str) -> contiguous int64 codes 0..S-1, in sorted order of the ids."""
    _, codes = np.unique(np.asarray(subjects).astype(str), return_inverse=True)
    return codes.reshape(-1).astype(np.int64)

MA52_LISTS = {"train": "train_list_videos.txt", "val": "val_list_videos.txt", "test": "test_list_videos.txt"}


def _read_all_labels(cfg: TrainConfig) -> tuple[pd.DataFrame, dict[str, pd.DataFrame] | None]:
    """-> (all labelled clips, official lists or None). A labels folder must hold MA-52's lists."""
    from piumr_skel.data.labels import read_labels

    if cfg.labels is None:
        raise ValueError("no labels given: pass --labels (an MA-52 list, a CSV clip_id,label[,subject], "
                         "or a folder holding train/val/test_list_videos.txt)")
    path = Path(cfg.labels)
    if path.is_dir():
        lists = {split: read_labels(path / name) for split, name in MA52_LISTS.items() if (path / name).is_file()}
        if "train" not in lists:
            raise FileNotFoundError(f"{path}: a labels folder must hold {MA52_LISTS['train']} "
                                    f"(and {MA52_LISTS['val']}, {MA52_LISTS['test']})")
        labelled = pd.concat([df for s, df in lists.items() if s != "test"], ignore_index=True)
        return labelled.drop_duplicates("clip_id"), lists
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    return read_labels(path), None


CLASS_NAMES_FILE = "label_name.txt"  # what the importers write beside their labels.csv


def class_names_for(cfg: TrainConfig, labels: pd.DataFrame | None = None, lists: dict | None = None) -> list[str]:
    """The class set: --class-names; else the label_name.txt beside the labels file (the importers
    write one); else MA-52's names when the labels are MA-52 lists; else generic names 0..K-1
    with K = the largest label + 1. A label outside the names is an error (in the caller)."""
    from piumr_skel.data.labels import MA52_CLASSES, read_class_names

    if cfg.class_names:
        return read_class_names(cfg.class_names)
    path = Path(cfg.labels) if cfg.labels else None
    if path is not None and path.is_file() and (path.parent / CLASS_NAMES_FILE).is_file():
        return read_class_names(path.parent / CLASS_NAMES_FILE)
    if lists is not None or path is None or path.suffix != ".csv":
        return list(MA52_CLASSES)
    if labels is None:
        from piumr_skel.data.labels import read_labels

        labels = read_labels(path)
    k = int(labels["label"].max()) + 1
    if k == len(MA52_CLASSES):
        return list(MA52_CLASSES)
    return [str(i) for i in range(k)]


def default_cache_dir(cfg: TrainConfig) -> Path:
    if cfg.store is None:
        raise ValueError("default_cache_dir: the config names no store")
    store = Path(cfg.store).resolve()
    tag = hashlib.sha1(str(store).encode()).hexdigest()[:8]
    return Path("artifacts/cache") / f"{store.name}-{tag}-{cfg.layout}"


def augment_config(cfg: TrainConfig):
    from piumr_skel.data.transforms import AugmentConfig

    return AugmentConfig(flip_p=cfg.aug_flip, rotate_p=0.5 if cfg.aug_rotate > 0 else 0.0,
                         rotate_degrees=cfg.aug_rotate, scale_p=0.5 if cfg.aug_scale > 0 else 0.0,
                         scale_strength=cfg.aug_scale, crop_p=cfg.aug_crop)


def _build_cache_once(cache_cls, store, layout, cache_dir: Path):
    """Under DDP rank 0 builds the cache while the others wait, then they reuse it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_rank() == 0:
            cache = cache_cls.build(store, layout, cache_dir)
        dist.barrier()
        if dist.get_rank() != 0:
            cache = cache_cls.build(store, layout, cache_dir)
        return cache
    return cache_cls.build(store, layout, cache_dir)


def load_run_data(cfg: TrainConfig, run_dir: Path | None, splits: tuple[str, ...] = ("train", "val"),
                  test_list: str | None = None) -> RunData:
    """Datasets for `splits` under the config's protocol; writes the split files into run_dir.

    `test_list` (predict) replaces the test split by every clip of that list, labels ignored.
    """
    from piumr_skel.data.labels import match_store, read_labels
    from piumr_skel.data.splits import make_split, write_split

    if cfg.store is None:
        raise ValueError("no store given: pass --store (a keypoint store from `piumr extract`, "
                         "or a video folder with --modality rgb)")
    labels, lists = _read_all_labels(cfg)
    class_names = class_names_for(cfg, labels, lists)
    bad = labels[(labels["label"] < 0) | (labels["label"] >= len(class_names))]
    if len(bad):
        raise ValueError(f"{cfg.labels}: {len(bad)} labels outside 0..{len(class_names) - 1} "
                         f"(e.g. {bad['clip_id'].iloc[0]} -> {bad['label'].iloc[0]}); wrong label file "
                         f"or class-name file?")
    report: list[str] = []
    if cfg.split == "official" and lists is None:
        raise ValueError("--split official needs --labels to be the folder holding MA-52's three list files")
    split = make_split(cfg.split, labels, fold=cfg.fold, folds=cfg.folds, seed=cfg.split_seed,
                       split_file=cfg.split_file, lists=lists)
    if run_dir is not None:
        write_split(run_dir / "split", split, meta={"protocol": cfg.split, "fold": cfg.fold,
                                                    "folds": cfg.folds, "seed": cfg.split_seed})
    table = pd.concat([labels] + ([lists["test"]] if lists and "test" in lists else []),
                      ignore_index=True).drop_duplicates("clip_id").set_index("clip_id")
    if test_list is not None:
        test_df = read_labels(test_list)
        split = dict(split, test=list(test_df["clip_id"]))
        table = pd.concat([table, test_df.set_index("clip_id")])
        table = table[~table.index.duplicated(keep="last")]

    if cfg.modality == "skeleton":
        from piumr_skel.data.dataset import ClipCache, SkeletonDataset
        from piumr_skel.data.transforms import PersonStyleConfig
        from piumr_skel.skeleton.layouts import get_layout

        layout = get_layout(cfg.layout)
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(cfg)
        cache = _build_cache_once(ClipCache, cfg.store, layout, cache_dir)
        if cache.failed or cache.skipped:
            report.append(f"clip cache {cache_dir}: {len(cache.skipped)} clips skipped (extraction failed), "
                          f"{len(cache.failed)} failed normalisation: "
                          + ", ".join(list(cache.skipped)[:3] + list(cache.failed)[:3]))
        available = set(cache.clip_ids)
    else:
        from piumr_skel.rgb.video_data import VideoClipDataset, find_videos

        layout = None
        videos = find_videos(cfg.store)
        available = set(videos)

    _, msg = match_store(table.reset_index(), available)
    report.append(msg)
    datasets, clip_ids, ys, subjects = {}, {}, {}, {}
    ds: Any  # a SkeletonDataset or a VideoClipDataset, as the modality says
    for name in splits:
        if name not in split:
            raise ValueError(f"the {cfg.split} split has no {name!r} part (parts: {', '.join(split)})")
        kept = table.loc[[c for c in split[name] if c in table.index and c in available]].reset_index()
        if len(kept) == 0:
            raise ValueError(f"the {name} split is empty: none of its {len(split[name])} clips is both "
                             f"labelled and in {cfg.store}")
        ids = kept["clip_id"].astype(str).tolist()
        y = kept["label"].to_numpy(dtype=np.int64)
        subj = kept["subject"].astype(str).to_numpy()
        train = name == "train"
        if cfg.modality == "skeleton":
            ds = SkeletonDataset(cache, ids, y, subj, T=cfg.frames, stream=cfg.stream, train=train,
                                 num_clips=1 if train else cfg.test_clips,
                                 augment=augment_config(cfg) if train else None, seed=cfg.seed, layout=layout,
                                 person_aug=PersonStyleConfig() if train and cfg.aug_person else None)
        else:
            ds = VideoClipDataset([videos[c] for c in ids], y, subj, num_segments=cfg.frames, train=train,
                                  size=cfg.image_size, seed=cfg.seed)
        datasets[name], clip_ids[name], ys[name], subjects[name] = ds, ids, y, subj
    return RunData(datasets=datasets, clip_ids=clip_ids, labels=ys, subjects=subjects,
                   class_names=class_names, split=split, layout=layout, report=report)
