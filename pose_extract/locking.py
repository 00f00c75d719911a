"""Exclusive file locks (fcntl.flock) that record who holds them, so a refused job can name the other.

A lock file is never deleted: deleting it would let two processes lock two different files. A lock
dies with its process (even on SIGKILL), so a stale holder line in the file means nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

try:  # POSIX only; without it the jobs run unlocked, as before
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class LockBusyError(RuntimeError):
    """Another process holds the lock; the message names it (pid, host, start time, command)."""


def _holder_text(raw: str) -> str:
    try:
        h = json.loads(raw)
        return (f"pid {h['pid']} on host {h['host']}, started {h['started']}"
                + (f": {h['command']}" if h.get("command") else ""))
    except (ValueError, KeyError, TypeError):
        return "a process that did not record itself"


@contextlib.contextmanager
def exclusive_lock(path: str | Path, what: str, *, blocking: bool = False,
                   hint: str = "") -> Iterator[None]:
    """Hold an exclusive flock on the file ``path`` (created if needed) for the ``with`` block.

    Non-blocking (default): LockBusyError "<what> is in use by pid N on host H, started T: <command>
    (lock <path>)<hint>" when another process holds it. Blocking: wait for it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            raise LockBusyError(f"{what} is in use by {_holder_text(fh.read())} (lock {path})"
                                + hint) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200]}))
            fh.flush()
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
