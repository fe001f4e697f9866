"""One process per job folder.

A job holds an exclusive ``flock`` on ``<job folder>/.lock`` while it runs. A second process that
gets the same folder (a sweep relaunched while the first still runs, an orphaned launcher) leaves
its checkpoints and results alone instead of removing them, resuming from them and writing the
same files at the same time (Hydra has written the job's ``.hydra/`` record and log by then: it
does so before it calls the job). The kernel drops the lock when its process dies, so a killed job never leaves a
stale lock behind. ``flock`` is local to one machine (on some network file systems it does not
reach across nodes); where ``fcntl`` is missing (Windows) every job gets the lock.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # not a Unix
    fcntl = None

NAME = ".lock"


def holder(out_dir: Path) -> str:
    """Who holds (or last held) the folder's lock, as 'pid N on HOST'."""
    try:
        return (out_dir / NAME).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def held(out_dir: Path) -> Iterator[bool]:
    """The folder's lock for the block: yields True when this process holds it, False when another
    process does (then nothing in the folder is touched)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield True
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)  # (for every process that shares the descriptor, e.g. a fork)
        os.close(fd)
