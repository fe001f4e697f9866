"""scripts/reproduce.py and scripts/compare.py as Hydra multiruns on tiny synthetic data, and the
one report (collect.py) they write: rows, means and standard deviations against the jobs' files."""
import csv
import importlib.util
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_report_html import problems
from conftest import TINY_NET, synthetic_image

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TINY = ["iters=3", "input.depth=4", "threads=1", *TINY_NET]

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[sweeps]'")


def load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def save(path: Path, h: int, w: int, channels: int = 3, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((synthetic_image(h, w, channels, seed=seed) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def data_dir(tmp_path):
    for i, name in enumerate(["baby", "bird", "head"]):
        save(tmp_path / "data" / "set5" / f"{name}.png", 40, 36, seed=i)
    return tmp_path / "data"


def metrics_of(work: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for p in work.rglob("metrics.json"):
        m = json.loads(p.read_text())
        out[(m["image"], m["seed"])] = m
    return out


def groups_csv(work: Path) -> list[dict]:
    return list(csv.DictReader(open(work / "summary.csv")))


@pytest.mark.slow
def test_quick_suite_on_two_joblib_workers_with_two_seeds_and_its_report(data_dir, tmp_path):
    """One job per image × seed through the joblib launcher; the report's per-image means and
    standard deviations, its average row and its group row are those of the jobs' metrics.json."""
    rep = load("reproduce")
    work = tmp_path / "work"
    args = ["--suite", "sr-set5-x4", "--data", str(data_dir), "--quick", "--work", str(work), "--out",
            str(tmp_path / "table.md"), *TINY, "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    assert rep.main(args) == 0
    jobs = metrics_of(work)
    assert set(jobs) == {(i, s) for i in ("baby", "bird", "head") for s in (0, 1)}
    assert all((work / i / f"seed={s}" / "metrics.json").is_file() for i, s in jobs)
    assert all(m["status"] == "completed" and m["eval_protocol"] == "y_shaved" for m in jobs.values())
    rows = groups_csv(work)
    per_image = {r["image"]: r for r in rows if r["kind"] == "image"}
    for image in ("baby", "bird", "head"):
        vals = [jobs[(image, s)]["psnr_eval"] for s in (0, 1)]
        assert float(per_image[image]["mean"]) == pytest.approx(statistics.mean(vals), abs=1e-9)
        assert float(per_image[image]["std"]) == pytest.approx(statistics.stdev(vals), abs=1e-9)
        assert int(per_image[image]["n"]) == 2
        assert float(per_image[image]["paper"]) == {"baby": 31.49, "bird": 31.80, "head": 31.04}[image]
    (avg,) = [r for r in rows if r["kind"] == "average"]
    per_seed = [statistics.mean(jobs[(i, s)]["psnr_eval"] for i in ("baby", "bird", "head")) for s in (0, 1)]
    assert float(avg["mean"]) == pytest.approx(statistics.mean(per_seed), abs=1e-9)
    assert float(avg["std"]) == pytest.approx(statistics.stdev(per_seed), abs=1e-9)
    # three of Set5's five images: the reference is the paper's mean over those three, not its 29.90
    assert float(avg["paper"]) == pytest.approx(statistics.mean([31.49, 31.80, 31.04]), abs=1e-9)
    assert float(avg["delta"]) == pytest.approx(float(avg["mean"]) - float(avg["paper"]), abs=1e-9)
    (group,) = [r for r in rows if r["kind"] == "group"]
    assert int(group["n"]) == 6
    text = (tmp_path / "table.md").read_text()
    assert "NOT comparable" in text and "| all | **average** |" in text
    for name in ("summary.md", "summary.csv", "jobs.csv", "curves.png", "grid.png", "report.html"):
        assert (work / name).is_file(), name
    summary = (work / "summary.md").read_text()
    assert "NOT comparable" in summary and "covers 3 of the suite's 5 images" in summary
    for image in ("butterfly", "woman"):  # in the suite, not in the data: listed, not averaged
        assert all(f"| — | {image} | {s} | missing |" in summary for s in (0, 1)), image
    page = (work / "report.html").read_text()
    assert "python scripts/reproduce.py --suite sr-set5-x4" in page and "dip-restore -m" in page
    assert "package torch" in page and "Environment" in page and "covers 3 of the suite's 5 images" in page
    assert problems(page) == [] and "class='banner'" in page  # clean tables; "NOT comparable" stands out


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["gpus", "submitit_local"])
def test_a_suite_runs_on_the_gpus_and_submitit_launchers(launcher, data_dir, tmp_path, monkeypatch):
    """The same quick suite through the one-job-per-GPU launcher (2 fake GPUs) and submitit's local
    executor (SLURM's plugin, one process per job): every job completes and the report has it."""
    monkeypatch.setenv("DIP_FAKE_GPUS", "2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    extra = ["hydra.launcher.timeout_min=10"] if launcher == "submitit_local" else []
    work = tmp_path / "work"
    assert load("reproduce").main(["--suite", "sr-set5-x4", "--data", str(data_dir), "--quick", "--work", str(work),
                                   "--limit", "2", *TINY, f"hydra/launcher={launcher}", *extra]) == 0
    jobs = metrics_of(work)
    assert set(jobs) == {("baby", 0), ("bird", 0)} and all(m["status"] == "completed" for m in jobs.values())
    if launcher == "gpus":
        slots = [json.loads(p.read_text())["slot"] for p in work.rglob("gpu_slot.json")]
        assert len(slots) == 2 and set(slots) <= {0, 1}
    else:
        assert (work / ".submitit").is_dir()
    per_image = {r["image"]: float(r["mean"]) for r in groups_csv(work) if r["kind"] == "image"}
    assert per_image == pytest.approx({i: jobs[(i, 0)]["psnr_eval"] for i in ("baby", "bird")}, abs=1e-9)


@pytest.mark.slow
def test_a_second_launch_runs_no_completed_job(data_dir, tmp_path):
    rep = load("reproduce")
    work = tmp_path / "work"
    args = ["--suite", "sr-set5-x4", "--data", str(data_dir), "--quick", "--work", str(work), "--limit", "2", *TINY]
    assert rep.main(args) == 0
    files = {p: p.stat().st_mtime_ns for p in work.rglob("metrics.json")}
    assert len(files) == 2
    redo = work / "bird" / "seed=0" / "metrics.json"
    redo.write_text(json.dumps({**json.loads(redo.read_text()), "status": "interrupted"}))  # cut short
    files[redo] = redo.stat().st_mtime_ns
    assert rep.main(args) == 0
    changed = [p for p, t in files.items() if p.stat().st_mtime_ns != t]
    assert changed == [redo] and json.loads(redo.read_text())["status"] == "completed"
    # another setting into the same folder: the finished jobs are not taken for its results
    files = {p: p.stat().st_mtime_ns for p in files}
    assert rep.main(args + ["iters=4"]) == 0
    assert all(p.stat().st_mtime_ns != t for p, t in files.items())
    assert {json.loads(p.read_text())["iters_done"] for p in files} == {4}


def group_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])


def running_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process groups from /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_script_stops_its_jobs(data_dir, tmp_path, sig):
    """SIGTERM (kill, a scheduler) or SIGINT (Ctrl-C) to reproduce.py reaches the multirun and its
    joblib workers: each running job writes status interrupted, its worker exits by itself (well
    within the script's grace period, after which it would kill them), and no process of the sweep
    is left writing into the folder that a relaunch would resume."""
    from dip_lightning.multirun import GRACE_S

    work = tmp_path / "work"
    cmd = [sys.executable, str(SCRIPTS / "reproduce.py"), "--suite", "sr-set5-x4", "--data", str(data_dir), "--quick",
           "--work", str(work), "--limit", "2", "iters=1000000", "input.depth=4", "threads=1", *TINY_NET,
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    script = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jobs = [work / name / "seed=0" for name in ("baby", "bird")]
    deadline = time.time() + 240
    while not all((j / "environment.json").is_file() for j in jobs) and time.time() < deadline:
        time.sleep(0.5)
    assert script.poll() is None, "the sweep ended before it could be stopped"
    assert all((j / "environment.json").is_file() for j in jobs), "the jobs did not start"
    time.sleep(3)  # into the fit
    children = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")
                if str(work) in p.read_bytes().decode(errors="replace") and int(p.parent.name) != script.pid]
    groups = {group_of(pid) for pid in children if Path(f"/proc/{pid}").exists()}
    assert groups and script.pid not in groups  # the multirun runs in a group of its own ...
    sent = time.time()
    script.send_signal(sig)
    rc = script.wait(timeout=GRACE_S + 60)
    assert time.time() - sent < GRACE_S / 2  # the jobs' processes ended by themselves
    assert rc == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGINT)  # Ctrl-C: ends by SIGINT
    for j in jobs:  # ... which got the signal too
        assert json.loads((j / "metrics.json").read_text())["status"] == "interrupted", j
    assert not [pid for g in groups for pid in running_in_group(g)]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_script_leaves_no_sweep_running(data_dir, tmp_path):
    """SIGKILL of reproduce.py (no handler runs): its multirun and the joblib workers get the
    parent-death signal, each running job writes status interrupted and every process of the sweep
    ends within seconds; a relaunch into the same folder then finishes every job, one row per image."""
    import csv

    work = tmp_path / "work"
    cmd = [sys.executable, str(SCRIPTS / "reproduce.py"), "--suite", "sr-set5-x4", "--data", str(data_dir), "--quick",
           "--work", str(work), "--limit", "2", "input.depth=4", "threads=1", *TINY_NET,
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    script = subprocess.Popen([*cmd, "iters=1000000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jobs = [work / name / "seed=0" for name in ("baby", "bird")]
    deadline = time.time() + 240
    while not all((j / "environment.json").is_file() for j in jobs) and time.time() < deadline:
        time.sleep(0.5)
    assert script.poll() is None and all((j / "environment.json").is_file() for j in jobs), "the jobs did not start"
    time.sleep(3)  # into the fit
    children = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")
                if str(work) in p.read_bytes().decode(errors="replace") and int(p.parent.name) != script.pid]
    groups = {group_of(pid) for pid in children if Path(f"/proc/{pid}").exists()}
    assert groups
    script.kill()
    script.wait()
    deadline = time.time() + 30
    while [pid for g in groups for pid in running_in_group(g)] and time.time() < deadline:
        time.sleep(0.2)
    assert not [pid for g in groups for pid in running_in_group(g)], "the sweep outlived its script"
    for j in jobs:
        assert json.loads((j / "metrics.json").read_text())["status"] == "interrupted", j
    done = subprocess.run([*cmd, "iters=3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(json.loads((j / "metrics.json").read_text())["status"] == "completed" for j in jobs)
    rows = list(csv.DictReader(open(work / "jobs.csv")))
    assert sorted(Path(r["image"]).stem for r in rows) == ["baby", "bird"]  # one row per image


@pytest.mark.slow
def test_an_interrupted_job_continues_from_its_last_readable_checkpoint(data_dir, tmp_path, capfd):
    """A job cut short (its latest checkpoint half-written) resumes from the one before, and ends
    with the metrics of the uninterrupted job; checkpoints of another setting are removed."""
    rep = load("reproduce")
    work = tmp_path / "work"
    args = ["--suite", "sr-set5-x4", "--data", str(data_dir), "--quick", "--work", str(work), "--limit", "1",
            *TINY, "iters=12", "ckpt_every=4"]
    assert rep.main(args) == 0
    job = work / "baby" / "seed=0"
    full = json.loads((job / "metrics.json").read_text())
    assert full["resumed_at_step"] is None
    ckpts = job / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == [f"step_{s:06d}.ckpt" for s in (4, 8, 12)]
    (job / "metrics.json").write_text(json.dumps({**full, "status": "interrupted", "iters_done": 8}))
    (ckpts / "step_000012.ckpt").unlink()  # killed at step 8 while writing its checkpoint:
    data = (ckpts / "step_000008.ckpt").read_bytes()
    (ckpts / "step_000008.ckpt").write_bytes(data[: len(data) // 2])
    first = torch.load(ckpts / "step_000004.ckpt", weights_only=False)
    first["callbacks"]["Throughput"]["fit_s"] = 1000.0  # as if the first part had fitted for 1000 s
    torch.save(first, ckpts / "step_000004.ckpt")
    capfd.readouterr()
    assert rep.main([*args, "ckpt_keep_all=false"]) == 0
    said = capfd.readouterr()
    assert not re.findall(r"\S+\.py:\d+: .*", said.err)  # no warning: a resume is nothing to warn about
    resumed = json.loads((job / "metrics.json").read_text())
    assert resumed["status"] == "completed" and resumed["resumed_at_step"] == 4
    for key in ("psnr_final", "psnr_ema_final", "psnr_best", "best_step", "psnr_eval", "iters_done"):
        assert resumed[key] == full[key], key
    assert resumed["wall_s"] > resumed["fit_s"] > 1000 > full["fit_s"]  # both count the part before the resume
    assert [p.name for p in ckpts.glob("*.ckpt")] == ["step_000012.ckpt"]  # the latest alone, not the one resumed from
    (job / "metrics.json").write_text(json.dumps({**full, "status": "interrupted"}))  # killed after the last checkpoint
    assert rep.main([*args, "ckpt_keep_all=false"]) == 0
    last = json.loads((job / "metrics.json").read_text())
    assert last["status"] == "completed" and last["resumed_at_step"] == 12 and last["psnr_eval"] == full["psnr_eval"]
    (ckpts / "step_000100.ckpt").write_bytes(data)  # left by another setting
    assert rep.main([*args, "iters=8"]) == 0
    other = json.loads((job / "metrics.json").read_text())
    assert other["resumed_at_step"] is None and other["iters_done"] == 8
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == ["step_000004.ckpt", "step_000008.ckpt"]


def test_sr_evaluation_region_is_the_original_scripts(tmp_path):
    """HR 71×93 (not a multiple of 32): the original SR loader centre-crops it to 64×64 with the
    float box ((w − w')/2, (h − h')/2, …), which PIL rounds (3.5 -> 4, 14.5 -> 14), before making
    the LR image; the score is Y with 4/5 px shaved."""
    from dip_lightning.metrics import psnr_y_shaved

    path = save(tmp_path / "data" / "set5" / "odd.png", 71, 93)
    rep = load("reproduce")
    work = tmp_path / "work"
    # the paper's 5-level net (multiple 32), as the original crops for; one step
    assert rep.main(["--suite", "sr-set5-x4", "--data", str(tmp_path / "data"), "--work", str(work), "iters=1",
                     "input.depth=4", "threads=1"]) == 0
    img = Image.open(path)
    w, h = img.size
    nw, nh = w - w % 32, h - h % 32
    ref = np.asarray(img.crop(((w - nw) / 2, (h - nh) / 2, (w + nw) / 2, (h + nh) / 2)))  # the original's call
    job = work / "odd" / "seed=0"
    gt = np.asarray(Image.open(job / "ground_truth.png"))
    assert gt.shape == (64, 64, 3) and np.array_equal(gt, ref)
    restored = torch.from_numpy(np.array(Image.open(job / "restored.png"))).permute(2, 0, 1).float() / 255
    truth = torch.from_numpy(ref.copy()).permute(2, 0, 1).float() / 255
    m = json.loads((job / "metrics.json").read_text())
    assert m["psnr_eval"] == pytest.approx(psnr_y_shaved(restored, truth), abs=0.01)


@pytest.mark.slow
def test_reproduce_pack_puts_same_size_images_in_one_job_and_reports_each(data_dir, tmp_path):
    """--pack 2: baby and bird in one packed job, head alone, odd (another size) alone; in float64
    each image's score equals its lone run's, and the report has one row per image."""
    save(data_dir / "set5" / "odd, 2.png", 44, 36, seed=7)
    rep = load("reproduce")
    common = ["--suite", "sr-set5-x4", "--data", str(data_dir), "--quick", *TINY, "trainer.precision=64-true",
              "resize=null", "fit_size=pad"]
    scores = {}
    for pack in (1, 2):
        work = tmp_path / f"work{pack}"
        assert rep.main(common + ["--pack", str(pack), "--work", str(work)]) == 0
        scores[pack] = {r["image"]: float(r["mean"]) for r in groups_csv(work) if r["kind"] == "image"}
    assert (tmp_path / "work2" / "pack-baby-bird" / "seed=0" / "fit1" / "restored.png").is_file()
    assert (tmp_path / "work2" / "odd, 2" / "seed=0" / "restored.png").is_file()
    assert set(scores[2]) == {"baby", "bird", "head", "odd, 2"}
    for name, value in scores[1].items():
        assert scores[2][name] == pytest.approx(value, abs=0.011), name
    assert rep.main(common + ["--pack", "0", "--work", str(tmp_path / "w0")]) == 2


def test_reproduce_needs_the_suite_folder(tmp_path, capsys):
    rep = load("reproduce")
    assert rep.main(["--suite", "inpaint11-50", "--data", str(tmp_path), "--quick"]) == 2
    assert "inpainting11/" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_two_nets_two_seeds_two_images(wandb_offline, tmp_path):
    """8 jobs in one multirun; the report groups them by net: 2 rows with n = 4; report.html holds
    nothing from outside itself."""
    for i in range(2):
        save(tmp_path / "imgs" / f"im{i}.png", 33, 31, seed=i)
    cmp = load("compare")
    out = tmp_path / "cmp"
    assert cmp.main(["--out", str(out), "net=skip,resnet", "seed=0,1", f"image={tmp_path / 'imgs'}", "iters=3",
                     "input.depth=4", "threads=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]) == 0
    assert len(list(out.rglob("metrics.json"))) == 8
    assert not list(tmp_path.rglob("offline-run-*")) and not list(tmp_path.rglob("*.wandb"))  # W&B offline: no run
    groups = [r for r in groups_csv(out) if r["kind"] == "group"]
    assert sorted(r["group"] for r in groups) == ["net=resnet", "net=skip"]
    assert all(int(r["n"]) == 4 for r in groups)
    for r in groups:
        net = r["group"].split("=")[1]
        vals = [json.loads(p.read_text())["psnr_best"] for p in (out / net).rglob("metrics.json")]
        assert float(r["mean"]) == pytest.approx(statistics.mean(vals), abs=1e-9)
        assert float(r["std"]) == pytest.approx(statistics.stdev(vals), abs=1e-9)
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert [r["net"] for r in rows] == ["skip", "resnet"] and all(float(r["gflop_per_iter"]) > 0 for r in rows)
    assert int(rows[0]["params"]) == 2_217_831 - 32 * 128 * 9 + 4 * 128 * 9 - 32 * 4 + 4 * 4
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    for ref in ("http:", "https:", "href=", "file:", "url("):
        assert ref not in page, ref
    assert all(src.startswith("data:") for src in page.split("src='")[1:])


@pytest.mark.parametrize("bad, says", [
    (["experiment=method_dip,method_sgld"], ["experiment=method_sgld", "method.burn_in"]),  # burn-in beyond iters
    (["net=skip,skp"], ["net=skp", "skp"]),  # a misspelt net
    (["net=skip", "net.bogus=1"], ["net=skip", "bogus"]),  # a key the config does not have
], ids=["sgld-burn-in", "net-name", "net-key"])
def test_compare_stops_on_a_bad_setting_before_any_job_runs(tmp_path, capsys, bad, says):
    """A setting that cannot run is one error line that names it, before the multirun starts."""
    out = tmp_path / "cmp"
    rc = load("compare").main(["--out", str(out), *bad, "seed=0", "image=camera", "resize=32", "iters=10",
                               "threads=1"])
    err = capsys.readouterr().err
    assert rc == 2 and all(s in err for s in says) and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(out.rglob("metrics.json"))


def test_compare_a_folder_of_one_image_and_packed_jobs(tmp_path):
    """A folder with a single image runs that image (not the default); pack=2 fits 2 seeds per job."""
    only = save(tmp_path / "one" / "only.png", 20, 24, channels=1)
    cmp = load("compare")
    out = tmp_path / "cmp"
    assert cmp.main(["--out", str(out), "net=skip", "seed=0", f"image={only.parent}", "pack=2", *TINY]) == 0
    (job,) = [json.loads(p.read_text()) for p in out.glob("skip/*/seed=0/metrics.json")]
    assert job["fits"] == 2 and [m["image"] for m in job["fit_metrics"]] == ["only", "only"]
    (group,) = [r for r in groups_csv(out) if r["kind"] == "group"]
    assert int(group["n"]) == 2  # the packed job's two fits (seeds 0 and 1)


def test_a_swept_setting_gets_its_own_job_folders(data_dir, tmp_path):
    """optim.lr=a,b on a suite: one folder per (lr, image), never one job's result for another's."""
    rep = load("reproduce")
    work = tmp_path / "work"
    assert rep.main(["--suite", "sr-set5-x4", "--data", str(data_dir), "--quick", "--work", str(work), "--limit", "1",
                     *TINY, "optim.lr=0.01,0.02"]) == 0
    runs = sorted(p.parent.relative_to(work).as_posix() for p in work.rglob("metrics.json"))
    assert runs == ["optim.lr=0.01/baby/seed=0", "optim.lr=0.02/baby/seed=0"]
    groups = [r for r in groups_csv(work) if r["kind"] == "group"]
    assert sorted(r["group"] for r in groups) == ["optim.lr=0.01", "optim.lr=0.02"]
    (avg,) = {r["delta"] for r in groups_csv(work) if r["kind"] == "average" and r["group"] == "optim.lr=0.01"}
    assert float(avg) == pytest.approx(  # one image of five: Δ against that image's paper value, not 29.90
        float([r for r in groups_csv(work) if r["kind"] == "average" and r["group"] == "optim.lr=0.01"][0]["mean"])
        - 31.49, abs=1e-9)



def test_the_gallery_labels_the_noise_it_ran_and_shows_the_last_iterate_without_the_ema(tmp_path, monkeypatch):
    """scripts/gallery.py, shrunk, with --sigma 50 and the EMA off (exp_weight=null): the three tasks
    side by side in one picture; the denoising job ran with σ = 50 and its row says so ("noisy
    sigma=50", not the config's 25), and shows the last iterate labelled "DIP (no EMA)" where there
    is no EMA image to show."""
    work, out = tmp_path / "work", tmp_path / "gallery.png"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "gallery.py"), "--size", "32", "--iters", "10", "--sigma", "50",
                           "--work", str(work), "--out", str(out), *TINY_NET, "input.depth=4", "threads=1",
                           "exp_weight=null"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in work.iterdir() if p.is_dir()) == ["denoise", "inpaint", "sr"]
    m = json.loads((work / "denoise" / "metrics.json").read_text())
    assert m["psnr_ema_final"] is None and not (work / "denoise" / "restored_ema.png").exists()
    assert m["psnr_observed"] < 17  # σ = 50 (σ = 25 gives about 20 dB)
    gallery = load("gallery")
    shown = {}
    monkeypatch.setattr(gallery, "panel", lambda images, labels, **kw: shown.setdefault("labels", labels))
    gallery.row(work / "denoise", "denoise")
    assert shown["labels"] == [f"noisy sigma=50 {m['psnr_observed']:.2f} dB", f"DIP (no EMA) {m['psnr_final']:.2f} dB",
                               "ground truth"]
    w, h = Image.open(out).size
    assert h > 3 * 32 and w >= 3 * 32 and out.stat().st_size < 400 * 1024
