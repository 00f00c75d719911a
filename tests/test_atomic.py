"""Atomic writes: a failed or concurrent write never leaves a half-written or mixed file."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from piumr_skel.engine import atomic
from piumr_skel.engine.atomic import atomic_to_csv, atomic_write_text


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "table.md"
    atomic_write_text(path, "old\n")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "table.md"
    path.write_text("old\n")

    def killed(src, dst):
        raise OSError("killed mid-write")

    monkeypatch.setattr(atomic.os, "replace", killed)
    with pytest.raises(OSError, match="killed"):
        atomic_write_text(path, "new\n" * 1000)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


@pytest.mark.parametrize("round_", range(4))  # a plain write_text mixes versions in ~1 round of 3 here
def test_concurrent_writers_leave_one_whole_version(tmp_path, round_):
    path = tmp_path / "runs.csv"
    texts = [f"{i}," * (50_000 * (i + 1)) + "\n" for i in range(8)]  # lengths differ: a mix shows
    start = threading.Barrier(len(texts))

    def write(text):
        start.wait()
        for _ in range(5):
            atomic_write_text(path, text)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_text() in texts
    assert os.listdir(tmp_path) == ["runs.csv"]


def test_csv(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    atomic_to_csv(frame, tmp_path / "t.csv", index=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), frame)


def test_atomic_path_keeps_the_old_file_when_the_block_fails(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["last.pt"]
    with atomic.atomic_path(path) as tmp:
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["last.pt"]


def test_figures_and_codabench_files_are_written_whole(tmp_path, monkeypatch):
    """The run-folder writers go through atomic_path: the file has its format (not the temporary
    name's), a failed draw keeps the old figure, and no temporary is left behind."""
    import zipfile

    import numpy as np

    from piumr_skel.engine.metrics import write_codabench
    from piumr_skel.engine.plots import plot_training_curves

    png = tmp_path / "curves.png"
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.5], "val_action_top1": [10.0, 20.0]})
    plot_training_curves(history, png)
    first = png.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.figure import Figure

    def half_then_fail(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        plot_training_curves(history, png)                 # killed mid-draw: the old figure stays
    assert png.read_bytes() == first
    monkeypatch.undo()
    scores = np.random.default_rng(0).random((3, 52))
    write_codabench(tmp_path / "prediction.csv", ["a.mp4", "b.mp4", "c.mp4"], scores,
                    zip_path=tmp_path / "submission.zip")
    assert len(pd.read_csv(tmp_path / "prediction.csv")) == 3
    assert zipfile.ZipFile(tmp_path / "submission.zip").namelist() == ["prediction.csv"]
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "prediction.csv", "submission.zip"]
