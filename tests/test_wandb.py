"""W&B offline: curves, non-black snapshot images, summary, one run per job (also in a multirun)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dip_lightning.run import run
from conftest import TINY_NET


def offline_runs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("offline-run-*") if p.is_dir())


def test_offline_run_logs_curves_and_non_black_snapshots(wandb_offline, compose_cfg, image_file, monkeypatch):
    import wandb

    import dip_lightning.run as runmod

    summaries = []
    finish = runmod.finish_logger

    def capture(logger):  # the run's summary as it stands when the job closes it
        if wandb.run is not None:
            summaries.append(dict(wandb.run.summary))
        finish(logger)

    monkeypatch.setattr(runmod, "finish_logger", capture)
    cfg = compose_cfg(f"image={image_file(24, 20, 3)}", "logger=wandb", "iters=10", "eval_every=2",
                      "snapshot_every=5", "log_every=5", "input.depth=4", "trainer.enable_progress_bar=false",
                      *TINY_NET)
    res = run(cfg)
    runs = offline_runs(res["output_dir"])
    assert len(runs) == 1
    pngs = sorted(runs[0].rglob("media/images/**/*.png"))
    names = " ".join(str(p.relative_to(runs[0])) for p in pngs)
    assert "snapshot" in names and len(pngs) >= 4, names  # output + EMA at steps 1, 5, 10
    for p in pngs:
        a = np.asarray(Image.open(p))
        assert a.dtype == np.uint8 and a.max() > 20, p
    summary = summaries[-1]
    assert summary["psnr_best"] == pytest.approx(res["metrics"]["psnr_best"])
    assert summary["best_step"] == res["metrics"]["best_step"]
    for key in ("psnr/gt", "psnr_ema/gt", "psnr/obs", "psnr_ema/obs", "loss", "psnr/best"):
        assert summary[key] == summary[key]  # logged (W&B keeps the last value in the summary), finite
    record = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"psnr_ema/gt" in record and b"snapshot/output" in record  # and written to the offline run file


def test_sequential_runs_get_their_own_wandb_runs(wandb_offline, compose_cfg, image_file):
    path = image_file(16, 16, 1)
    dirs = []
    for seed in (0, 1):
        cfg = compose_cfg(f"image={path}", "logger=wandb", "iters=3", f"seed={seed}", "input.depth=4",
                          "trainer.enable_progress_bar=false", *TINY_NET, out=f"s{seed}")
        dirs.append(run(cfg)["output_dir"])
    ids = [offline_runs(d)[0].name for d in dirs]
    assert len(set(ids)) == 2


def test_hydra_multirun_gives_each_job_its_own_wandb_run(wandb_offline, image_file):
    path = image_file(16, 16, 3)
    sweep = wandb_offline / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "dip_lightning", "-m", f"image={path}", "seed=0,1", "iters=3", "input.depth=4",
           "logger=wandb", "trainer.enable_progress_bar=false", "threads=1", *TINY_NET,
           f"hydra.sweep.dir={sweep}"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 2
    ids = {offline_runs(j)[0].name for j in jobs}
    assert len(ids) == 2
    for j in jobs:
        assert json.loads((j / "metrics.json").read_text())["iters_done"] == 3


@pytest.mark.parametrize("images", [False, True], ids=["one-image", "two-images"])
def test_collect_logs_the_group_table_to_wandb_when_the_sweep_did(wandb_offline, images):
    """A sweep whose jobs logged to W&B gets its report's group table as a wandb.Table (offline),
    and its per-image table too when the images vary."""
    import importlib.util
    import json

    import yaml

    sweep = wandb_offline / "sweep"
    for i, (lr, seed, value) in enumerate([(0.01, 0, 20.0), (0.01, 1, 21.0), (0.1, 0, 18.0)]):
        job = sweep / str(i)
        (job / ".hydra").mkdir(parents=True)
        image = [f"image=im{i % 2}.png"] if images else []
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optim.lr={lr}", f"seed={seed}", *image]))
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
            {"logger": {"_target_": "pytorch_lightning.loggers.WandbLogger"}}))
        (job / "metrics.json").write_text(json.dumps({"status": "completed", "psnr_best": value, "seed": seed}))
    spec = importlib.util.spec_from_file_location("collect", Path(__file__).parents[1] / "scripts" / "collect.py")
    collect = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collect)
    collect.collect(sweep)
    runs = offline_runs(sweep)
    assert len(runs) == 1
    tables = {p.name.split("_")[0]: p for p in runs[0].rglob("*.table.json")}
    assert sorted(tables) == (["per", "summary"] if images else ["summary"]), list(runs[0].rglob("*"))
    if images:
        per_image = json.loads(tables["per"].read_text())
        assert {(r[0], r[1]) for r in per_image["data"]} == {
            ("optim.lr=0.01", "im0"), ("optim.lr=0.01", "im1"), ("optim.lr=0.01", "average"),
            ("optim.lr=0.1", "im0"), ("optim.lr=0.1", "average")}
    data = json.loads(tables["summary"].read_text())
    assert sorted(r[0] for r in data["data"]) == ["optim.lr=0.01", "optim.lr=0.1"]
    n = {r[0]: r[1] for r in data["data"]}
    assert n == {"optim.lr=0.01": 2, "optim.lr=0.1": 1}
