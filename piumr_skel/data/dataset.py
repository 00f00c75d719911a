"""Skeleton data pipeline: a normalised clip cache built once from a keypoint store, a
dataset that samples, augments and derives streams, and a reproducible DataLoader.

Flow: `ClipCache.build(store, layout, cache_dir)` -> `SkeletonDataset(cache, ids, labels, ...)`
-> `make_loader(dataset, ...)` -> batches of (x (N, C, T, V), label (N,), index (N,)).
Every random choice is a pure function of (seed, epoch, index), so batches do not depend on the
number of workers and a resumed run sees the same data.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from piumr_skel.data.transforms import (
    STREAMS,
    AugmentConfig,
    PersonStyleConfig,
    augment_clip,
    normalize_clip,
    person_style,
    to_stream,
    uniform_sample,
)

if TYPE_CHECKING:
    from piumr_skel.skeleton.layouts import Layout

__all__ = [
    "STREAMS", "AugmentConfig", "CacheMismatchError", "ClipCache", "SkeletonDataset", "make_loader",
    "store_fingerprint", "layout_signature",
]

log = logging.getLogger("piumr")

# Bump when the cache files or what normalize_clip computes change: old caches then rebuild.
# 2: frames and clips files named by generation, listed in meta.json; fingerprint covers frame files.
CACHE_SCHEMA_VERSION = 2
NORMALIZE_VERSION = 1

_META, _LOCK, _TMP_PREFIX = "meta.json", ".lock", ".tmp-"
_OLD_FILES = ("frames.npy", "clips.parquet")  # schema 1


class CacheMismatchError(ValueError):
    """A clip cache that was built from another store, layout or selection than requested."""


def _few(names: Sequence[str], k: int = 5) -> str:
    """'a, b, c, ... (+7 more)' for error messages."""
    names = list(names)
    head = ", ".join(map(str, names[:k]))
    return head + (f", ... (+{len(names) - k} more)" if len(names) > k else "")


def _resolve_layout(layout: "Layout | str") -> "Layout":
    if isinstance(layout, str):
        from piumr_skel.skeleton.layouts import get_layout

        return get_layout(layout)
    return layout


def layout_signature(layout: "Layout") -> str:
    """Hash of everything in a layout that changes the cached arrays (joints, sources, centre)."""
    parts = {
        "name": layout.name,
        "joints": list(layout.joints),
        "sources": [[p, list(map(int, idx))] for p, idx in getattr(layout, "sources", ())],
        "center": int(layout.center),
        "parents": [int(p) for p in np.asarray(layout.parents)],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def store_fingerprint(info: Mapping[str, Any], clips: pd.DataFrame,
                      frame_files: Sequence[tuple[str, int, int]] = ()) -> str:
    """Hash of a store's store.json, its clips table and (name, size, mtime_ns) of its frame files;
    changes whenever clips are added or redone, or a frames file is edited in place."""
    h = hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode())
    table = clips.sort_values("clip_id").reset_index(drop=True)
    h.update(table.to_csv(index=False).encode())
    h.update(json.dumps(sorted(map(list, frame_files))).encode())
    return h.hexdigest()[:16]


def _fingerprint_of(store: Any) -> str:
    """store_fingerprint of an open Store, with the sizes and modification times of its frame files."""
    from pose_extract.schema import FRAMES_DIR

    files = []
    root = getattr(store, "path", None)
    for f in sorted(Path(root, FRAMES_DIR).glob("*.parquet")) if root is not None else ():
        with contextlib.suppress(FileNotFoundError):  # removed by a compaction meanwhile
            st = f.stat()
            files.append((f.name, int(st.st_size), int(st.st_mtime_ns)))
    return store_fingerprint(dict(store.info), store.clips(), files)


def _selection_hash(clip_ids: Sequence[str] | None) -> str | None:
    if clip_ids is None:
        return None
    return hashlib.sha256("\n".join(sorted(set(map(str, clip_ids)))).encode()).hexdigest()[:16]


def _cache_lock(cache_dir: Path):
    from pose_extract.locking import exclusive_lock

    return exclusive_lock(cache_dir / _LOCK, f"clip cache {cache_dir}", blocking=True)


def _read_generation(cache_dir: Path) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """(meta, clips table, memory-mapped frames) of the generation meta.json names.

    A builder replaces meta.json before it deletes the files of the previous generation, so files
    missing right after reading meta.json mean a rebuild happened meanwhile: read meta.json again.
    """
    meta_path = cache_dir / _META
    for attempt in range(3):
        if not meta_path.is_file():
            raise FileNotFoundError(f"no clip cache in {cache_dir} (missing {_META}); "
                                    f"build one with ClipCache.build(store, layout, cache_dir)")
        text = meta_path.read_text()
        try:
            meta = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path}: not valid JSON ({err})") from err
        if meta.get("cache_schema") != CACHE_SCHEMA_VERSION:
            raise CacheMismatchError(f"{meta_path}: cache schema {meta.get('cache_schema')} is not "
                                     f"{CACHE_SCHEMA_VERSION}; rebuild the cache")
        files = meta.get("files") or {}
        try:
            table = pd.read_parquet(cache_dir / files["clips"])
            return meta, table, np.load(cache_dir / files["frames"], mmap_mode="r")
        except KeyError:
            raise ValueError(f"{meta_path}: no 'files' entry; rebuild the cache") from None
        except FileNotFoundError as err:
            if attempt == 2 or not meta_path.is_file() or meta_path.read_text() == text:
                raise ValueError(f"clip cache {cache_dir} is incomplete: "
                                 f"{Path(err.filename or '?').name} is missing") from None
    raise AssertionError("unreachable")


class ClipCache:
    """Normalised clips of one (store, layout): all frames in one float32 (N_frames, V, 3) .npy,
    memory-mapped on load, plus a clips table (clip_id, start, length, subject) and meta.json.

    Build with `ClipCache.build`; open an existing one with `ClipCache.load`.
    `cache[clip_id]` is the (T, V, 3) normalised clip (x, y, score), a read-only view.
    """

    def __init__(self, cache_dir: str | Path, meta: dict, table: pd.DataFrame,
                 layout: "Layout | None" = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.meta = meta
        self.table = table.reset_index(drop=True)
        self._layout = layout
        self._rows = {str(cid): (int(s), int(n)) for cid, s, n in
                      zip(self.table["clip_id"], self.table["start"], self.table["length"])}
        self._subjects = dict(zip(self.table["clip_id"].astype(str), self.table["subject"].astype(str)))
        self._frames: np.ndarray | None = None

    # ------------------------------------------------------------------ building and loading
    @classmethod
    def build(cls, store: "str | Path | Any", layout: "Layout | str", cache_dir: str | Path,
              clip_ids: Sequence[str] | None = None, *, force: bool = False) -> "ClipCache":
        """Build the cache from a keypoint store (a path or an open `Store`), or reuse it.

        An existing cache in `cache_dir` is reused when its store fingerprint (store.json, clips
        table, size and mtime of each frames file), layout and clip selection match; otherwise (or
        with `force`) it is rebuilt. Safe for concurrent callers: one builds under a lock on
        cache_dir/.lock while the others wait and then reuse its cache.
        The store's frames are read once (`Store.load_all`). Clips whose status is not "ok" are
        skipped; clips that fail assembly or normalisation are recorded in meta["failed"] and
        skipped with a warning.
        """
        if isinstance(store, (str, os.PathLike)):
            from pose_extract import open_store

            store = open_store(Path(store))
        layout = _resolve_layout(layout)
        cache_dir = Path(cache_dir)
        expected = {
            "cache_schema": CACHE_SCHEMA_VERSION,
            "normalize_version": NORMALIZE_VERSION,
            "layout": layout.name,
            "layout_signature": layout_signature(layout),
            "store_fingerprint": _fingerprint_of(store),
            "selection": _selection_hash(clip_ids),
        }
        if not force and (cache := cls._reusable(cache_dir, layout, expected)) is not None:
            return cache
        # One builder at a time; the others wait here and then reuse what it built.
        with _cache_lock(cache_dir):
            if not force and (cache := cls._reusable(cache_dir, layout, expected)) is not None:
                return cache
            return cls._build(store, layout, cache_dir, clip_ids, expected)

    @classmethod
    def _reusable(cls, cache_dir: Path, layout: "Layout", expected: Mapping[str, Any]
                  ) -> "ClipCache | None":
        """The cache in cache_dir if it is complete and matches `expected`, else None."""
        if not (cache_dir / _META).is_file():
            return None
        try:
            cache = cls.load(cache_dir, layout=layout)
        except (ValueError, OSError) as err:
            log.info("clip cache %s unreadable (%s); rebuilding", cache_dir, err)
            return None
        stale = [k for k, v in expected.items() if cache.meta.get(k) != v]
        if not stale:
            return cache
        log.info("clip cache %s is stale (%s differ); rebuilding", cache_dir, ", ".join(stale))
        return None

    @classmethod
    def _build(cls, store: Any, layout: "Layout", cache_dir: Path, clip_ids: Sequence[str] | None,
               expected: Mapping[str, Any]) -> "ClipCache":
        store_name = str(getattr(store, "path", "<store>"))
        info = dict(store.info)
        clips = store.clips()
        store_layout = info.get("layout")
        if store_layout and store_layout != layout.name:
            raise ValueError(f"store {store_name} holds {store_layout!r} keypoints, "
                             f"but the layout {layout.name!r} was requested")
        if clips.empty:
            raise ValueError(f"store {store_name} has no clips")
        clips = clips.drop_duplicates("clip_id", keep="last").set_index("clip_id", drop=False)
        if clip_ids is not None:
            wanted = list(dict.fromkeys(map(str, clip_ids)))
            absent = [c for c in wanted if c not in clips.index]
            clips = clips.loc[[c for c in wanted if c in clips.index]]
        else:
            absent = []
        status = clips["status"].astype(str) if "status" in clips else pd.Series("ok", clips.index)
        errors = clips["error"].astype(str) if "error" in clips else pd.Series("", clips.index)
        skipped = {cid: f"status {status[cid]!r}: {errors[cid]}"
                   for cid in clips.index[status != "ok"]}
        if absent:
            warnings.warn(f"clip cache {cache_dir}: {len(absent)} requested clips are not in "
                          f"store {store_name}: {_few(absent)}", stacklevel=2)
        ok = clips[status == "ok"]
        if ok.empty:
            raise ValueError(f"store {store_name} has no clip with status 'ok' among the "
                             f"{len(clips)} selected ({len(skipped)} failed: {_few(list(skipped))})")

        from piumr_skel.skeleton.layouts import assemble

        raw = store.load_all(list(ok["clip_id"]))
        arrays: dict[str, np.ndarray] = {}
        failed: dict[str, str] = {}
        for cid, w, h in zip(ok["clip_id"], ok["width"], ok["height"]):
            parts = raw.pop(cid, None)  # pop: free the raw arrays as we go
            if parts is None:
                failed[cid] = "no frames in the frames table"
                continue
            try:
                arrays[cid] = normalize_clip(assemble(layout, parts, int(w), int(h)), layout)
            except Exception as err:  # one bad clip must not stop a build over thousands
                failed[cid] = f"{type(err).__name__}: {err}"
        if failed:
            warnings.warn(f"clip cache {cache_dir}: {len(failed)} of {len(ok)} clips could not be "
                          f"normalised and are skipped: "
                          + "; ".join(f"{c} ({failed[c]})" for c in list(failed)[:3]),
                          stacklevel=2)
        if not arrays:
            raise ValueError(f"store {store_name}: no clip could be normalised for layout "
                             f"{layout.name!r}; first errors: "
                             + "; ".join(f"{c}: {e}" for c, e in list(failed.items())[:3]))
        subj = ok["subject"].fillna("").astype(str) if "subject" in ok else pd.Series("", ok.index)
        subjects = dict(zip(ok["clip_id"], subj))
        meta = dict(expected, store=store_name, failed=failed, skipped=skipped, absent=absent)
        return cls._write(cache_dir, arrays, layout, subjects=subjects, meta=meta)

    @classmethod
    def from_arrays(cls, cache_dir: str | Path, arrays: Mapping[str, np.ndarray], layout: "Layout",
                    *, subjects: Mapping[str, str] | None = None,
                    meta: Mapping[str, Any] | None = None) -> "ClipCache":
        """Write already-normalised clips {clip_id: (T, V, 3)} as a cache and return it.

        The frames and clips files get new names of their own (a generation) and meta.json, which
        names them, is replaced last: a reader sees the old cache or the new one, never a mix, and
        an interrupted write leaves the old cache in place.
        """
        with _cache_lock(Path(cache_dir)):
            return cls._write(Path(cache_dir), arrays, layout, subjects=subjects, meta=meta)

    @classmethod
    def _write(cls, cache_dir: Path, arrays: Mapping[str, np.ndarray], layout: "Layout",
               *, subjects: Mapping[str, str] | None = None,
               meta: Mapping[str, Any] | None = None) -> "ClipCache":
        """from_arrays without taking the lock (the caller holds it)."""
        cache_dir.mkdir(parents=True, exist_ok=True)
        V = int(layout.num_joints)
        for cid, a in arrays.items():
            if a.ndim != 3 or a.shape[1:] != (V, 3) or a.shape[0] < 1:
                raise ValueError(f"clip {cid}: expected (T, {V}, 3) with T >= 1, got {a.shape}")
        ids = list(arrays)
        lengths = np.array([arrays[c].shape[0] for c in ids], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        gen = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        files = {"frames": f"frames.{gen}.npy", "clips": f"clips.{gen}.parquet"}
        tmp = cache_dir / f"{_TMP_PREFIX}{gen}"
        out = np.lib.format.open_memmap(f"{tmp}.npy", mode="w+", dtype=np.float32,
                                        shape=(int(lengths.sum()), V, 3))
        for cid, s, n in zip(ids, starts, lengths):
            out[s:s + n] = arrays[cid]
        out.flush()
        del out
        os.replace(f"{tmp}.npy", cache_dir / files["frames"])
        subjects = subjects or {}
        table = pd.DataFrame({"clip_id": ids, "start": starts, "length": lengths,
                              "subject": [str(subjects.get(c, "")) for c in ids]})
        table.to_parquet(f"{tmp}.parquet", index=False)
        os.replace(f"{tmp}.parquet", cache_dir / files["clips"])
        full_meta = {"cache_schema": CACHE_SCHEMA_VERSION, "normalize_version": NORMALIZE_VERSION,
                     "layout": layout.name, "layout_signature": layout_signature(layout),
                     "store_fingerprint": None, "selection": None, "failed": {}, "skipped": {}}
        full_meta.update(meta or {})
        full_meta.update(num_clips=len(ids), num_frames=int(lengths.sum()), num_joints=V,
                         generation=gen, files=files)
        Path(f"{tmp}.json").write_text(json.dumps(full_meta, indent=1))
        os.replace(f"{tmp}.json", cache_dir / _META)  # the commit point
        keep = {_META, _LOCK, *files.values()}
        for f in cache_dir.iterdir():  # earlier generations and leftovers of killed builders
            if f.name not in keep and (f.name.startswith((_TMP_PREFIX, "frames.", "clips."))
                                       or f.name in _OLD_FILES):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        return cls(cache_dir, full_meta, table, layout)

    @classmethod
    def load(cls, cache_dir: str | Path, *, layout: "Layout | str | None" = None,
             store: "str | Path | Any | None" = None) -> "ClipCache":
        """Open a built cache, memory-mapping its frames.

        With `layout` and/or `store` given, refuse (CacheMismatchError) a cache built for another
        layout or from another state of the store.
        """
        cache_dir = Path(cache_dir)
        meta, table, frames = _read_generation(cache_dir)
        lay = None
        if layout is not None:
            lay = _resolve_layout(layout)
            if (meta.get("layout"), meta.get("layout_signature")) != (lay.name, layout_signature(lay)):
                raise CacheMismatchError(
                    f"clip cache {cache_dir} was built for layout {meta.get('layout')!r}, not "
                    f"{lay.name!r} (or the layout definition changed); rebuild it with ClipCache.build")
        if store is not None:
            if isinstance(store, (str, os.PathLike)):
                from pose_extract import open_store

                store = open_store(Path(store))
            if meta.get("store_fingerprint") != _fingerprint_of(store):
                raise CacheMismatchError(
                    f"clip cache {cache_dir} does not match store {getattr(store, 'path', store)} "
                    f"(the store changed since the cache was built); rebuild it with ClipCache.build")
        cache = cls(cache_dir, meta, table, lay)
        if frames.shape != (int(meta["num_frames"]), int(meta["num_joints"]), 3):
            raise ValueError(f"clip cache {cache_dir}: {meta['files']['frames']} has shape "
                             f"{frames.shape}, meta.json says ({meta['num_frames']}, "
                             f"{meta['num_joints']}, 3)")
        cache._frames = frames
        return cache

    # ------------------------------------------------------------------ access
    @property
    def frames_path(self) -> Path:
        """The .npy file of this cache's generation."""
        return self.cache_dir / self.meta["files"]["frames"]

    @property
    def frames(self) -> np.ndarray:
        """All frames (N_frames, V, 3), memory-mapped read-only (opened lazily, per process)."""
        if self._frames is None:
            try:
                self._frames = np.load(self.frames_path, mmap_mode="r")
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"clip cache {self.cache_dir}: {self.frames_path.name} is gone: another process "
                    f"rebuilt the cache (the store or layout changed) while this one used it; "
                    f"run again") from None
        return self._frames

    @property
    def layout(self) -> "Layout":
        """The layout the cache was built for."""
        if self._layout is None:
            self._layout = _resolve_layout(self.meta["layout"])
        return self._layout

    @property
    def clip_ids(self) -> list[str]:
        return list(self._rows)

    @property
    def failed(self) -> dict[str, str]:
        """Clips that could not be normalised, with the reason."""
        return dict(self.meta.get("failed", {}))

    @property
    def skipped(self) -> dict[str, str]:
        """Clips skipped because their store status was not 'ok'."""
        return dict(self.meta.get("skipped", {}))

    def subject(self, clip_id: str) -> str:
        """Subject id recorded in the store ("" when unknown)."""
        return self._subjects[clip_id]

    def length(self, clip_id: str) -> int:
        return self._rows[clip_id][1]

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._rows

    def __getitem__(self, clip_id: str) -> np.ndarray:
        """(T, V, 3) normalised clip."""
        try:
            start, n = self._rows[clip_id]
        except KeyError:
            raise KeyError(f"clip {clip_id!r} is not in the clip cache {self.cache_dir}") from None
        return self.frames[start:start + n]

    def __getstate__(self) -> dict:
        # Workers started with spawn must not receive a pickled copy of the whole memmap.
        state = self.__dict__.copy()
        state["_frames"] = None
        return state


class SkeletonDataset(Dataset):
    """Clips from a `ClipCache` as model inputs.

    __getitem__(i) -> (x, label, i) with x float32 (C, T, V), C = 3 (x, y, score of the stream);
    at test with num_clips > 1, x is (num_clips, C, T, V) for averaging over clips.
    Train: random uniform sampling of T frames and `augment`; test: deterministic sampling, no
    augmentation. Item i's randomness comes from np.random.default_rng([seed, epoch, i]).
    """

    def __init__(self, cache: ClipCache, clip_ids: Sequence[str], labels: Sequence[int] | np.ndarray,
                 subjects: Sequence[str] | np.ndarray | None = None, *, T: int = 64, stream: str = "joint",
                 train: bool = True, num_clips: int = 1, augment: AugmentConfig | None = None,
                 seed: int = 0, layout: "Layout | None" = None,
                 person_aug: PersonStyleConfig | None = None) -> None:
        clip_ids = [str(c) for c in clip_ids]
        if not clip_ids:
            raise ValueError(f"empty dataset: no clip ids given (cache {cache.cache_dir})")
        if len(labels) != len(clip_ids):
            raise ValueError(f"{len(clip_ids)} clip ids but {len(labels)} labels")
        if subjects is not None and len(subjects) != len(clip_ids):
            raise ValueError(f"{len(clip_ids)} clip ids but {len(subjects)} subjects")
        unknown = [c for c in clip_ids if c not in cache]
        if unknown:
            failed = [c for c in unknown if c in cache.failed]
            skipped = [c for c in unknown if c in cache.skipped]
            raise KeyError(
                f"{len(unknown)} of {len(clip_ids)} clip ids are not in the clip cache "
                f"{cache.cache_dir}: {_few(unknown)}"
                + (f"; {len(failed)} failed normalisation" if failed else "")
                + (f"; {len(skipped)} were not extracted successfully" if skipped else ""))
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
        if T < 1 or num_clips < 1:
            raise ValueError(f"T and num_clips must be >= 1, got T={T}, num_clips={num_clips}")
        if train and num_clips != 1:
            raise ValueError("num_clips > 1 is for test-time averaging; use train=False")
        self.cache = cache
        self.layout = layout if layout is not None else cache.layout
        if int(self.layout.num_joints) != int(cache.meta["num_joints"]):
            raise ValueError(f"layout {self.layout.name!r} has {self.layout.num_joints} joints, "
                             f"the cache {cache.meta['num_joints']}")
        self.clip_ids = clip_ids
        self.labels = np.asarray(labels, dtype=np.int64)
        self.subjects = np.asarray(
            [str(s) for s in subjects] if subjects is not None else
            [cache.subject(c) for c in clip_ids], dtype=str)
        self.T, self.stream, self.train, self.num_clips = T, stream, train, num_clips
        self.augment = augment
        self.person_aug = person_aug
        self.seed = int(seed)
        self.epoch = 0

    def eval_view(self) -> "SkeletonDataset":
        """The same clips without augmentation, one deterministic clip each (e.g. for a pass over
        the training set)."""
        return SkeletonDataset(self.cache, self.clip_ids, self.labels, self.subjects, T=self.T, stream=self.stream,
                               train=False, num_clips=1, seed=self.seed, layout=self.layout)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws __getitem__ makes (call before making a loader)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def rng_for(self, index: int) -> np.random.Generator:
        """The generator item `index` uses in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} clips")
        rng = self.rng_for(index)
        clip = self.cache[self.clip_ids[index]]  # (T0, V, 3) memmap view
        if self.train and self.person_aug is not None:  # before frame sampling: it may change the tempo
            clip = person_style(np.asarray(clip, dtype=np.float32), self.layout, rng, self.person_aug)
        inds = uniform_sample(clip.shape[0], self.T, rng, train=self.train, num_clips=self.num_clips)
        views = []
        for row in inds:
            x = np.asarray(clip[row], dtype=np.float32)  # (T, V, 3), a copy off the memmap
            if self.train and self.augment is not None:
                x = augment_clip(x, self.layout, self.augment, rng)
            x = to_stream(x, self.layout, self.stream, channels_last=True)
            views.append(np.transpose(x, (2, 0, 1)))  # (C, T, V)
        out = views[0] if self.num_clips == 1 else np.stack(views)
        return torch.from_numpy(np.ascontiguousarray(out)), int(self.labels[index]), index


def loader_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for the shuffling generator of (seed, epoch)."""
    a, b = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
    return int((int(a) << 31) ^ int(b))


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int,
                epoch: int, drop_last: bool, distributed: bool = False) -> DataLoader:
    """A DataLoader whose order is a function of (seed, epoch) only.

    Shuffling uses a torch.Generator seeded from (seed, epoch) — or, when `distributed`, a
    DistributedSampler with that seed and set_epoch(epoch). The dataset's own epoch is set too.
    Workers are not persistent, so each loader's workers see the epoch set here.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("cannot make a loader for an empty dataset")
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    generator = torch.Generator()
    generator.manual_seed(loader_seed(seed, epoch))
    sampler: DistributedSampler | None = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=int(seed), drop_last=drop_last)
        sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, num_workers=num_workers, drop_last=drop_last,
                      generator=generator, persistent_workers=False)
