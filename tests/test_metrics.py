"""Tests for piumr_skel.engine.metrics against scikit-learn, plus robustness, Codabench export and tables."""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the test oracle")

from piumr_skel.data.labels import body_of_action  # noqa: E402
from piumr_skel.engine.metrics import (  # noqa: E402
    body_scores,
    confusion_matrix,
    f1_score,
    format_metrics_table,
    ma52_metrics,
    mean_std,
    per_body_accuracy,
    per_class_accuracy,
    per_subject_accuracy,
    subject_robustness,
    top_k_accuracy,
    write_codabench,
)


def example(seed: int, n: int = 200, k: int = 52, gt_classes: int = 40, skill: float = 2.0):
    """Scores (n, k) correlated with gt; gt uses only the first `gt_classes` ids, so some classes are missing."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, gt_classes, n)
    scores = rng.random((n, k))
    scores[np.arange(n), gt] += skill * rng.random(n)
    return scores / scores.sum(1, keepdims=True), gt


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("average", ["macro", "micro"])
def test_f1_matches_sklearn_with_missing_classes(seed: int, average: str) -> None:
    scores, gt = example(seed)
    pred = scores.argmax(1)
    # pred contains classes absent from gt and vice versa: the union is what sklearn averages over
    assert set(pred) - set(gt) and set(range(52)) - set(gt) - set(pred)
    expected = sklearn_metrics.f1_score(gt, pred, average=average, zero_division=0)
    assert f1_score(gt, pred, average) == pytest.approx(expected, abs=1e-12)


def test_f1_class_never_predicted_scores_zero() -> None:
    gt, pred = np.array([0, 0, 1, 2]), np.array([0, 0, 0, 2])
    assert f1_score(gt, pred) == pytest.approx((0.8 + 0 + 1) / 3)
    with pytest.raises(ValueError, match="macro"):
        f1_score(gt, pred, "weighted")


@pytest.mark.parametrize("seed", [0, 3])
def test_ma52_metrics_match_the_official_formulas(seed: int) -> None:
    scores, gt = example(seed)
    m = ma52_metrics(scores, gt)
    pred = scores.argmax(1)
    gb, pb = body_of_action(gt), body_of_action(pred)
    f1 = sklearn_metrics.f1_score
    expected = {
        "action_top1": sklearn_metrics.top_k_accuracy_score(gt, scores, k=1, labels=np.arange(52)),
        "action_top5": sklearn_metrics.top_k_accuracy_score(gt, scores, k=5, labels=np.arange(52)),
        "f1_macro_action": f1(gt, pred, average="macro"), "f1_micro_action": f1(gt, pred, average="micro"),
        "f1_macro_body": f1(gb, pb, average="macro"), "f1_micro_body": f1(gb, pb, average="micro"),
        "body_top1": sklearn_metrics.accuracy_score(gb, pb),
    }
    expected["f1_mean"] = np.mean([expected[k] for k in ("f1_macro_action", "f1_micro_action",
                                                         "f1_macro_body", "f1_micro_body")])
    assert set(m) == set(expected)
    for key, value in expected.items():
        assert m[key] == pytest.approx(100 * value, abs=1e-9), key
    assert m["action_top5"] > m["action_top1"]


def test_top_k_with_fewer_classes_and_input_checks() -> None:
    scores, gt = example(4, k=8, gt_classes=8)
    assert top_k_accuracy(scores, gt, 3) == pytest.approx(sklearn_metrics.top_k_accuracy_score(gt, scores, k=3))
    assert ma52_metrics(scores, gt)["action_top5"] == pytest.approx(
        100 * sklearn_metrics.top_k_accuracy_score(gt, scores, k=5))
    with pytest.raises(ValueError, match=r"scores must be \(N, K\)"):
        ma52_metrics(scores[:3], gt)
    with pytest.raises(ValueError, match=r"gt labels must lie in \[0, 8\)"):
        ma52_metrics(scores, gt + 8)
    with pytest.raises(ValueError, match="NaN"):
        ma52_metrics(np.full_like(scores, np.nan), gt)
    with pytest.raises(ValueError, match="integer"):
        ma52_metrics(scores, gt.astype(float))


def test_subject_robustness() -> None:
    # 10 subjects with accuracies 0, 10, ..., 90 %, then one more at 100 % (11 subjects -> worst 2)
    correct, subjects = [], []
    for s in range(11):
        correct += [True] * s + [False] * (10 - s)
        subjects += [f"s{s:02d}"] * 10
    accs = np.arange(11) * 10.0
    r = subject_robustness(np.array(correct), np.array(subjects))
    assert r["subj_acc_mean"] == pytest.approx(accs.mean())
    assert r["subj_acc_std"] == pytest.approx(accs.std(ddof=0))
    assert r["subj_acc_worst10"] == pytest.approx(5.0)  # ceil(1.1) = 2 subjects: 0 % and 10 %
    one = subject_robustness(np.array([True, False, True]), np.array(["a", "a", "b"]))
    assert one["subj_acc_worst10"] == pytest.approx(50.0)  # at least one subject
    acc = per_subject_accuracy(np.array([True, False, True]), ["a", "a", "b"])
    assert acc.to_dict() == {"a": 50.0, "b": 100.0}
    with pytest.raises(ValueError, match="equal-length"):
        subject_robustness(np.array([True]), np.array(["a", "b"]))


def test_confusion_and_per_class_against_sklearn() -> None:
    scores, gt = example(5)
    pred = scores.argmax(1)
    cm = confusion_matrix(gt, pred, 52)
    np.testing.assert_array_equal(cm, sklearn_metrics.confusion_matrix(gt, pred, labels=np.arange(52)))
    acc = per_class_accuracy(gt, pred)
    present = np.unique(gt)
    recall = sklearn_metrics.recall_score(gt, pred, labels=present, average=None)
    np.testing.assert_allclose(acc[present], 100 * recall)
    assert np.isnan(acc[np.setdiff1d(np.arange(52), present)]).all()
    body = per_body_accuracy(gt, pred)
    gb, pb = body_of_action(gt), body_of_action(pred)
    assert body.shape == (7,)
    for b in np.unique(gb):
        assert body[b] == pytest.approx(100 * np.mean(pb[gb == b] == b))


def test_body_scores_sum_each_body_group() -> None:
    scores, _ = example(6, n=5)
    bs = body_scores(scores)
    assert bs.shape == (5, 7)
    np.testing.assert_allclose(bs[:, 0], scores[:, 0:5].sum(1))
    np.testing.assert_allclose(bs[:, 6], scores[:, 48:52].sum(1))
    np.testing.assert_allclose(bs.sum(1), 1.0)


def test_write_codabench(tmp_path: Path) -> None:
    scores, _ = example(7, n=6)
    vids = [f"test{i:04d}.mp4" for i in range(6)]
    sub = tmp_path / "sub"
    out = write_codabench(sub / "prediction.csv", vids, scores, zip_path=sub / "submission.zip")
    assert out.name == "submission.zip"
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["prediction.csv"]
        rows = list(csv.reader(zf.read("prediction.csv").decode().splitlines()))
    assert rows[0] == ["vid"] + [f"action_pred_{i}" for i in range(1, 6)] + [f"body_pred_{i}" for i in range(1, 6)]
    assert [r[0] for r in rows[1:]] == vids
    for row, s in zip(rows[1:], scores):
        actions = [int(x) for x in row[1:6]]
        bodies = [int(x) for x in row[6:]]
        assert actions == np.argsort(-s)[:5].tolist()
        assert bodies == np.argsort(-body_scores(s[None])[0])[:5].tolist()
        assert len(set(bodies)) == 5
    plain = write_codabench(tmp_path / "p.csv", vids, scores)
    assert plain.read_text().splitlines()[1:] == [",".join(r) for r in rows[1:]]
    with pytest.raises(ValueError, match="6 vids"):
        write_codabench(tmp_path / "x.csv", vids, scores[:5])


def test_format_metrics_table() -> None:
    m = ma52_metrics(*example(8))
    table = format_metrics_table({"ERM": m, "full": {**m, "action_top1": 99.123, "epoch": 12}})
    lines = table.splitlines()
    assert lines[0].startswith("| run | Action Top-1 | Action Top-5 | Body Top-1 |")
    assert lines[0].endswith("| epoch |")
    assert len(lines) == 4 and "| full | 99.12 |" in lines[3] and lines[3].endswith("| 12 |")
    assert lines[2].endswith("| – |")  # ERM has no epoch
    assert format_metrics_table({"action_top1": 50.0}).splitlines()[2] == "|  | 50.00 |"
    summary = mean_std([{"action_top1": 50.0}, {"action_top1": 52.0}])
    assert summary == {"action_top1": "51.00 ± 1.00"}
    assert "51.00 ± 1.00" in format_metrics_table({"xsub": summary})
    with pytest.raises(ValueError, match="unknown columns"):
        format_metrics_table({"a": m}, columns=["nope"])
