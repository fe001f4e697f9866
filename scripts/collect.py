#!/usr/bin/env python
"""One table and one plot for a sweep: every job's metrics.json and overrides.

    python scripts/collect.py SWEEP_DIR [--metric psnr_best] [--ascending] [--top 20]

Finds the job folders under SWEEP_DIR (any layout: the basic, joblib and gpus launchers' ``N/``,
submitit's, Optuna's; hidden folders such as ``.submitit`` are skipped), reads ``metrics.json`` and
``.hydra/overrides.yaml`` of each (a job without metrics.json is listed with status ``missing``),
sorts by the metric (descending unless --ascending; jobs without it last), prints the table and
writes ``SWEEP_DIR/summary.csv``, ``summary.md`` and ``summary.png`` (the metric vs the swept
parameter when one numeric parameter varies, seeds aside; else a bar chart of the top jobs).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

import yaml

METRICS = ["psnr_best", "best_step", "psnr_final", "psnr_ema_final", "ssim_final", "psnr_obs_final",
           "es_step", "es_psnr", "iters_done", "wall_s", "it_per_s"]


def natural_key(path: Path) -> list:
    """Sort '2' before '10'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def job_dirs(sweep: Path) -> list[Path]:
    """Folders under ``sweep`` with a metrics.json or a .hydra/overrides.yaml, outside hidden and wandb
    folders, less the ``fit<k>/`` folders of packed jobs."""
    found = set()
    for path in sweep.rglob("*"):
        if path.name == "metrics.json":
            job = path.parent
        elif path.name == "overrides.yaml" and path.parent.name == ".hydra":
            job = path.parent.parent
        else:
            continue
        parts = job.relative_to(sweep).parts
        if not any(p.startswith(".") or p == "wandb" for p in parts):
            found.add(job)
    # a packed job (pack=K) is one row, its metrics.json the means; its fit<k>/ folders are not jobs
    found = {j for j in found if not (re.fullmatch(r"fit\d+", j.name) and j.parent in found)}
    return sorted(found, key=lambda d: natural_key(d.relative_to(sweep)))


def number(value) -> float | None:
    """A finite float, or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def read_job(sweep: Path, job: Path) -> dict:
    """One row: job, status, reason, the overrides as {key: value} and the metrics."""
    mpath, opath = job / "metrics.json", job / ".hydra" / "overrides.yaml"
    metrics = json.loads(mpath.read_text()) if mpath.is_file() else {}
    overrides = yaml.safe_load(opath.read_text()) if opath.is_file() else metrics.get("overrides")
    params = {}
    for item in overrides or []:
        key, _, value = str(item).partition("=")
        params[key.lstrip("+~")] = value
    return {"job": str(job.relative_to(sweep)) or ".", "status": metrics.get("status") or "missing",
            "reason": metrics.get("reason") or "", "params": params, "metrics": metrics}


def varying_keys(rows: list[dict]) -> list[str]:
    """Override keys whose value differs between jobs (all keys when there is one job)."""
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    if len(rows) < 2:
        return keys
    return [k for k in keys if len({r["params"].get(k) for r in rows}) > 1]


def fmt(value) -> str:
    """A table cell: floats (also an override's '0.0064311720') to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d*\.\d+(e[-+]?\d+)?|\d+e[-+]?\d+)", value):
        value = float(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_table(rows: list[dict], metric: str, ascending: bool) -> tuple[list[str], list[list]]:
    """Header and sorted rows: job, status, swept keys, the metric, the other metrics any job has, reason."""
    swept = varying_keys(rows)
    others = [m for m in METRICS if m != metric and any(number(r["metrics"].get(m)) is not None for r in rows)]
    header = ["job", "status", *swept, metric, *others, "reason"]

    def key(r: dict) -> tuple:
        v = number(r["metrics"].get(metric))
        return (v is None, 0.0 if v is None else (v if ascending else -v), natural_key(Path(r["job"])))

    table = []
    for r in sorted(rows, key=key):
        table.append([r["job"], r["status"], *(r["params"].get(k, "") for k in swept),
                      *(r["metrics"].get(m) for m in [metric, *others]), r["reason"]])
    return header, table


def markdown(header: list[str], table: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        lines.append("| " + " | ".join(fmt(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], metric: str, ascending: bool, path: Path, top: int) -> None:
    """The metric vs the one numeric swept parameter (seeds as repeats), else a bar chart of the top jobs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = [k for k in varying_keys(rows) if k != "seed"] if len(rows) > 1 else []
    done = [r for r in rows if number(r["metrics"].get(metric)) is not None]
    numeric = len(swept) == 1 and all(number(r["params"].get(swept[0])) is not None for r in done)
    height = 4.2 if numeric or not done else 1.6 + 0.25 * min(len(done), top)
    fig, ax = plt.subplots(figsize=(7 if numeric else 9, height))
    if not done:
        ax.text(0.5, 0.5, f"no job has {metric}", ha="center", va="center")
        ax.set_axis_off()
    elif numeric:
        name = swept[0]
        xs = [number(r["params"][name]) for r in done]
        ys = [number(r["metrics"][metric]) for r in done]
        ax.scatter(xs, ys, alpha=0.6, label="jobs")
        means = {x: sum(y for xx, y in zip(xs, ys) if xx == x) / xs.count(x) for x in sorted(set(xs))}
        ax.plot(list(means), list(means.values()), "-o", color="C1", label="mean")
        if min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs {name} ({len(done)} of {len(rows)} jobs)")
        ax.legend()
        ax.grid(alpha=0.3)
    else:
        ranked = sorted(done, key=lambda r: number(r["metrics"][metric]), reverse=not ascending)[:top]
        labels = [" ".join([f"#{r['job']}"] + [f"{k}={fmt(r['params'].get(k))}" for k in swept])[:70] for r in ranked]
        values = [number(r["metrics"][metric]) for r in ranked]
        ax.barh(range(len(ranked)), values, color="C0")
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.4g}", va="center", fontsize=7)
        ax.set_yticks(range(len(ranked)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
        ax.set_title(f"top {len(ranked)} of {len(rows)} jobs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def collect(sweep: Path, metric: str = "psnr_best", ascending: bool = False, top: int = 20) -> str:
    """Write summary.csv, summary.md and summary.png into ``sweep``; return the markdown."""
    jobs = job_dirs(sweep)
    if not jobs:
        raise SystemExit(f"collect.py: no job folder (metrics.json or .hydra/overrides.yaml) under {sweep}")
    rows = [read_job(sweep, j) for j in jobs]
    header, table = build_table(rows, metric, ascending)
    with open(sweep / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in table])
    swept = set(varying_keys(rows)) if len(rows) > 1 else set()
    fixed = {k: v for r in rows for k, v in r["params"].items() if k not in swept}
    failed = sum(r["status"] not in ("completed", "early_stopped") for r in rows)
    lines = [f"# Sweep {sweep}", "",
             f"{len(rows)} jobs ({failed} not completed), sorted by {metric} "
             f"({'ascending' if ascending else 'descending'}).", ""]
    if fixed and len(rows) > 1:
        lines += ["Fixed: " + " ".join(f"`{k}={v}`" for k, v in fixed.items()), ""]
    results = sweep / "optimization_results.yaml"
    if results.is_file():
        best = yaml.safe_load(results.read_text()) or {}
        lines += [f"Optuna best: {best.get('best_value')} with {best.get('best_params')}", ""]
    text = "\n".join(lines) + "\n" + markdown(header, table) + "\n"
    (sweep / "summary.md").write_text(text)
    plot(rows, metric, ascending, sweep / "summary.png", top)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep's folder (hydra.sweep.dir)")
    parser.add_argument("--metric", default="psnr_best", help="metrics.json key to sort and plot by")
    parser.add_argument("--ascending", action="store_true", help="smallest first (e.g. --metric wall_s)")
    parser.add_argument("--top", type=int, default=20, help="jobs in the bar chart")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a folder")
    print(collect(args.sweep_dir, args.metric, args.ascending, args.top))
    print(f"wrote {args.sweep_dir / 'summary.csv'}, summary.md, summary.png", file=sys.stderr)


if __name__ == "__main__":
    main()
