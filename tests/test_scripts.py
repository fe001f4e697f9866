"""scripts/reproduce.py and scripts/compare.py on tiny synthetic data."""
import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_NET, synthetic_image

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data" / "set5"
    d.mkdir(parents=True)
    for i, name in enumerate(["baby", "bird"]):
        Image.fromarray((synthetic_image(40, 36, 3, seed=i) * 255).astype(np.uint8)).save(d / f"{name}.png")
    return tmp_path / "data"


def test_reproduce_quick_table_and_resume(data_dir, tmp_path, monkeypatch, capsys):
    rep = load("reproduce")
    args = ["--suite", "sr-set5-x4", "--data", str(data_dir), "--quick", "--work", str(tmp_path / "work"),
            "--out", str(tmp_path / "table.md"), "iters=3", "input.depth=4", "threads=1", *TINY_NET]
    assert rep.main(args) == 0
    text = (tmp_path / "table.md").read_text()
    lines = [l for l in text.splitlines() if l.startswith("|")]
    assert lines[0] == "| image | ours (dB) | paper (dB) | Δ (dB) | iters | wall (s) |"
    assert [l.split("|")[1].strip() for l in lines[2:]] == ["baby", "bird", "average"]
    assert "31.49" in lines[2] and "29.90" in lines[4] and "NOT comparable" in text
    ours = float(lines[2].split("|")[2])
    assert 5 < ours < 60
    # a re-run skips the images already done
    monkeypatch.setattr(rep, "run", lambda cfg: (_ for _ in ()).throw(AssertionError("re-ran a finished image")))
    assert rep.main(args) == 0
    assert (tmp_path / "table.md").read_text() == text


def test_reproduce_pack_fits_same_size_images_together_with_the_lone_results(data_dir, tmp_path, capsys):
    """--pack 2: baby and bird (one size) in one packed run, 'cat, 2' (another size) alone; in float64
    every image's PSNR equals its lone run's, since a packed image keeps its lone run's seed. Names
    with Hydra's special characters (',', '[') pass through as quoted overrides."""
    Image.fromarray((synthetic_image(44, 36, 3, seed=7) * 255).astype(np.uint8)).save(data_dir / "set5" / "cat, 2.png")
    rep = load("reproduce")
    common = ["--suite", "sr-set5-x4", "--data", str(data_dir), "--quick", "iters=4", "input.depth=4", "threads=1",
              "trainer.precision=64-true", "resize=null", *TINY_NET]
    tables = {}
    for pack in (1, 2):
        work = tmp_path / f"work[{pack}], x"
        assert rep.main(common + ["--pack", str(pack), "--work", str(work)]) == 0
        rows = {l.split("|")[1].strip(): l.split("|") for l in (work / "table.md").read_text().splitlines()
                if l.startswith("| ") and not l.startswith("| image")}
        tables[pack] = {k: float(v[2]) for k, v in rows.items()}
    assert list(tables[2]) == ["baby", "bird", "cat, 2", "average"]
    assert (tmp_path / "work[2], x" / "pack-baby-bird" / "fit1" / "restored.png").is_file()
    assert not (tmp_path / "work[2], x" / "cat, 2" / "fit0").exists() and (tmp_path / "work[2], x" / "cat, 2" / "restored.png").is_file()
    for name in tables[1]:
        assert tables[2][name] == pytest.approx(tables[1][name], abs=0.011), name
    out = capsys.readouterr().out
    assert "packed 2" in out and "fitted packed" in (tmp_path / "work[2], x" / "table.md").read_text()
    assert rep.main(common + ["--pack", "0", "--work", str(tmp_path / "w0")]) == 2


def test_reproduce_needs_the_suite_folder(tmp_path, capsys):
    rep = load("reproduce")
    assert rep.main(["--suite", "inpaint11-50", "--data", str(tmp_path), "--quick"]) == 2
    assert "inpainting11/" in capsys.readouterr().err


def test_compare_table_and_plot(tmp_path, image_file):
    cmp = load("compare")
    out = tmp_path / "cmp"
    assert cmp.main(["--out", str(out), "net=skip,resnet", f"image={image_file(32, 32, 3)}", "iters=3",
                     "input.depth=4", "logger=none", "threads=1"]) == 0
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert [r["net"] for r in rows] == ["skip", "resnet"]
    assert int(rows[0]["params"]) == 2_217_831 - 32 * 128 * 9 + 4 * 128 * 9 - 32 * 4 + 4 * 4
    assert all(float(r["gflop_per_iter"]) > 0 and float(r["psnr_best"]) > 0 for r in rows)
    assert (out / "compare.png").stat().st_size > 1000 and (out / "compare.md").is_file()


def test_sr_protocol_shaves_the_border():
    import torch
    from dip_lightning.metrics import psnr_y_shaved, rgb_to_y

    a = torch.rand(3, 20, 20)
    b = a.clone()
    b[:, :4, :] = 0  # damage only the shaved top border
    b[:, -5:, :] = 1
    assert psnr_y_shaved(a, b) == float("inf")
    assert torch.allclose(rgb_to_y(torch.ones(3, 2, 2)), torch.full((1, 2, 2), 235 / 255))
