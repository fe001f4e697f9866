#!/usr/bin/env python
"""Reproduce a table of the paper: run every image of a suite through `run()` with the paper's
recipe and evaluation protocol, and write a markdown table (ours vs the paper).

    python scripts/reproduce.py --suite sr-set5-x4 --data DIR [--quick] [--pack K] [--out FILE] [--work DIR]

DIR holds set5/, set14/, inpainting11/, kodak24/ (the layout of the project's shared data folder).
Runs are resumable: an image whose result (eval.json) is already in the work folder is skipped.
``--pack K`` fits up to K images of one size at once in one packed net (``pack_images``); each
image is fitted with the same seed as alone, images of a size of their own run alone.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dip_lightning import paper
from dip_lightning.api import compose_config, to_overrides
from dip_lightning.metrics import psnr_full, psnr_y_shaved
from dip_lightning.io import IMAGE_EXT, load_image
from dip_lightning.overrides import QUIET
from dip_lightning.run import run



@dataclass
class Suite:
    folder: str
    overrides: list[str]
    metric: str  # 'y_shaved' (SR) | 'full'
    paper_per_image: dict[str, float] = field(default_factory=dict)
    paper_average: float | None = None


SUITES = {
    "sr-set5-x4": Suite("set5", ["experiment=paper_sr"], "y_shaved", paper.SR_X4["set5"], paper.SR_X4_AVERAGE["set5"]),
    "sr-set14-x4": Suite("set14", ["experiment=paper_sr"], "y_shaved", paper.SR_X4["set14"],
                         paper.SR_X4_AVERAGE["set14"]),
    "sr-set5-x8": Suite("set5", ["experiment=paper_sr_x8"], "y_shaved", {}, paper.SR_X8_AVERAGE["set5"]),
    "sr-set14-x8": Suite("set14", ["experiment=paper_sr_x8"], "y_shaved", {}, paper.SR_X8_AVERAGE["set14"]),
    # the paper's restoration table: 50% of pixels missing, the barbara recipe
    "inpaint11-50": Suite("inpainting11", ["experiment=paper_restore"], "full", paper.INPAINT_50,
                          paper.INPAINT_50_AVERAGE),
    # σ = 25 with the F16 recipe; the paper's CBM3D-9 images are not public, so no paper column
    "denoise-kodak24-25": Suite("kodak24", ["experiment=paper_denoise"], "full"),
}
QUICK = ["resize=64", "iters=60", "eval_every=5"]


def evaluate(result: dict, metric: str) -> float:
    restored, truth = result["restored"], result["ground_truth"]
    return psnr_y_shaved(restored, truth) if metric == "y_shaved" else psnr_full(restored, truth)


def run_group(paths: list[Path], suite: Suite, work: Path, extra: list[str]) -> list[dict]:
    """Restore one image, or several of one size packed into one run; save and return their rows."""
    t0 = time.perf_counter()
    if len(paths) == 1:
        out = work / paths[0].stem
        cfg = compose_config(suite.overrides + to_overrides({"image": str(paths[0])}) + extra
                             + to_overrides({"paths.output_dir": str(out)}))
        results = [run(cfg)]
    else:
        out = work / ("pack-" + "-".join(p.stem for p in paths))
        packed = {"image": str(paths[0]), "pack": len(paths), "pack_images": [str(p) for p in paths]}
        cfg = compose_config(suite.overrides + to_overrides(packed) + extra
                             + to_overrides({"paths.output_dir": str(out)}))
        results = run(cfg)["fits"]
    wall = (time.perf_counter() - t0) / len(paths)  # a packed run's time, shared equally
    rows = []
    for path, result in zip(paths, results):
        row = {"image": path.stem, "psnr": round(evaluate(result, suite.metric), 2),
               "iters": result["metrics"]["iters_done"], "wall_s": round(wall, 1), "packed": len(paths)}
        done = work / path.stem / "eval.json"
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(row) + "\n")
        rows.append(row)
    return rows


def groups_of(paths: list[Path], pack: int, shape_of) -> list[list[Path]]:
    """Consecutive groups of at most ``pack`` images that share a shape (C, H, W), in file order."""
    by_shape: dict[tuple, list[Path]] = {}
    for p in paths:
        by_shape.setdefault(tuple(shape_of(p)), []).append(p)
    out = []
    for same in by_shape.values():
        out += [same[i:i + pack] for i in range(0, len(same), pack)]
    return sorted(out, key=lambda g: paths.index(g[0]))


def table(rows: list[dict], suite: Suite, name: str, quick: bool) -> str:
    def fmt(v):
        return "—" if v is None else f"{v:.2f}"

    lines = []
    if quick:
        lines.append(f"**{name}, --quick: shrunk images and iterations — NOT comparable to the paper.**\n")
    if any(r.get("packed", 1) > 1 for r in rows):
        lines.append("Images of one size were fitted packed (--pack); a packed image's wall time is its pack's / K.\n")
    lines += ["| image | ours (dB) | paper (dB) | Δ (dB) | iters | wall (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        p = suite.paper_per_image.get(r["image"])
        d = None if p is None else r["psnr"] - p
        lines.append(f"| {r['image']} | {r['psnr']:.2f} | {fmt(p)} | {fmt(d)} | {r['iters']} | {r['wall_s']:.1f} |")
    ours = statistics.mean(r["psnr"] for r in rows)
    pav = suite.paper_average
    d = None if pav is None else ours - pav
    lines.append(f"| average | {ours:.2f} | {fmt(pav)} | {fmt(d)} | {sum(r['iters'] for r in rows)} | "
                 f"{sum(r['wall_s'] for r in rows):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", required=True, choices=sorted(SUITES))
    ap.add_argument("--data", required=True, type=Path, help="folder holding set5/, set14/, inpainting11/, kodak24/")
    ap.add_argument("--quick", action="store_true", help="64-px images, 60 steps: minutes on a CPU, not comparable")
    ap.add_argument("--out", type=Path, help="markdown table (default: <work>/table.md)")
    ap.add_argument("--work", type=Path, help="per-image results (default: outputs/reproduce/<suite>[-quick])")
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--pack", type=int, default=1, metavar="K",
                    help="fit up to K images of one size at once in one packed net (default 1: one by one)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every image, e.g. iters=500")
    args = ap.parse_args(argv)

    suite = SUITES[args.suite]
    folder = args.data / suite.folder
    if not folder.is_dir():
        print(f"error: {folder} does not exist; --data must hold {suite.folder}/", file=sys.stderr)
        return 2
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT)[: args.limit]
    if not images:
        print(f"error: no images in {folder}", file=sys.stderr)
        return 2
    if args.pack < 1:
        print(f"error: --pack {args.pack}: give the number of images fitted at once, at least 1", file=sys.stderr)
        return 2
    work = args.work or Path("outputs/reproduce") / (args.suite + ("-quick" if args.quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    extra = QUIET + (QUICK if args.quick else []) + list(args.overrides)
    todo = [p for p in images if not (work / p.stem / "eval.json").is_file()]
    if args.pack > 1 and todo:
        resize = compose_config(suite.overrides + extra + to_overrides({"image": str(todo[0])})).get("resize")
        groups = groups_of(todo, args.pack, lambda p: load_image(p, resize).shape)
    else:
        groups = [[p] for p in todo]
    done = len(images) - len(todo)
    for group in groups:
        for row in run_group(group, suite, work, extra):
            done += 1
            packed = f", packed {row['packed']}" if row["packed"] > 1 else ""
            print(f"[{done}/{len(images)}] {row['image']}: {row['psnr']:.2f} dB ({row['iters']} steps, "
                  f"{row['wall_s']:.0f} s{packed})", flush=True)
    rows = [json.loads((work / p.stem / "eval.json").read_text()) for p in images]
    text = table(rows, suite, args.suite, args.quick)
    out = args.out or work / "table.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
