"""`piumr ensemble`: weighted late fusion of runs of different streams."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_compare import fake_run, softmax  # tests/ is on sys.path under pytest

from piumr_skel.tools.compare import weighted_fusion


def test_weighted_fusion_is_the_weighted_mean_and_refuses_bad_weights():
    a, b = np.array([[0.9, 0.1]]), np.array([[0.2, 0.8]])
    np.testing.assert_allclose(weighted_fusion([a, b], [2, 1]), [[(1.8 + 0.2) / 3, (0.2 + 0.8) / 3]])
    with pytest.raises(ValueError, match="weights"):
        weighted_fusion([a, b], [1])
    with pytest.raises(ValueError, match=">= 0"):
        weighted_fusion([a, b], [-1, 2])


def test_ensemble_command_scores_each_stream_and_the_fusion(tmp_path):
    from cli.main import cli

    rng = np.random.default_rng(0)
    n = 30
    labels = rng.integers(0, 4, n)
    ids = [f"{i % 3 + 1:04d}_01_{i:04d}" for i in range(n)]
    subj = [c[:4] for c in ids]
    runs = []
    for stream in ("joint", "bone"):
        logits = rng.normal(size=(n, 52))
        logits[np.arange(n), labels] += rng.uniform(0, 3, n)
        runs.append(fake_run(tmp_path, stream, softmax(logits), labels, subj, ids, split="test",
                             config={"stream": stream}))
    res = CliRunner().invoke(cli, ["ensemble", *map(str, runs), "--split", "test", "-o", str(tmp_path / "ens")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "ens" / "ensemble_test.json").read_text())
    assert out["weights"] == [2.0, 2.0] and out["clips"] == n
    assert any(k.startswith("ensemble") for k in out["metrics"])
    bad = CliRunner().invoke(cli, ["ensemble", *map(str, runs), "--weights", "1"])
    assert bad.exit_code != 0 and "2 runs" in bad.output
