"""Every task × net × optim × input combination composes from the real configs and runs."""
import itertools
import json

import pytest

from dip_lightning.run import run
from conftest import QUIET, SMALL_NETS, TINY_NET

TASKS = ["denoise", "sr", "inpaint", "restore", "jpeg", "deblur"]
NETS = list(SMALL_NETS)
OPTIMS = ["adam", "lbfgs"]
INPUTS = ["noise", "meshgrid"]


@pytest.mark.parametrize("task,net", list(itertools.product(TASKS, NETS)))
def test_every_net_runs_every_task(task, net, compose_cfg, image_file):
    cfg = compose_cfg(f"image={image_file(24, 20, 3)}", f"task={task}", f"net={net}", "iters=2", "input.depth=4",
                      *QUIET, *SMALL_NETS[net])
    res = run(cfg)
    assert res["restored"].shape == (3, 24, 20)
    assert res["metrics"]["iters_done"] == 2 and res["metrics"]["params"] > 0


@pytest.mark.parametrize("task,net,optim,inp", list(itertools.product(TASKS, ["skip"], OPTIMS, INPUTS)))
def test_combination_runs(task, net, optim, inp, compose_cfg, image_file):
    path = image_file(24, 20, 3)
    extra = ["input.depth=4"] if inp == "noise" else []
    cfg = compose_cfg(f"image={path}", f"task={task}", f"net={net}", f"optim={optim}", f"input={inp}",
                      "iters=3", "eval_every=1", *QUIET, *TINY_NET, *extra)
    res = run(cfg)
    m = json.loads((res["output_dir"] / "metrics.json").read_text())
    assert m["iters_done"] == 3 and m["status"] == "completed"
    assert res["restored"].shape == (3, 24, 20)
    assert m["psnr_final"] is not None and m["psnr_final"] > 0


@pytest.mark.parametrize("preset", ["demo", "paper_denoise", "paper_sr", "paper_inpaint"])
def test_experiment_presets_compose_and_run(preset, compose_cfg, image_file):
    path = image_file(64, 64, 3)
    cfg = compose_cfg(f"experiment={preset}", f"image={path}", "resize=null", "iters=2", *QUIET)
    assert cfg.iters == 2
    res = run(cfg)
    assert res["metrics"]["iters_done"] == 2


def test_paper_recipes_are_the_papers(compose_cfg):
    d = compose_cfg("experiment=paper_denoise", "image=x.png")
    assert (d.iters, d.optim.lr, d.exp_weight, d.backtrack_db, d.task.sigma) == (3000, 0.01, 0.99, 5.0, 25)
    assert d.reg_noise_std == pytest.approx(1 / 30) and d.input.depth == 32
    s = compose_cfg("experiment=paper_sr", "image=x.png")
    assert (s.iters, s.task.factor, s.reg_noise_std, s.exp_weight, s.backtrack_db) == (2000, 4, 0.03, None, None)
    i = compose_cfg("experiment=paper_inpaint", "image=x.png")
    assert (i.iters, i.reg_noise_std, i.net.upsample_mode, list(i.net.channels_skip)) == (6001, 0.03, "nearest", [128] * 5)


def test_cudnn_autotuning_follows_deterministic(compose_cfg):
    """trainer.benchmark (cuDNN autotuning for DIP's one fixed input size) is on, unless deterministic=true."""
    assert compose_cfg().trainer.benchmark is True
    assert compose_cfg("deterministic=true").trainer.benchmark is False
