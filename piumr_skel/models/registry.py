"""timm-style backbone registry: `@register_backbone(name)` records a builder, `create_backbone` calls it."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from piumr_skel.skeleton.graph import GraphMode
from piumr_skel.skeleton.layouts import Layout

__all__ = ["BACKBONES", "register_backbone", "create_backbone"]

BACKBONES: dict[str, Callable[..., Any]] = {}
_F = TypeVar("_F", bound=Callable[..., Any])


def register_backbone(name: str) -> Callable[[_F], _F]:
    """Decorator recording a builder `fn(*, in_channels, num_classes, layout, graph_mode, **kw)`."""

    def deco(fn: _F) -> _F:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered (by {BACKBONES[name].__module__})")
        BACKBONES[name] = fn
        return fn

    return deco


def create_backbone(name: str, *, in_channels: int, num_classes: int, layout: Layout,
                    graph_mode: GraphMode = "spatial", **kw: Any):
    """Build the registered backbone `name` for `layout` (a Layout: the engine resolves the name once)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choices: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](in_channels=in_channels, num_classes=num_classes, layout=layout,
                           graph_mode=graph_mode, **kw)
