"""Signals in a run's process, for runs and scripts alike (plain Python, no Hydra or torch import).

- ``TermGuard``: the run's SIGTERM contract. From the run's first line the first SIGTERM stops it at
  once (``SystemExit(143)``); inside the fit it is acted on at the end of the step (Lightning's
  handler), or once the checkpoint is restored (``callbacks.StopOnSignal``); while the outputs are
  written, once they are written; and one that arrives while the run winds down (logger, summary)
  when ``run`` returns. A later SIGTERM changes nothing.
- ``stop_with_parent``: a job sends itself that SIGTERM when the process that launched it dies.
"""
from __future__ import annotations

import os
import signal
import threading
import time

SIGTERM_EXIT = 128 + signal.SIGTERM  # a run stopped by SIGTERM exits with 143, as a shell reports it


_watched: set[int] = set()  # the parents this process already watches


def stop_with_parent(parent: int | None = None, every_s: float = 0.5) -> None:
    """Send this process one SIGTERM when its parent (``parent``: the pid it must be, default the
    current one) dies, however it dies: a daemon thread polls the parent pid. (Linux's parent-death
    signal fires again at each re-parenting among the dying parent's threads, and a second SIGTERM
    would kill a job while it writes its outputs.)"""
    if os.name != "posix":
        return
    parent = os.getppid() if parent is None else int(parent)
    if parent in _watched:
        return
    _watched.add(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


class TermGuard:
    """SIGTERM while a run lasts (``with TermGuard() as guard``, in the main thread): the first one
    stops the run, at once, or, while ``guard.quiet`` (inside the fit, which then ends at the step's
    end; while the outputs are written), after that; a later one changes nothing. A forwarded
    signal and the parent-death watchdog's can both arrive, and a second SIGTERM must not kill a
    job while it writes its outputs."""

    def __init__(self) -> None:
        self.received = False
        self.quiet = False
        self._old = None

    def __enter__(self) -> "TermGuard":
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, _frame) -> None:
        first, self.received = not self.received, True
        if first and not self.quiet:
            raise SystemExit(128 + signum)

    def __exit__(self, *exc) -> bool:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False
