"""The README's entry points: restore() and dip-restore produce the documented files."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


def test_cli_prints_the_run_folder_progress_and_one_summary_line(tmp_path, image_file):
    """No Lightning start-up chatter (GPU/TPU lines, the litlogger tip, torch's LeafSpec warning)."""
    out = tmp_path / "quiet"
    cmd = [DIP_RESTORE, f"image={image_file(20, 24, 3)}", "iters=4", "input.depth=4", "logger=csv", "threads=1",
           *TINY_NET, f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    for noise in ("GPU available", "TPU available", "litlogger", "LeafSpec", "Warning"):
        assert noise not in text, (noise, text[-2000:])
    assert f"run folder: {out}" in text
    summary = [line for line in text.splitlines() if "steps in" in line]
    assert len(summary) == 1 and "completed" in summary[0] and "dB" in summary[0] and str(out) in summary[0]


def test_restore_leaves_the_allocator_alone_unless_asked(tmp_path, monkeypatch):
    """restore() runs inside someone else's process: cpu_malloc defaults to system there. (The
    setting is process-wide and cannot be undone, so an earlier CLI run in this process may have
    applied it already: the test watches the calls, not the process.)"""
    from dip_lightning import malloc

    calls = []
    monkeypatch.setattr(malloc, "reuse_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(malloc, "_applied", False)
    kw = {"input.depth": 4, "trainer.enable_progress_bar": False, **TINY_NET_KW}
    restore(synthetic_image(16, 16, 1), iters=1, logger="none", output_dir=tmp_path / "a", **kw)
    assert "cpu_malloc: system" in (tmp_path / "a" / "config.yaml").read_text()
    assert json.loads((tmp_path / "a" / "environment.json").read_text())["cpu_malloc_reuse"] is False
    assert calls == []
    restore(synthetic_image(16, 16, 1), iters=1, logger="none", output_dir=tmp_path / "b", cpu_malloc="reuse", **kw)
    assert "cpu_malloc: reuse" in (tmp_path / "b" / "config.yaml").read_text()
    assert json.loads((tmp_path / "b" / "environment.json").read_text())["cpu_malloc_reuse"] is True
    assert calls == [1]


@pytest.mark.parametrize("ema", [True, False])
def test_panel_is_labelled(tmp_path, ema):
    """panel.png: a caption strip (dark text on white) above observation | final | EMA | ground
    truth (no EMA column without an EMA), enlarged so each small image is at least 112 px wide."""
    from PIL import Image

    from dip_lightning.pictures import panel_of

    restore(synthetic_image(20, 16, 3), iters=2, logger="none", output_dir=tmp_path / "p",
            **{"input.depth": 4, "trainer.enable_progress_bar": False, "exp_weight": 0.99 if ema else None,
               **TINY_NET_KW})
    a = np.asarray(Image.open(tmp_path / "p" / "panel.png").convert("L"))
    zoom = -(-112 // 16)
    n = 4 if ema else 3
    assert a.shape == (16 + 20 * zoom, n * 16 * zoom + (n - 1) * 4)
    strip = a[:16]
    assert strip.max() == 255 and strip.min() < 100  # text
    x = torch.rand(3, 20, 16)
    labelled = panel_of(x, x, x[None], {"psnr_observed": 20.0, "psnr_final": 24.87, "psnr_ema_final": 26.78}, x)
    assert labelled.shape[-1] == 4 * 16 * zoom + 3 * 4
    for col in range(n):  # every column has its caption
        x0 = col * (16 * zoom + 4)
        assert strip[:, x0:x0 + 16 * zoom].min() < 100, col
