"""Checkpoint/resume equals an uninterrupted run to the bit (CPU); interrupted runs keep their outputs."""
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

import dip_lightning.stages as stages
from dip_lightning import job_lock, resume
from dip_lightning.run import run
from conftest import QUIET, TINY_NET

SAME = ["psnr_final", "psnr_ema_final", "psnr_best", "best_step", "ssim_final", "psnr_obs_final", "backtracks",
        "es_step", "es_psnr", "iters_done"]


@pytest.mark.parametrize("es, half", [(["es.patience=100"], 8), (["es.patience=1", "es.check_every=1"], 12),
                                      (["es.patience=100", "pack=2"], 8)],
                         ids=["es-tracking", "es-detected-before-the-checkpoint", "packed-es-tracking"])
def test_resumed_run_equals_uninterrupted_run(compose_cfg, image_file, es, half):
    path = image_file(22, 26, 3)
    common = [f"image={path}", f"iters={2 * half}", "eval_every=2", "input.depth=4", "reg_noise_std=0.05",
              "backtrack_db=5", "es.window=3", *es, *QUIET, *TINY_NET]
    full = run(compose_cfg(*common, f"ckpt_every={half}", out="full"))
    ckpt = full["output_dir"] / "checkpoints" / f"step_{half:06d}.ckpt"
    assert ckpt.is_file() and (full["output_dir"] / "checkpoints" / f"step_{2 * half:06d}.ckpt").is_file()
    es_state = torch.load(ckpt, weights_only=False)["callbacks"]["EarlyStopping"]
    detected = any(d is not None for d in es_state["detected"])
    assert detected == (half == 12) and (es_state["tracker_state"] == {}) == detected  # detected: no window kept
    resumed = run(compose_cfg(*common, f"ckpt_path={ckpt}", out="resumed"))
    fits = full.get("fits") or [full]  # a packed run: each fit's own result
    assert len(fits) == (2 if "pack=2" in es else 1)
    for mine, theirs in zip(resumed.get("fits") or [resumed], fits):
        for k in SAME:
            assert k in theirs["metrics"] and mine["metrics"][k] == theirs["metrics"][k], k
        assert mine["history"] == theirs["history"] or all(
            np.array_equal(np.array(mine["history"][k]), np.array(theirs["history"][k]), equal_nan=True)
            for k in theirs["history"])
        assert torch.equal(mine["restored"], theirs["restored"])
        assert torch.equal(mine["restored_ema"], theirs["restored_ema"])


class Interrupt(pl.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == 5:
            raise KeyboardInterrupt


def test_ctrl_c_writes_outputs_marked_interrupted(compose_cfg, image_file, monkeypatch):
    build = stages.build_callbacks
    monkeypatch.setattr(stages, "build_callbacks", lambda cfg, out, fits=1: {**build(cfg, out, fits), "boom": Interrupt()})
    cfg = compose_cfg(f"image={image_file(20, 20, 3)}", "iters=50", "input.depth=4", *QUIET, *TINY_NET)
    with pytest.raises((SystemExit, KeyboardInterrupt)):
        run(cfg)
    out = cfg.paths.output_dir
    m = json.loads(open(f"{out}/metrics.json").read())
    assert m["status"] == "interrupted" and m["iters_done"] == 5
    for f in ("restored.png", "restored_ema.png", "restored_best.png", "psnr.png"):
        assert os.path.isfile(f"{out}/{f}"), f


def test_sigterm_writes_outputs_marked_interrupted(tmp_path, image_file):
    out = tmp_path / "term"
    cmd = [sys.executable, "-m", "dip_lightning", f"image={image_file(20, 20, 1)}", "iters=100000", "input.depth=4",
           "snapshot_every=0", "es.window=5", f"hydra.run.dir={out}", *QUIET, *TINY_NET]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "snapshots" / "step_000020.png").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "interrupted" and 20 <= m["iters_done"] < 100000
    assert (out / "restored.png").is_file() and (out / "restored_es.png").is_file()


def test_snapshots_at_log_spaced_and_regular_steps(compose_cfg, image_file):
    cfg = compose_cfg(f"image={image_file(20, 24, 3)}", "iters=25", "snapshot_every=10", "input.depth=4", *QUIET,
                      *TINY_NET)
    d = run(cfg)["output_dir"]
    for step in (1, 2, 5, 10, 20, 25):
        for suffix in ("", "_ema"):
            p = d / "snapshots" / f"step_{step:06d}{suffix}.png"
            assert p.is_file(), p
            assert np.asarray(Image.open(p)).max() > 20  # not black
    assert not (d / "snapshots" / "step_000015.png").exists()
    grid = np.asarray(Image.open(d / "snapshots.png"))
    assert grid.shape[0] > 20 and grid.shape[1] >= 6 * 24


def test_resume_into_the_other_memory_format(compose_cfg, image_file):
    """A checkpoint of an NCHW run resumed with channels_last (the default changed): fused Adam's
    moments and the backtracking snapshot take the parameters' layout, so the resumed run equals
    the uninterrupted one (float64: the layouts' kernels agree to rounding)."""
    path = image_file(22, 26, 3)
    common = [f"image={path}", "iters=16", "eval_every=2", "input.depth=4", "reg_noise_std=0.05", "backtrack_db=5",
              "es=none", "trainer.precision=64-true", *QUIET, *TINY_NET]
    full = run(compose_cfg(*common, "memory_format=contiguous", "ckpt_every=8", out="full"))
    ckpt = full["output_dir"] / "checkpoints" / "step_000008.ckpt"
    resumed = run(compose_cfg(*common, "memory_format=channels_last", f"ckpt_path={ckpt}", out="resumed"))
    for k in ("psnr_final", "psnr_ema_final", "psnr_best"):
        assert resumed["metrics"][k] == pytest.approx(full["metrics"][k], abs=1e-6), k
    assert torch.allclose(resumed["restored"], full["restored"], atol=1e-6)


@pytest.mark.parametrize("sync_free", [False, True])
def test_on_train_start_gives_moments_and_snapshot_their_parameters_layout(compose_cfg, image_file, sync_free):
    from dip_lightning.backtrack import state_tensors
    from dip_lightning.run import build

    module = build(compose_cfg(f"image={image_file(20, 20, 3)}", "iters=4", "input.depth=4", *QUIET, *TINY_NET,
                               "memory_format=channels_last")).module
    opt = module.configure_optimizers()
    module.optimizers = lambda use_pl_optimizer=True: opt
    module.net(module.z).mean().backward()
    opt.step()  # the moments exist now
    params = list(module.net.parameters())
    cl = [p for p in params if p.dim() == 4 and not p.is_contiguous()]
    assert cl, "the net's 3x3 weights are channels_last"
    for p in params:  # as a checkpoint from an NCHW run would give them
        for key in ("exp_avg", "exp_avg_sq"):
            opt.state[p][key] = opt.state[p][key].contiguous()
    module.backtracker.snapshot = [t.contiguous().clone() for t in state_tensors(opt)]
    before = [t.clone() for t in module.backtracker.snapshot]
    module.on_train_start()
    tensors = state_tensors(opt)
    for p in params:
        for key in ("exp_avg", "exp_avg_sq"):
            assert opt.state[p][key].stride() == p.stride()
    for s, t, b in zip(module.backtracker.snapshot, tensors, before):
        assert s.stride() == t.stride() and torch.equal(s, b)
    # a restore now puts back exactly the snapshot's values
    module.backtracker.update(torch.tensor([False]), opt, sync_free)
    for t, b in zip(state_tensors(opt), before):
        assert torch.equal(t, b)


def fake_checkpoints(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        with zipfile.ZipFile(folder / name, "w") as z:
            z.writestr("data.pkl", name)
    return folder


def test_checkpoint_order_and_what_prepare_keeps(tmp_path):
    """Latest step first, Lightning's -vN copies by their number; a job starting afresh clears the
    folder, one resuming keeps what comes up to its start, a given ckpt_path is never removed."""
    names = ["step_000004.ckpt", "step_000008.ckpt", "step_000008-v1.ckpt", "step_000010-v2.ckpt",
             "step_000010-v10.ckpt", "step_000012.ckpt", "other.ckpt"]
    folder = fake_checkpoints(tmp_path / "job" / "checkpoints", names)
    order = [p.name for p in resume.step_checkpoints(folder)]
    assert order == ["step_000012.ckpt", "step_000010-v10.ckpt", "step_000010-v2.ckpt", "step_000008-v1.ckpt",
                     "step_000008.ckpt", "step_000004.ckpt"]
    cfg = {"iters": 12, "optim.lr": 0.01}
    (folder / "step_000012.ckpt").write_bytes(b"cut off")  # killed while writing it
    assert resume.prepare(tmp_path / "job", cfg, 4, resume=True) is None  # no record: not this job's
    assert [p.name for p in folder.glob("*.ckpt")] == ["other.ckpt"]
    fake_checkpoints(folder, names[:5])
    (folder / "step_000012.ckpt").write_bytes(b"cut off")
    found = resume.prepare(tmp_path / "job", cfg, 4, resume=True)  # recorded now: this job's
    assert found.name == "step_000010-v10.ckpt"
    assert sorted(p.name for p in folder.glob("step_*")) == sorted(names[:5])
    assert resume.prepare(tmp_path / "job", {**cfg, "iters": 13}, 4, resume=True) is None  # another setting
    assert not list(folder.glob("step_*"))
    fake_checkpoints(folder, names[:3])
    given = folder / "step_000004.ckpt"
    assert resume.prepare(tmp_path / "job", cfg, 4, resume=True, given=given) is None
    assert [p.name for p in folder.glob("step_*")] == ["step_000004.ckpt"]
    resume.keep_latest(tmp_path / "job")
    assert [p.name for p in folder.glob("step_*")] == ["step_000004.ckpt"]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_job_folder_that_another_process_runs_is_left_alone(tmp_path, image_file):
    """A job whose folder's lock another live process holds touches nothing there (not its
    checkpoints, not its metrics): a multirun logs it and goes on, a single run is a one-line error."""
    import fcntl

    img = image_file(20, 18, 1)
    sweep, job = tmp_path / "sweep", tmp_path / "sweep" / "job"
    theirs = job / "checkpoints" / "step_000008.ckpt"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"another process's checkpoint")
    common = [f"image={img}", "iters=4", "input.depth=4", "ckpt_every=2", "skip_completed=true", *QUIET, *TINY_NET]
    multi = [sys.executable, "-m", "dip_lightning", "-m", *common, f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=job"]
    fd = os.open(job / job_lock.NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"pid 1 on elsewhere\n")
        swept = subprocess.run(multi, capture_output=True, text=True, timeout=300)
        single = subprocess.run([sys.executable, "-m", "dip_lightning", *common, f"hydra.run.dir={job}"],
                                capture_output=True, text=True, timeout=300)
    finally:
        os.close(fd)
    assert swept.returncode == 0 and "being run by another process (pid 1 on elsewhere)" in swept.stdout + swept.stderr
    assert theirs.read_bytes() == b"another process's checkpoint" and not (job / "metrics.json").exists()
    errors = [line for line in single.stderr.splitlines() if line.startswith("error:")]
    assert single.returncode == 2 and len(errors) == 1 and "another process" in errors[0], single.stderr
    assert "Traceback" not in single.stderr
    again = subprocess.run(multi, capture_output=True, text=True, timeout=300)  # the lock is free now
    assert again.returncode == 0
    assert json.loads((job / "metrics.json").read_text())["status"] == "completed" and not theirs.exists()


def test_a_bad_checkpoint_is_one_line(compose_cfg, image_file, tmp_path):
    """ckpt_path: a missing file, a folder, a corrupt file, a pickle that is no checkpoint, a torch
    file that is not Lightning's, and a checkpoint of another setting: each one line naming the file."""
    import pickle

    path = image_file(20, 20, 3)
    common = [f"image={path}", "iters=4", "input.depth=4", "ckpt_every=2", *QUIET, *TINY_NET]
    run(compose_cfg(*common, out="first"))
    good = tmp_path / "first" / "checkpoints" / "step_000002.ckpt"
    assert good.is_file()
    (tmp_path / "junk.ckpt").write_text("junk")
    (tmp_path / "half.ckpt").write_bytes(good.read_bytes()[:2000])
    pickle.dump({"a": 1}, open(tmp_path / "pickle.ckpt", "wb"))
    torch.save({"state_dict": {}}, tmp_path / "torch.ckpt")
    cases = [("none.ckpt", "does not exist"), (".", "is a folder"), ("junk.ckpt", "cannot be read as a checkpoint"),
             ("half.ckpt", "cannot be read as a checkpoint"), ("pickle.ckpt", "cannot be read as a checkpoint"),
             ("torch.ckpt", "is not a Lightning checkpoint")]
    for i, (name, words) in enumerate(cases):
        with pytest.raises((ValueError, OSError)) as info:
            run(compose_cfg(*common, f"ckpt_path={tmp_path / name}", out=f"bad{i}"))
        msg = str(info.value)
        assert msg.startswith("ckpt_path=") and words in msg and "\n" not in msg, (name, msg)
    with pytest.raises(ValueError, match=r"^ckpt_path=.* was written by another setting \(net\..*; resume with"):
        run(compose_cfg(*common, "net.channels_down=[8,8,16]", f"ckpt_path={good}", out="other"))
    # a method with extra (non-tensor) state in its checkpoint resumes: the check skips such entries
    run(compose_cfg(*common, "method=sgld", out="sgld"))
    sgld = tmp_path / "sgld" / "checkpoints" / "step_000002.ckpt"
    assert run(compose_cfg(*common, "method=sgld", f"ckpt_path={sgld}", out="sgld2"))["metrics"]["status"] == "completed"
