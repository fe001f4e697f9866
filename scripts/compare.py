#!/usr/bin/env python
"""Compare architectures (or methods, or presets) as one Hydra multirun: × seeds × images, any launcher, one report.

    python scripts/compare.py net=skip,unet,resnet,decoder seed=0,1,2 image=IMAGE_OR_FOLDER [OVERRIDES...] [--out DIR]
    python scripts/compare.py method=dip,sgld,drp,selfguided ...     (or experiment=a,b,c: one preset each)

The compared key is the first of ``net=``, ``method=``, ``experiment=`` given.

``image=`` may be a folder: every image in it is a job of its own. Seeds default to ``seed=0,1,2``
(DIP's seed-to-seed spread on one image is 0.2–0.8 dB, so one seed cannot rank two nets). Any other
argument is a Hydra override for every job, including ``hydra/launcher=joblib`` / ``gpus`` /
``slurm``. The jobs land in ``--out`` (default ``outputs/compare/<time>``) as
``<value>/<image>/seed=<s>/``; then ``scripts/collect.py`` writes the report there (grouped by the
compared key: mean ± std over seeds and images, per image, curves, grid, report.html), plus
``compare.md`` / ``compare.csv``: per value its parameters (all and trained), GFLOP of one net
forward + backward, and the group statistics: best and final PSNR, final − best, the steps (and
seconds) until the PSNR's gain over the observation first reaches 95% of the best gain, the wall time.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from pathlib import Path

try:
    import dip_lightning  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dip_lightning.io import IMAGE_EXT
from dip_lightning.multirun import launch, record_command
from dip_lightning.overrides import QUIET, format_value, is_sweep, subdir_of, swept_keys

ROOT = Path(__file__).resolve().parents[1]
GROUPS = tuple(p.name for p in (ROOT / "configs").iterdir() if p.is_dir())  # config groups: net, task, …
KEYS = ("net", "method", "experiment")  # what compare.py can compare
STATS = ["n", "mean", "std", "psnr_best", "psnr_final", "psnr_ema_final", "final_minus_best", "best_step",
         "steps_to_95", "s_to_95", "it_per_s", "wall_s"]
LEGEND = ("steps_to_95 / s_to_95: the first evaluated step (and its seconds at the steady rate) where the PSNR's "
          "gain over the observation, PSNR − PSNR(observation), reaches 95% of the best gain; means over the fits.")


def images_of(value: str) -> list[str]:
    """``image=``'s value: a folder's images (sorted), else the value itself."""
    path = Path(value)
    if path.is_dir():
        found = sorted(str(p.resolve()) for p in path.iterdir() if p.suffix.lower() in IMAGE_EXT)
        if not found:
            raise SystemExit(f"compare.py: error: no images in the folder {value}")
        return found
    return [value]


def flops_per_iter(overrides: list[str]) -> tuple[int, int, float]:
    """(parameters, trained parameters, GFLOP of one net forward + backward) of one composed job,
    built as run() builds it (the method decides what is trained)."""
    from dip_lightning.api import compose_config
    from dip_lightning.flops import step_flops
    from dip_lightning.nets.blocks import count_parameters
    from dip_lightning.run import build

    cfg = compose_config(overrides)
    built = build(cfg)
    fit, module = built.fits[0], built.module
    groups = module.method.trainable(module)
    params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    trained = sum(p.numel() for p in params if p.requires_grad)
    return count_parameters(fit.net), trained, step_flops(fit.net, fit.z, fit.task, fit.prob.y_padded) / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="the sweep folder (default outputs/compare/<time>)")
    ap.add_argument("overrides", nargs="+", help="net=a,b,c, seed=..., image=..., and shared Hydra overrides")
    args = ap.parse_args(argv)
    given = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in args.overrides if "=" in o}
    by = next((k for k in KEYS if given.get(k)), None)
    if by is None:
        print("error: give what to compare, e.g. net=skip,unet,resnet,decoder or method=dip,sgld,drp,selfguided",
              file=sys.stderr)
        return 2
    values = given[by].split(",")
    images = images_of(given["image"]) if "image" in given else ["astronaut"]
    shared = [o for o in args.overrides if o.split("=", 1)[0] not in (by, "image", "seed")]
    out = (args.out or Path("outputs/compare") / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    record_command(out, "compare.py", sys.argv[1:] if argv is None else argv)
    ov = [f"{by}={','.join(values)}", "image=" + ",".join(format_value(i) for i in images),
          f"seed={given.get('seed', '0,1,2')}", *QUIET, "skip_completed=true",
          f"hydra.sweep.dir={format_value(str(out))}",
          "hydra.sweep.subdir='" + subdir_of(swept_keys(shared), GROUPS, "${hydra.runtime.choices." + by + "}/"
                                             "${dip_job_dir:${image},${pack_images},${seed}}") + "'", *shared]
    fixed = [o for o in shared if not is_sweep(o.partition("=")[2]) and not o.startswith("hydra")]
    sizes = {}
    for value in values:  # each compared setting built once before any job runs: a bad one stops here
        try:
            sizes[value] = flops_per_iter([f"{by}={value}", f"image={format_value(images[0])}", *QUIET, *fixed])
        except Exception as exc:
            from hydra.errors import HydraException

            from dip_lightning.cli import USER_ERRORS, user_error

            if isinstance(exc, HydraException):  # a misspelt name or key: Hydra's message says which
                why = exc
            elif isinstance(user_error(exc), USER_ERRORS):
                why = user_error(exc)
            else:
                raise
            print(f"error: {by}={value}: " + " ".join(str(why).split("Config search path")[0].split()), file=sys.stderr)
            return 2
    rc = launch(ov)
    if rc:
        print(f"error: the multirun exited with {rc}", file=sys.stderr)
        return rc
    sys.path.insert(0, str(ROOT / "scripts"))
    from collect import collect

    from dip_lightning.report import tables
    from dip_lightning.report.jobs import fit_rows, job_dirs, read_job

    text = collect(out, metric="psnr_best")
    jobs = [read_job(out, j) for j in job_dirs(out)]
    value_of = {j["job"]: j["params"].get(by) for j in jobs}
    fits = fit_rows(jobs)
    columns = [by, "params", "trained", "gflop_per_iter", *STATS]
    rows = []
    for value in values:
        params, trained, gflop = sizes[value]
        mine = [r for r in fits if value_of.get(r.job) == value]
        g = next(iter(tables.group_table(mine, "psnr_best", pooled=True)), {})
        rows.append({by: value, "params": params, "trained": trained, "gflop_per_iter": round(gflop, 3),
                     **{k: (round(g[k], 3) if isinstance(g.get(k), float) else g.get(k)) for k in STATS}})
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    cell = lambda v: "—" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v}")  # noqa: E731
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    md += ["", LEGEND]
    (out / "compare.md").write_text("\n".join(md) + "\n")
    print(text)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
