"""The metric rows of a fit: ``FIELDS``, one row computed on the device, and the host-side dict.

``DIPModule.history`` is a preallocated (rows, len(FIELDS), K) tensor, one row per evaluated step,
NaN where a column does not apply (no ground truth, no EMA, no method loss).
"""
from __future__ import annotations

import math

import torch

from dip_lightning.io import crop
from dip_lightning.metrics import psnr, ssim

#: the columns of a history row
FIELDS = ("loss", "psnr/obs", "psnr/gt", "psnr_ema/obs", "psnr_ema/gt", "ssim/gt", "ssim_ema/gt", "loss/method",
          "psnr/holdout")


def metrics_row(module, img: torch.Tensor, losses: torch.Tensor, psnr_obs: torch.Tensor,
                p_gt: torch.Tensor | None, extra: torch.Tensor | None,
                p_holdout: torch.Tensor | None = None) -> torch.Tensor:
    """One row (len(FIELDS), K) for the step's picture ``img``, losses and PSNRs, without a host sync."""
    k, m = module.fits, module
    nan = torch.full((k,), math.nan, device=img.device)
    ema = m.exp_weight is not None
    ema_img = m.view(crop(m.ema, m.box)) if ema else None
    gt = m.has_gt
    vals = [losses.float(), psnr_obs,
            p_gt if gt else nan,
            psnr(crop(m.task(m.ema), m.obs_box), crop(m.y, m.obs_box), k) if ema else nan,
            psnr(ema_img, m.x_true, k) if (ema and gt) else nan,
            ssim(img, m.x_true, k) if gt else nan,
            ssim(ema_img, m.x_true, k) if (ema and gt) else nan,
            nan if extra is None else extra.float().expand(k),
            nan if p_holdout is None else p_holdout]
    return torch.stack([v.float().reshape(k) for v in vals])


def as_dict(history: torch.Tensor, steps: list[int], fit: int, rows: int) -> dict[str, list[float]]:
    """The first ``rows`` rows of fit ``fit`` on the host: {"step": [...], field: [...]}."""
    h = history[:rows, :, fit].cpu()
    return {"step": steps[:rows], **{f: h[:, i].tolist() for i, f in enumerate(FIELDS)}}


def padded(history: torch.Tensor) -> torch.Tensor:
    """A checkpoint's history from before the later columns, NaN-padded to len(FIELDS)."""
    n = len(FIELDS) - history.shape[1]
    if n <= 0:
        return history
    return torch.cat([history, torch.full((history.shape[0], n, history.shape[2]), math.nan, dtype=history.dtype)], 1)
