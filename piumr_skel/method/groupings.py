"""The GIRL pseudo-group choices of each version, read by the losses, the run config and the ablations.

Kept apart from girl.py so that the config can read them without importing torch.
"""
from __future__ import annotations

from typing import Literal, get_args

# v1 clusters each batch ("kmeans" on feature statistics); v2 groups the whole training set once per
# epoch ("input": person-style descriptors of the skeleton; "features": backbone feature statistics).
# "subject" (true person ids) and "random" exist in both.
GroupingV1 = Literal["kmeans", "subject", "random"]
GroupingV2 = Literal["input", "features", "subject", "random"]
Grouping = Literal[GroupingV2, GroupingV1]  # any version's

GROUPINGS: tuple[str, ...] = get_args(GroupingV1)
GROUPINGS_V2: tuple[str, ...] = get_args(GroupingV2)
GROUPINGS_BY_VERSION: dict[int, tuple[str, ...]] = {1: GROUPINGS, 2: GROUPINGS_V2}
