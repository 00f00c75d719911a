"""Skeleton backbones (N, C_in, T, V) -> features (N, C, T', V) -> logits, behind a timm-style registry."""
from .base import Backbone, stage_plan
from .registry import BACKBONES, create_backbone, register_backbone

# Importing the modules registers their backbones.
from . import ctrgcn, stgcn  # noqa: E402,F401  (import order: registry first)
from .ctrgcn import CTRGCN
from .gcn_pyg import PygSpatialGraphConv
from .stgcn import STGCN, SpatialGraphConv

__all__ = ["BACKBONES", "Backbone", "CTRGCN", "PygSpatialGraphConv", "STGCN", "SpatialGraphConv",
           "create_backbone", "register_backbone", "stage_plan"]
