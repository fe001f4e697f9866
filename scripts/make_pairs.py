#!/usr/bin/env python
"""Write a folder of observation / reference pairs from the bundled images, one pair per image and
noise model, in the layout ``scripts/reproduce.py --suite pairs`` reads (``dip_lightning.pairs``):

    python scripts/make_pairs.py --out DIR [--images camera,coffee] [--size 128]
        [--noise gaussian,poisson,impulse,speckle] [--severity 3] [--seed 0] [--format png16|png|npy]

DIR/reference/<image>_<noise>.png is the clean image (8-bit PNG: a centre crop of --size px);
DIR/observed/<image>_<noise>.<ext> its observation under the noise model at ImageNet-C's
--severity (``dip_lightning.tasks.denoise``), drawn from --seed: a 16-bit PNG (default), an 8-bit
PNG (quantised as many benchmarks are) or a float .npy (exact). Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import dip_lightning  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image

from dip_lightning.formats import write_png16
from dip_lightning.io import load_image, save_image
from dip_lightning.seeds import stream_seed
from dip_lightning.tasks.denoise import NOISES, Denoise


def crop_center(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if min(h, w) < size:
        raise SystemExit(f"make_pairs.py: error: the image is {h}×{w}, smaller than --size {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top:top + size, left:left + size]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="the pairs folder to write (observed/, reference/)")
    ap.add_argument("--images", default="camera,coffee", help="bundled images or paths, comma-separated")
    ap.add_argument("--size", type=int, default=128, help="side of the centre crop in pixels (default 128)")
    ap.add_argument("--noise", default=",".join(NOISES), help="noise models, comma-separated (default: all four)")
    ap.add_argument("--severity", type=int, default=3, choices=range(1, 6), help="ImageNet-C level 1-5 (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the noise draws (default 0)")
    ap.add_argument("--format", choices=("png16", "png", "npy"), default="png16", help="the observations' format")
    args = ap.parse_args(argv)
    noises = [n for n in args.noise.split(",") if n]
    bad = [n for n in noises if n not in NOISES]
    if bad:
        ap.error(f"--noise {','.join(bad)}: choose from {', '.join(NOISES)}")
    (args.out / "observed").mkdir(parents=True, exist_ok=True)
    (args.out / "reference").mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(x for x in args.images.split(",") if x):
        clean = crop_center(load_image(image), args.size)
        clean = torch.from_numpy(np.round(clean.numpy() * 255) / 255).float()  # the reference as its 8-bit PNG holds it
        stem = Path(image).stem
        for j, noise in enumerate(noises):
            name = f"{stem}_{noise}"
            generator = torch.Generator().manual_seed(stream_seed(args.seed * 1000 + i * 10 + j, "observation"))
            y = Denoise(noise=noise, severity=args.severity).simulate(clean[None], generator)[0]
            save_image(clean, args.out / "reference" / f"{name}.png")
            hwc = y.numpy().transpose(1, 2, 0)
            if args.format == "npy":
                np.save(args.out / "observed" / f"{name}.npy", hwc.astype(np.float32))
            elif args.format == "png":
                plane = hwc[..., 0] if hwc.shape[2] == 1 else hwc
                Image.fromarray(np.round(plane * 255).astype(np.uint8)).save(args.out / "observed" / f"{name}.png")
            else:
                write_png16(args.out / "observed" / f"{name}.png", np.round(hwc * 65535).astype(np.uint16))
            print(f"{name}: {noise} at severity {args.severity}")
    print(f"wrote {args.out}/observed and {args.out}/reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
