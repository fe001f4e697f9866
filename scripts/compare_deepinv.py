#!/usr/bin/env python
"""Our DIP beside deepinv's ``DeepImagePrior`` on deepinv physics, at the same number of steps.

    python scripts/compare_deepinv.py [--tasks deepinv_blur,deepinv_inpaint,deepinv_mri]
        [--images camera,astronaut] [--seeds 0,1,2] [--iters 500] [--at 300] [--no-deepinv]
        [--size 64] [--work DIR] [--out FILE] [OVERRIDES...]

Ours: one Hydra multirun (tasks × images × seeds, paper defaults, seeded; OVERRIDES go to every
job, e.g. ``hydra/launcher=joblib``), its jobs in ``--work``/ours. deepinv's: for every job the same
observation y and physics (``dip_lightning.run.build`` of the job's config, so the same seed gives
the same mask and noise), fitted by ``deepinv.models.DeepImagePrior`` with its defaults
(``ConvDecoder``, Adam at 1e-2, z of 256 × 4 × 4 drawn after ``torch.manual_seed(seed)``). Both are
scored by the same PSNR of the last iterate against the ground truth (MRI: the magnitude); ours
also by its EMA (the reconstructor's output), at ``--iters`` and at each ``--at`` step (read from
the same fit's curve), beside A^T y (deepinv's "no learning" estimate: the zero-filled image for MRI,
the back-projection for CT). ``--no-deepinv`` leaves deepinv's side out. The table (mean ± std over
seeds, wall time per fit) goes to ``--out`` (default ``<work>/compare_deepinv.md``).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

try:
    import dip_lightning  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dip_lightning.multirun import launch
from dip_lightning.overrides import QUIET, format_value, image_name

COLUMNS = ["task", "image", "n", "aty_psnr", "ours_psnr", "ours_std", "ours_ema_psnr", "ours_ema_std", "deepinv_psnr",
           "deepinv_std", "ours_wall_s", "deepinv_wall_s"]


def ema_at(job_dir: Path, step: int) -> float | None:
    """The EMA's PSNR at ``step`` on the fit's curve (curves.csv), None where it has no such row."""
    with open(job_dir / "curves.csv", newline="") as f:
        for row in csv.DictReader(f):
            if int(float(row["step"])) == step and row.get("psnr_ema/gt"):
                return float(row["psnr_ema/gt"])
    return None


def our_jobs(work: Path, tasks: list[str], images: list[str], seeds: str, shared: list[str]) -> list[dict]:
    """Run our side as one multirun; return each job's overrides and metrics."""
    ov = [f"task={','.join(tasks)}", "image=" + ",".join(format_value(i) for i in images), f"seed={seeds}",
          *QUIET, "skip_completed=true", f"hydra.sweep.dir={format_value(str(work))}",
          "hydra.sweep.subdir='${hydra.runtime.choices.task}/${dip_job_dir:${image},${pack_images},${seed}}'", *shared]
    rc = launch(ov)
    if rc:
        raise SystemExit(f"compare_deepinv.py: error: the multirun exited with {rc}")
    jobs = []
    for t in tasks:
        for img in images:
            for s in seeds.split(","):
                d = work / t / image_name(img) / f"seed={s}"
                jobs.append({"task": t, "image": img, "seed": int(s), "dir": d,
                             "metrics": json.loads((d / "metrics.json").read_text())})
    return jobs


def deepinv_fit(job: dict, shared: list[str]) -> dict:
    """deepinv's DeepImagePrior on the job's own observation and physics."""
    import torch

    from dip_lightning.api import compose_config
    from dip_lightning.deepinv import import_deepinv
    from dip_lightning.metrics import psnr
    from dip_lightning.run import build

    dinv = import_deepinv()
    fixed = [o for o in shared if not o.startswith("hydra")]
    cfg = compose_config([f"task={job['task']}", f"image={format_value(job['image'])}", f"seed={job['seed']}",
                          *QUIET, *fixed, "paths.output_dir=" + format_value(str(job['dir'] / 'deepinv'))])
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    fit = build(cfg).fits[0]
    task, y, x_true = fit.task, fit.prob.y, fit.prob.x_true
    torch.manual_seed(job["seed"])
    generator = dinv.models.ConvDecoder(img_size=task.image_shape)
    model = dinv.models.DeepImagePrior(generator, img_size=[256, 4, 4], iterations=int(cfg.iters))
    t0 = time.perf_counter()
    x_hat = model(y, task.physics)
    wall = time.perf_counter() - t0
    return {"psnr": float(psnr(task.view(x_hat.detach()), x_true)), "wall_s": wall}


def stats(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="deepinv_blur,deepinv_inpaint,deepinv_mri")
    ap.add_argument("--images", default="camera,astronaut", help="skimage sample names or image files")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--at", default="", help="steps (comma-separated) at which ours' EMA PSNR is also reported")
    ap.add_argument("--no-deepinv", action="store_true", help="leave deepinv's DeepImagePrior out")
    ap.add_argument("--size", type=int, default=64, help="the physics' image size (task.size)")
    ap.add_argument("--work", type=Path, default=Path("outputs/compare_deepinv"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every job (ours and the shared observation)")
    args = ap.parse_args(argv)
    tasks, images = args.tasks.split(","), args.images.split(",")
    work = args.work.resolve()
    shared = [f"iters={args.iters}", f"++task.size={args.size}", *args.overrides]
    jobs = our_jobs(work / "ours", tasks, images, args.seeds, shared)
    at = [int(s) for s in args.at.split(",") if s]
    rows = []
    for t in tasks:
        for img in images:
            mine = [j for j in jobs if j["task"] == t and j["image"] == img
                    and j["metrics"].get("status") in ("completed", "early_stopped")]  # a failed job is not averaged
            if not mine:
                continue
            theirs = [] if args.no_deepinv else [deepinv_fit(j, shared) for j in mine]
            ours, ours_std = stats([j["metrics"]["psnr_final"] for j in mine])
            ema = [j["metrics"]["psnr_ema_final"] for j in mine if j["metrics"]["psnr_ema_final"] is not None]
            dv, dv_std = stats([r["psnr"] for r in theirs]) if theirs else (None, None)
            aty = [j["metrics"]["psnr_observed"] for j in mine if j["metrics"]["psnr_observed"] is not None]
            row = {"task": t, "image": image_name(img), "n": len(mine), "aty_psnr": stats(aty)[0] if aty else None,
                   "ours_psnr": ours, "ours_std": ours_std, "ours_ema_psnr": stats(ema)[0] if ema else None,
                   "ours_ema_std": stats(ema)[1] if ema else None, "deepinv_psnr": dv, "deepinv_std": dv_std,
                   "ours_wall_s": stats([j["metrics"]["fit_s"] for j in mine])[0],
                   "deepinv_wall_s": stats([r["wall_s"] for r in theirs])[0] if theirs else None}
            for s in at:
                vals = [v for j in mine if (v := ema_at(j["dir"], s)) is not None]
                row[f"ours_ema_at_{s}"], row[f"ours_ema_std_at_{s}"] = stats(vals) if vals else (None, None)
            rows.append(row)
    columns = COLUMNS + [c for s in at for c in (f"ours_ema_at_{s}", f"ours_ema_std_at_{s}")]
    with open(work / "compare_deepinv.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    pm = lambda m, s: "—" if m is None else (f"{m:.2f}" + ("" if s is None else f" ± {s:.2f}"))  # noqa: E731
    sec = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
    head = ["task", "image", "seeds", "A^T y (dB)", *[f"ours EMA @ {s} (dB)" for s in at],
            f"ours EMA @ {args.iters} (dB)", f"ours final @ {args.iters} (dB)"]
    head += [] if args.no_deepinv else ["deepinv DIP (dB)"]
    head += ["ours wall (s)"] + ([] if args.no_deepinv else ["deepinv wall (s)"])
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["task"], r["image"], str(r["n"]), pm(r["aty_psnr"], None),
                 *[pm(r[f"ours_ema_at_{s}"], r[f"ours_ema_std_at_{s}"]) for s in at],
                 pm(r["ours_ema_psnr"], r["ours_ema_std"]), pm(r["ours_psnr"], r["ours_std"])]
        cells += [] if args.no_deepinv else [pm(r["deepinv_psnr"], r["deepinv_std"])]
        cells += [sec(r["ours_wall_s"])] + ([] if args.no_deepinv else [sec(r["deepinv_wall_s"])])
        md.append("| " + " | ".join(cells) + " |")
    text = "\n".join(md) + "\n"
    (args.out or work / "compare_deepinv.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
