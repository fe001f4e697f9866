#!/usr/bin/env python
"""The front page's gallery: observation | restored | ground truth, with PSNRs, one row per task.

    python scripts/gallery.py [--image coffee] [--size 128] [--iters 1000] [--sigma S] [--work DIR]
        [--out docs/figures/gallery.png] [OVERRIDES...]

One multirun over ``task=denoise,sr,inpaint`` (the task configs' σ = 25, ×4, the text mask; ``--sigma``
sets the denoising job's, run as a multirun of its own) on one image, then one picture: per task
the observation, labelled with the noise its job ran with (SR: its bicubic upsampling's PSNR), the
restored image (the EMA for denoising, the paper's output there; the last iterate otherwise, and
for denoising too when ``exp_weight=null`` turns the EMA off: "DIP (no EMA)") and the ground truth,
each labelled, written small (PNG). OVERRIDES go to every job (e.g. ``threads=1``, a smaller net).
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
import yaml

from dip_lightning.io import load_image, save_image
from dip_lightning.multirun import launch
from dip_lightning.pictures import panel
from dip_lightning.overrides import QUIET, format_value

#: task -> (its observation's label, the restored image shown, its PSNR's key); denoising's label
#: says the noise its job ran with (``observation_label``)
TASKS = {"denoise": ("noisy", "restored_ema.png", "psnr_ema_final"),
         "sr": ("LR, bicubic", "restored.png", "psnr_final"),
         "inpaint": ("masked", "restored.png", "psnr_final")}


def observation_label(job: Path, task: str) -> str:
    """The observation's label; denoising's with the noise of the job's composed config
    (``noisy sigma=50``, as the captions' font has no σ; ``Poisson peak=30``), plain ``noisy`` when
    the job kept no config."""
    name = TASKS[task][0]
    config = job / ".hydra" / "config.yaml"
    if task != "denoise" or not config.is_file():
        return name
    t = (yaml.safe_load(config.read_text()) or {}).get("task") or {}
    if t.get("noise") == "poisson":
        return f"Poisson peak={float(t.get('peak')):g}"
    return f"{name} sigma={float(t.get('sigma')):g}" if t.get("sigma") is not None else name


def row(job: Path, task: str) -> torch.Tensor:
    """observation | restored | ground truth of one job, labelled (without an EMA image, as with
    ``exp_weight=null``, the last iterate, labelled so)."""
    _, restored, key = TASKS[task]
    m = json.loads((job / "metrics.json").read_text())
    dip = "DIP"
    if key == "psnr_ema_final" and (m.get(key) is None or not (job / restored).is_file()):  # the EMA off
        restored, key, dip = "restored.png", "psnr_final", "DIP (no EMA)"
    images = [load_image(job / f) for f in ("observed.png", restored, "ground_truth.png")]
    images = [im.expand(3, -1, -1) if im.shape[0] == 1 else im for im in images]
    observed = observation_label(job, task) + (f" {m['psnr_observed']:.2f} dB" if m.get("psnr_observed") else "")
    return panel(images, [observed, f"{dip} {m[key]:.2f} dB", "ground truth"], min_width=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="coffee", help="a skimage sample name or an image file")
    ap.add_argument("--size", type=int, default=128, help="resize= (longer side)")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=None,
                    help="the denoising job's noise std in 0-255 units (task.sigma; default: its config's, 25)")
    ap.add_argument("--work", type=Path, default=Path("outputs/gallery"))
    ap.add_argument("--out", type=Path, default=Path("docs/figures/gallery.png"))
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every job")
    args = ap.parse_intermixed_args(argv)
    work = args.work.resolve()
    common = [f"image={format_value(args.image)}", f"resize={args.size}", f"iters={args.iters}", *QUIET,
              f"hydra.sweep.dir={format_value(str(work))}", "hydra.sweep.subdir=${hydra:runtime.choices.task}",
              *args.overrides]
    # task.sigma is denoising's key only (the other tasks' configs refuse it): its own multirun then
    runs = ([[f"task={','.join(TASKS)}"]] if args.sigma is None else
            [["task=denoise", f"task.sigma={args.sigma:g}"], [f"task={','.join(t for t in TASKS if t != 'denoise')}"]])
    for run in runs:
        rc = launch([*run, *common])
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
