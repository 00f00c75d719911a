"""Skeleton backbones (N, C_in, T, V) -> features (N, C, T', V) -> logits, behind a timm-style registry."""
# Importing ctrgcn and stgcn registers their backbones (each imports the registry itself).
from . import ctrgcn, stgcn  # noqa: F401
from .base import Backbone, stage_plan
from .ctrgcn import CTRGCN
from .gcn_pyg import PygSpatialGraphConv
from .registry import BACKBONES, create_backbone, register_backbone
from .stgcn import STGCN, SpatialGraphConv

__all__ = ["BACKBONES", "Backbone", "CTRGCN", "PygSpatialGraphConv", "STGCN", "SpatialGraphConv",
           "create_backbone", "register_backbone", "stage_plan"]
