"""Writes that a kill or a second process writing the same file can never leave half done.

Each writer goes to its own temporary file beside the target (named after its process and thread)
and renames it over the target, which is atomic on POSIX: a reader sees the old file or a new one
whole, and two processes summarising into one folder at once leave one of their versions, never a
mix of both.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to; renamed over `path` when the block ends
    without an error, removed otherwise."""
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Path.write_text, but all or nothing."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def atomic_to_csv(frame: Any, path: str | Path, **kwargs: Any) -> None:
    """DataFrame.to_csv(path, **kwargs), but all or nothing."""
    atomic_write_text(path, frame.to_csv(**kwargs))
