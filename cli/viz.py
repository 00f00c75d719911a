"""`piumr viz`: draw a clip's skeleton over its video (or a blank canvas) to mp4, gif or png."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("viz")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("clip")
@click.option("--video", default=None, type=click.Path(exists=True, path_type=Path),
              help="the clip's video, or the folder the store was extracted from; without it the "
                   "skeleton is drawn on a blank canvas")
@click.option("--layout", default=None,
              help="layout to draw [default: the store's own; mp_holistic for MediaPipe stores]")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="out.mp4 | out.gif | out.png")
@click.option("--frame", default=None, type=int, help="png: frame index [default: middle]")
@click.option("--sheet", default=0, show_default=True, type=click.IntRange(min=0),
              help="png: contact sheet of this many evenly spaced frames instead of one frame")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="resize the output by this factor")
@click.option("--min-score", default=None, type=float,
              help="hide joints whose score (visibility) is below this")
def viz_cmd(store: Path, clip: str, video: Path | None, layout: str | None, out: Path,
            frame: int | None, sheet: int, scale: float, min_score: float | None) -> None:
    """Render clip CLIP of keypoint store STORE."""
    from piumr_skel.tools.viz import render

    try:
        path = render(store, clip, out, video=video, layout=layout, frame=frame, sheet=sheet,
                      scale=scale, min_score=min_score)
    except (KeyError, ValueError, IndexError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {path}")


COMMANDS = [viz_cmd]
