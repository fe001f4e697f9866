"""SLURM as a user meets it, through Hydra's submitit launcher (``hydra/launcher=slurm``).

- Requests fit the partition: ``${dip_slurm_fit:gpus,1,${.partition}}`` is 1, or 0 on a partition
  whose nodes have no GPU (likewise CPUs and memory: at most what its largest node has), read from
  ``sinfo``; without ``sinfo`` the asked value.
- A submission SLURM refuses, or a job it can never start (pending for ``PartitionConfig``, ...),
  is one line naming SLURM's reason and the key to change; a job SLURM ended without a result
  (``scancel``, time limit, node failure) is one line saying how to finish the rest.
- Job states come from ``sacct``, or from ``squeue`` where accounting is off (one log line says so),
  so a cancelled job is seen as ended instead of waited for, and no warning repeats every minute.

This module needs no submitit; ``slurm_launcher`` holds the launcher (``hydra/launcher=slurm``).
"""
from __future__ import annotations

import logging
import re
import subprocess

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

#: words of sbatch's refusal -> what to change
REFUSALS = (
    ("generic resource", "set hydra.launcher.gpus_per_node=0 (the partition has no GPUs) or pick a GPU partition"),
    ("invalid partition", "set hydra.launcher.partition to one that sinfo lists"),
    ("invalid account", "set hydra.launcher.account to one of yours (sacctmgr show assoc user=$USER)"),
    ("invalid qos", "set hydra.launcher.qos to one your account may use"),
    ("memory specification", "lower hydra.launcher.mem_gb to what a node of the partition has"),
    ("node configuration is not available",
     "lower hydra.launcher.cpus_per_task, mem_gb or gpus_per_node to what a node of the partition has"),
    ("time limit", "lower hydra.launcher.timeout_min to the partition's limit"),
)
#: squeue's reasons for a pending job that can never start -> what to change
NEVER_STARTS = {
    "PartitionConfig": "lower hydra.launcher.cpus_per_task, mem_gb or gpus_per_node to what the partition allows",
    "BadConstraints": "lower hydra.launcher.cpus_per_task, mem_gb or gpus_per_node, or drop the constraint",
    "PartitionNodeLimit": "lower hydra.launcher.nodes to the partition's limit",
    "PartitionTimeLimit": "lower hydra.launcher.timeout_min to the partition's limit",
    "InvalidAccount": "set hydra.launcher.account to one of yours",
    "InvalidQOS": "set hydra.launcher.qos to one your account may use",
}
NEVER = "NEVER_STARTS"  # the state a job that can never start is given (so submitit stops waiting)
GONE = "ENDED_UNLISTED"
#: the states of a job that has not ended yet
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING")  # a job neither sacct nor squeue lists any more


def sinfo_rows() -> list[list[str]] | None:
    """``sinfo``'s node kinds as ``[partition (default: with '*'), CPUs, memory MB, gres]``, or None
    where sinfo does not answer (not installed, no controller)."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P|%c|%m|%G"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [(line.split("|") + ["", "", ""])[:4] for line in out.stdout.splitlines() if line.strip()]


def partition_nodes(partition: str | None) -> list[dict] | None:
    """The partition's node kinds (``cpus``, ``mem_gb``, ``gpus`` per node; the default partition
    when None), or None where ``sinfo`` does not answer or does not list it."""
    nodes = []
    for name, cpus, mem, gres in sinfo_rows() or []:
        if (partition is None and name.endswith("*")) or name.rstrip("*") == partition:
            gpus = sum(int(n) for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", gres))
            nodes.append({"cpus": int(cpus.rstrip("+") or 0), "mem_gb": int(mem.rstrip("+") or 0) // 1024,
                          "gpus": gpus})
    return nodes or None


def fit_request(kind: str, wanted, partition: str | None = None):
    """``${dip_slurm_fit:KIND,WANTED,PARTITION}``: ``wanted`` GPUs, CPUs or GB (``gpus``, ``cpus``,
    ``mem_gb``), lowered to what the partition's largest node has; ``wanted`` where sinfo is absent."""
    nodes = partition_nodes(None if partition in (None, "", "None", "null") else str(partition))
    if wanted is None or nodes is None:
        return wanted
    return min(int(wanted), max(n[kind] for n in nodes))


OmegaConf.register_new_resolver("dip_slurm_fit", fit_request, replace=True)


def missing_partition(partition: str | None) -> str | None:
    """One line when sinfo answers and does not list ``partition``, else None."""
    rows = sinfo_rows()
    names = list(dict.fromkeys(row[0].rstrip("*") for row in rows or []))
    if partition in (None, "", "None", "null") or not names or partition in names:
        return None
    return f"error: SLURM has no partition {partition!r}; set hydra.launcher.partition to one of {', '.join(names)} (sinfo)"


def refusal_hint(stderr: str) -> str:
    """What to change for sbatch's refusal ``stderr``."""
    low = stderr.lower()
    return next((key for words, key in REFUSALS if words in low), "change the hydra.launcher.* keys it names")


def sbatch_reason(stderr: str) -> str:
    """sbatch's last error line, without its prefix."""
    lines = [ln.split("error:", 1)[-1].strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else "no reason given"


def queue_states(job_ids: set[str]) -> dict[str, dict[str, str]] | None:
    """``{"<job>_<task>": {"State": …, "Reason": …}}`` for these jobs from ``squeue`` (every state it
    still holds), or None where squeue does not answer."""
    cmd = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(sorted(job_ids))]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None
    states = {}
    for line in out.stdout.splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        states[job.strip()] = {"State": NEVER if state == "PENDING" and reason in NEVER_STARTS else state,
                               "Reason": reason}
    return states
