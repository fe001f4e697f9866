#!/usr/bin/env python
"""The front page's gallery: observation | restored | ground truth, with PSNRs, one row per task.

    python scripts/gallery.py [--image coffee] [--size 128] [--iters 1000] [--work DIR]
        [--out docs/figures/gallery.png] [OVERRIDES...]

One multirun over ``task=denoise,sr,inpaint`` (σ = 25, ×4, the text mask) on one image, then one
picture: per task the observation (SR: its bicubic upsampling's PSNR), the restored image (the EMA for denoising, the paper's output
there; the last iterate otherwise) and the ground truth, each labelled, written small (PNG).
OVERRIDES go to every job (e.g. ``threads=1``, a smaller net).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import dip_lightning  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from dip_lightning.io import load_image, save_image
from dip_lightning.multirun import launch
from dip_lightning.outputs import panel
from dip_lightning.overrides import QUIET, format_value

#: task -> (its observation's label, the restored image shown, its PSNR's key)
TASKS = {"denoise": ("noisy s=25", "restored_ema.png", "psnr_ema_final"),
         "sr": ("LR, bicubic", "restored.png", "psnr_final"),
         "inpaint": ("masked", "restored.png", "psnr_final")}


def row(job: Path, task: str) -> torch.Tensor:
    """observation | restored | ground truth of one job, labelled."""
    name, restored, key = TASKS[task]
    m = json.loads((job / "metrics.json").read_text())
    images = [load_image(job / f) for f in ("observed.png", restored, "ground_truth.png")]
    images = [im.expand(3, -1, -1) if im.shape[0] == 1 else im for im in images]
    observed = name + (f" {m['psnr_observed']:.2f} dB" if m.get("psnr_observed") else "")
    return panel(images, [observed, f"DIP {m[key]:.2f} dB", "ground truth"], min_width=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="coffee", help="a skimage sample name or an image file")
    ap.add_argument("--size", type=int, default=128, help="resize= (longer side)")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=Path("outputs/gallery"))
    ap.add_argument("--out", type=Path, default=Path("docs/figures/gallery.png"))
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every job")
    args = ap.parse_intermixed_args(argv)
    work = args.work.resolve()
    rc = launch([f"task={','.join(TASKS)}", f"image={format_value(args.image)}", f"resize={args.size}",
                 f"iters={args.iters}", *QUIET, f"hydra.sweep.dir={format_value(str(work))}",
                 "hydra.sweep.subdir=${hydra:runtime.choices.task}", *args.overrides])
    if rc:
        print(f"error: the gallery's multirun exited with {rc}", file=sys.stderr)
        return rc
    rows = [row(work / task, task) for task in TASKS]
    width = max(r.shape[-1] for r in rows)
    rows = [torch.nn.functional.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows]
    gap = torch.ones(3, 6, width)
    picture = torch.cat([x for r in rows for x in (r, gap)][:-1], dim=-2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_image(picture, args.out)
    print(f"{args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
