"""Files a run leaves in its directory: images, panel, PSNR plot, metrics.json."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from dip_lightning.io import save_image


def _nan_to_none(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def write_json(path: Path, data: dict) -> None:
    clean = {k: _nan_to_none(v) for k, v in data.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=False) + "\n")


def panel(images: list[torch.Tensor], gap: int = 4) -> torch.Tensor:
    """Side-by-side (C, H, W) images of one height (gray ones are shown as RGB), white gaps."""
    h = max(im.shape[-2] for im in images)
    cols = []
    for im in images:
        im = im.float().cpu()
        if im.shape[0] == 1:
            im = im.expand(3, -1, -1)
        if im.shape[-2] != h:  # e.g. the LR observation next to HR images: nearest upscaling
            w = round(im.shape[-1] * h / im.shape[-2])
            im = F.interpolate(im[None], size=(h, w), mode="nearest")[0]
        cols += [im, torch.ones(3, h, gap)]
    return torch.cat(cols[:-1], dim=-1)


def plot_curves(history: dict, path: Path, best_step: int | None = None, es_step: int | None = None,
                title: str = "") -> None:
    """PSNR curves (output / EMA, vs ground truth and vs observation) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = history["step"]
    styles = {"psnr/gt": ("output vs ground truth", "C0", "-"), "psnr_ema/gt": ("EMA vs ground truth", "C1", "-"),
              "psnr/obs": ("output vs observation", "C0", ":"), "psnr_ema/obs": ("EMA vs observation", "C1", ":")}
    for key, (label, color, ls) in styles.items():
        vals = history.get(key, [])
        if vals and not all(math.isnan(v) for v in vals):
            ax.plot(steps, vals, ls, color=color, label=label)
    if best_step:
        ax.axvline(best_step, color="C2", ls="--", lw=1, label=f"best step {best_step}")
    if es_step:
        ax.axvline(es_step, color="C3", ls="-.", lw=1, label=f"ES step {es_step}")
    ax.set_xlabel("step")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
