#!/usr/bin/env python
"""What pruning saves: the same search twice on each image, without and with pruning.

    python scripts/search_benchmark.py [--images camera,coffee] [--size 96] [--trials 16] [--iters 1500]
        [--seed 0] [--n-jobs 1] [--min-resource 100] [--work DIR] [--out FILE] [OVERRIDES...]

Each search is one multirun (``hparams_search=optuna_lr`` and ``optuna_lr_pruned``: successive
halving on the best-PSNR curve) over ``optim.lr`` (log, 1e-4 to 1e-1) and ``reg_noise_std`` (0 to
0.1), ``--trials`` trials with the same sampler seed (the pruner's first rung at
``--min-resource`` steps), in ``<work>/<image>/<full|pruned>``. The table gives, per image and
search: the optimisation steps run (the trials' ``iters_done``) and their share of the full
search's, the trials' wall time, the time launcher slots sat idle waiting for their batch's slowest
trial (with ``--n-jobs`` > 1: what Hydra's batch-at-a-time launch costs), the best objective
(``psnr_best``) and the number of pruned trials. OVERRIDES go to every trial (e.g. ``threads=1``,
``hydra/launcher=joblib``).
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

from dip_lightning.multirun import launch
from dip_lightning.overrides import QUIET, format_value, image_name

SEARCHES = {"full": "optuna_lr", "pruned": "optuna_lr_pruned"}


def summarise(sweep: Path, study_name: str, n_jobs: int = 1) -> dict:
    """Steps, wall time, best value and pruned count of the study in ``sweep``; ``idle_s``: the
    launcher slots' time spent waiting for the slowest trial of their batch (``n_jobs`` a batch)."""
    import optuna

    from dip_lightning.search.storage import open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage(f"journal://{sweep / 'optuna.journal'}"))
    steps = wall = 0.0
    walls = []
    for t in study.get_trials():
        m = sweep / f"trial_{t.number:04d}" / "metrics.json"
        metrics = json.loads(m.read_text()) if m.is_file() else {}
        steps += metrics.get("iters_done") or 0
        wall += metrics.get("wall_s") or 0.0
        walls.append(metrics.get("wall_s") or 0.0)
    batches = [walls[i:i + n_jobs] for i in range(0, len(walls), n_jobs)]
    idle = sum(max(b) - w for b in batches for w in b)
    states = [t.state.name for t in study.get_trials()]
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    return {"trials": len(states), "pruned": states.count("PRUNED"), "steps": int(steps), "wall_s": round(wall, 1),
            "idle_s": round(idle, 1), "best": max(t.value for t in complete) if complete else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="camera,coffee", help="skimage sample names or image files")
    ap.add_argument("--size", type=int, default=96, help="resize= (longer side)")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0, help="the sampler's seed (both searches)")
    ap.add_argument("--n-jobs", type=int, default=1, help="trials per batch (hydra.sweeper.n_jobs)")
    ap.add_argument("--min-resource", type=int, default=100, help="steps before successive halving's first rung")
    ap.add_argument("--work", type=Path, default=Path("outputs/search_benchmark"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every trial")
    args = ap.parse_intermixed_args(argv)
    work = args.work.resolve()
    rows = []
    for img in args.images.split(","):
        for kind, search in SEARCHES.items():
            sweep = work / image_name(img) / kind
            rc = launch([f"hparams_search={search}", f"image={format_value(img)}", f"resize={args.size}",
                         f"iters={args.iters}", *QUIET, f"hydra.sweeper.n_trials={args.trials}",
                         f"hydra.sweeper.seed={args.seed}", f"hydra.sweeper.n_jobs={args.n_jobs}", "hydra.sweeper.params.reg_noise_std='interval(0.0, 0.1)'",
                         f"hydra.sweep.dir={format_value(str(sweep))}", *args.overrides,
                         *([f"hydra.sweeper.pruner.min_resource={args.min_resource}"] if kind == "pruned" else [])])
            if rc:
                print(f"error: the {kind} search on {img} exited with {rc}", file=sys.stderr)
                return rc
            rows.append({"image": image_name(img), "search": kind,
                         **summarise(sweep, "dip_lr_pruned" if kind == "pruned" else "dip_lr", args.n_jobs)})
    lines = ["| image | search | trials | pruned | steps run | share of full | trials' wall (s) "
             "| slots idle in batches (s) | best psnr_best (dB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        full = next(x for x in rows if x["image"] == r["image"] and x["search"] == "full")
        share = r["steps"] / full["steps"] if full["steps"] else float("nan")
        best = "—" if r["best"] is None else f"{r['best']:.2f}"
        lines.append(f"| {r['image']} | {r['search']} | {r['trials']} | {r['pruned']} | {r['steps']} | {share:.0%} | "
                     f"{r['wall_s']} | {r['idle_s']} | {best} |")
    text = "\n".join(lines) + "\n"
    (work / "search_benchmark.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out or work / "search_benchmark.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
