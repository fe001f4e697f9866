"""The pairs suite: observations made elsewhere (``DIR/observed``) scored against their references
(``DIR/reference``), from a folder ``scripts/make_pairs.py`` writes; a malformed folder is one line."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dip_lightning.io import load_image
from dip_lightning.pairs import check_pairs, reference_of

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**__import__("os").environ, "WANDB_MODE": "disabled"})


def test_make_pairs_writes_the_layout_with_each_noise_model(tmp_path):
    proc = script("make_pairs.py", "--out", str(tmp_path), "--images", "camera,coffee", "--size", "32",
                  "--severity", "2", "--format", "npy")
    assert proc.returncode == 0, proc.stderr[-2000:]
    observed = check_pairs(tmp_path)
    assert [p.stem for p in observed] == [f"{i}_{n}" for i in ("camera", "coffee")
                                          for n in ("gaussian", "impulse", "poisson", "speckle")]
    for p in observed:
        y, x = load_image(str(p)), load_image(reference_of(str(p)))
        assert y.shape == x.shape == (1 if p.stem.startswith("camera") else 3, 32, 32)
        assert 0 < float(((y - x) ** 2).mean()) < 0.1  # noisy, and of this reference


def test_a_malformed_folder_is_one_line(tmp_path):
    (tmp_path / "observed").mkdir()
    proc = script("reproduce.py", "--suite", "pairs", "--data", str(tmp_path), "--quick")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1
    assert "has no reference/; expected DIR/observed/NAME.EXT and DIR/reference/NAME.EXT" in proc.stderr
    (tmp_path / "reference").mkdir()
    np.save(tmp_path / "observed" / "a.npy", np.zeros((8, 8), np.uint8))
    np.save(tmp_path / "reference" / "b.npy", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"unpaired images: a \(observed only\), b \(reference only\)"):
        check_pairs(tmp_path)
    with pytest.raises(ValueError, match="no reference for image="):
        reference_of(str(tmp_path / "observed" / "a.npy"))


@pytest.mark.slow
def test_the_pairs_suite_through_joblib_reports_the_jobs_psnrs(tmp_path):
    data, work = tmp_path / "pairs", tmp_path / "work"
    assert script("make_pairs.py", "--out", str(data), "--images", "camera,coffee", "--size", "40",
                  "--noise", "gaussian").returncode == 0
    proc = script("reproduce.py", "--suite", "pairs", "--data", str(data), "--quick", "--work", str(work),
                  "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "iters=20")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = {p.parent.parent.name: json.loads(p.read_text()) for p in work.glob("*/seed=0/metrics.json")}
    assert set(jobs) == {"camera_gaussian", "coffee_gaussian"}
    assert all(m["status"] == "completed" and m["psnr_best"] > m["psnr_observed"] for m in jobs.values())
    rows = {r["image"]: float(r["mean"]) for r in csv.DictReader((work / "summary.csv").open()) if r["kind"] == "image"}
    assert rows == {name: pytest.approx(m["psnr_eval"], abs=1e-3) for name, m in jobs.items()}
    report = (work / "report.md").read_text() if (work / "report.md").exists() else proc.stdout
    assert "psnr_observed" in report and "es_gap" in report
    assert "each image scored against its own reference" in report  # no paper column, no Δ against a paper
    assert "| paper |" not in report and "ours − paper" not in report and "comparable to the paper" not in report
    assert "NOT comparable to a run at the full recipe" in report  # --quick


def test_packed_pairs_get_each_its_own_reference(compose_cfg, tmp_path):
    """pack_images of two observations with the pairs suite's reference resolver: each packed fit is
    scored against its own reference, as its lone run is; a lone reference for a pack is one line."""
    from conftest import QUIET, TINY_NET
    from dip_lightning.run import run

    data = tmp_path / "pairs"
    assert script("make_pairs.py", "--out", str(data), "--images", "astronaut,coffee", "--size", "24",
                  "--noise", "gaussian", "--format", "npy").returncode == 0
    observed = check_pairs(data)
    common = ("observed=true", "reference='${dip_pair_reference:${image},${pack_images}}'", "iters=6", "eval_every=3",
              "input.depth=4", *QUIET, *TINY_NET)
    packed = run(compose_cfg(f"image={observed[0]}", f"pack_images=[{observed[0]},{observed[1]}]", *common,
                             out="packed"))["metrics"]
    for i, obs in enumerate(observed):
        lone = run(compose_cfg(f"image={obs}", *common, out=f"lone{i}"))["metrics"]
        fit = packed["fit_metrics"][i]
        assert fit["image"] == lone["image"] == obs.stem
        assert fit["psnr_observed"] == lone["psnr_observed"] is not None  # the same observation against the same reference
        assert fit["psnr_final"] is not None
    with pytest.raises(ValueError, match="give one reference per observation"):
        run(compose_cfg(f"image={observed[0]}", f"pack_images=[{observed[0]},{observed[1]}]", "observed=true",
                        f"reference={reference_of(str(observed[0]))}", *common[2:], out="one"))
