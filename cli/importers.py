"""`piumr import pyskl|mmn|landmarks|pose` and `piumr export --format pyskl`: thin click wrappers over
piumr_skel.tools.importers, .landmarks and .pose_import."""
from __future__ import annotations

from pathlib import Path

import click


def _report(result) -> None:
    click.echo(f"{len(result.clip_ids)} clips, layout {result.layout} -> {result.store}")
    click.echo(f"labels: {result.labels}" if result.labels is not None else "labels: none")
    if getattr(result, "unlabelled", None) is not None:
        click.echo(f"unlabelled clips (for `piumr predict --test-list`): {result.unlabelled}")
    if getattr(result, "skipped", 0):
        click.echo(f"{result.skipped} clips of the data file have no label entry and were left out")
    if result.split is not None:
        click.echo(f"split lists: {result.split}")
    for path in result.protocol_splits:
        click.echo(f"split file (file protocol): {path}")


def _run(func, *args, **kwargs):
    from piumr_skel.tools.importers import ImportFormatError
    from pose_extract import StoreError

    try:
        return func(*args, **kwargs)
    except (ImportFormatError, StoreError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None


@click.group("import")
def import_group() -> None:
    """Import third-party 2D keypoints into a keypoint store (kind "imported"), with labels.csv,
    splits.json and split*.csv (for the `file` split protocol) inside it, ready for `piumr train`."""


@import_group.command("pyskl")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "store", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="store folder to create (or resume)")
@click.option("--layout", default=None,
              help="layout name in piumr_skel.skeleton.layouts [default: from V: 17 coco17, 18 openpose18, "
                   "28 openpose28]")
@click.option("--fps", default=30.0, show_default=True, help="frame rate recorded for every clip")
@click.option("--person", type=click.Choice(["best", "first"]), default="best", show_default=True,
              help="the one person kept: highest mean score, or person 0")
def import_pyskl_cmd(file: Path, store: Path, layout: str | None, fps: float, person: str) -> None:
    """PYSKL annotation pickle FILE (NTU 2D, Kinetics, FineGYM, PCAN MA-52 OpenPose-28, PYSKL's
    custom_2d_skeleton.py output). Annotations without a label go to STORE/test_list.csv."""
    from piumr_skel.tools.importers import import_pyskl

    _report(_run(import_pyskl, file, store, layout=layout, fps=fps, person=person))


@import_group.command("mmn")
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("label", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "store", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="store folder to create (or add to: train, val and test can share one)")
@click.option("--layout", default=None,
              help="[default: from V: 136 halpe136, 44 halpe44]; halpe44 also keeps MMN's 44 "
                   "points of 136-point data")
@click.option("--split", default=None, help="split name [default: DATA's prefix, train_data.pkl -> train]")
@click.option("--width", default=1080, show_default=True, help="frame width the pixels refer to")
@click.option("--height", default=1296, show_default=True, help="frame height the pixels refer to")
@click.option("--fps", default=30.0, show_default=True)
@click.option("--person", type=click.Choice(["first", "best"]), default="first", show_default=True,
              help="the one person kept: person 0 (as MMN's loader), or the highest mean score")
def import_mmn_cmd(data: Path, label: Path, store: Path, layout: str | None, split: str | None,
                   width: int, height: int, fps: float, person: str) -> None:
    """MMN MA-52 release: DATA = {split}_data.pkl ({"annotations": [...]}, Halpe-136 or its
    44-point subset), LABEL = {split}_label.pkl ([{file_name, label}, ...])."""
    from piumr_skel.tools.importers import import_mmn

    _report(_run(import_mmn, data, label, store, layout=layout, split=split, width=width,
                 height=height, fps=fps, person=person))


@import_group.command("landmarks")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "store", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="store folder to create (must not exist or be empty)")
@click.option("--label-key", default="label", show_default=True, help="npz key of the labels")
@click.option("--subject-key", default="subject", show_default=True,
              help="npz key of the person (or group) ids, used by the xsub split")
@click.option("--units", type=click.Choice(["image", "other"]), default="other", show_default=True,
              help="x, y image-normalised to [0, 1], or other units taken as pixels of a "
                   "WIDTH x HEIGHT frame (e.g. shoulder width about 200)")
@click.option("--width", default=500, show_default=True, help="frame width the coordinates refer to")
@click.option("--height", default=500, show_default=True, help="frame height the coordinates refer to")
@click.option("--fps", default=None, type=float,
              help="frame rate of every clip [default: the file's 'fps' key, else 30]")
@click.option("--clip-prefix", default="", help="prefix of the clip ids {subject}_{label}_{index}")
@click.option("--overwrite", is_flag=True, help="replace an existing keypoint store at --out")
def import_landmarks_cmd(file: Path, store: Path, label_key: str, subject_key: str, units: str,
                         width: int, height: int, fps: float | None, clip_prefix: str,
                         overwrite: bool) -> None:
    """MediaPipe Holistic landmarks FILE.npz: data (F, 75, C) = pose 33 + left hand 21 + right
    hand 21, lengths (N,), a label and a subject key, optional fps. Read it with --layout
    mp_holistic or mp_pose."""
    from piumr_skel.tools.landmarks import import_landmarks

    result = _run(import_landmarks, file, store, label_key=label_key, subject_key=subject_key,
                  units=units, width=width, height=height, fps=fps, clip_prefix=clip_prefix,
                  overwrite=overwrite)
    _report_mediapipe(result)


def _report_mediapipe(result) -> None:
    """The report of an import into a MediaPipe store (`landmarks`, `pose`)."""
    _report(result)
    if result.class_names is not None:
        click.echo(f"class names: {result.class_names} ({result.num_classes} classes)")
    subjects = ", ".join(f"{s or '(none)'} {n}" for s, n in sorted(result.clips_per_subject.items()))
    click.echo(f"{len(result.clips_per_subject)} subjects: {subjects}")
    click.echo("frames found: " + ", ".join(f"{p} {r:.0%}" for p, r in result.present.items()))


@import_group.command("pose")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--out", "store", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="store folder to create (must not exist or be empty)")
@click.option("--labels", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV clip_id,label[,subject]: one row per .pose file (clip_id = its stem); an "
                   "empty or negative label marks a clip unlabelled")
@click.option("--label-key", default="label", show_default=True, help="CSV column of the labels")
@click.option("--subject-key", default=None,
              help="CSV column of the person (or group) ids, used by the xsub split [default: "
                   "'subject' if present, else from MA-52/NTU names]")
@click.option("--fps", default=None, type=float, help="frame rate of every clip [default: the file's]")
@click.option("--width", default=None, type=int,
              help="frame width the pixels refer to [default: the file header's]")
@click.option("--height", default=None, type=int,
              help="frame height the pixels refer to [default: the file header's]")
@click.option("--person", type=click.Choice(["first", "best"]), default="first", show_default=True,
              help="the one person kept from a file with several: person 0, or the highest mean score")
@click.option("--overwrite", is_flag=True, help="replace an existing keypoint store at --out")
def import_pose_cmd(source: Path, store: Path, labels: Path, label_key: str, subject_key: str | None,
                    fps: float | None, width: int | None, height: int | None, person: str,
                    overwrite: bool) -> None:
    """pose-format files: SOURCE is one .pose file or a folder of them (recursive), each one
    video with MediaPipe Holistic components (POSE_LANDMARKS and the hands: mp_holistic;
    POSE_LANDMARKS alone: mp_pose). Read it with --layout mp_holistic or mp_pose."""
    from piumr_skel.tools.pose_import import import_pose

    result = _run(import_pose, source, store, labels=labels, label_key=label_key,
                  subject_key=subject_key, fps=fps, width=width, height=height, person=person,
                  overwrite=overwrite)
    _report_mediapipe(result)
    if result.not_imported:
        click.echo(f"not imported: {', '.join(result.not_imported)}")
    if result.multi_person:
        click.echo(f"{len(result.multi_person)} files hold more than one person; kept: "
                   f"{'person 0' if result.person == 'first' else 'the highest mean score'} "
                   f"(e.g. {result.multi_person[0]})")


@click.command("export")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["pyskl"]), default="pyskl", show_default=True)
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--labels", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="MA-52 list or CSV [default: STORE/labels.csv if present]")
@click.option("--split", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="splits.json or CSV clip_id,split [default: STORE/splits.json if present]")
@click.option("--layout", default=None,
              help="layout of the file [default: an imported store's own; coco17 for a MediaPipe "
                   "store]: mp_pose, mp_holistic, coco17 (MediaPipe pose points by COCO name), or "
                   "any layout whose joint names the store has (docs/INTEROP.md)")
def export_cmd(store: Path, fmt: str, out: Path, labels: Path | None, split: Path | None,
               layout: str | None) -> None:
    """Export a STORE (imported, or from `piumr extract`) to a PYSKL annotation pickle that
    PYSKL's and MMAction2's PoseDataset load: a bare list without splits, else {split,
    annotations}; clips without a label have no 'label'."""
    from piumr_skel.tools.importers import export_pyskl

    try:
        path = _run(export_pyskl, store, out, labels=labels, split=split, layout=layout)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {path}")


COMMANDS = [import_group, export_cmd]
