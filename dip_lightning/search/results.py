"""What a search found, written into its sweep folder after every launch of it:

- ``optuna_best.yaml``: the best trial, its value, its parameters and ``overrides``, the line to paste
  after ``dip-restore`` to run it again;
- ``trials.csv`` / ``search.md``: every trial of the study (number, state, value, steps run, wall
  time, parameters), pruned trials marked as such;
- ``search_params.png``: the objective against each parameter (pruned trials at their last
  reported value, hollow); ``search_curves.png``: every trial's reported curve, pruned ones dashed.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from dip_lightning.report.tables import md_code, md_text


def trial_rows(study: optuna.Study, sweep_dir: Path) -> list[dict]:
    """One dict per trial: number, state, value, steps run (its job's ``iters_done``), wall time, params."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        metrics = sweep_dir / f"trial_{t.number:04d}" / "metrics.json"
        steps = json.loads(metrics.read_text()).get("iters_done") if metrics.is_file() else None
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        value = t.value if t.value is not None else (last if t.state == TrialState.PRUNED else None)
        wall = t.duration.total_seconds() if t.duration is not None else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": value, "steps": steps,
                     "wall_s": None if wall is None else round(wall, 1), **t.params})
    return rows


def best_overrides(study: optuna.Study, space) -> str:
    """The best trial's parameters as a line of overrides (choices as the user wrote them)."""
    best = study.best_trial
    return " ".join(p.override(best.params[p.name]) for p in space if p.name in best.params)


def write_results(study: optuna.Study, sweep_dir: Path, space) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study, sweep_dir)
    keys = ["trial", "state", "value", "steps", "wall_s", *[p.name for p in space]]
    with open(sweep_dir / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail", "running")}
    md = [f"# Search `{study.study_name}`", "",
          f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), ""]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        line = best_overrides(study, space)
        (sweep_dir / "optuna_best.yaml").write_text(yaml.safe_dump(
            {"study": study.study_name, "best_trial": best.number, "best_value": best.value,
             "best_params": dict(best.params), "overrides": line}, sort_keys=False))
        md += [f"Best: trial {best.number}, {best.value:.4f}. To run it again: "
               f"{md_code('dip-restore ' + line)} (with the search's other overrides).", ""]
    md += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    fmt = lambda v: "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else md_text(v))  # noqa: E731
    md += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    (sweep_dir / "search.md").write_text("\n".join(md) + "\n")
    plot(study, rows, space, sweep_dir)


def plot(study: optuna.Study, rows: list[dict], space, sweep_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p.name for p in space]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.2 * max(1, len(names)), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        for state, marker in (("complete", "o"), ("pruned", "o")):
            pts = [(r[name], r["value"]) for r in rows if r["state"] == state and r.get(name) is not None
                   and isinstance(r["value"], (int, float)) and math.isfinite(r["value"])]
            if pts and all(isinstance(x, (int, float)) for x, _ in pts):
                ax.scatter(*zip(*pts), marker=marker, facecolors="C0" if state == "complete" else "none",
                           edgecolors="C0" if state == "complete" else "C3", label=state, s=18)
        dist = next(p.distribution for p in space if p.name == name)
        if getattr(dist, "log", False):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("objective")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(sweep_dir / "search_params.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for t in study.get_trials(deepcopy=False):
        if t.intermediate_values:
            steps = sorted(t.intermediate_values)
            pruned = t.state == TrialState.PRUNED
            ax.plot(steps, [t.intermediate_values[s] for s in steps], "--" if pruned else "-",
                    color="C3" if pruned else "C0", alpha=0.7, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("reported objective")
    ax.set_title("trials (pruned: dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(sweep_dir / "search_curves.png", dpi=110)
    plt.close(fig)
