#!/usr/bin/env python
"""One report for any sweep folder: every job, the groups' mean ± std over seeds, curves, images.

    python scripts/collect.py SWEEP_DIR [--metric psnr_eval] [--ascending] [--top 20]

Reads every job under SWEEP_DIR (the basic, joblib, gpus and submitit launchers, Optuna, a suite,
a comparison, packed jobs; ``dip_lightning.report.jobs``) and writes there:

- ``summary.md``: the groups (jobs grouped by the swept parameters other than the seed and the
  image) with the metric's mean ± standard deviation and n; per image and group over seeds with an
  average row, and for a suite (``suite.json``, written by reproduce.py) the paper's value and Δ;
  the failed and missing fits, listed and not averaged; then every job.
- ``summary.csv``: the statistics (kind group / image / average, n, mean, std, paper, delta);
  ``jobs.csv``: every job (status, swept parameters, metrics), sorted by the metric.
- ``summary.png`` (the metric per job), ``curves.png`` (each group's mean curve over its seeds,
  min–max band), ``grid.png`` (observation | each group's image | ground truth), and
  ``report.html``: all of it in one page with the command line and the environment, no external
  reference.
- With the W&B logger, the group table (and the per-image one) is also logged as a ``wandb.Table``.

The metric defaults to ``psnr_eval`` (the job's evaluation protocol) when the jobs have it, else
``psnr_best``.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import yaml

try:
    import dip_lightning  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dip_lightning.report import figures, html, tables
from dip_lightning.report.jobs import fit_rows, job_dirs, natural_key, number, read_job

METRICS = ["psnr_eval", "psnr_observed", "psnr_best", "best_step", "psnr_final", "psnr_ema_final", "ssim_final",
           "psnr_obs_final", "es_step", "es_psnr", "es_gap", "iters_done", "wall_s", "it_per_s"]


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

    table = [[r["job"], r["status"], *(r["params"].get(k, "") for k in swept),
              *(r["metrics"].get(m) for m in [metric, *others]), r["reason"]] for r in sorted(rows, key=key)]
    return header, table


def markdown(header: list[str], table: list[list]) -> str:
    """The jobs as a markdown table; every cell (the swept keys too) read as literal text."""
    lines = ["| " + " | ".join(map(tables.md_text, header)) + " |", "|" + "---|" * len(header)]
    for row in table:
        lines.append("| " + " | ".join(tables.md_text(fmt(v)) for v in row) + " |")
    return "\n".join(lines)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])


def collect(sweep: Path, metric: str | None = None, ascending: bool = False, top: int = 20) -> str:
    """Write the report files into ``sweep`` (see the module docstring); return summary.md's text."""
    dirs = job_dirs(sweep)
    if not dirs:
        raise SystemExit(f"collect.py: no job folder (metrics.json or .hydra/overrides.yaml) under {sweep}")
    jobs = [read_job(sweep, j) for j in dirs]
    fits = fit_rows(jobs)
    if metric is None:
        metric = "psnr_eval" if any(number(r.metrics.get("psnr_eval")) is not None for r in fits) else "psnr_best"
    suite = json.loads((sweep / "suite.json").read_text()) if (sweep / "suite.json").is_file() else {}
    eval_output = suite.get("eval_output") or next((r.metrics.get("eval_output") for r in fits
                                                   if r.metrics.get("eval_output")), None)

    groups = tables.group_table(fits, metric)
    per_image = tables.image_table(fits, metric, suite.get("paper"), suite.get("paper_average"), suite.get("images"))
    missing = tables.missing_rows(fits, suite.get("images"))
    varies = len({r.image for r in fits}) > 1 or bool(suite)
    header, table = build_table(jobs, metric, ascending)
    write_csv(sweep / "jobs.csv", header, table)
    stat_cols = ["kind", "group", "image", "n", "mean", "std", "paper", "delta"]
    stat_rows = ([["group", g["group"], "", g["n"], g["mean"], g["std"], "", ""] for g in groups]
                 + [["average" if r["image"] == "average" else "image", r["group"], r["image"], r["n"], r["mean"],
                     r["std"], r["paper"], r["delta"]] for r in per_image])
    write_csv(sweep / "summary.csv", stat_cols, stat_rows)

    swept = set(varying_keys(jobs)) if len(jobs) > 1 else set()
    fixed = {k: v for r in jobs for k, v in r["params"].items() if k not in swept}
    failed = sum(r["status"] not in ("completed", "early_stopped") for r in jobs)
    text_, code = tables.md_text, tables.md_code  # what comes from the jobs reads as literal text
    scored = f" of the {text_(eval_output)} output" if eval_output else ""
    lines = [f"# Sweep {text_(sweep)}", "", f"{len(jobs)} jobs ({failed} not completed), {len(fits)} fits"
             + (f", {len(missing)} of the suite's fits never run" if missing else "")
             + f"; metric {text_(metric)}{scored}; jobs sorted by it ({'ascending' if ascending else 'descending'}).", ""]
    with_paper = bool(suite.get("paper"))  # the pairs suite scores against its folder's references, not a paper
    if suite.get("quick"):
        against = "the paper" if with_paper else "a run at the full recipe"
        lines += [f"**{text_(suite.get('suite'))}, --quick: shrunk images and iterations — NOT comparable to "
                  f"{against}.**", ""]
    if suite:
        delta = ("Δ = ours − paper (the average's: Δ of the mean; ± is the seeds' spread)" if with_paper
                 else "each image scored against its own reference; ± is the seeds' spread")
        lines += [f"Suite {text_(suite.get('suite'))}: protocol {text_(suite.get('eval_protocol'))}, scored image "
                  f"{text_(suite.get('eval_output'))}; {delta}.", ""]
    if fixed and len(jobs) > 1:
        lines += ["Fixed: " + " ".join(code(f"{k}={v}") for k, v in fixed.items()), ""]
    results = sweep / "optuna_best.yaml"  # a search's (dip_lightning/search/results.py)
    if results.is_file():
        best = yaml.safe_load(results.read_text()) or {}
        lines += [f"Search best: trial {text_(best.get('best_trial'))}, {text_(best.get('best_value'))}; run it "
                  f"again with {code(best.get('overrides'))}", ""]
    sections = [("Groups", tables.group_markdown(groups, metric))]
    if (sweep / "search.md").is_file():  # every trial of the study, pruned ones marked
        sections.append(("Search trials", "\n".join((sweep / "search.md").read_text().splitlines()[2:])))
    if varies:
        sections.append(("Per image", tables.image_markdown(per_image, metric, with_paper)))
    sections.append(("Not counted", tables.failed_markdown(fits + missing, metric)))
    sections.append(("Jobs", markdown(header, table)))
    body = "\n\n".join(f"## {h}\n\n{md}" for h, md in sections if md)
    text = "\n".join(lines) + "\n" + body + "\n"
    (sweep / "summary.md").write_text(text)

    figures.plot_metric(jobs, sorted(swept, key=list(swept).index) if swept else [], metric, ascending,
                        sweep / "summary.png", top)
    figures.plot_curves(fits, metric, sweep / "curves.png", eval_output)
    shown = figures.plot_grid(fits, metric, sweep / "grid.png", eval_output)
    html.write_html(sweep / "report.html", f"Sweep {sweep.name}", [("Summary", "\n".join(lines))] + sections,
                    [("PSNR curves", sweep / "curves.png"), (f"Images ({shown})" if shown else "Images", sweep / "grid.png"),
                     (f"{metric} per job", sweep / "summary.png")]
                    + [(name, sweep / f) for name, f in (("Search: objective against each parameter", "search_params.png"),
                                                          ("Search: the trials' curves", "search_curves.png"))
                       if (sweep / f).is_file()], html.command_line(sweep), html.environment(sweep))
    if html.uses_wandb(sweep):
        logged = {"summary": (["group", "n", "mean", "std", "seeds", "images"],
                              [[g["group"], g["n"], g["mean"], g["std"], g["seeds"], g["images"]] for g in groups])}
        if varies:
            logged["per_image"] = (stat_cols[1:], [r[1:] for r in stat_rows if r[0] != "group"])
        html.log_wandb_tables(sweep, logged)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep's folder (hydra.sweep.dir)")
    parser.add_argument("--metric", default=None, help="metrics.json key to group, sort and plot by "
                                                       "(default psnr_eval when the jobs have it, else psnr_best)")
    parser.add_argument("--ascending", action="store_true", help="smallest first (e.g. --metric wall_s)")
    parser.add_argument("--top", type=int, default=20, help="jobs in the bar chart")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a folder")
    print(collect(args.sweep_dir, args.metric, args.ascending, args.top))
    print(f"wrote {args.sweep_dir / 'summary.md'}, summary.csv, jobs.csv, curves.png, grid.png, report.html",
          file=sys.stderr)


if __name__ == "__main__":
    main()
