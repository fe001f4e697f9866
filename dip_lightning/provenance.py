"""What a run folder records to rerun it: versions, seed, command line, git revision."""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("dip_lightning", "torch", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics", "wandb",
            "numpy", "pillow", "scikit-image")


def git_revision(path: Path) -> dict | None:
    """{'commit', 'dirty'} of the git checkout holding ``path``, or None (not a checkout / no git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
        if commit.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=5)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def environment(seed: int, deterministic: bool, device: str = "cpu") -> dict:
    """Versions, seed, command line, git revision, and the device that runs (``device``: cpu | cuda)."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "seed": seed,
        "deterministic": deterministic,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if device == "cuda" else None,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "argv": sys.argv,
        "git": git_revision(Path(__file__).resolve().parent),
    }
