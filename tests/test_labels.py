"""Tests for piumr_skel.data.labels: list/CSV readers, class names, body mapping, store matching."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from piumr_skel.data.labels import (
    BODY_CLASSES,
    MA52_CLASSES,
    body_of_action,
    clip_id_of,
    match_store,
    parse_subject,
    read_class_names,
    read_labels,
)

MA52 = Path(__file__).resolve().parents[2] / "shared" / "ma52"
needs_ma52 = pytest.mark.skipif(not (MA52 / "train_list_videos.txt").is_file(),
                                reason=f"MA-52 list files not found in {MA52}")


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def test_list_file_crlf_blank_lines_and_subjects(tmp_path: Path) -> None:
    f = write(tmp_path / "train.txt", "0003_01_0001.mp4 9\n\n0004_02_0002.mp4 51\nclipA.mp4 0\n\n", "\r\n")
    df = read_labels(f, num_classes=52)
    assert df["clip_id"].tolist() == ["0003_01_0001", "0004_02_0002", "clipA"]
    assert df["label"].tolist() == [9, 51, 0]
    assert df["label"].dtype == np.int64
    assert df["subject"].tolist() == ["0003", "0004", ""]


def test_csv_with_and_without_subject(tmp_path: Path) -> None:
    f = write(tmp_path / "l.csv", "clip_id,label,subject\na,1,p1\n0010_02_0101,3,\n")
    df = read_labels(f)
    assert df.to_dict("list") == {"clip_id": ["a", "0010_02_0101"], "label": [1, 3], "subject": ["p1", "0010"]}
    f2 = write(tmp_path / "m.csv", "label,clip_id\n4,0019_02_0078.mp4\n")
    df2 = read_labels(f2)
    assert df2.to_dict("list") == {"clip_id": ["0019_02_0078"], "label": [4], "subject": ["0019"]}


@pytest.mark.parametrize("name, text, message", [
    ("a.txt", "x.mp4 1\ny.mp4 one\n", r"a\.txt:2: label 'one' is not an integer"),
    ("b.txt", "x.mp4 1\ny.mp4 52\n", r"b\.txt:2: label 52 outside the class range"),
    ("c.txt", "x.mp4 -1\n", r"c\.txt:1: label -1 outside"),
    ("d.txt", "x.mp4 1\n\nx.mp4 2\n", r"d\.txt:3: clip id 'x' duplicated \(first on line 1\)"),
    ("e.txt", "\r\n\r\n", r"e\.txt: empty label file"),
    ("f.txt", "x.mp4 1 extra\n", r"f\.txt:1: expected 2 fields"),
    ("g.csv", "clip_id,label\nx,1,2\n", r"g\.csv:2: expected 2 columns"),
    ("h.csv", "name,label\nx,1\n", r"h\.csv:1: CSV header must name"),
    ("i.csv", "clip_id,label\n", r"i\.csv: CSV has a header but no rows"),
])
def test_bad_label_files_name_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_labels(write(tmp_path / name, text), num_classes=52)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_labels("nope.txt")


def test_clip_id_and_subject_parsing() -> None:
    assert clip_id_of("videos_train/0003_01_0001.mp4") == "0003_01_0001"
    assert clip_id_of("a.b.MP4") == "a.b"
    assert clip_id_of("a.b") == "a.b"  # only video extensions are stripped
    assert parse_subject("0030_01_0002.mp4") == "0030"
    assert parse_subject("test0000") == ""
    assert parse_subject("0030_01") == ""


def test_body_mapping_matches_facts() -> None:
    ranges = [(0, 4), (5, 10), (11, 23), (24, 31), (32, 37), (38, 47), (48, 51)]
    expected = np.concatenate([np.full(hi - lo + 1, b) for b, (lo, hi) in enumerate(ranges)])
    assert len(BODY_CLASSES) == 7 and len(MA52_CLASSES) == 52
    np.testing.assert_array_equal(body_of_action(np.arange(52)), expected)
    assert body_of_action(9) == 1 and isinstance(body_of_action(9), int)
    assert body_of_action(np.array([[0, 51], [24, 37]])).shape == (2, 2)
    with pytest.raises(ValueError, match="range"):
        body_of_action(52)
    with pytest.raises(ValueError, match="integers"):
        body_of_action(np.array([1.5]))


def test_class_names(tmp_path: Path) -> None:
    f = write(tmp_path / "names.txt", "1\thead up\n0\tshaking body\n", "\r\n")
    assert read_class_names(f) == ["shaking body", "head up"]
    with pytest.raises(ValueError, match=r"names2\.txt: class ids must be 0\.\.1; missing \[1\]"):
        read_class_names(write(tmp_path / "names2.txt", "0\ta\n2\tb\n"))
    with pytest.raises(ValueError, match=r"names3\.txt:2: class id 0 listed twice"):
        read_class_names(write(tmp_path / "names3.txt", "0\ta\n0\tb\n"))
    with pytest.raises(ValueError, match=r"names4\.txt:1: class id 'x' is not an integer"):
        read_class_names(write(tmp_path / "names4.txt", "x\ta\n"))


@needs_ma52
def test_embedded_names_equal_the_dataset_file() -> None:
    assert read_class_names(MA52 / "label_name.txt") == list(MA52_CLASSES)


@needs_ma52
def test_real_lists() -> None:
    train = read_labels(MA52 / "train_list_videos.txt", num_classes=52)
    test = read_labels(MA52 / "test_list_videos.txt", num_classes=52)
    assert len(train) == 11250 and len(test) == 5586
    assert train["subject"].nunique() == 186
    assert (test["subject"] == "").all() and (test["label"] == 0).all()


def test_match_store_reports_both_sides() -> None:
    labels = pd.DataFrame({"clip_id": ["a", "b", "c", "d"], "label": [0, 1, 2, 3], "subject": [""] * 4})
    with pytest.warns(UserWarning, match="2 listed but missing from the store: b, d"):
        matched, report = match_store(labels, ["a", "c", "z"])
    assert matched["clip_id"].tolist() == ["a", "c"]
    assert matched.index.tolist() == [0, 1]
    assert "1 in the store but unlabelled: z" in report
    assert report.startswith("2 of 4 labelled clips are in the store")
    many = pd.DataFrame({"clip_id": [f"c{i:02d}" for i in range(10)], "label": 0, "subject": ""})
    with pytest.warns(UserWarning, match=r"c03, c04, c05, c06, c07, \.\.\. \(\+2\)"):
        match_store(many, ["c00", "c01", "c02"], show=5)
    with pytest.raises(ValueError, match="no labelled clip is in the store"):
        match_store(labels, ["x"])
