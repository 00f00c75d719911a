"""The Parquet keypoint store: an atomic, kill-safe writer, a reader, and merging of shard stores.

On disk a store is ``store.json`` plus ``frames/*.parquet`` and ``clips/*.parquet`` (docs/INTERFACES.md §1).
Rows are written in *units*: a unit ``U`` is the pair ``frames/U.parquet`` + ``clips/U.parquet``, and it
becomes visible at one instant, when ``clips/U.parquet`` is renamed into place (``os.replace``) after its
frames file. A unit is either one clip (``<ns>-c-<hash>``) or a compacted part (``<ns>-p-<token>``) whose
clips file lists, in its Parquet metadata, the units it replaces. Readers therefore see each clip exactly
once at every moment, whatever point a writer was killed at:

* a frames file without its clips file (killed between the two renames) is ignored;
* units listed as replaced by a committed part are ignored, even before they are deleted;
* if a clip is still present in two units (a failed clip extracted again), the ``ok`` row wins, then the
  newest unit.

Commits and compaction take an ``flock`` on ``STORE/.lock`` so that several writers can share a store.
A whole job (``piumr extract``, ``piumr merge-stores``) also holds ``STORE/.writer.lock`` (see
:func:`writer_lock`): two jobs into one store would both extract every clip and duplicate its frames.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import (
    CLIP_COLUMNS,
    CLIPS_DIR,
    CLIPS_SCHEMA,
    FRAMES_DIR,
    KINDS,
    RATE_PARTS,
    SCHEMA_VERSION,
    STATUSES,
    STORE_FILE,
    frames_schema,
    parse_subject,
)

try:  # POSIX only; without it commits are still atomic, only concurrent writers are unsafe
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

EXTRACTOR_VERSION = "piumr-store 1"
TMP_DIR = ".tmp"
LOCK_FILE = ".lock"
WRITER_LOCK = ".writer.lock"
_REPLACES_KEY = b"piumr.replaces"
_STALE_TMP_S = 24 * 3600.0


class StoreError(ValueError):
    """A store that is missing, malformed, of another schema version, or does not match what is asked.

    A ValueError, so that every command that reports bad input as one line reports this one too."""


# ----------------------------------------------------------------------------------------------
# store.json


def _normalise_parts(parts: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for name, shape in parts.items():
        v, c = (int(s) for s in shape)
        if v <= 0 or c <= 0:
            raise ValueError(f"part {name!r}: shape must be two positive ints (V, C), got {shape!r}")
        out[str(name)] = (v, c)
    if not out:
        raise ValueError("a store needs at least one part")
    return out


def read_info(path: str | Path) -> dict:
    """store.json of the store at ``path``; StoreError naming the path when missing or not version 1."""
    path = Path(path)
    info_path = path / STORE_FILE
    if not path.exists():
        raise StoreError(f"{path}: keypoint store not found")
    if not info_path.is_file():
        raise StoreError(f"{path}: not a keypoint store ({STORE_FILE} missing)")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{info_path}: cannot read store description: {exc}") from exc
    if not isinstance(info, dict):
        raise StoreError(f"{info_path}: expected a JSON object")
    version = info.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(f"{info_path}: schema_version is {version!r}, this piumr reads version "
                         f"{SCHEMA_VERSION}")
    for key in ("kind", "parts"):
        if key not in info:
            raise StoreError(f"{info_path}: field {key!r} missing")
    return info


def _atomic_write_bytes(path: Path, data: bytes, tmp_dir: Path) -> None:
    tmp = _tmp_name(tmp_dir)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# temporary files, locking and unit names

_HOST = socket.gethostname().replace("-", "_")


def _tmp_name(tmp_dir: Path) -> Path:
    # host and pid in the name let a later run delete leftovers of a killed process at once.
    return tmp_dir / f"{_HOST}-{os.getpid()}-{secrets.token_hex(6)}.tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_tmp(tmp_dir: Path) -> None:
    now = time.time()
    for f in tmp_dir.glob("*.tmp"):
        host, _, rest = f.name.partition("-")
        pid_s = rest.partition("-")[0]
        try:
            stale = (host == _HOST and pid_s.isdigit() and int(pid_s) != os.getpid()
                     and not _pid_alive(int(pid_s))) or now - f.stat().st_mtime > _STALE_TMP_S
            if stale:
                f.unlink()
        except FileNotFoundError:
            pass


def _clip_unit_name(clip_id: str) -> str:
    digest = hashlib.sha1(clip_id.encode()).hexdigest()[:16]
    return f"{time.time_ns():020d}-c-{digest}"


def _part_unit_name() -> str:
    return f"{time.time_ns():020d}-p-{secrets.token_hex(6)}"


def _write_parquet(table: pa.Table, dest: Path, tmp_dir: Path) -> Path:
    """Write ``table`` to a temporary file (flushed to disk) and return it; the caller renames it."""
    tmp = _tmp_name(tmp_dir)
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def writer_lock(path: str | Path):
    """Context manager: this process is the only job writing the store at ``path`` (created if needed).

    Non-blocking: another job holding it raises LockBusyError naming its pid, host and start time.
    """
    from .locking import exclusive_lock

    return exclusive_lock(Path(path) / WRITER_LOCK, f"keypoint store {path}",
                          hint="; wait for it to finish, or split the work with --shard I/N into "
                               "separate stores and join them with `piumr merge-stores`")


# ----------------------------------------------------------------------------------------------
# scanning committed units


def _read(path: Path, *, schema_only: bool = False, **kw: Any) -> Any:
    """pq.read_table (or read_schema) of one unit file; StoreError naming it when it is corrupt."""
    try:
        return pq.read_schema(path) if schema_only else pq.read_table(path, **kw)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        other = FRAMES_DIR if path.parent.name == CLIPS_DIR else CLIPS_DIR
        raise StoreError(f"{path}: unreadable Parquet file, truncated or corrupt ({exc}); delete it and "
                         f"its namesake in {other}/, then run the same extraction or import again to "
                         f"redo its clips") from None


def _units(path: Path) -> tuple[list[str], set[str]]:
    """(committed unit names not replaced by a part, names replaced by a committed part)."""
    names = sorted(f.name[: -len(".parquet")] for f in (path / CLIPS_DIR).glob("*.parquet"))
    replaced: set[str] = set()
    for name in names:
        if "-p-" in name:
            md = _read(path / CLIPS_DIR / f"{name}.parquet", schema_only=True).metadata or {}
            if _REPLACES_KEY in md:
                replaced.update(json.loads(md[_REPLACES_KEY]))
    return [n for n in names if n not in replaced], replaced


def _scan_clips(path: Path) -> pd.DataFrame:
    """Clips table of all live units, one row per clip_id, with the unit in column ``_unit``."""
    live, _ = _units(path)
    frames = []
    for name in live:
        t = _read(path / CLIPS_DIR / f"{name}.parquet")
        missing = [c for c in CLIP_COLUMNS if c not in t.column_names]
        if missing:
            raise StoreError(f"{path / CLIPS_DIR / name}.parquet: clips table lacks columns {missing}")
        df = t.select(list(CLIP_COLUMNS)).to_pandas()
        df["_unit"] = name
        frames.append(df)
    if not frames:
        df = CLIPS_SCHEMA.empty_table().to_pandas()
        df["_unit"] = pd.Series(dtype=object)
        return df
    df = pd.concat(frames, ignore_index=True)
    # One row per clip: an ok row beats a failed one, then the newest unit (names sort by time).
    df["_ok"] = df["status"] == "ok"
    df = df.sort_values(["clip_id", "_ok", "_unit"]).drop_duplicates("clip_id", keep="last")
    return df.drop(columns="_ok").sort_values("clip_id").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# array <-> Arrow


def _part_column(arr: np.ndarray) -> pa.ListArray:
    """(T, V, C) float32 with NaN rows -> list<float32> of V*C values per frame; an all-NaN frame is null."""
    t = arr.shape[0]
    flat = np.ascontiguousarray(arr, dtype=np.float32).reshape(t, -1)
    null = np.isnan(flat).all(axis=1) if t else np.zeros(0, dtype=bool)
    # Null entries must be empty lists: Parquet rejects nulls that own values.
    offsets = np.zeros(t + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(np.where(null, 0, flat.shape[1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat[~null].ravel(), type=pa.float32()),
                                    mask=pa.array(null, type=pa.bool_()))


def _column_to_array(col: pa.ChunkedArray | pa.Array, v: int, c: int, source: Path,
                     name: str) -> np.ndarray:
    """list<float32> column of n rows -> (n, V, C) float32 with NaN where null."""
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    out = np.full((n, v, c), np.nan, dtype=np.float32)
    valid = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if np.any(lengths[valid] != v * c):
        bad = int(np.flatnonzero(valid & (np.nan_to_num(lengths) != v * c))[0])
        raise StoreError(f"{source}: column {name!r} row {bad} holds {int(lengths[bad])} values, "
                         f"expected V*C = {v}*{c}")
    values = col.flatten().to_numpy(zero_copy_only=False)  # values of the non-null rows, in order
    out[valid] = np.asarray(values, dtype=np.float32).reshape(-1, v, c)
    return out


def _frames_to_arrays(table: pa.Table, parts: Mapping[str, tuple[int, int]],
                      num_frames: Mapping[str, int], source: Path) -> dict[str, dict[str, np.ndarray]]:
    """Frames-table rows -> {clip_id: {part: (T, V, C)}} with T from the clips table."""
    out: dict[str, dict[str, np.ndarray]] = {
        cid: {p: np.full((num_frames[cid], v, c), np.nan, np.float32) for p, (v, c) in parts.items()}
        for cid in num_frames}
    if table.num_rows == 0:
        return out
    clip_ids = np.asarray(table["clip_id"].to_numpy(zero_copy_only=False), dtype=object)
    frame = table["frame"].to_numpy().astype(np.int64)
    codes, uniques = pd.factorize(clip_ids)
    order = np.lexsort((frame, codes))
    codes, frame = codes[order], frame[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts, stops = np.r_[0, bounds], np.r_[bounds, len(codes)]
    for p, (v, c) in parts.items():
        if p not in table.column_names:
            raise StoreError(f"{source}: frames table lacks part column {p!r}")
        values = _column_to_array(table[p], v, c, source, p)[order]
        for s, e in zip(starts, stops):
            cid = uniques[codes[s]]
            dst = out[cid][p]
            f = frame[s:e]
            if len(f) and (f.min() < 0 or f.max() >= len(dst)):
                raise StoreError(f"{source}: clip {cid!r} has frame index {int(f.max())} but "
                                 f"num_frames is {len(dst)}")
            dst[f] = values[s:e]
    return out


# ----------------------------------------------------------------------------------------------
# writer


class StoreWriter:
    """Writes clips into a store, creating it if needed; each clip is committed atomically.

    ``parts`` maps part name -> (V, C). An existing store must have the same ``kind``, ``parts`` and
    ``layout``; its ``settings`` are kept as they are (the extractor compares them itself, importers may
    add clips from several source files). Every ``compact_every`` clips written, per-clip files are
    folded into one part file so a store of 22k clips does not stay 22k files; call :meth:`close`
    (or use ``with``) to compact the rest.
    """

    def __init__(self, path: str | Path, *, kind: str, parts: Mapping[str, tuple[int, int]],
                 settings: dict, layout: str | None = None, extractor_version: str = EXTRACTOR_VERSION,
                 compact_every: int = 1000) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.path = Path(path)
        self.parts = _normalise_parts(parts)
        self.compact_every = int(compact_every)
        self._since_compact = 0
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path}: exists and is not a directory")
        if (self.path / STORE_FILE).exists():
            self.info = read_info(self.path)
            self._check_compatible(kind, layout)
        else:
            if self.path.is_dir() and any(p.name not in (LOCK_FILE, WRITER_LOCK, TMP_DIR)
                                          for p in self.path.iterdir()):
                raise StoreError(f"{self.path}: directory is not empty and is not a keypoint store "
                                 f"({STORE_FILE} missing); choose a new or empty output directory")
            self.info = {"schema_version": SCHEMA_VERSION, "kind": kind, "layout": layout,
                         "parts": {k: list(v) for k, v in self.parts.items()},
                         "settings": settings, "extractor_version": extractor_version}
        for d in (FRAMES_DIR, CLIPS_DIR, TMP_DIR):
            (self.path / d).mkdir(parents=True, exist_ok=True)
        if not (self.path / STORE_FILE).exists():
            with self._locked():
                if not (self.path / STORE_FILE).exists():
                    data = json.dumps(self.info, indent=2).encode()  # keep part order
                    _atomic_write_bytes(self.path / STORE_FILE, data, self.path / TMP_DIR)
                else:  # another writer created it meanwhile
                    self.info = read_info(self.path)
                    self._check_compatible(kind, layout)
        self._schema = frames_schema(self.parts)

    def _check_compatible(self, kind: str, layout: str | None) -> None:
        have_parts = _normalise_parts(self.info["parts"])
        problems = []
        if self.info["kind"] != kind:
            problems.append(f"kind is {self.info['kind']!r}, not {kind!r}")
        if have_parts != self.parts:
            problems.append(f"parts are {have_parts}, not {self.parts}")
        if self.info.get("layout") != layout:
            problems.append(f"layout is {self.info.get('layout')!r}, not {layout!r}")
        if problems:
            raise StoreError(f"{self.path}: existing store does not match: " + "; ".join(problems))

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Compact the per-clip files written so far."""
        self.compact()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        with open(self.path / LOCK_FILE, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # -- queries -----------------------------------------------------------------------------
    def done_clip_ids(self) -> set[str]:
        """Clip ids already committed (status ok or failed)."""
        return set(_scan_clips(self.path)["clip_id"])

    # -- writing -----------------------------------------------------------------------------
    def _clip_row(self, meta: Mapping[str, Any], num_frames: int,
                  frames: Mapping[str, np.ndarray]) -> dict[str, Any]:
        clip_id = meta.get("clip_id")
        if not isinstance(clip_id, str) or not clip_id:
            raise ValueError(f"{self.path}: meta['clip_id'] must be a non-empty string, got {clip_id!r}")
        unknown = set(meta) - set(CLIP_COLUMNS)
        if unknown:
            raise ValueError(f"{self.path}: clip {clip_id!r}: unknown meta keys {sorted(unknown)}")
        status = meta.get("status", "ok")
        if status not in STATUSES:
            raise ValueError(f"{self.path}: clip {clip_id!r}: status must be one of {STATUSES}")
        if "num_frames" in meta and int(meta["num_frames"]) != num_frames:
            raise ValueError(f"{self.path}: clip {clip_id!r}: meta num_frames={meta['num_frames']} but "
                             f"the arrays have {num_frames} frames")
        row: dict[str, Any] = {
            "clip_id": clip_id, "rel_path": meta.get("rel_path", clip_id),
            "subject": meta.get("subject", parse_subject(clip_id)),
            "fps": float(meta.get("fps", float("nan"))), "num_frames": num_frames,
            "width": int(meta.get("width", 0)), "height": int(meta.get("height", 0)),
            "status": status, "error": str(meta.get("error", "")),
            "extractor_version": meta.get("extractor_version", self.info.get("extractor_version", "")),
        }
        for part in RATE_PARTS:
            key = f"rate_{part}"
            if key in meta:
                row[key] = float(meta[key])
            elif part in frames and num_frames:
                row[key] = float((~np.isnan(frames[part]).all(axis=(1, 2))).mean())
            else:
                row[key] = float("nan")
        settings = meta.get("settings", self.info.get("settings", {}))
        row["settings"] = settings if isinstance(settings, str) else json.dumps(settings, sort_keys=True)
        return row

    def write_clip(self, meta: Mapping[str, Any], frames: Mapping[str, np.ndarray] | None) -> None:
        """Commit one clip: ``meta`` holds clips-table columns (clip_id required; defaults for the rest),
        ``frames[part]`` is (T, V, C) float32 with NaN for missing points. A failed clip
        (``meta["status"] == "failed"``) may pass no frames."""
        frames = dict(frames or {})
        clip_id = meta.get("clip_id")
        if frames or meta.get("status", "ok") == "ok":
            missing = set(self.parts) - set(frames)
            extra = set(frames) - set(self.parts)
            if missing or extra:
                raise ValueError(f"{self.path}: clip {clip_id!r}: parts must be {sorted(self.parts)}; "
                                 f"missing {sorted(missing)}, unexpected {sorted(extra)}")
        lengths = set()
        for p, arr in frames.items():
            arr = np.asarray(arr)
            v, c = self.parts[p]
            if arr.ndim != 3 or arr.shape[1:] != (v, c):
                raise ValueError(f"{self.path}: clip {clip_id!r}: part {p!r} must be (T, {v}, {c}), "
                                 f"got {arr.shape}")
            lengths.add(arr.shape[0])
        if len(lengths) > 1:
            raise ValueError(f"{self.path}: clip {clip_id!r}: parts have different frame counts "
                             f"{sorted(lengths)}")
        t = lengths.pop() if lengths else 0
        row = self._clip_row(meta, t, frames)
        clips = pa.Table.from_pylist([row], schema=CLIPS_SCHEMA)
        frames_table = None
        if t:
            cols = [pa.array([row["clip_id"]] * t, pa.string()), pa.array(np.arange(t, dtype=np.int32))]
            cols += [_part_column(np.asarray(frames[p])) for p in self.parts]
            frames_table = pa.Table.from_arrays(cols, schema=self._schema)
        self._commit(_clip_unit_name(row["clip_id"]), clips, frames_table)
        self._since_compact += 1
        if self.compact_every > 0 and self._since_compact >= self.compact_every:
            self.compact()

    def _commit(self, unit: str, clips: pa.Table, frames: pa.Table | None,
                replaces: Iterable[str] = ()) -> None:
        """Make a unit visible: frames file first, then the clips file as the single commit point."""
        tmp_dir = self.path / TMP_DIR
        replaces = list(replaces)
        if replaces:
            md = dict(clips.schema.metadata or {})
            md[_REPLACES_KEY] = json.dumps(replaces).encode()
            clips = clips.replace_schema_metadata(md)
        tmp_frames = _write_parquet(frames, tmp_dir, tmp_dir) if frames is not None else None
        tmp_clips = _write_parquet(clips, tmp_dir, tmp_dir)
        with self._locked():
            if tmp_frames is not None:
                os.replace(tmp_frames, self.path / FRAMES_DIR / f"{unit}.parquet")
            os.replace(tmp_clips, self.path / CLIPS_DIR / f"{unit}.parquet")

    def write_tables(self, clips: pa.Table, frames: pa.Table) -> None:
        """Commit many clips at once as one part (used by :func:`merge_stores`); tables in store schema."""
        clips = clips.select(list(CLIP_COLUMNS)).cast(CLIPS_SCHEMA)
        frames = frames.select(self._schema.names).cast(self._schema)
        self._commit(_part_unit_name(), clips, frames if frames.num_rows else None)

    def compact(self) -> None:
        """Fold all per-clip units into part files (``compact_every`` clips each) and delete leftovers.

        Kill-safe: a part commits, like a clip, by renaming its clips file, which names the units it
        replaces; those are ignored from then on and deleted afterwards (or by the next compaction).
        """
        self._since_compact = 0
        with self._locked():
            live, replaced = _units(self.path)
            singles = [u for u in live if "-c-" in u]
            chunk = self.compact_every if self.compact_every > 0 else len(singles)
            for i in range(0, len(singles), max(chunk, 1)):
                group = singles[i:i + chunk]
                if len(group) < 2:
                    break
                clips = pa.concat_tables([_read(self.path / CLIPS_DIR / f"{u}.parquet")
                                          .replace_schema_metadata(None) for u in group])
                ftabs = [_read(self.path / FRAMES_DIR / f"{u}.parquet")
                         .replace_schema_metadata(None)
                         for u in group if (self.path / FRAMES_DIR / f"{u}.parquet").exists()]
                frames = pa.concat_tables(ftabs) if ftabs else None
                if frames is not None:
                    frames = frames.sort_by([("clip_id", "ascending"), ("frame", "ascending")])
                clips = clips.sort_by([("clip_id", "ascending")])
                unit = _part_unit_name()
                tmp_dir = self.path / TMP_DIR
                md = {_REPLACES_KEY: json.dumps(group).encode()}
                tmp_frames = _write_parquet(frames, tmp_dir, tmp_dir) if frames is not None else None
                tmp_clips = _write_parquet(clips.replace_schema_metadata(md), tmp_dir, tmp_dir)
                if tmp_frames is not None:
                    os.replace(tmp_frames, self.path / FRAMES_DIR / f"{unit}.parquet")
                os.replace(tmp_clips, self.path / CLIPS_DIR / f"{unit}.parquet")
                replaced.update(group)
            self._delete_garbage(replaced)

    def _delete_garbage(self, replaced: set[str]) -> None:
        """Remove replaced units, frames files without a committed clips file, and dead temp files.
        Called under the lock, so no commit is half-way."""
        for unit in replaced:
            for d in (FRAMES_DIR, CLIPS_DIR):
                with contextlib.suppress(FileNotFoundError):
                    (self.path / d / f"{unit}.parquet").unlink()
        committed = {f.stem for f in (self.path / CLIPS_DIR).glob("*.parquet")}
        for f in (self.path / FRAMES_DIR).glob("*.parquet"):
            if f.stem not in committed:
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        _clean_tmp(self.path / TMP_DIR)


# ----------------------------------------------------------------------------------------------
# reader


class Store:
    """Read access to a store; a snapshot of the committed clips taken at the first query."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.info: dict = read_info(self.path)
        self.parts: dict[str, tuple[int, int]] = _normalise_parts(self.info["parts"])
        self._clips: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, kind={self.info['kind']!r})"

    def _table(self) -> pd.DataFrame:
        if self._clips is None:
            self._clips = _scan_clips(self.path)
        return self._clips

    def refresh(self) -> None:
        """Forget the snapshot so the next query sees clips committed since."""
        self._clips = None

    def clips(self) -> pd.DataFrame:
        """Clips table, one row per clip, sorted by clip_id (columns of docs/INTERFACES.md §1)."""
        return self._table().drop(columns="_unit").reset_index(drop=True)

    def load_clip(self, clip_id: str) -> dict[str, np.ndarray]:
        """part -> (T, V, C) float32, NaN where missing; KeyError naming the store for unknown ids."""
        return self.load_all([clip_id])[clip_id]

    def load_all(self, clip_ids: Iterable[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """{clip_id: {part: (T, V, C)}} for the given clips (default all), in one pass over the files."""
        table = self._table()
        if clip_ids is not None:
            wanted = list(dict.fromkeys(clip_ids))
            known = set(table["clip_id"])
            unknown = [c for c in wanted if c not in known]
            if unknown:
                raise KeyError(f"{self.path}: clip(s) not in store: {unknown[:5]}"
                               + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
            table = table[table["clip_id"].isin(set(wanted))]
        out: dict[str, dict[str, np.ndarray]] = {}
        for unit, rows in table.groupby("_unit", sort=True):
            n_frames = dict(zip(rows["clip_id"], rows["num_frames"].astype(int)))
            f = self.path / FRAMES_DIR / f"{unit}.parquet"
            if f.exists():
                ftab = _read(f, filters=[("clip_id", "in", list(n_frames))])
            else:
                ftab = frames_schema(self.parts).empty_table()
            out.update(_frames_to_arrays(ftab, self.parts, n_frames, f))
        if clip_ids is not None:
            return {c: out[c] for c in wanted}
        return dict(sorted(out.items()))


def open_store(path: str | Path) -> Store:
    """Open the store at ``path``; StoreError naming the path if missing or of another schema version."""
    return Store(path)


def load_clip(store_or_path: Store | str | Path, clip_id: str) -> dict[str, np.ndarray]:
    """Convenience: part -> (T, V, C) of one clip, from a Store or a store path."""
    store = store_or_path if isinstance(store_or_path, Store) else open_store(store_or_path)
    return store.load_clip(clip_id)


# ----------------------------------------------------------------------------------------------
# merging


def merge_stores(out: str | Path, inputs: Iterable[str | Path]) -> Path:
    """Merge stores (e.g. written with ``--shard i/n``) into ``out``, created if needed.

    All inputs must share kind, parts and layout, and extractor stores the same settings. A clip found
    in several inputs is taken once: an ``ok`` row beats a ``failed`` one, otherwise the first input
    wins (with a warning). Clips already ok in ``out`` are kept. An existing ``out`` must match the
    inputs too. Holds :func:`writer_lock` on ``out`` (LockBusyError if another job writes it). Returns
    ``out``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out}: exists and is not a directory")
    stores = [open_store(p) for p in inputs]
    if not stores:
        raise ValueError("merge_stores: no input stores given")
    first = stores[0]
    for s in stores[1:]:
        if diffs := _merge_conflicts(first.info, s.info):
            raise StoreError(f"{s.path}: cannot merge with {first.path}: " + "; ".join(diffs))
    if (out / STORE_FILE).exists():
        if diffs := _merge_conflicts(read_info(out), first.info):
            raise StoreError(f"{out}: cannot merge {first.path} into this existing store, made with "
                             f"other settings: " + "; ".join(diffs))
    with writer_lock(out):
        _merge_into(out, stores)
    return out


def _merge_conflicts(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two stores' store.json that forbids merging them (settings: extractor stores)."""
    diffs = [f"{key} {b.get(key)!r} != {a.get(key)!r}" for key in ("kind", "layout", "parts")
             if b.get(key) != a.get(key)]
    if a["kind"] != "imported" and b.get("settings") != a.get("settings"):
        diffs.append("settings: " + describe_settings_diff(a.get("settings", {}), b.get("settings", {})))
    return diffs


def _merge_into(out: Path, stores: list[Store]) -> None:
    import pyarrow.compute as pc

    first = stores[0]
    writer = StoreWriter(out, kind=first.info["kind"], parts=first.parts,
                         settings=first.info.get("settings", {}), layout=first.info.get("layout"),
                         extractor_version=first.info.get("extractor_version", EXTRACTOR_VERSION))
    if out.exists() and (out / STORE_FILE).exists():
        have = open_store(out).clips()
        ok_in_out = set(have.loc[have["status"] == "ok", "clip_id"])
        failed_in_out = set(have.loc[have["status"] != "ok", "clip_id"])
    else:
        ok_in_out, failed_in_out = set(), set()
    chosen: dict[str, int] = {}
    status_of = [dict(zip(s.clips()["clip_id"], s.clips()["status"])) for s in stores]
    for i, s in enumerate(stores):
        for row in s.clips().itertuples(index=False):
            cid = row.clip_id
            if cid in ok_in_out or (cid in failed_in_out and row.status != "ok"):
                continue
            if cid not in chosen:
                chosen[cid] = i
                continue
            prev_ok = status_of[chosen[cid]][cid] == "ok"
            if row.status == "ok" and not prev_ok:
                chosen[cid] = i
            elif row.status == "ok" and prev_ok:
                log.warning("clip %s is in both %s and %s; keeping the first", cid,
                            stores[chosen[cid]].path, s.path)
    for i, s in enumerate(stores):
        table = s._table()
        mine = table[table["clip_id"].map(chosen.get) == i]
        for unit, rows in mine.groupby("_unit", sort=True):
            ids = pa.array(list(rows["clip_id"]), pa.string())
            clips = _read(s.path / CLIPS_DIR / f"{unit}.parquet")
            clips = clips.filter(pc.is_in(clips["clip_id"], ids))
            # A clip may appear twice inside one unit only if a writer misbehaved; keep it once.
            clips = pa.Table.from_pandas(clips.to_pandas().drop_duplicates("clip_id", keep="last"),
                                         schema=CLIPS_SCHEMA, preserve_index=False)
            fpath = s.path / FRAMES_DIR / f"{unit}.parquet"
            if fpath.exists():
                frames = _read(fpath)
                frames = frames.filter(pc.is_in(frames["clip_id"], ids))
            else:
                frames = frames_schema(s.parts).empty_table()
            writer.write_tables(clips, frames)
    writer.close()


def describe_settings_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """Human-readable list of keys whose values differ between two settings dicts."""
    keys = sorted(set(a) | set(b))
    diffs = [f"{k}: {a.get(k, '<unset>')!r} vs {b.get(k, '<unset>')!r}" for k in keys
             if a.get(k, "<unset>") != b.get(k, "<unset>")]
    return ", ".join(diffs) if diffs else "(none)"
