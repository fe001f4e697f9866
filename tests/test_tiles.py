"""Tiled fits (tile=SIZE): exact sizes, weights that sum to one, no seams, local operators only,
memory set by the tile, and resume."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dip_lightning import tiles
from dip_lightning.run import run
from dip_lightning.regions import observe, plan_tiles as plan
from conftest import QUIET, TINY_NET

SMALL = [*QUIET, *TINY_NET, "input.depth=4", "eval_every=5", "es.patience=1000"]


@pytest.mark.parametrize("h, w, tile, overlap, align, margin",
                         [(37, 50, 16, 6, 1, 2), (45, 31, 20, 9, 1, 0), (97, 45, 28, 12, 4, 4), (40, 24, 64, 8, 1, 0)])
def test_blending_weights_sum_to_one_and_tiles_cover_the_image(h, w, tile, overlap, align, margin):
    boxes = tiles.plan(h, w, tile, overlap, align)
    alphas = tiles.weights(boxes, h, w, margin)
    total = torch.zeros(h, w, dtype=torch.float64)
    for (t, left, bh, bw), a in zip(boxes, alphas):
        assert t + bh <= h and left + bw <= w and a.shape == (bh, bw)
        total[t:t + bh, left:left + bw] += a
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12)
    for n in (h, w):  # every start on the alignment but the last, which ends at the border
        sp = tiles.spans(n, tile, overlap, align)
        assert all(s % align == 0 for s, _ in sp[:-1]) and sum(sp[-1]) == n
    const = [torch.full((1, 2, bh, bw), 0.37) for (_, _, bh, bw) in boxes]  # a constant image stays constant
    assert torch.allclose(tiles.blend(const, boxes, alphas, h, w), torch.full((1, 2, h, w), 0.37), atol=1e-6)


@pytest.mark.parametrize("channels, size", [(1, (45, 37)), (3, (41, 50))], ids=["gray", "rgb"])
def test_odd_sized_images_come_back_at_their_size(compose_cfg, image_file, channels, size):
    path = image_file(*size, channels)
    res = run(compose_cfg(f"image={path}", "iters=6", "tile=32", "tile_overlap=12", "tile_batch=2", *SMALL))
    m = res["metrics"]
    assert tuple(res["restored"].shape) == (channels, *size) and m["image_size"] == list(size)
    assert m["tiles"] == 4 and m["tile_grid"] == [2, 2] and m["iters_done"] == 6 and m["status"] == "completed"
    saved = json.loads((res["output_dir"] / "metrics.json").read_text())
    assert saved["psnr_final"] == m["psnr_final"] and (res["output_dir"] / "restored.png").is_file()
    assert (res["output_dir"] / "tiles" / "group001" / "result.pt").is_file()


def test_the_real_plan_blends_a_constant_image_to_itself(compose_cfg, image_file):
    cfg = compose_cfg(f"image={image_file(53, 38, 3)}", "tile=24", "tile_overlap=10", "task=sr", "task.factor=2",
                      *SMALL)
    whole = observe(cfg)
    t = plan(cfg, whole)
    assert (whole.height, whole.width) == (52, 38)  # modcrop to the factor
    assert all(b[0] % 2 == 0 and b[1] % 2 == 0 and b[2] % 2 == 0 and b[3] % 2 == 0 for b in t.boxes)
    ones = [torch.ones(1, 3, b[2], b[3]) for b in t.boxes]
    assert torch.allclose(tiles.blend(ones, t.boxes, t.alphas, 52, 38), torch.ones(1, 3, 52, 38), atol=1e-6)


def test_sr_tiles_are_aligned_to_the_factor_and_come_back_at_the_hr_size(compose_cfg, image_file):
    res = run(compose_cfg(f"image={image_file(44, 52, 3)}", "task=sr", "task.factor=4", "tile=30", "tile_overlap=20",
                          "iters=4", *SMALL))
    m = res["metrics"]
    assert m["tile"] == 28 and m["image_size"] == [44, 52] and tuple(res["restored"].shape) == (3, 44, 52)
    assert m["psnr_observed"] is not None and m["psnr_final"] is not None


def test_an_inpainting_tile_without_a_known_pixel_is_handled(compose_cfg, image_file):
    res = run(compose_cfg(f"image={image_file(64, 64, 3)}", "task=inpaint", "task.mask=box",
                          "task.box=[0.0,0.0,0.7,0.7]", "tile=32", "tile_overlap=8", "iters=4", *SMALL))
    m = res["metrics"]
    assert m["tile_empty"] >= 1 and m["status"] == "completed" and tuple(res["restored"].shape) == (3, 64, 64)


def test_a_global_operator_is_refused_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dip_lightning", "task=deepinv_mri", "tile=32", "iters=2", "resize=32",
                           *QUIET, f"hydra.run.dir={tmp_path / 'mri'}"], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot be restored in tiles" in errors[0] and "tile=null" in errors[0]
    assert "Traceback" not in proc.stderr


def texture(path, size: int = 96):
    """A stationary texture (low-passed white noise, RGB): every part of it is equally hard to
    restore, so the band at tile borders and the rest differ only by seams."""
    import numpy as np
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(np.random.default_rng(0).standard_normal((size, size, 3)), (2.5, 2.5, 0))
    a = (a - a.min()) / (a.max() - a.min()) * 0.7 + 0.15
    Image.fromarray((a * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_no_seams_the_band_at_tile_borders_is_as_good_as_the_rest(compose_cfg, tmp_path):
    """Denoising a 96² texture in 48² tiles (3×3): the pixels within 8 px of an inner tile border
    are restored within 0.3 dB of the others (each side's PSNR over both seeds' pixels)."""
    path = texture(tmp_path / "texture.png")
    band = rest = 0.0
    for seed in (0, 1):
        m = run(compose_cfg(f"image={path}", "task.sigma=25", "iters=150", "tile=48", "tile_overlap=24",
                            f"seed={seed}", "net.channels_down=[16,16,16]", "net.channels_up=[16,16,16]",
                            "net.channels_skip=[4,4,4]", "eval_every=50", "es.patience=1000", *QUIET,
                            out=f"s{seed}"))["metrics"]
        assert m["tiles"] == 9 and m["psnr_final"] > m["psnr_observed"] + 3
        band, rest = band + 10 ** (-m["tile_psnr_seams"] / 10), rest + 10 ** (-m["tile_psnr_rest"] / 10)
    gap = 10 * torch.log10(torch.tensor(band / rest)).item()  # dB by which the band is worse
    assert gap < 0.3, gap


@pytest.mark.slow
def test_a_tiled_fit_peaks_below_the_whole_image_fit(tmp_path):
    """Peak RSS of two processes, one 192² step each: the whole image against 64² tiles."""
    peaks = {}
    for name, tile in (("whole", "null"), ("tiled", "64")):
        out = tmp_path / name
        subprocess.run([sys.executable, "-m", "dip_lightning", "image=astronaut", "resize=192", "iters=1",
                        f"tile={tile}", *QUIET, f"hydra.run.dir={out}"], check=True, capture_output=True)
        peaks[name] = json.loads((out / "metrics.json").read_text())["peak_mem_mb"]
    assert peaks["tiled"] < peaks["whole"] - 150, peaks


def test_a_resumed_tiled_fit_equals_the_uninterrupted_one(compose_cfg, image_file):
    path = image_file(40, 45, 3)
    common = [f"image={path}", "iters=8", "tile=32", "tile_overlap=12", "tile_batch=2", "ckpt_every=4",
              "reg_noise_std=0.05", *SMALL]
    full = run(compose_cfg(*common, out="t"))
    out = full["output_dir"]
    group = out / "tiles" / "group001"  # cut short after step 4 of the second group
    (group / "result.pt").unlink()
    (group / "checkpoints" / "step_000008.ckpt").unlink()
    (out / "metrics.json").unlink()
    again = run(compose_cfg(*common, "skip_completed=true", out="t"))
    assert torch.equal(again["restored"], full["restored"])
    for key in ("psnr_final", "psnr_ema_final", "psnr_best", "ssim_final", "iters_done", "tile_psnr_seams"):
        assert again["metrics"][key] == full["metrics"][key], key


def test_the_tile_benchmark_compares_tiled_with_whole_image_fits(tmp_path):
    """scripts/tile_benchmark.py quality, shrunk: both sides run and the table has their rows."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import tile_benchmark

    assert tile_benchmark.main(["quality", "--tasks", "deblur", "--images", "camera", "--seeds", "0", "--size", "48",
                                "--tile", "32", "--overlap", "12", "--iters", "3", "--work", str(tmp_path),
                                *TINY_NET, "input.depth=4", "threads=1"]) == 0
    table = (tmp_path / "quality.md").read_text()
    assert "| deblur | whole | 1 |" in table and "| deblur | tiled | 1 |" in table


@pytest.mark.slow
def test_a_jobs_peak_memory_is_its_own_not_its_parents():
    """Linux carries ru_maxrss over fork and exec: a job started by a 1 GiB process must still
    report its own peak (VmHWM), or every job of a big sweep process reports the parent's size."""
    big = torch.ones(2 ** 30, dtype=torch.uint8)  # 1 GiB resident in this (the parent) process
    out = subprocess.run([sys.executable, "-c", "from dip_lightning.outputs import peak_memory_mb; print(peak_memory_mb())"],
                         capture_output=True, text=True, check=True).stdout
    assert float(out) < 900 and big.sum() > 0, out


@pytest.mark.parametrize("task", ["deblur", "jpeg", "restore", "flash"])
def test_every_local_task_runs_in_tiles(compose_cfg, image_file, task):
    """Deblurring (the kernel's margin), JPEG (tiles on its 8×8 blocks), restoration and
    flash/no-flash (the flash photo cropped per tile) restore a 70×61 image in 40² tiles (3×3)."""
    path = image_file(70, 61, 3)
    overrides = [f"task={task}"]
    if task == "flash":
        overrides.append(f"task.flash={image_file(70, 61, 3, name='flash.png')}")
    cfg = compose_cfg(f"image={path}", *overrides, "tile=40", "tile_overlap=20", "iters=3", *SMALL)
    boxes = plan(cfg, observe(cfg)).boxes
    if task == "jpeg":  # on the blocks, but for the last tile of a row, which ends at the border
        assert all(b[0] % 8 == 0 or b[0] + b[2] == 70 for b in boxes)
        assert all(b[1] % 8 == 0 or b[1] + b[3] == 61 for b in boxes)
    m = run(cfg)["metrics"]
    assert m["status"] == "completed" and m["image_size"] == [70, 61] and m["tiles"] == len(boxes) == 9
