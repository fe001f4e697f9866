"""The scripts' one way to launch a sweep: ``python -m dip_lightning -m OVERRIDES`` in a child process.

A child, not an in-process call, so that Hydra owns the process it configures (its logging, its
working directory, the launcher plugin's workers). On POSIX the child gets a process group of its
own, and a SIGINT, SIGTERM or SIGHUP that this process receives (Ctrl-C, ``kill``, a scheduler, a
closed terminal) is passed on to that whole group (the child and the launcher's workers) as
SIGTERM, which every job handles: it writes ``status: interrupted`` and its worker process exits
(``cli.main``). So no orphaned sweep goes on writing into the folder that a relaunch resumes. The
script returns once the group is gone (what is left after ``GRACE_S`` is killed); after Ctrl-C it
then ends by SIGINT, as a shell expects. A kill of the script's own process group no longer
reaches the sweep: signal the script. Plain Python (no Hydra import).

When the script dies without running a handler (SIGKILL, the OOM killer), the sweep stops all
the same: the child sends itself SIGTERM when the script dies
(``signals.stop_with_parent``, started by ``python -m dip_lightning`` from ``PARENT_ENV``), and every job
of a launcher whose workers the multirun spawns (joblib, gpus, submitit_local) does so when the
multirun dies (``cli.job``), so the jobs write ``status: interrupted`` and their processes exit
within seconds.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

FORWARDED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
GRACE_S = 60.0  # for the jobs to write their outputs after a forwarded signal
PARENT_ENV = "DIP_LIGHTNING_PARENT_PID"  # the script's pid, for the multirun to stop with it (signals.stop_with_parent)


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is left; reaps those that are this process's children (a
    script running as a container's PID 1 inherits the workers when their parent exits)."""
    try:
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    except ChildProcessError:  # none of the group is our child
        pass
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


def record_command(folder: Path, script: str, argv: list[str]) -> None:
    """Add the script's command line to ``folder/command.txt``, one line per launch into the folder
    (a resumed sweep's report shows every command that ran in it)."""
    with open(folder / "command.txt", "a") as f:
        f.write("python scripts/" + script + " " + shlex.join(argv) + "\n")


def launch(overrides: list[str]) -> int:
    """Run the multirun with ``overrides`` and return its exit status (128 + N when signal N stopped it)."""
    cmd = [sys.executable, "-m", "dip_lightning", "-m", *overrides]
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", PARENT_ENV: str(os.getpid())}
    if os.name != "posix":  # no process groups to pass signals on to
        return subprocess.run(cmd, env=env).returncode
    received: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum: int, _frame) -> None:
        received.append(signum)
        if child:  # (before the child exists, the signal is sent once it does)
            kill_group(child[0].pid, signal.SIGTERM)

    main = threading.current_thread() is threading.main_thread()  # (only it may set signal handlers)
    before = {s: signal.signal(s, forward) for s in FORWARDED} if main else {}
    try:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        child.append(proc)
        if received:  # arrived while the child was starting
            kill_group(proc.pid, signal.SIGTERM)
        rc = proc.wait()  # (a handled signal does not end the wait: PEP 475)
        if received:  # the launcher's workers may outlive the child: wait for them, then kill the rest
            deadline = time.monotonic() + GRACE_S
            while group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            kill_group(proc.pid, signal.SIGKILL)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    if received:
        if received[0] == signal.SIGINT and main:  # end by SIGINT, so that a shell loop stops too
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        return 128 + received[0]
    return 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as a shell reports it
