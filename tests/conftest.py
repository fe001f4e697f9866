"""Shared fixtures: single-threaded torch, W&B off (or offline under tmp), tiny real-config runs."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dip_lightning.overrides import QUIET as SCRIPT_QUIET

torch.set_num_threads(1)
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

#: overrides that make the real configs tiny: a 3-level 8-channel skip net, 4 input channels
TINY_NET = ["net.channels_down=[8,8,8]", "net.channels_up=[8,8,8]", "net.channels_skip=[2,2,2]"]
#: per architecture, overrides that make it tiny
SMALL_NETS = {
    "skip": TINY_NET,
    "unet": ["net.feature_scale=32"],
    "resnet": ["net.num_blocks=2", "net.num_channels=8"],
    "texture": ["net.ratios=[4,2,1]", "net.conv_num=4"],
    "decoder": ["net.channels=[8,8,8]"],
    "convdecoder": ["net.channels=[8,8,8]"],
}
#: the scripts' quiet overrides, one thread
QUIET = [*SCRIPT_QUIET, "threads=1"]


def synthetic_image(height: int = 37, width: int = 29, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth test image (gradients + a disc), float32 in [0, 1], (H, W) or (H, W, C)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= max(height - 1, 1)
    xx /= max(width - 1, 1)
    disc = ((yy - 0.5) ** 2 + (xx - 0.45) ** 2 < 0.08).astype(np.float32)
    chans = []
    for c in range(channels):
        a, b = rng.uniform(0.2, 0.8, size=2)
        chans.append(np.clip(0.15 + 0.5 * (a * xx + b * yy) / 1.6 + 0.3 * disc * (c + 1) / channels, 0, 1))
    img = np.stack(chans, -1)
    return img[:, :, 0] if channels == 1 else img


@pytest.fixture
def image_file(tmp_path: Path):
    """Factory: write a synthetic PNG and return its path."""

    def make(height: int = 37, width: int = 29, channels: int = 3, name: str = "img.png") -> Path:
        a = (synthetic_image(height, width, channels) * 255).round().astype(np.uint8)
        path = tmp_path / name
        Image.fromarray(a).save(path)
        return path

    return make


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """Factory: compose the real configs/restore.yaml with overrides, output under tmp_path."""
    from dip_lightning.api import compose_config

    def make(*overrides: str, out: str = "run"):
        return compose_config(list(overrides) + [f"paths.output_dir={tmp_path / out}"])

    return make


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B in offline mode with every W&B folder under the test's tmp_path."""
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    return tmp_path


@contextlib.contextmanager
def started_service(script: str, dir_var: str, prefix: str):
    """``scripts/<script> start`` in a fresh folder, giving the VALUE of the ``KEY=VALUE`` line it
    prints, and ``stop`` after. Skips (with the script's one line) where it cannot start."""
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, dir_var: tempfile.mkdtemp(prefix=prefix)}
    proc = subprocess.run(["bash", str(root / "scripts" / script), "start"], env=env, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"{script} start failed"]
        subprocess.run(["bash", str(root / "scripts" / script), "stop"], env=env, capture_output=True, timeout=120)
        pytest.skip(lines[-1])
    try:
        yield proc.stdout.strip().splitlines()[-1].partition("=")[2]
    finally:
        subprocess.run(["bash", str(root / "scripts" / script), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def slurm_conf():
    """A one-node SLURM cluster for this test session (scripts/local_slurm.sh): its slurm.conf."""
    with started_service("local_slurm.sh", "DIP_SLURM_DIR", "dip_slurm_") as conf:
        yield conf


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server for this test session (scripts/local_postgres.sh): its database's URL."""
    with started_service("local_postgres.sh", "DIP_PG_DIR", "dip_pg_") as url:
        yield url
