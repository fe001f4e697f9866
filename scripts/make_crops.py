#!/usr/bin/env python
"""Centre crops of a folder's images, for comparisons on small held-out-style images.

    python scripts/make_crops.py --data DIR --size 128 [--limit N] --out DIR

Each image (sorted by name, the first ``--limit``) is centre-cropped to ``--size`` × ``--size``
pixels (no resampling) and saved as PNG under ``--out`` with its own stem.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    images = sorted(p for p in args.data.iterdir() if p.suffix.lower() in IMAGE_EXT) if args.data.is_dir() else []
    if not images:
        print(f"error: no images in {args.data}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    s = args.size
    for p in images[:args.limit]:
        im = Image.open(p)
        if min(im.size) < s:
            print(f"error: {p.name} is {im.size[0]}x{im.size[1]}, smaller than --size {s}", file=sys.stderr)
            return 2
        left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
        im.crop((left, top, left + s, top + s)).save(args.out / f"{p.stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
