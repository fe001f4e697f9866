"""One GPU per worker process for ``hydra/launcher=gpus``.

The preset runs jobs in ``n_jobs`` = number of GPUs joblib (loky) worker processes. Workers are reused
for several jobs and CUDA binds its device once per process, so ``hydra.job.num % n_gpus`` is not
enough: before its first job touches CUDA, each worker locks one free slot file
(``<sweep dir>/.gpu_slots/slot_<i>.lock``, non-blocking ``fcntl.flock``) for its whole life and sets
``CUDA_VISIBLE_DEVICES`` to that slot's GPU. The lock goes away with the process, so a worker that
loky replaces frees its slot for the new one.

``DIP_FAKE_GPUS=N`` pretends there are N GPUs (slot i -> device "i"): the slot logic can be tested on
a CPU machine. ``DIP_GPU_LOCK_DIR`` puts the lock files elsewhere (e.g. one folder shared by every
sweep on the machine). The GPUs are found without initialising CUDA (``CUDA_VISIBLE_DEVICES``, else
``nvidia-smi -L``).
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

from omegaconf import OmegaConf

FAKE_GPUS_ENV = "DIP_FAKE_GPUS"
LOCK_DIR_ENV = "DIP_GPU_LOCK_DIR"
SLOT_TIMEOUT_ENV = "DIP_GPU_SLOT_TIMEOUT"
SLOT_FILE = "gpu_slot.json"

# (slot, device, lock file descriptor) of this process, once claimed; the descriptor stays open for life
_claimed: tuple[int, str, int] | None = None


def visible_devices() -> list[str]:
    """The GPU ids that slots 0, 1, ... map to, found without initialising CUDA."""
    fake = os.environ.get(FAKE_GPUS_ENV, "").strip()
    if fake:
        if not fake.isdigit() or int(fake) < 1:
            raise ValueError(f"{FAKE_GPUS_ENV}={fake!r} must be a positive number of fake GPUs, e.g. {FAKE_GPUS_ENV}=2")
        return [str(i) for i in range(int(fake))]
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = [d.strip() for d in listed.split(",") if d.strip()]
        return [] if devices[:1] == ["-1"] else devices
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = [line for line in out.splitlines() if line.startswith("GPU ")]
    return [str(i) for i in range(len(gpus))]


def gpu_count() -> int:
    """Number of GPUs for ``hydra.launcher.n_jobs`` (the ``${dip_gpus:}`` resolver)."""
    n = len(visible_devices())
    if n == 0:
        raise RuntimeError("hydra/launcher=gpus found no GPU (CUDA_VISIBLE_DEVICES, nvidia-smi -L); use "
                           f"hydra/launcher=joblib on a CPU machine, or {FAKE_GPUS_ENV}=2 to try the slots")
    return n


OmegaConf.register_new_resolver("dip_gpus", gpu_count, replace=True)


def claim_slot(lock_dir: Path, n_slots: int, timeout_s: float = 120.0, poll_s: float = 0.2) -> tuple[int, int]:
    """Lock the first free ``slot_<i>.lock`` (i < n_slots) in ``lock_dir``; return (slot, open descriptor).

    The lock lasts until the descriptor is closed or the process ends. Waits up to ``timeout_s`` for
    a slot (a replaced worker may still be exiting), then raises.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        for slot in range(n_slots):
            fd = os.open(lock_dir / f"slot_{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return slot, fd
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no free GPU slot of {n_slots} in {lock_dir} after {timeout_s:.0f} s: "
                               f"more workers than GPUs (hydra.launcher.n_jobs > {n_slots})?")
        time.sleep(poll_s)


def ensure_slot(lock_dir: Path) -> tuple[int, str]:
    """This process's (slot, device): claimed on the first call, then reused by every later job.

    Sets ``CUDA_VISIBLE_DEVICES`` to the slot's GPU, so it must run before anything initialises CUDA.
    """
    global _claimed
    if _claimed is None:
        import torch

        if torch.cuda.is_initialized():
            raise RuntimeError("CUDA was initialised before this worker claimed its GPU slot; "
                               "CUDA_VISIBLE_DEVICES can no longer pick the device")
        devices = visible_devices()
        if not devices:
            raise RuntimeError(f"no GPU to claim (CUDA_VISIBLE_DEVICES, nvidia-smi -L, {FAKE_GPUS_ENV})")
        timeout = float(os.environ.get(SLOT_TIMEOUT_ENV, "120"))
        slot, fd = claim_slot(lock_dir, len(devices), timeout_s=timeout)
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[slot]
        _claimed = (slot, devices[slot], fd)
    return _claimed[0], _claimed[1]


def lock_dir_for(sweep_dir: str | Path) -> Path:
    """Where the slot files live: ``$DIP_GPU_LOCK_DIR`` or ``<sweep dir>/.gpu_slots``."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(sweep_dir) / ".gpu_slots")


def write_slot_record(out_dir: Path, slot: int, device: str, start: float, end: float) -> None:
    """``gpu_slot.json`` in the job's folder: which slot/GPU ran it, in which process, and when."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"slot": slot, "device": device, "pid": os.getpid(), "start": start, "end": end}
    (out_dir / SLOT_FILE).write_text(json.dumps(record) + "\n")
