"""A SIGTERM at any moment of a run, whole-image or tiled: before the fit, during the checkpoint
restore, mid-fit and while the outputs are written. The run ends at once (or at the step's end, or
once the file is written), exits with 143, leaves a readable metrics.json, and a relaunch with
skip_completed=true (resuming from the last checkpoint) equals an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import dip_lightning.run as runmod
import dip_lightning.stages as stages
from conftest import QUIET, TINY_NET
from dip_lightning import resume
from dip_lightning.cli import computed_config
from dip_lightning.module import DIPModule
from dip_lightning.run import run
from dip_lightning.signals import SIGTERM_EXIT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
SAME = ("psnr_final", "psnr_ema_final", "psnr_best", "ssim_final", "iters_done")


def term() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def stopped(cfg) -> dict:
    """Run ``cfg``, which a SIGTERM stops: it exits with 143 and leaves metrics.json."""
    with pytest.raises(SystemExit) as info:
        run(cfg)
    assert info.value.code == SIGTERM_EXIT
    return metrics(Path(cfg.paths.output_dir))


def launch(cfg, again: bool = False):
    """``cfg`` as the CLI launches it into its folder (``cli.job``); ``again``: relaunched with
    skip_completed=true (a whole-image run from its last checkpoint; a tiled one from its groups)."""
    out = Path(cfg.paths.output_dir)
    cfg.skip_completed = again
    if not cfg.get("tile"):
        ckpt = resume.prepare(out, computed_config(cfg), int(cfg.ckpt_every), resume=again)
        cfg.ckpt_path = None if ckpt is None else str(ckpt)
    return cfg


def relaunch(cfg):
    return launch(cfg, again=True)


class TermAt(pl.Callback):
    """SIGTERM to this process after step ``step`` of the ``group``-th fit that reaches it."""

    def __init__(self, step: int, group: int = 0):
        self.step, self.group, self.seen = step, group, -1

    def on_train_start(self, trainer, module):
        self.seen += 1

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.seen == self.group and trainer.global_step == self.step:
            term()


def with_callback(monkeypatch, cb: pl.Callback) -> None:
    build = stages.build_callbacks
    monkeypatch.setattr(stages, "build_callbacks", lambda cfg, out, fits=1: {**build(cfg, out, fits), "term": cb})


@pytest.fixture(params=["whole", "tiled"])
def setting(request, image_file):
    path = image_file(40, 45, 3)
    common = [f"image={path}", "iters=8", "ckpt_every=4", "reg_noise_std=0.05", "input.depth=4", "es=none",
              *QUIET, *TINY_NET]
    if request.param == "tiled":
        common += ["tile=32", "tile_overlap=12", "tile_batch=2"]
    return request.param, common


def test_a_sigterm_before_the_fit_stops_the_run_at_once(compose_cfg, setting, monkeypatch):
    kind, common = setting
    full = run(compose_cfg(*common, out="full"))
    set_up = stages.set_up

    def set_up_then_term(*a, **k):
        term()
        return set_up(*a, **k)

    monkeypatch.setattr(stages, "set_up", set_up_then_term)
    cfg = compose_cfg(*common, out="cut")
    m = stopped(launch(cfg))
    assert m["status"] == "interrupted" and m["iters_done"] == 0 and m["reason"] == "SIGTERM"
    monkeypatch.setattr(stages, "set_up", set_up)
    again = run(relaunch(cfg))
    assert torch.equal(again["restored"], full["restored"])
    assert all(again["metrics"][k] == full["metrics"][k] for k in SAME)


def test_a_sigterm_mid_fit_and_during_the_restore_and_the_relaunch_equals_an_uninterrupted_run(
        compose_cfg, setting, monkeypatch):
    """Mid-fit (tiled: in the second group) the run stops at the step's end with what it has; the
    relaunch is stopped again while it reads the checkpoint (before any step); a third launch
    finishes and equals the uninterrupted run."""
    kind, common = setting
    full = run(compose_cfg(*common, out="full"))
    cfg = compose_cfg(*common, out="cut")
    with_callback(monkeypatch, TermAt(step=6, group=1 if kind == "tiled" else 0))
    m = stopped(launch(cfg))
    assert m["status"] == "interrupted" and m["reason"] == "SIGTERM"
    if kind == "whole":
        assert m["iters_done"] == 6 and (Path(cfg.paths.output_dir) / "restored.png").is_file()
    else:
        assert m["tile_groups_done"] == 1 and m["tile_groups"] == 2
    monkeypatch.undo()
    on_load = DIPModule.on_load_checkpoint
    steps = []

    def load_then_term(self, checkpoint):
        term()
        on_load(self, checkpoint)

    class Count(pl.Callback):
        def on_train_batch_end(self, trainer, module, *a):
            steps.append(trainer.global_step)

    monkeypatch.setattr(DIPModule, "on_load_checkpoint", load_then_term)
    with_callback(monkeypatch, Count())
    m = stopped(relaunch(cfg))
    assert m["status"] == "interrupted" and not steps  # stopped before a step ran
    monkeypatch.undo()
    again = run(relaunch(cfg))
    assert torch.equal(again["restored"], full["restored"])
    assert all(again["metrics"][k] == full["metrics"][k] for k in SAME), (again["metrics"], full["metrics"])


def test_a_sigterm_while_the_outputs_are_written_lets_them_finish(compose_cfg, setting, monkeypatch):
    import dip_lightning.stages as stages

    kind, common = setting
    owner, name = stages, ("write_fits" if kind == "whole" else "write_tiled")
    write = getattr(owner, name)

    def term_then_write(*a, **k):
        term()
        return write(*a, **k)

    monkeypatch.setattr(owner, name, term_then_write)
    cfg = compose_cfg(*common, out="cut")
    m = stopped(cfg)
    assert m["status"] == "completed" and m["iters_done"] == 8 and m["psnr_final"] is not None
    out = Path(cfg.paths.output_dir)
    assert all((out / f).is_file() for f in ("restored.png", "panel.png", "psnr.png"))


def test_a_sigterm_while_the_run_winds_down_still_exits_143(compose_cfg, image_file, monkeypatch):
    """After the outputs, while the logger finishes: the run is complete, and then it stops."""
    summary = runmod.log_summary

    def term_then_summary(*a, **k):
        term()
        return summary(*a, **k)

    monkeypatch.setattr(runmod, "log_summary", term_then_summary)
    cfg = compose_cfg(f"image={image_file(20, 20, 1)}", "iters=3", "input.depth=4", *QUIET, *TINY_NET)
    m = stopped(cfg)
    assert m["status"] == "completed" and m["iters_done"] == 3
