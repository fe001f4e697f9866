#!/usr/bin/env python
"""Compare architectures on the same observation and seeds.

    python scripts/compare.py net=skip,unet,resnet,decoder task=denoise image=camera resize=128 iters=500

Every other argument is a Hydra override shared by all runs. ``image=`` may be a folder: then every
image in it is run and the table averages over them. Writes <out>/compare.md, compare.csv and one
plot of all PSNR curves, compare.png (--out, default outputs/compare/<time>).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import statistics
import sys
from pathlib import Path

from dip_lightning.api import compose_config
from dip_lightning.flops import step_flops
from dip_lightning.io import IMAGE_EXT
from dip_lightning.instantiate import instantiate
from dip_lightning.overrides import QUIET
from dip_lightning.problem import build_fit
from dip_lightning.run import run

COLUMNS = ["net", "params", "gflop_per_iter", "it_per_s", "psnr_final", "psnr_best", "psnr_ema_final", "best_step"]


def flops_per_iter(cfg) -> float:
    """GFLOP of one training step of the composed configuration (built as run() builds it)."""
    fit = build_fit(cfg, int(cfg.seed), cfg.image, None, instantiate(cfg.input))
    return step_flops(fit.net, fit.z, fit.task, fit.prob.y_padded) / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="output folder (default outputs/compare/<time>)")
    ap.add_argument("overrides", nargs="+", help="net=a,b,c and shared Hydra overrides")
    args = ap.parse_args(argv)
    nets, shared = None, []
    for o in args.overrides:
        if o.startswith("net="):
            nets = o.split("=", 1)[1].split(",")
        else:
            shared.append(o)
    if not nets:
        print("error: give the architectures to compare, e.g. net=skip,unet,resnet,decoder", file=sys.stderr)
        return 2
    image = next((o.split("=", 1)[1] for o in shared if o.startswith("image=")), None)
    images = [image]
    if image and Path(image).is_dir():
        images = [str(p) for p in sorted(Path(image).iterdir()) if p.suffix.lower() in IMAGE_EXT]
        shared = [o for o in shared if not o.startswith("image=")]
    out = args.out or Path("outputs/compare") / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)

    rows, curves = [], {}
    for net in nets:
        per_image = []
        for i, img in enumerate(images):
            over = [f"net={net}", *shared, *QUIET, f"paths.output_dir={out / net / str(i)}"]
            if img is not None and len(images) > 1:
                over.append(f"image={img}")
            cfg = compose_config(over)
            res = run(cfg)
            if i == 0:  # one architecture, one size: the table shows the first image's
                res["metrics"]["gflop_per_iter"] = flops_per_iter(cfg)
            per_image.append(res)
            print(f"{net} [{i + 1}/{len(images)}]: best {res['metrics']['psnr_best']} dB", flush=True)
        ms = [r["metrics"] for r in per_image]

        def mean(key):
            vals = [m[key] for m in ms if m.get(key) is not None]
            return round(statistics.mean(vals), 3) if vals else None

        rows.append({"net": net, "params": ms[0]["params"], "gflop_per_iter": round(ms[0]["gflop_per_iter"], 3),
                     **{k: mean(k) for k in COLUMNS[3:]}})
        curves[net] = per_image[0]["history"]
    write_outputs(rows, curves, out)
    return 0


def write_outputs(rows: list[dict], curves: dict, out: Path) -> None:
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    fmt = lambda v: "—" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v}")  # noqa: E731
    md = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    text = "\n".join(md) + "\n"
    (out / "compare.md").write_text(text)
    print(text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for net, h in curves.items():
        key = "psnr/gt" if any(v == v for v in h["psnr/gt"]) else "psnr/obs"
        ax.plot(h["step"], h[key], label=f"{net} ({key})")
    ax.set_xlabel("step")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "compare.png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
