"""`piumr extract` and `piumr merge-stores`: thin click wrappers over pose_extract."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

_DEFAULT_OUT = Path("artifacts") / "keypoints"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # MediaPipe's C++ log lines (absl, TFLite) are dropped by extract_videos unless verbose; this is
    # absl's Python-side logger.
    logging.getLogger("absl").setLevel(logging.INFO if verbose else logging.ERROR)


@click.command("extract")
@click.argument("videos", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help=f"keypoint store folder [default: {_DEFAULT_OUT}/<VIDEOS folder name>]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="worker processes, each with its own Holistic graph (one per core)")
@click.option("--shard", default=None, metavar="I/N",
              help="only the I-th of N shards (0-based), by a hash of each file's relative path")
@click.option("--full-face", is_flag=True, help="keep all 468 face-mesh points (478 with --refine-face), "
              "not the 24-point subset")
@click.option("--refine-face", is_flag=True, help="MediaPipe's refined face mesh (iris points)")
@click.option("--max-side", type=click.IntRange(min=0), default=0, show_default=True,
              help="shrink frames so the longest side is at most PX before MediaPipe (0 = full size); "
              "slower on 1080p clips, meant for 4K")
@click.option("--min-detection-confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--min-tracking-confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--retry-failed", is_flag=True, help="extract again the clips recorded as failed")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most this many clips")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("-v", "--verbose", is_flag=True, help="log each clip, and show MediaPipe's own C++ log lines")
def extract_cmd(videos: Path, out: Path | None, workers: int, shard: str | None, full_face: bool,
                refine_face: bool, max_side: int, min_detection_confidence: float,
                min_tracking_confidence: float, retry_failed: bool, limit: int | None,
                no_progress: bool, verbose: bool) -> None:
    """Extract MediaPipe Holistic keypoints of every video under VIDEOS into a Parquet store.

    Resumable: run the same command again after an interruption and only the missing clips are
    extracted. The exit status is 1 when any clip failed; the summary names them.
    """
    from pose_extract.extract import ExtractError, ExtractSettings, extract_videos
    from pose_extract.locking import LockBusyError
    from pose_extract.store import StoreError
    from pose_extract.video import parse_shard

    _setup_logging(verbose)
    try:
        shard_t = parse_shard(shard) if shard is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from None
    if out is None:
        out = _DEFAULT_OUT / (videos.resolve().name or "videos")
    settings = ExtractSettings(full_face=full_face, refine_face=refine_face, max_side=max_side,
                               min_detection_confidence=min_detection_confidence,
                               min_tracking_confidence=min_tracking_confidence)
    try:
        report = extract_videos(videos, out, settings=settings, workers=workers, shard=shard_t,
                                retry_failed=retry_failed, progress=not no_progress, limit=limit,
                                native_logs=verbose)
    except (ExtractError, StoreError) as exc:
        raise click.UsageError(str(exc)) from None
    except LockBusyError as exc:
        raise click.ClickException(str(exc)) from None
    for line in report.summary_lines():
        click.echo(line, err=line.startswith("FAILED"))
    if report.failed:
        sys.exit(1)


@click.command("merge-stores")
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("stores", nargs=-1, required=True, type=click.Path(path_type=Path))
def merge_stores_cmd(out: Path, stores: tuple[Path, ...]) -> None:
    """Merge keypoint stores (e.g. one per --shard) into OUT."""
    from pose_extract.locking import LockBusyError
    from pose_extract.store import StoreError, merge_stores, open_store

    _setup_logging(False)
    if out.exists() and not out.is_dir():
        raise click.UsageError(f"output {out} is a file; give a folder for the merged store")
    try:
        merge_stores(out, stores)
    except StoreError as exc:
        raise click.UsageError(str(exc)) from None
    except LockBusyError as exc:
        raise click.ClickException(str(exc)) from None
    clips = open_store(out).clips()
    failed = int((clips["status"] != "ok").sum())
    click.echo(f"{out}: {len(clips)} clips ({failed} failed) from {len(stores)} store(s)")


COMMANDS = [extract_cmd, merge_stores_cmd]
