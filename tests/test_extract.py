"""Tests of `piumr extract` on small synthetic videos: file discovery, shards, bad files, clips without a
person, argument errors, settings mismatch, SIGKILL and resume, workers, and merging shard stores."""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli.extract import extract_cmd, merge_stores_cmd
from pose_extract import ExtractSettings, extract_videos, open_store
from pose_extract.video import find_videos, parse_shard, shard_of

SMALL = ExtractSettings(max_side=0)


def write_video(path: Path, *, frames: int = 6, size: tuple[int, int] = (96, 64), seed: int = 0,
                fourcc: str | None = None, plain: bool = False) -> Path:
    """A short video of noise (or one plain colour) written with cv2.VideoWriter; no person in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = fourcc or ("MJPG" if path.suffix.lower() in (".avi", ".mkv") else "mp4v")
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*code), 25.0, size)
    assert w.isOpened(), f"cannot write {path}"
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        if plain:
            img = np.full((size[1], size[0], 3), 90, np.uint8)
        else:
            img = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        w.write(img)
    w.release()
    return path


def truncate(path: Path, frac: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * frac)])
    return path


def test_find_videos_recursive_case_insensitive_sorted(tmp_path: Path) -> None:
    for rel in ("b/x.MP4", "a.avi", "b/c/y.mkv", "z.webm", "m.MoV", "notes.txt", "x.mp4.part"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    rels = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert rels == ["a.avi", "b/c/y.mkv", "b/x.MP4", "m.MoV", "z.webm"]


def test_shards_partition_the_files() -> None:
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    names = [f"v/{i:04d}.mp4" for i in range(200)]
    parts = [[n for n in names if shard_of(n, 3) == i] for i in range(3)]
    assert sorted(sum(parts, [])) == names and all(len(p) > 40 for p in parts)


@pytest.mark.slow
def test_bad_files_fail_with_reasons_and_the_rest_goes_on(tmp_path: Path, caplog, monkeypatch) -> None:
    videos = tmp_path / "videos"
    write_video(videos / "good_noise.mp4", seed=1)
    write_video(videos / "plain.avi", plain=True)
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "text.mp4").write_text("this is not a video\n" * 20)
    truncate(write_video(videos / "trunc.mp4", frames=20, seed=2))
    truncate(write_video(videos / "midway.avi", frames=20, seed=3))
    unreadable = videos / "locked.mp4"
    write_video(unreadable, seed=4)
    unreadable.chmod(0)
    if os.access(unreadable, os.R_OK):
        # Running as root, file modes are ignored: simulate the refusal the OS gives other users.
        import builtins

        import pose_extract.video as video_mod

        def guarded_open(file, *args, **kwargs):
            if Path(file) == unreadable:
                raise PermissionError(13, "Permission denied", str(file))
            return builtins.open(file, *args, **kwargs)

        monkeypatch.setattr(video_mod, "open", guarded_open, raising=False)
    out = tmp_path / "store"
    with caplog.at_level(logging.WARNING):
        report = extract_videos(videos, out, settings=SMALL, progress=False)
    unreadable.chmod(0o644)
    expect_failed = {"empty": "empty file", "text": "cannot open", "trunc": "cannot open",
                     "midway": "decoding stopped at frame", "locked": "cannot read file: Permission denied"}
    assert set(report.failed) == set(expect_failed)
    for cid, reason in expect_failed.items():
        assert reason in report.failed[cid]
    clips = open_store(out).clips().set_index("clip_id")
    assert (clips.loc[list(expect_failed), "status"] == "failed").all()
    assert clips.loc["midway", "error"].startswith("decoding stopped at frame 10 of 20")
    # Clips with no person: ok, detection rate 0, a warning, listed in the summary.
    for cid, n in (("good_noise", 6), ("plain", 6)):
        assert clips.loc[cid, "status"] == "ok" and clips.loc[cid, "num_frames"] == n
        assert clips.loc[cid, "rate_pose"] == 0.0
        arrs = open_store(out).load_clip(cid)
        assert arrs["pose"].shape == (n, 33, 4) and np.isnan(arrs["pose"]).all()
    assert clips.loc["plain", "width"] == 96 and clips.loc["plain", "height"] == 64
    assert sorted(report.no_person) == ["good_noise", "plain"]
    assert "no person found" in caplog.text
    assert any("FAILED midway: decoding stopped" in line for line in report.summary_lines())
    # The CLI on the same folder: nothing left to do, but the failures are named and the exit is 1.
    res = CliRunner().invoke(extract_cmd, [str(videos), "-o", str(out), "--max-side", "0",
                                           "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "FAILED text: OpenCV cannot open" in res.output
    assert f"{len(expect_failed) + 2} already done" in res.output


@pytest.mark.parametrize("case", ["missing", "empty", "out_is_file", "out_not_store", "bad_shard"])
def test_cli_argument_errors_before_any_work(tmp_path: Path, case: str) -> None:
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    write_video(videos / "a.mp4")
    args = [str(videos), "-o", str(out), "--no-progress"]
    expected = {"missing": "does not exist", "empty": "no video files", "out_is_file": "is a file",
                "out_not_store": "not a keypoint store", "bad_shard": "0 <= i < n"}[case]
    if case == "missing":
        args[0] = str(tmp_path / "nope")
    elif case == "empty":
        args[0] = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "readme.txt").write_text("x")
    elif case == "out_is_file":
        out.write_text("x")
    elif case == "out_not_store":
        out.mkdir()
        (out / "something.txt").write_text("x")
    else:
        args += ["--shard", "2/2"]
    res = CliRunner().invoke(extract_cmd, args)
    assert res.exit_code == 2, res.output
    assert expected in res.output
    assert not (out / "store.json").exists()


def test_rerun_with_other_settings_is_refused(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4")
    out = tmp_path / "store"
    runner = CliRunner()
    res = runner.invoke(extract_cmd, [str(videos), "-o", str(out), "--max-side", "64", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(extract_cmd, [str(videos), "-o", str(out), "--max-side", "32", "--no-progress"])
    assert res.exit_code == 2 and "different settings" in res.output and "max_side: 64 vs 32" in res.output
    res = runner.invoke(extract_cmd, [str(videos), "-o", str(out), "--max-side", "64", "--full-face",
                                      "--no-progress"])
    assert res.exit_code == 2 and "full_face: False vs True" in res.output


# MediaPipe's C++ lines: absl/glog "W0000 00:00:..." lines, TFLite's XNNPACK note, absl's InitializeLog warning.
_NATIVE_LOG = re.compile(r"^[IWE]\d{4} |XNNPACK|absl::InitializeLog", re.MULTILINE)


def test_mediapipe_log_lines_are_dropped_unless_asked_for(tmp_path: Path, capfd, caplog) -> None:
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", frames=3)
    capfd.readouterr()
    extract_videos(videos, tmp_path / "quiet", settings=SMALL, progress=False)
    quiet = capfd.readouterr().err
    assert not _NATIVE_LOG.search(quiet), quiet
    assert "no person found" in caplog.text  # Python's own logging is untouched
    extract_videos(videos, tmp_path / "shown", settings=SMALL, progress=False, native_logs=True)
    assert _NATIVE_LOG.search(capfd.readouterr().err)


def test_verbose_flag_shows_native_logs(tmp_path: Path, monkeypatch) -> None:
    import pose_extract.extract as extract_mod

    seen = []

    def fake(videos, out, **kw):
        seen.append(kw["native_logs"])
        raise extract_mod.ExtractError("stop here")

    monkeypatch.setattr(extract_mod, "extract_videos", fake)
    for flags, expected in (([], False), (["--verbose"], True)):
        res = CliRunner().invoke(extract_cmd, [str(tmp_path), "-o", str(tmp_path / "out"), *flags])
        assert "stop here" in res.output
        assert seen.pop() is expected


_RUN = "from cli.extract import extract_cmd; extract_cmd()"


@pytest.mark.slow
def test_sigkill_then_same_command_finishes_the_job(tmp_path: Path) -> None:
    videos, out = tmp_path / "videos", tmp_path / "store"
    n = 8
    for i in range(n):
        write_video(videos / f"{i:04d}_01_{i:04d}.mp4", frames=30, size=(160, 120), seed=i)
    cmd = [sys.executable, "-c", _RUN, str(videos), "-o", str(out), "--max-side", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill as soon as the first clips are committed, i.e. mid-run.
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "clips").glob("*.parquet"))) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = set(open_store(out).clips()["clip_id"])
    assert 2 <= len(before) < n, "the kill did not land mid-run"
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{n} selected, {len(before)} already done, {n - len(before)} extracted ok" in res.stdout
    st = open_store(out)
    clips = st.clips()
    assert list(clips["clip_id"]) == sorted(p.stem for p in videos.iterdir())
    assert (clips["status"] == "ok").all() and (clips["num_frames"] == 30).all()
    import pandas as pd

    frames = pd.read_parquet(out / "frames", columns=["clip_id", "frame"])
    assert not frames.duplicated().any() and len(frames) == n * 30
    assert len(list((out / "clips").glob("*.parquet"))) == 1   # compacted at the end


@pytest.mark.slow
def test_two_workers_shards_and_merge(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    for i in range(5):
        write_video(videos / "sub" / f"c{i}.mp4", frames=4, seed=i)
    full = extract_videos(videos, tmp_path / "full", settings=SMALL, workers=2, progress=False)
    assert sorted(full.ok) == [f"c{i}" for i in range(5)] and full.frames == 20
    runner = CliRunner()
    for i in range(2):
        res = runner.invoke(extract_cmd, [str(videos), "-o", str(tmp_path / f"s{i}"), "--shard", f"{i}/2",
                                          "--max-side", "0", "--no-progress"])
        assert res.exit_code == 0, res.output
    shard_ids = [set(open_store(tmp_path / f"s{i}").clips()["clip_id"]) for i in range(2)]
    assert not shard_ids[0] & shard_ids[1]
    res = runner.invoke(merge_stores_cmd, [str(tmp_path / "m"), str(tmp_path / "s0"), str(tmp_path / "s1")])
    assert res.exit_code == 0, res.output
    merged = open_store(tmp_path / "m").clips().drop(columns="extractor_version")
    whole = open_store(tmp_path / "full").clips().drop(columns="extractor_version")
    assert merged.equals(whole)
    assert merged["rel_path"].tolist() == [f"sub/c{i}.mp4" for i in range(5)]
