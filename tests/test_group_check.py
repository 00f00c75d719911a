"""The pseudo-group check: NMI, purity, nearest-neighbour rates and `piumr groups` on a tiny store."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from cli.ablate import groups_cmd
from piumr_skel.tools.group_check import _whole_people, fold_agreement, nearest_neighbour_rates, nmi, purity


def test_nmi_bounds_and_invariances() -> None:
    a = np.repeat(np.arange(4), 25)
    assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(a, (a + 1) % 4) == pytest.approx(1.0)                 # renaming the groups changes nothing
    assert nmi(np.repeat(np.arange(4), 4), np.tile(np.arange(4), 4)) == pytest.approx(0.0, abs=1e-12)  # independent
    assert nmi(np.zeros(5), np.zeros(5)) == 1.0 and nmi(np.zeros(4), np.arange(4)) == 0.0
    coarse = a // 2                                                   # a coarsening keeps part of the information
    assert 0.5 < nmi(a, coarse) < 1.0 and nmi(a, coarse) == pytest.approx(nmi(coarse, a))
    with pytest.raises(ValueError, match="same length"):
        nmi(a, a[:-1])


def test_purity_and_whole_people() -> None:
    assert purity([0, 0, 1, 1], ["a", "a", "b", "c"]) == pytest.approx(0.75)
    subjects = np.array(["p1"] * 5 + ["p2"] * 3 + ["p3"] * 3 + ["p4"] * 1)
    groups = _whole_people(subjects, 2)
    assert purity(subjects, groups) == 1.0                            # every person lies in one group
    assert sorted(np.bincount(groups)) == [6, 6]                      # and the groups are balanced


def test_nearest_neighbour_finds_the_person_when_style_is_personal() -> None:
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i}" for i in range(6)], 10)
    labels = np.tile(np.arange(5), 12)
    personal = rng.normal(size=(6, 4))[np.repeat(np.arange(6), 10)]
    noisy = personal + 0.01 * rng.normal(size=(60, 4))
    rates = nearest_neighbour_rates(noisy, subjects, labels)
    assert rates["nn_same_subject"] == 1.0 and rates["chance_subject"] == pytest.approx(9 / 59)
    assert rates["nn_same_action"] < 0.5 and rates["chance_action"] == pytest.approx(11 / 59)
    shuffled = rng.permutation(60)                                   # rows in uneven blocks: the same answer
    assert nearest_neighbour_rates(noisy[shuffled], subjects[shuffled], labels[shuffled], block=7) == rates
    rows = {r["grouping"]: r for r in fold_agreement(personal, subjects, labels, 3)}
    assert rows["whole people"]["purity_subject"] == pytest.approx(0.5)    # 2 people of 10 clips per group
    assert rows["input"]["nmi_subject"] > rows["random"]["nmi_subject"]
    assert rows["input"]["nmi_subject"] > rows["input"]["nmi_action"]


def test_cli_groups_on_a_tiny_synthetic_ablation(tmp_path: Path) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text(yaml.safe_dump({"synthetic": {"preset": "demo", "num_subjects": 6, "clips_per_subject": 6,
                                                 "num_classes": 4}, "layout": "mp_pose", "folds": 3,
                                   "girl_num_groups": 2, "clip_len": 8, "num_workers": 0}))
    res = CliRunner().invoke(groups_cmd, ["-o", str(tmp_path / "o"), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "o" / "group_agreement.md").read_text()
    assert "| input | 2.0 |" in text and "| whole people |" in text and "same person" in text
    assert (tmp_path / "o" / "group_agreement.csv").read_text().count("\n") == 1 + 3 * 3


def test_cli_groups_without_a_store_is_one_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(groups_cmd, ["-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "store" in res.output and "Traceback" not in res.output
