"""Every file a run leaves in its folder: images, the labelled panel, the PSNR plot, metrics.json.

``write_outputs`` is called once at the end of a run (also of an interrupted or failed one, with
that ``status``): per fit ``restored.png``, ``restored_ema.png``, ``restored_best.png``,
``restored_es.png``, ``observed.png``, ``panel.png``, ``psnr.png`` and ``metrics.json``; a packed
run puts each fit's files in ``fit<k>/`` and a summary metrics.json (the means) in the run folder.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from dip_lightning.io import crop, save_image
from dip_lightning.metrics import PROTOCOLS, psnr, ssim
from dip_lightning.nets.blocks import count_parameters
from dip_lightning.overrides import image_name

def _nan_to_none(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def write_json(path: Path, data: dict) -> None:
    """Whole or not at all: written beside ``path``, then renamed over it (a job stopped while it
    writes its metrics.json never leaves half a file for a relaunch or a report to read)."""
    clean = {k: _nan_to_none(v) for k, v in data.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(clean, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


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


def peak_memory_mb() -> float:
    """This process's peak memory so far: CUDA's peak allocation when CUDA is in use, else the
    peak resident set (interpreter and libraries included)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    from dip_lightning.rss import maxrss_mb

    return round(maxrss_mb(), 1)


def fit_dir(out_dir: Path, fit: int, fits: int) -> Path:
    """Where fit ``fit`` writes its files: the run folder itself, or ``fit<k>/`` when packed."""
    return out_dir if fits == 1 else out_dir / f"fit{fit}"


def _f(t: torch.Tensor | None) -> float | None:
    if t is None:
        return None
    v = float(t)
    return None if math.isnan(v) or math.isinf(v) else round(v, 4)


def write_outputs(cfg: DictConfig, module, fits: list, cbs: dict, out_dir: Path, wall_s: float,
                  status: str = "completed", reason: str | None = None) -> dict:
    """Save every fit's images, panel, PSNR plot and metrics.json (packed: one ``fit<k>/`` folder
    each, and a summary metrics.json with the means); return the metrics and restored images."""
    module = module.cpu()
    n_params = count_parameters(fits[0].net)
    throughput = cbs["throughput"]
    k = module.fits
    it_per_s = round(throughput.it_per_s, 4) if throughput.it_per_s else None
    common = {"status": status, "reason": reason, "method": getattr(module.method, "name", None),
              "net": type(fits[0].net).__name__, "params": n_params,
              "iters_done": int(module.global_step), "iters": int(cfg.iters), "wall_s": round(wall_s + throughput.before_s, 3),
              "fit_s": round(throughput.wall_s, 3), "it_per_s": it_per_s, "resumed_at_step": throughput.resumed_at,
              "peak_mem_mb": peak_memory_mb()}
    evaluation = (cfg.get("eval_protocol"), str(cfg.get("eval_output") or "final"))
    per = [write_fit(module, f, i, cbs, fit_dir(out_dir, i, k), common, evaluation) for i, f in enumerate(fits)]
    if k == 1:
        return per[0]
    summary = {**common, "fits": k, "pack_it_per_s": None if it_per_s is None else round(k * it_per_s, 4),
               "output_dir": str(out_dir)}
    for key in ("psnr_observed", "psnr_final", "psnr_ema_final", "psnr_best", "ssim_final", "es_psnr", "es_gap",
                "psnr_obs_final", "psnr_eval"):
        vals = [r["metrics"][key] for r in per if r["metrics"][key] is not None]
        summary[key] = round(sum(vals) / len(vals), 4) if len(vals) == k else None
    summary["fit_metrics"] = [r["metrics"] for r in per]
    write_json(out_dir / "metrics.json", summary)
    return {"metrics": summary, "fits": per, "restored": per[0]["restored"], "output_dir": out_dir}


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


def write_curves(history: dict[str, list[float]], path: Path) -> None:
    """The metric rows (step, loss, PSNRs, SSIMs) as CSV; NaN as an empty cell."""
    keys = list(history)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for row in zip(*(history[k] for k in keys)):
            w.writerow(["" if (isinstance(v, float) and not math.isfinite(v)) else v for v in row])


def convergence(history: dict, psnr_best: float | None, it_per_s: float | None,
                psnr_start: float | None = None) -> dict:
    """``steps_to_95``: the first evaluated step whose gain over the observation reaches 95% of the
    best gain, PSNR − PSNR(observation) ≥ 0.95 · (best − PSNR(observation)) (ground truth), and
    ``s_to_95``, that many steps at the run's steady rate. ``psnr_start``: the observation's PSNR
    (None: the curve's first value). On the gain, not on dB: 95% of 29.7 dB is 28.2 dB, and a
    denoising observation at 20.4 dB is already 69% of the way."""
    if psnr_best is None:
        return {"steps_to_95": None, "s_to_95": None}
    curve = [(s, v) for s, v in zip(history["step"], history["psnr/gt"]) if math.isfinite(v)]
    start = psnr_start if psnr_start is not None else (curve[0][1] if curve else psnr_best)
    target = start + 0.95 * (psnr_best - start)
    step = next((s for s, v in curve if v >= target), None)
    return {"steps_to_95": step, "s_to_95": None if (step is None or not it_per_s) else round(step / it_per_s, 3)}


def observed_psnr(task, y: torch.Tensor, gt: torch.Tensor | None) -> float | None:
    """``psnr_observed``: the task's naive estimate from y alone (e.g. bicubic for SR) against the
    ground truth; None without one, or when the estimate is not of the image's shape."""
    baseline = task.baseline(y) if gt is not None else None
    return _f(psnr(baseline, gt)) if (baseline is not None and baseline.shape == gt.shape) else None


def evaluate(protocol: str | None, output: str, images: dict, gt: torch.Tensor | None) -> float | None:
    """``psnr_eval``: the ``protocol``'s score of the ``output`` image (final | ema | best) against
    the ground truth; None without either."""
    if protocol is None or gt is None or images.get(output) is None:
        return None
    v = PROTOCOLS[protocol](images[output], gt[0])
    return round(v, 4) if math.isfinite(v) else None


def write_fit(module, fit, i: int, cbs: dict, out_dir: Path, common: dict,
              evaluation: tuple[str | None, str] = (None, "final")) -> dict:
    """The files and metrics of fit ``i`` (channels i·C … (i+1)·C of the packed tensors).
    ``evaluation``: (eval_protocol, eval_output)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prob, task = fit.prob, fit.task
    sl = lambda x: None if x is None else module.fit_slice(x, i)  # noqa: E731
    final = sl(module.final_image())[0]
    ema = sl(module.ema_image())
    y_obs = sl(crop(module.y, module.obs_box))
    gt = prob.x_true
    save_image(final, out_dir / "restored.png")
    observed = task.picture(prob.y)[0]
    save_image(observed, out_dir / "observed.png")
    if ema is not None:
        save_image(ema[0], out_dir / "restored_ema.png")
    best = sl(module.best_image)[0] if gt is not None else None
    if gt is not None:
        save_image(best, out_dir / "restored_best.png")
        save_image(gt[0], out_dir / "ground_truth.png")

    es_cb = cbs.get("es")
    es = es_cb.result(i) if es_cb is not None else {"es_step": None, "es_detected": False, "es_method": None}
    es_image = sl(es_cb.image.cpu()) if (es_cb is not None and es["es_step"] is not None) else None
    if es_image is not None:
        save_image(es_image[0], out_dir / "restored_es.png")
    for name, img in module.method.images(module).items():  # e.g. SGLD's posterior std, scaled to its maximum
        pic = task.view(sl(crop(img, module.box)))[0]
        save_image(pic / pic.amax().clamp_min(1e-12), out_dir / f"{name}.png")
    history = module.history_dict(i)
    write_curves(history, out_dir / "curves.csv")
    best_step = int(module.best_step[i]) if gt is not None else None
    plot_curves(history, out_dir / "psnr.png", best_step, es["es_step"],
                title=f"{type(task).__name__} · {type(fit.net).__name__}")
    psnr_best = _f(module.best_psnr[i]) if gt is not None else None
    psnr_observed = observed_psnr(task, prob.y, gt)
    es_psnr = _f(psnr(es_image, gt)) if (es_image is not None and gt is not None) else None
    held = module.holdout_psnr(module.task(module.last_out)) if module.holdout_mask is not None else None
    metrics = {
        **common,
        "task": type(task).__name__,
        "image": image_name(fit.source),
        "seed": fit.seed,
        "image_size": list(final.shape[-2:]),
        "channels": int(final.shape[0]),
        "ground_truth": gt is not None,
        "psnr_observed": psnr_observed,
        "psnr_final": _f(psnr(final[None], gt)) if gt is not None else None,
        "psnr_ema_final": _f(psnr(ema, gt)) if (gt is not None and ema is not None) else None,
        "psnr_best": psnr_best,
        "best_step": best_step,
        **convergence(history, psnr_best, common.get("it_per_s"), psnr_observed),
        "ssim_final": _f(ssim(final[None], gt)) if gt is not None else None,
        "psnr_obs_final": _f(psnr(crop(task(sl(module.last_out)), module.obs_box), y_obs)),
        "psnr_ema_obs_final": (_f(psnr(crop(task(sl(module.ema)), module.obs_box), y_obs))
                               if ema is not None else None),
        "psnr_holdout": _f(held[i]) if held is not None else None,
        **es,
        "es_psnr": es_psnr,
        "es_gap": round(psnr_best - es_psnr, 4) if (psnr_best is not None and es_psnr is not None) else None,
        "final_minus_best": (round(float(psnr(final[None], gt)) - psnr_best, 4)
                             if (gt is not None and psnr_best is not None) else None),
        "backtracks": int(module.backtracks[i]),
        "eval_protocol": evaluation[0],
        "eval_output": evaluation[1] if evaluation[0] else None,
        "psnr_eval": evaluate(*evaluation, {"final": final, "ema": None if ema is None else ema[0], "best": best}, gt),
        "output_dir": str(out_dir),
    }
    write_json(out_dir / "metrics.json", metrics)
    save_image(panel_of(observed, final, gt, metrics, None if ema is None else ema[0]), out_dir / "panel.png")
    return {"metrics": metrics, "restored": final, "restored_ema": None if ema is None else ema[0],
            "ground_truth": None if gt is None else gt[0], "history": history, "output_dir": out_dir}
