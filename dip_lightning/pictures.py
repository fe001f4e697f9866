"""The pictures of a run: the labelled panel (observation | final | EMA | ground truth) and the
PSNR curves against the step."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def panel(images: list[torch.Tensor], labels: list[str] | None = None, gap: int = 4,
          min_width: int = 112) -> torch.Tensor:
    """Side-by-side (C, H, W) images of one height (gray ones shown as RGB, the low-resolution
    observation upscaled, nearest), white gaps, and with ``labels`` a caption strip above each.
    Panels of small images are enlarged (nearest) until each is ``min_width`` wide, so the
    captions fit."""
    h = max(im.shape[-2] for im in images)
    cols = []
    for im in images:
        im = im.float().cpu()
        if im.shape[0] == 1:
            im = im.expand(3, -1, -1)
        if im.shape[-2] != h:  # e.g. the LR observation next to HR images: nearest upscaling
            w = round(im.shape[-1] * h / im.shape[-2])
            im = F.interpolate(im[None], size=(h, w), mode="nearest")[0]
        cols.append(im)
    if labels:
        zoom = max(1, math.ceil(min_width / min(c.shape[-1] for c in cols)))
        if zoom > 1:
            cols = [F.interpolate(c[None], scale_factor=zoom, mode="nearest")[0] for c in cols]
    body = torch.cat([x for c in cols for x in (c, torch.ones(3, c.shape[-2], gap))][:-1], dim=-1)
    if not labels:
        return body
    return torch.cat([_captions(labels, [c.shape[-1] for c in cols], gap), body], dim=-2)


def _captions(labels: list[str], widths: list[int], gap: int, height: int = 16) -> torch.Tensor:
    """A white (3, height, W) strip with each label, left-aligned over its column (PIL's built-in font)."""
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("RGB", (sum(widths) + gap * (len(widths) - 1), height), "white")
    draw, font, x = ImageDraw.Draw(strip), ImageFont.load_default(), 0
    for label, w in zip(labels, widths):
        draw.text((x + 2, 2), label, fill="black", font=font)
        x += w + gap
    return torch.from_numpy(np.asarray(strip).copy()).permute(2, 0, 1).float() / 255.0


def plot_curves(history: dict, path: Path, best_step: int | None = None, es_step: int | None = None,
                title: str = "") -> None:
    """PSNR curves (output / EMA, vs ground truth and vs observation) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = history["step"]
    styles = {"psnr/gt": ("output vs ground truth", "C0", "-"), "psnr_ema/gt": ("EMA vs ground truth", "C1", "-"),
              "psnr/obs": ("output vs observation", "C0", ":"), "psnr_ema/obs": ("EMA vs observation", "C1", ":"),
              "psnr/holdout": ("output vs held-out pixels", "C4", "-")}
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


def panel_of(observed: torch.Tensor, restored: torch.Tensor, gt: torch.Tensor | None, metrics: dict,
             ema: torch.Tensor | None = None) -> torch.Tensor:
    """observation | final | EMA (when the run has one) | ground truth, each labelled with its PSNR
    against the ground truth (the EMA is the paper's output for denoising, often the better image)."""
    def label(name: str, key: str) -> str:
        v = metrics.get(key)
        return name if v is None else f"{name} {v:.2f} dB"

    images = [observed, restored]
    labels = [label("observation", "psnr_observed"), label("final" if ema is not None else "restored", "psnr_final")]
    if ema is not None:
        images.append(ema)
        labels.append(label("EMA", "psnr_ema_final"))
    if gt is not None:
        images.append(gt[0])
        labels.append("ground truth")
    return panel(images, labels)
