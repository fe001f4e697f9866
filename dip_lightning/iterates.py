"""What a step keeps of its iterates, per fit and on the device: the collapse guard, the EMA of the
outputs and the best iterate against the ground truth.

Functions of the ``DIPModule`` whose buffers they update (``prev_psnr_obs``, ``backtracks``, ``ema``,
``ema_ready``, ``best_psnr``, ``best_step``, ``best_image``); all are ``torch.where`` selections, so
on a GPU the step never waits for the host.
"""
from __future__ import annotations

import torch

from dip_lightning.metrics import psnr


def per_fit(m, v: torch.Tensor, channels: int | None = None) -> torch.Tensor:
    """A length-K vector broadcast over the packed channels (``channels`` per fit, default the
    net's): (1, K·C, 1, 1) ((1, 1, 1, 1) for one fit)."""
    if m.fits == 1:
        return v.view(1, 1, 1, 1)
    return v.repeat_interleave(channels or m.channels).view(1, -1, 1, 1)


def guard(m, step: int, losses: torch.Tensor, psnr_obs: torch.Tensor) -> torch.Tensor:
    """Which fits took a good step (length K). A NaN/Inf loss or output is always bad; with
    ``backtrack_db`` so is a drop of PSNR(A(x̂), y) by more than that many dB (the paper's collapse
    test, every step). Bad fits get the last good step's state back (``backtrack.Backtracker``)."""
    good = torch.isfinite(losses) & torch.isfinite(psnr_obs)
    if m.backtrack_db is not None:
        good = good & ~(psnr_obs < m.prev_psnr_obs - m.backtrack_db)
        m.prev_psnr_obs = torch.where(good, psnr_obs, m.prev_psnr_obs)
    if m.backtrack_db is not None or step in m._row_of:  # else only the NaN guard, every k steps
        restored = m.backtracker.update(good, m._torch_optimizer(), m.sync_free_backtrack)
        m.backtracks += restored.long()
    return good


def update_ema(m, out: torch.Tensor, good: torch.Tensor) -> None:
    """ema ← w·ema + (1 − w)·x̂ for the fits that took a good step (the first good x̂ starts it)."""
    w = m.exp_weight
    new = torch.where(per_fit(m, m.ema_ready), w * m.ema + (1 - w) * out, out)
    m.ema = torch.where(per_fit(m, good), new, m.ema)
    m.ema_ready = m.ema_ready | good


def update_best(m, step: int, img: torch.Tensor, good: torch.Tensor) -> torch.Tensor:
    """Keep each fit's best iterate against the ground truth; return this step's PSNRs."""
    p_gt = psnr(img, m.x_true, m.fits)
    better = good & (p_gt > m.best_psnr)
    m.best_psnr = torch.where(better, p_gt, m.best_psnr)
    m.best_step = torch.where(better, torch.full_like(m.best_step, step), m.best_step)
    m.best_image = torch.where(per_fit(m, better, img.shape[1] // m.fits), img, m.best_image)
    return p_gt
