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
(``stop_with_parent``, started by ``python -m dip_lightning`` from ``PARENT_ENV``), and every job
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
PARENT_ENV = "DIP_LIGHTNING_PARENT_PID"  # the script's pid, for the multirun to stop with it


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
    stops the run, at once, or, while ``guard.quiet`` (inside Lightning's fit, whose own handler then
    ends the loop at the step's end; while the outputs are written), after that; a later one changes
    nothing. A forwarded signal and the parent-death watchdog's can both arrive, and a second
    SIGTERM must not kill a job while it writes its outputs."""

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
