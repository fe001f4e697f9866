"""``hydra/launcher=slurm``: Hydra's submitit SLURM launcher with SLURM's refusals and ended jobs as
one line each, and job states from ``squeue`` where ``sacct`` answers nothing (``dip_lightning.slurm``)."""
from __future__ import annotations

import contextlib
import io
import logging
import re
import subprocess
import sys
import time
from collections.abc import Sequence

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from submitit.core.utils import UncompletedJobError
from submitit.slurm import slurm as submitit_slurm

from dip_lightning.slurm import ACTIVE, GONE, NEVER, NEVER_STARTS, missing_partition, queue_states, refusal_hint, sbatch_reason

log = logging.getLogger(__name__)


class QueueWatcher(submitit_slurm.SlurmInfoWatcher):
    """submitit's SLURM watcher, asking ``squeue`` where ``sacct`` answers nothing."""

    warned = False

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        try:
            info = self.read_info(subprocess.run(command, capture_output=True, check=True, timeout=60).stdout)
        except (OSError, subprocess.SubprocessError):
            info = {}
        asked = self._registered - self._finished
        if not info:  # no accounting (or nothing recorded yet): the controller's own queue
            if not QueueWatcher.warned:
                log.info("sacct answers nothing here (SLURM accounting off?): job states come from squeue")
                QueueWatcher.warned = True
            info = queue_states({j.split("_")[0] for j in asked})
            if info is None:
                return  # the controller did not answer: ask again later
            info.update({j: {"State": GONE} for j in asked if j not in info})
        self._info_dict.update(info)
        self._last_status_check = time.time()
        for job_id in asked:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)


class SlurmLauncher(SubmititSlurmLauncher):
    """Hydra's submitit SLURM launcher; a refusal or a job ended without a result exits in one line."""

    def __reduce__(self):  # a job unpickles it by this module's name, which imports in any install
        return rebuilt, (self.__dict__,)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        missing = missing_partition(self.params.get("partition"))
        if missing:
            fail(missing)
        if not isinstance(submitit_slurm.SlurmJob.watcher, QueueWatcher):  # (shared by every SLURM job)
            submitit_slurm.SlurmJob.watcher = QueueWatcher(delay_s=600)
        quiet = io.StringIO()  # submitit prints sbatch's stderr before raising it
        try:
            with contextlib.redirect_stderr(quiet):
                return super().launch(job_overrides, initial_job_idx)
        except UncompletedJobError as exc:
            if isinstance(exc.__cause__, subprocess.CalledProcessError):  # sbatch refused the array
                stderr, quiet = exc.__cause__.stderr or str(exc), io.StringIO()  # (its reason is in the line)
                fail(f"error: SLURM refused the jobs ({sbatch_reason(stderr)}): {refusal_hint(stderr)}")
            fail(ended_message(str(exc), submitit_slurm.SlurmJob.watcher))
        finally:
            sys.stderr.write(quiet.getvalue())


def fail(line: str) -> None:
    """End the multirun with one line and exit code 2, as every user error."""
    print(line, file=sys.__stderr__)
    sys.exit(2)


def rebuilt(state: dict) -> SlurmLauncher:
    """The launcher a job unpickles (``hydra_plugins.dip_lightning_slurm`` may not import there)."""
    launcher = SlurmLauncher.__new__(SlurmLauncher)
    launcher.__dict__.update(state)
    return launcher


def ended_message(text: str, watcher: submitit_slurm.SlurmInfoWatcher) -> str:
    """One line for a job that SLURM ended without a result (``text``: submitit's message). A job
    that can never start is cancelled with its array; otherwise the array's other jobs run to
    their end first, so that a relaunch finds them completed, not still running."""
    found = re.search(r"Job (\S+)", text)
    job_id = found.group(1) if found else "?"
    info = watcher.get_info(job_id, mode="cache") if found else {}
    state, reason = info.get("State", "UNKNOWN"), info.get("Reason", "")
    array = job_id.split("_")[0]
    if state == NEVER:
        subprocess.run(["scancel", array], capture_output=True)
        return (f"error: SLURM can never start job {job_id} as asked (pending: {reason}), so its array was "
                f"cancelled: {NEVER_STARTS.get(reason, 'change the hydra.launcher.* keys')}")
    wait_for_array(array)
    return (f"error: SLURM ended job {job_id} without a result ({state}); the jobs that completed are kept: "
            "relaunch the same command with skip_completed=true to run only the rest")


def wait_for_array(array: str, poll_s: float = 5.0) -> None:
    """Until no task of ``array`` is pending or running (squeue), logging once how many are."""
    told = False
    while True:
        states = queue_states({array}) or {}
        active = [j for j, i in states.items() if i["State"] in ACTIVE]
        if not active:
            return
        if not told:
            log.info("waiting for the %d other jobs of array %s to end (scancel %s stops them)", len(active), array, array)
            told = True
        time.sleep(poll_s)
