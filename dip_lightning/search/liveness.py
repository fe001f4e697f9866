"""Whether a search's running trial still has a sweeper: a liveness signal kept in the study itself.

A sweeper signs each trial it asks (user attribute ``sweeper``: ``host:pid:start``, ``start`` being
the process's start time, so that a reused pid is told apart) and, while the trial runs, rewrites
its ``beat`` (wall-clock seconds since the epoch) every ``stale_s / 8`` from a daemon thread. The
signal lives in the storage, so it works alike on the journal file and on any RDB, on one host or
across many. A running trial is stale, and is failed so that its budget is run again, when

- its sweeper ran on this host, that process is gone (the pid is free, or belongs to a process
  started at another time) and its beat has paused for two beats (a process in another pid
  namespace under the same host name is not taken for a dead one), or
- its beat is older than ``stale_s`` (the hosts' clocks are assumed to agree well within it), or
- it was never signed and was asked more than ``stale_s`` ago (its sweeper died between ask and sign).

``DIP_LIGHTNING_HOST`` replaces the host name in the signature, for machines that share one name.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

HOST_ENV = "DIP_LIGHTNING_HOST"
OWNER, BEAT = "sweeper", "beat"  # the user attributes of a running trial


def host_name() -> str:
    return os.environ.get(HOST_ENV) or socket.gethostname()


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux's /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]  # field 22; the name (field 2) may hold spaces


def process_alive(pid: int, start: str) -> bool | None:
    """Whether process ``pid`` started at ``start`` runs on this host; None when it cannot be told
    (no /proc: a pid that exists may be another process)."""
    if Path("/proc/self/stat").is_file():
        return process_start(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return None
    return None


class Liveness:
    """This sweeper's signature and the beat of the trials it runs (``running``: Optuna trials by
    number); ``stale(trial)`` judges any running trial of the study by the module docstring's rules."""

    def __init__(self, stale_s: float):
        self.stale_s = float(stale_s)
        pid = os.getpid()
        self.owner = f"{host_name()}:{pid}:{process_start(pid) or 'na'}"
        self.running: dict[int, object] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._beat, name="sweeper-liveness", daemon=True).start()

    def stop(self) -> None:
        """No more beats (the search has ended)."""
        self._stopped.set()

    def sign(self, trial) -> None:
        """Sign ``trial`` (an ``optuna.Trial`` just asked) and beat for it until ``done``."""
        trial.set_user_attr(OWNER, self.owner)
        trial.set_user_attr(BEAT, time.time())
        with self._lock:
            self.running[trial.number] = trial

    def done(self, trial) -> None:
        with self._lock:
            self.running.pop(trial.number, None)

    def _beat(self) -> None:
        while not self._stopped.wait(self.stale_s / 8):
            with self._lock:
                trials = list(self.running.values())
            for trial in trials:
                try:
                    trial.set_user_attr(BEAT, time.time())
                except Exception as exc:  # a trial finished meanwhile, or the storage is briefly away
                    log.debug("beat for trial %s not written: %s", trial.number, exc)

    def stale(self, trial) -> bool:
        """Whether running ``trial`` (a FrozenTrial) has lost its sweeper."""
        owner, beat = trial.user_attrs.get(OWNER), trial.user_attrs.get(BEAT)
        if owner == self.owner:  # ours: stale only when this sweeper no longer runs it (left by an error)
            with self._lock:
                return trial.number not in self.running
        if owner is None:
            started = trial.datetime_start
            return started is None or (datetime.now() - started).total_seconds() > self.stale_s
        host, pid, start = (str(owner).split(":") + ["", "", ""])[:3]
        age = float("inf") if beat is None else time.time() - float(beat)
        if host == host_name() and pid.isdigit():
            here = process_alive(int(pid), start)
            if here is not None:
                return not here and age > self.stale_s / 4
        return age > self.stale_s
