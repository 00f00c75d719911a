"""Do GIRL's pseudo-groups carry person style? A check on the training people, before any training.

GIRL v2's `input` grouping clusters person-style descriptors of the skeleton (bone lengths, rest
posture, per-part speed, tempo and range of motion; `method.girl.input_descriptors`). If those
groups stand for people, they should agree with the true person ids much more than with the action
labels. This module measures that on each fold's training clips, the way a run draws its groups:

* NMI (normalised mutual information, arithmetic-mean normalisation) of the groups with the subjects
  and with the actions. Beside it the same for `random` groups (the floor) and for `whole people`,
  the subjects dealt into the same number of groups (the most person-like grouping of that size);
* purity: the share of clips that belong to their group's most common subject;
* from the descriptors themselves, how often a clip's nearest other clip (Euclidean, standardised
  descriptors) is from the same person and how often it is the same action, against chance.

`piumr groups` prints the table; nothing is trained.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from piumr_skel.engine.metrics import nmi, purity

__all__ = ["nmi", "purity", "nearest_neighbour_rates", "fold_agreement", "agreement_table", "agreement_markdown"]


def nearest_neighbour_rates(descriptors: np.ndarray, subjects: np.ndarray, labels: np.ndarray, *,
                            block: int = 2048) -> dict[str, float]:
    """How often each clip's nearest other clip shares its person / its action, and the chance rates.

    Chance: the probability that a random other clip shares the person (or the action).
    """
    d = np.asarray(descriptors, dtype=np.float64)
    d = (d - d.mean(0)) / (d.std(0) + 1e-6)
    sq = (d ** 2).sum(1)
    n = len(d)
    nn = np.empty(n, dtype=np.int64)
    for start in range(0, n, block):  # (block, N) distances at a time: MA-52's ~20k clips fit in memory
        rows = slice(start, min(start + block, n))
        dist = sq[rows, None] + sq[None, :] - 2.0 * d[rows] @ d.T
        dist[np.arange(dist.shape[0]), np.arange(rows.start, rows.stop)] = np.inf   # not itself
        nn[rows] = dist.argmin(1)
    subjects, labels = np.asarray(subjects).astype(str), np.asarray(labels)

    def chance(values: np.ndarray) -> float:
        _, counts = np.unique(values, return_counts=True)
        return float((counts * (counts - 1)).sum() / (n * (n - 1)))

    return {"nn_same_subject": float((subjects[nn] == subjects).mean()), "chance_subject": chance(subjects),
            "nn_same_action": float((labels[nn] == labels).mean()), "chance_action": chance(labels)}


def _whole_people(subjects: np.ndarray, num_groups: int) -> np.ndarray:
    """Subjects dealt into `num_groups` groups of about equal size (largest first), each person whole."""
    names, inv, counts = np.unique(subjects.astype(str), return_inverse=True, return_counts=True)
    load = np.zeros(num_groups)
    group_of = np.zeros(len(names), dtype=np.int64)
    for s in np.argsort(-counts, kind="stable"):
        group_of[s] = int(load.argmin())
        load[group_of[s]] += counts[s]
    return group_of[inv]


def fold_agreement(descriptors: np.ndarray, subjects: np.ndarray, labels: np.ndarray, num_groups: int, *,
                   seed: int = 0, epoch: int = 0) -> list[dict[str, Any]]:
    """One row per grouping (input, random, whole people) for one fold's training clips."""
    import torch

    from piumr_skel.method.girl import assign_epoch_groups

    desc = torch.from_numpy(np.asarray(descriptors, dtype=np.float32))
    subjects = np.asarray(subjects).astype(str)
    drawn = {
        "input": assign_epoch_groups("input", num_groups, seed=seed, epoch=epoch, descriptors=desc).numpy(),
        "random": assign_epoch_groups("random", num_groups, seed=seed, epoch=epoch, n=len(subjects)).numpy(),
        "whole people": _whole_people(subjects, num_groups),
    }
    return [{"grouping": name, "groups": int(len(np.unique(g))), "nmi_subject": nmi(g, subjects),
             "nmi_action": nmi(g, labels), "purity_subject": purity(g, subjects)} for name, g in drawn.items()]


def agreement_table(cfg: Any, folds: Sequence[int] | None = None,
                    echo: Any = print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-fold rows, nearest-neighbour rates per fold) for a TrainConfig's data, with its GIRL group count."""
    import dataclasses

    from piumr_skel.engine.data_setup import load_run_data
    from piumr_skel.method.girl import input_descriptors

    rows, nn_rows = [], []
    for fold in (range(cfg.folds) if folds is None else folds):
        data = load_run_data(dataclasses.replace(cfg, fold=int(fold)), None, splits=("train",))
        ds = data.datasets["train"]
        desc = input_descriptors([ds.cache[c] for c in ds.clip_ids], data.layout)
        subjects, labels = data.subjects["train"], data.labels["train"]
        for row in fold_agreement(desc, subjects, labels, cfg.girl_num_groups, seed=cfg.seed):
            rows.append({"fold": int(fold), "clips": len(subjects), "subjects": len(np.unique(subjects)), **row})
        nn_rows.append({"fold": int(fold), **nearest_neighbour_rates(desc, subjects, labels)})
        echo(f"fold {fold}: {len(subjects)} training clips of {len(np.unique(subjects))} people")
    return pd.DataFrame(rows), pd.DataFrame(nn_rows)


def _ms(values: pd.Series, scale: float = 1.0) -> str:
    v = values.to_numpy(dtype=float) * scale
    return f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2f}"


def agreement_markdown(per_fold: pd.DataFrame, nn: pd.DataFrame) -> str:
    """Mean ± std over folds of the group agreement and the nearest-neighbour rates."""
    lines = ["| grouping | groups | NMI with subjects | NMI with actions | subject purity |",
             "|---|---:|---:|---:|---:|"]
    for name, part in per_fold.groupby("grouping", sort=False):
        lines.append(f"| {name} | {part['groups'].mean():.1f} | {_ms(part['nmi_subject'])} | "
                     f"{_ms(part['nmi_action'])} | {_ms(part['purity_subject'])} |")
    lines += ["", "| descriptor's nearest other clip | same person (%) | chance (%) | same action (%) | chance (%) |",
              "|---|---:|---:|---:|---:|",
              f"| training clips, mean ± std over {len(nn)} folds | {_ms(nn['nn_same_subject'], 100)} | "
              f"{_ms(nn['chance_subject'], 100)} | {_ms(nn['nn_same_action'], 100)} | "
              f"{_ms(nn['chance_action'], 100)} |"]
    return "\n".join(lines)
