"""The README's entry points: restore() and dip-restore produce the documented files."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dip_lightning import restore
from conftest import TINY_NET, synthetic_image

DIP_RESTORE = shutil.which("dip-restore") or str(Path(sys.executable).with_name("dip-restore"))
TINY_NET_KW = {"net.channels_down": [8, 8, 8], "net.channels_up": [8, 8, 8], "net.channels_skip": [2, 2, 2]}

FILES = ["restored.png", "restored_ema.png", "restored_best.png", "observed.png", "panel.png", "psnr.png",
         "metrics.json"]


@pytest.mark.parametrize("channels", [1, 3])
def test_restore_api_returns_input_sized_image_and_metrics(tmp_path, channels):
    img = synthetic_image(23, 31, channels)
    out, metrics = restore(img, task="denoise", iters=6, seed=1, logger="none", output_dir=tmp_path / "api",
                           **{"input.depth": 4, "trainer.enable_progress_bar": False, "optim.lr": 0.02},
                           **TINY_NET_KW)
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    assert metrics["iters_done"] == 6 and metrics["psnr_best"] is not None
    for f in FILES:
        assert (tmp_path / "api" / f).is_file()


def test_restore_api_sr_with_path(tmp_path):
    from PIL import Image

    Image.fromarray((synthetic_image(32, 24, 3) * 255).astype(np.uint8)).save(tmp_path / "x.png")
    out, m = restore(tmp_path / "x.png", task="sr", iters=2, logger="none", output_dir=str(tmp_path / "o"),
                     **{"task.factor": 8, "input.depth": 4, "trainer.enable_progress_bar": False})
    assert out.shape == (32, 24, 3) and m["task"] == "SuperResolution"


def test_cli_writes_the_documented_files(tmp_path, image_file):
    out = tmp_path / "cli"
    cmd = [DIP_RESTORE, f"image={image_file(20, 24, 3)}", "iters=4", "input.depth=4", "logger=csv",
           "trainer.enable_progress_bar=false", "threads=1", *TINY_NET, f"hydra.run.dir={out}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    for f in FILES:
        assert (out / f).is_file(), f
    assert json.loads((out / "metrics.json").read_text())["iters_done"] == 4
    assert (out / ".hydra" / "config.yaml").is_file()


def test_python_dash_m_is_the_same_cli(tmp_path, image_file):
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "dip_lightning", f"image={image_file(16, 16, 1)}", "iters=2", "input.depth=4",
           "logger=none", "trainer.enable_progress_bar=false", "threads=1", *TINY_NET, f"hydra.run.dir={out}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    assert (out / "metrics.json").is_file()
