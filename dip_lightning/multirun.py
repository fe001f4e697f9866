"""The scripts' one way to launch a sweep: ``python -m dip_lightning -m OVERRIDES`` in a child process.

A child, not an in-process call, so that Hydra owns the process it configures (its logging, its
working directory, the launcher plugin's workers). The child gets a process group of its own and
this process passes SIGINT, SIGTERM and SIGHUP on to that whole group (the child and the
launcher's workers): ``kill`` of a script, a scheduler's stop or a closed terminal ends the jobs
too (each writes ``status: interrupted``, and a job's worker process then exits: ``cli.main``),
instead of leaving an orphaned sweep writing into the folder that a relaunch resumes. The script
returns once the group is gone (after ``GRACE_S``, what is left of it is killed). Plain Python (no
Hydra import).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_S = 60.0  # for the jobs to write their outputs after a forwarded signal


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of the group that is not ours (cannot happen for our own children)
        return True


def kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:  # the group has exited already
        pass


def launch(overrides: list[str]) -> int:
    """Run the multirun with ``overrides`` and return its exit status (128 + N when signal N stopped it)."""
    forwarded: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum: int, _frame) -> None:
        forwarded.append(signum)
        if child:
            kill_group(child[0].pid, signum)

    main = threading.current_thread() is threading.main_thread()  # (only it may set signal handlers)
    before = {s: signal.signal(s, forward) for s in FORWARDED} if main else {}
    try:
        child.append(subprocess.Popen([sys.executable, "-m", "dip_lightning", "-m", *overrides],
                                      env={**os.environ, "HYDRA_FULL_ERROR": "1"}, start_new_session=True))
        pgid = child[0].pid
        for signum in forwarded:  # arrived while the child was starting
            kill_group(pgid, signum)
        rc = child[0].wait()  # (a handled signal does not end the wait: PEP 475)
        if forwarded:  # the launcher's workers may outlive the child: wait for them, then kill the rest
            deadline = time.monotonic() + GRACE_S
            while group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.2)
            kill_group(pgid, signal.SIGKILL)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    return 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as a shell reports it
