#!/usr/bin/env python
"""Tiled fits against whole-image fits: quality, seams and memory.

    python scripts/tile_benchmark.py quality [--tasks denoise,sr,deblur] [--images camera,coffee,chelsea]
        [--seeds 0,1] [--size 128] [--tile 64] [--overlap 32] [--iters 1000] [--work DIR] [OVERRIDES...]
    python scripts/tile_benchmark.py memory [--sizes 512,1024,2048] [--tile 128] [--iters 2] [OVERRIDES...]

``quality``: for each task, one multirun of whole-image fits and one of tiled fits (``tile``,
``tile_overlap``) over images × seeds, with the same recipe and steps, in ``<work>/<task>/<whole|
tiled>``. The table gives each side's mean PSNR (final, EMA, best), the tiled fits' PSNR of the
pixels within 8 px of an inner tile border and of the rest (``tile_psnr_seams``, ``tile_psnr_rest``),
and for both sides how far that band is below the rest (from the saved PNGs, the same band for the
whole-image fits: there only the content makes a gap).
``memory``: one tiled job per size (each its own process), a few steps each: its peak memory
(``peak_mem_mb``: the process's peak RSS on a CPU, CUDA's peak allocation on a GPU) beside the memory
check's estimate for one whole-image fit of that size. OVERRIDES go to every job (e.g.
``threads=1``, ``net.channels_down=[32,32,32,32,32]``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

try:
    import dip_lightning  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dip_lightning.multirun import launch
from dip_lightning.overrides import QUIET, format_value

TASKS = {"denoise": ["task=denoise", "task.sigma=25"], "sr": ["task=sr", "task.factor=4"],
         "deblur": ["task=deblur", "task.noise_sigma=5"]}
KEYS = ("psnr_final", "psnr_ema_final", "psnr_best", "tile_psnr_seams", "tile_psnr_rest")


def metrics_under(sweep: Path) -> list[dict]:
    """The completed jobs' metrics.json under ``sweep``."""
    found = [json.loads(p.read_text()) for p in sorted(sweep.glob("**/metrics.json"))
             if "tiles" not in p.relative_to(sweep).parts]
    return [m for m in found if m.get("status") in ("completed", "early_stopped")]


def mean(rows: list[dict], key: str) -> str:
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return "—"
    sd = f" ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else ""
    return f"{statistics.fmean(vals):.2f}{sd}"


def band_gap(row: dict, tile: int, overlap: int, align: int) -> float | None:
    """PSNR of the rest minus PSNR of the band within 8 px of the inner tile borders, of the job's
    restored.png against its ground_truth.png, for the tiling ``tile_benchmark`` uses (the same band
    for a whole-image job, so content alone sets its gap)."""
    import numpy as np
    from PIL import Image

    from dip_lightning.tiles import border_band, plan

    out = Path(row["output_dir"])
    x, gt = (np.asarray(Image.open(out / f), dtype=np.float64) / 255 for f in ("restored.png", "ground_truth.png"))
    h, w = gt.shape[:2]
    band = border_band(plan(h, w, tile // align * align, overlap, align), h, w).numpy()

    def psnr(mask):
        return -10 * np.log10(((x - gt) ** 2)[mask].mean())

    return float(psnr(~band) - psnr(band)) if band.any() else None


def quality(args) -> str:
    lines = ["| task | fits | jobs | final (dB) | EMA (dB) | best (dB) | seams band (dB) | rest (dB) "
             "| band below rest (dB) | wall per job (s) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for task in args.tasks.split(","):
        for kind, tile in (("whole", "null"), ("tiled", str(args.tile))):
            sweep = args.work / task / kind
            rc = launch([*TASKS[task], f"image={args.images}", f"seed={args.seeds}", f"resize={args.size}",
                         f"iters={args.iters}", f"tile={tile}", f"tile_overlap={args.overlap}", *QUIET,
                         f"hydra.sweep.dir={format_value(str(sweep))}", *args.overrides])
            if rc:
                raise SystemExit(f"error: the {kind} {task} sweep exited with {rc}")
            rows = metrics_under(sweep)
            for r in rows:
                r["band_gap"] = band_gap(r, args.tile, args.overlap, 4 if task == "sr" else 1)
            wall = statistics.fmean(r["wall_s"] for r in rows) if rows else float("nan")
            lines.append(f"| {task} | {kind} | {len(rows)} | " + " | ".join(mean(rows, k) for k in (*KEYS, "band_gap"))
                         + f" | {wall:.0f} |")
    return "\n".join(lines) + "\n"


def memory(args) -> str:
    from dip_lightning.api import compose_config
    from dip_lightning.checks import estimate_step_bytes
    from dip_lightning.instantiate import instantiate

    lines = ["| image | tiles | tiled peak memory (MB) | whole-image estimate (MB) | wall (s) |", "|---|---:|---:|---:|---:|"]
    for size in (int(s) for s in args.sizes.split(",")):
        sweep = args.work / "memory" / str(size)
        rc = launch(["task=denoise", f"image={args.image}", f"resize={size}", f"iters={args.iters}", f"tile={args.tile}",
                     f"tile_overlap={args.overlap}", "eval_every=1", *QUIET, f"hydra.sweep.dir={format_value(str(sweep))}",
                     *args.overrides])
        if rc:
            raise SystemExit(f"error: the {size} px job exited with {rc}")
        (m,) = metrics_under(sweep)
        cfg = compose_config([f"image={args.image}", *[o for o in args.overrides if o.startswith(("net.", "input."))]])
        make_input = instantiate(cfg.input)
        net = instantiate(cfg.net, in_channels=make_input.depth, out_channels=m["channels"])
        h, w = m["image_size"]
        whole = estimate_step_bytes(net, make_input.depth, (h, w)) / 2 ** 20
        lines.append(f"| {h}×{w} | {m['tiles']} | {m['peak_mem_mb']:.0f} | {whole:.0f} | {m['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("quality", "memory"))
    ap.add_argument("--tasks", default="denoise,sr")
    ap.add_argument("--images", default="camera,coffee,chelsea", help="quality: skimage sample names or files")
    ap.add_argument("--image", default="astronaut", help="memory: the image (resized to each size)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--size", type=int, default=128, help="quality: resize= (longer side)")
    ap.add_argument("--sizes", default="512,1024,2048", help="memory: the image sizes")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--iters", type=int, default=None, help="steps per fit (quality: 1000, memory: 2)")
    ap.add_argument("--work", type=Path, default=Path("outputs/tile_benchmark"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every job")
    args = ap.parse_intermixed_args(argv)
    args.work = args.work.resolve()
    args.iters = args.iters or (1000 if args.what == "quality" else 2)
    text = quality(args) if args.what == "quality" else memory(args)
    out = args.out or args.work / f"{args.what}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
