"""Every suite (configs/suite/*.yaml) is a recipe that runs and scores what its table says, and the
report lists what a suite expects but no job ran."""
import shutil
from pathlib import Path

import pytest
import yaml

from dip_lightning.report import tables
from dip_lightning.report.jobs import FitRow, fit_rows
from dip_lightning.run import run
from conftest import QUIET, TINY_NET

SUITES = sorted((Path(__file__).resolve().parents[1] / "configs" / "suite").glob("*.yaml"))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the sample images, where this checkout has them


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_every_suite_runs_and_scores_its_protocol_on_its_output(path, compose_cfg, image_file):
    suite = yaml.safe_load(path.read_text())
    gray = path.stem == "denoise-set12-25"
    image = image_file(70, 66, 1 if gray else 3)
    if suite.get("pairs"):  # DIR/observed/NAME.png and DIR/reference/NAME.png (here the same picture)
        for part in ("observed", "reference"):
            (image.parent / part).mkdir()
            shutil.copy(image, image.parent / part / image.name)
        image = image.parent / "observed" / image.name
    cfg = compose_cfg(f"experiment={suite['experiment']}", *suite.get("overrides", []),
                      f"eval_protocol={suite['eval_protocol']}", f"eval_output={suite['eval_output']}",
                      f"image={image}", "iters=4", "eval_every=2", "input.depth=4", *QUIET, *TINY_NET)
    m = run(cfg)["metrics"]
    assert m["status"] == "completed" and m["psnr_eval"] is not None
    assert m["eval_protocol"] == suite["eval_protocol"] and m["eval_output"] == suite["eval_output"]
    if suite["experiment"] == "paper_denoise":  # the recipe's EMA is the paper's comparable image
        assert suite["eval_output"] == "ema" and m["psnr_eval"] == pytest.approx(m["psnr_ema_final"], abs=0.1)
    if suite["paper"]:
        assert suite["paper_average"] == pytest.approx(
            sum(suite["paper"].values()) / len(suite["paper"]), abs=0.015), "paper_average is the per-image mean"


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_the_papers_image_names_are_the_folders(path):
    suite = yaml.safe_load(path.read_text())
    folder = DATA / suite["folder"]
    if not folder.is_dir():
        pytest.skip(f"no {folder} in this checkout")
    stems = {p.stem for p in folder.iterdir()}
    assert set(suite["paper"]) <= stems, sorted(set(suite["paper"]) - stems)


def test_a_suites_images_that_no_job_ran_are_listed_not_averaged(tmp_path):
    """Two of three images ran for seeds 0 and 1, the third only for seed 0: the missing fits are
    listed; the average covers the images that ran, against the paper's mean over those."""
    def fit(image, seed, value):
        return FitRow(f"{image}/seed={seed}", tmp_path, "completed", (), image, seed, {"psnr_eval": value})

    rows = [fit("a", 0, 30.0), fit("a", 1, 31.0), fit("b", 0, 20.0), fit("b", 1, 22.0)]
    missing = tables.missing_rows(rows, ["a", "b", "c"])
    assert [(r.image, r.seed, r.status) for r in missing] == [("c", 0, "missing"), ("c", 1, "missing")]
    assert "| — | c | 1 | missing |" in tables.failed_markdown(rows + missing, "psnr_eval")
    table = tables.image_table(rows, "psnr_eval", {"a": 32.0, "b": 21.0, "c": 40.0}, 31.0, ["a", "b", "c"])
    (avg,) = [r for r in table if r["image"] == "average"]
    assert avg["mean"] == pytest.approx(25.75) and avg["paper"] == pytest.approx(26.5)
    assert avg["covers"] == (2, 3)
    assert "covers 2 of the suite's 3 images" in tables.image_markdown(table, "psnr_eval", True)
    assert tables.missing_rows(rows, None) == [] and tables.missing_rows(rows, ["a", "b"]) == []


def test_a_packed_job_that_failed_counts_each_of_its_images_as_failed(tmp_path):
    """No fit_metrics (it failed before writing them): a failed row per packed image, none missing."""
    job = {"job": "0", "dir": tmp_path, "status": "failed", "metrics": {"status": "failed", "reason": "boom"},
           "params": {"pack_images": f"[{tmp_path}/a.png,'{tmp_path}/b c.png']", "seed": "3"}}
    rows = fit_rows([job])
    assert [(r.image, r.seed, r.status) for r in rows] == [("a", 3, "failed"), ("b c", 3, "failed")]
    assert tables.missing_rows(rows, ["a", "b c"]) == []


def test_curves_band_is_over_seeds(tmp_path):
    """A seed's curve is its mean over the images; the band's rows are the seeds, not the fits."""
    from dip_lightning.report.figures import seed_curves

    def fit(image, seed, curve):
        d = tmp_path / f"{image}{seed}"
        d.mkdir()
        (d / "curves.csv").write_text("step,psnr/gt\n" + "\n".join(f"{i + 1},{v}" for i, v in enumerate(curve)))
        return FitRow(d.name, d, "completed", (), image, seed, {"psnr_eval": curve[-1]})

    rows = [fit("a", 0, [10, 20]), fit("b", 0, [30, 40]), fit("a", 1, [12, 22]), fit("b", 1, [32])]
    steps, seeds, ys = seed_curves(rows, "psnr/gt")
    assert steps == [1, 2] and seeds == [0, 1]
    assert ys.tolist() == [[20, 30], [22, 22]]  # seed 1's image b stopped early: its mean has a alone after
