#!/usr/bin/env python
"""Reproduce a table of the paper: run every image of a suite through `run()` with the paper's
recipe and evaluation protocol, and write a markdown table (ours vs the paper).

    python scripts/reproduce.py --suite sr-set5-x4 --data DIR [--quick] [--out FILE] [--work DIR]

DIR holds set5/, set14/, inpainting11/, kodak24/ (the layout of the project's shared data folder).
Runs are resumable: an image whose result (eval.json) is already in the work folder is skipped.
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
from dip_lightning.api import compose_config
from dip_lightning.evaluate import psnr_full, psnr_y_shaved
from dip_lightning.run import run

IMAGE_EXT = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


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
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "snapshot_every=0", "snapshot_log_spaced=false"]


def evaluate(result: dict, metric: str) -> float:
    restored, truth = result["restored"], result["ground_truth"]
    return psnr_y_shaved(restored, truth) if metric == "y_shaved" else psnr_full(restored, truth)


def run_image(path: Path, suite: Suite, work: Path, extra: list[str]) -> dict:
    """Restore one image (or reuse its saved result) and return its row."""
    out = work / path.stem
    done = out / "eval.json"
    if done.is_file():
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    cfg = compose_config(suite.overrides + [f"image={path}"] + extra + [f"paths.output_dir={out}"])
    result = run(cfg)
    row = {"image": path.stem, "psnr": round(evaluate(result, suite.metric), 2),
           "iters": result["metrics"]["iters_done"], "wall_s": round(time.perf_counter() - t0, 1)}
    done.write_text(json.dumps(row) + "\n")
    return row


def table(rows: list[dict], suite: Suite, name: str, quick: bool) -> str:
    def fmt(v):
        return "—" if v is None else f"{v:.2f}"

    lines = []
    if quick:
        lines.append(f"**{name}, --quick: shrunk images and iterations — NOT comparable to the paper.**\n")
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
    work = args.work or Path("outputs/reproduce") / (args.suite + ("-quick" if args.quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    extra = QUIET + (QUICK if args.quick else []) + list(args.overrides)
    rows = []
    for i, path in enumerate(images, 1):
        row = run_image(path, suite, work, extra)
        print(f"[{i}/{len(images)}] {row['image']}: {row['psnr']:.2f} dB ({row['iters']} steps, {row['wall_s']:.0f} s)",
              flush=True)
        rows.append(row)
    text = table(rows, suite, args.suite, args.quick)
    out = args.out or work / "table.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
