"""A 7-joint stand-in with the attributes transforms and the data pipeline read from a `Layout`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ToyLayout:
    name: str = "toy"
    joints: tuple[str, ...] = (
        "pelvis", "neck", "nose", "left_shoulder", "right_shoulder", "left_wrist", "right_wrist",
    )
    center: int = 0
    parents: np.ndarray = field(default_factory=lambda: np.array([0, 0, 1, 1, 1, 3, 4]))
    flip_index: np.ndarray = field(default_factory=lambda: np.array([0, 1, 2, 4, 3, 6, 5]))
    sources: tuple = ()

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, name: str) -> int:
        return self.joints.index(name)


TOY = ToyLayout()
