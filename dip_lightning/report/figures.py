"""The report's pictures: each group's mean PSNR curve with its seeds' min–max band, and a grid of
observation | each group's restored image | ground truth per image."""
from __future__ import annotations

import csv
import functools
import math
import warnings
from pathlib import Path

import numpy as np

from dip_lightning.report.jobs import FitRow, natural_key, number, seed_key
from dip_lightning.report.tables import counted, groups_of

#: the image a fit is scored on, by ``eval_output``
SCORED = {"final": "restored.png", "ema": "restored_ema.png", "best": "restored_best.png"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_text(plot):
    """``plot`` with its text drawn as written: a ``$`` in a job's override, image name or label is
    a dollar sign, never the start of mathtext (which draws it as a formula, or fails on it)."""

    @functools.wraps(plot)
    def drawn_as_written(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return plot(*args, **kwargs)

    return drawn_as_written


def read_curves(fit_dir: Path) -> dict[str, list[float]]:
    """A fit's ``curves.csv`` (step and one column per metric), or {} when it has none."""
    path = fit_dir / "curves.csv"
    if not path.is_file():
        return {}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [number(r[k]) if number(r[k]) is not None else math.nan for r in rows] for k in (rows[0] if rows else {})}


def curve_key(rows: list[FitRow], eval_output: str | None) -> str:
    """The curve that matches the scored image: vs the ground truth when there is one, else vs y."""
    gt = any(r.metrics.get("ground_truth") for r in rows)
    if not gt:
        return "psnr/obs"
    return "psnr_ema/gt" if eval_output == "ema" else "psnr/gt"


def _nan(reduce, a: np.ndarray) -> np.ndarray:
    """``reduce`` (np.nanmean, …) over axis 0, NaN where a column is all NaN, without the warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reduce(a, 0)


def seed_curves(members: list[FitRow], key: str) -> tuple[list[float], list, np.ndarray] | None:
    """The fits' ``key`` curves as (steps, seeds, curves): one row per seed, its mean over the
    seed's images (an early-stopped fit's curve is shorter: NaN after its end); None without curves."""
    read = [(r.seed, c) for r in members if (c := read_curves(r.dir)).get(key)]
    if not read:
        return None
    steps = max((c for _, c in read), key=lambda c: len(c[key]))["step"]
    curves = [(seed, c[key]) for seed, c in read]
    seeds = sorted({seed for seed, _ in curves}, key=seed_key)
    ys = np.full((len(seeds), len(steps)), np.nan)
    for row, seed in zip(ys, seeds):
        mine = [c for s, c in curves if s == seed]
        lines = np.full((len(mine), len(steps)), np.nan)
        for line, c in zip(lines, mine):
            line[:len(c)] = c
        row[:] = _nan(np.nanmean, lines)
    return steps, seeds, ys


@_plain_text
def plot_curves(rows: list[FitRow], metric: str, path: Path, eval_output: str | None = None) -> bool:
    """curves.png: per group the mean curve and a min–max band over its seeds, where a seed's curve
    is its mean over the group's images (``seed_curves``: the band is the seeds' spread, not the
    images'); False if no fit has curves."""
    key = curve_key(rows, eval_output)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    drawn = 0
    for i, (label, members) in enumerate(groups_of(counted(rows, metric)).items()):
        found = seed_curves(members, key)
        if found is None:
            continue
        steps, seeds, ys = found
        color = f"C{i % 10}"
        images = len({r.image for r in members})
        ax.plot(steps, _nan(np.nanmean, ys), color=color, label=f"{label} ({len(seeds)} seeds × {images} images)")
        ax.fill_between(steps, _nan(np.nanmin, ys), _nan(np.nanmax, ys), color=color, alpha=0.2, lw=0)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel("step")
    ax.set_ylabel(f"{key} (dB)")
    ax.set_title("mean over seeds of each seed's mean over the images; band: min–max over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _load(path: Path) -> np.ndarray | None:
    from PIL import Image

    if not path.is_file():
        return None
    a = np.asarray(Image.open(path).convert("RGB"))
    return a


@_plain_text
def plot_grid(rows: list[FitRow], metric: str, path: Path, eval_output: str | None = None,
              max_images: int = 8, max_groups: int = 6) -> str:
    """grid.png: per image (row) the observation, each group's scored image of its first seed and
    the ground truth, titled with the metric. Returns what it shows ("5 images × 2 groups", and
    "the first 8 of 24 images" when cut to ``max_images`` / ``max_groups``); "" when no fit left images."""
    every = list(groups_of(counted(rows, metric)).items())
    groups = every[:max_groups]
    all_images = sorted({r.image for _, m in groups for r in m}, key=natural_key)
    images = all_images[:max_images]
    if not images:
        return ""
    shown = (f"the first {len(images)} of {len(all_images)} images" if len(images) < len(all_images)
             else f"{len(images)} images") + " × " + (
        f"the first {len(groups)} of {len(every)} groups" if len(groups) < len(every) else f"{len(groups)} groups")
    name = SCORED.get(eval_output or "final", "restored.png")
    plt = _pyplot()
    cols = 2 + len(groups)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.2 * cols, 2.3 * len(images)), dpi=100, squeeze=False)
    for i, image in enumerate(images):
        first = {label: min((r for r in m if r.image == image), key=lambda r: seed_key(r.seed),
                            default=None) for label, m in groups}
        any_fit = next((r for r in first.values() if r is not None), None)
        panels = [("observation", _load(any_fit.dir / "observed.png") if any_fit else None)]
        for label, r in first.items():
            title = label if r is None else f"{label}\n{number(r.metrics[metric]):.2f} dB (seed {r.seed})"
            panels.append((title, None if r is None else _load(r.dir / name)))
        panels.append(("ground truth", _load(any_fit.dir / "ground_truth.png") if any_fit else None))
        for j, (title, a) in enumerate(panels):
            ax = axes[i][j]
            if a is not None:
                ax.imshow(a, interpolation="nearest")
            ax.set_title(f"{image}: {title}" if j == 0 else title, fontsize=7)
            ax.set_axis_off()
    if len(images) < len(all_images) or len(groups) < len(every):
        fig.suptitle(f"{shown} (the tables have them all)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return shown


@_plain_text
def plot_metric(jobs: list[dict], swept: list[str], metric: str, ascending: bool, path: Path, top: int) -> None:
    """summary.png: the metric vs the one numeric swept parameter (seeds as repeats), else a bar
    chart of the top jobs."""
    plt = _pyplot()
    swept = [k for k in swept if k != "seed"] if len(jobs) > 1 else []
    done = [r for r in jobs if number(r["metrics"].get(metric)) is not None]
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
        ax.set_title(f"{metric} vs {name} ({len(done)} of {len(jobs)} jobs)")
        ax.legend()
        ax.grid(alpha=0.3)
    else:
        ranked = sorted(done, key=lambda r: number(r["metrics"][metric]), reverse=not ascending)[:top]
        labels = [" ".join([f"#{r['job']}"] + [f"{k}={r['params'].get(k)}" for k in swept])[:70] for r in ranked]
        values = [number(r["metrics"][metric]) for r in ranked]
        ax.barh(range(len(ranked)), values, color="C0")
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.4g}", va="center", fontsize=7)
        ax.set_yticks(range(len(ranked)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
        ax.set_title(f"top {len(ranked)} of {len(jobs)} jobs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
