"""DIPModule: the one LightningModule for every task.

One training step (Ulyanov et al. 2018, Sec. 3)::

    z' = z + reg_noise_std · ε,  ε ~ N(0, I) fresh each step   (input jitter)
    x̂  = f_θ(z')                                                 (image on the padded canvas)
    L  = mean((A(x̂) − y)²) [+ λ·TV(x̂)]                          (A = the task's operator)
    θ ← optimizer step on L
    ema ← w·ema + (1 − w)·x̂                                      (exp_weight w; ema₀ = x̂₀)

Everything per step stays on the device: PSNR/SSIM are computed every ``eval_every`` steps from
the step's own x̂ and written into a preallocated ``history`` tensor; the best iterate and the
backtracking decision use ``torch.where``, so the step never waits for the host. Callbacks
move ``history`` to the host in chunks.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from dip_lightning.io import crop

#: columns of ``DIPModule.history`` (one row per evaluated step; NaN where not applicable)
FIELDS = ("loss", "psnr/obs", "psnr/gt", "psnr_ema/obs", "psnr_ema/gt", "ssim/gt", "ssim_ema/gt")


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return peak_signal_noise_ratio(a, b, data_range=1.0)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if min(a.shape[-2:]) < 11:  # the 11×11 Gaussian window needs at least 11 pixels
        return torch.full((), float("nan"), device=a.device)
    return structural_similarity_index_measure(a, b, data_range=1.0)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV: mean |x[i+1, j] − x[i, j]| + mean |x[i, j+1] − x[i, j]|."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


class DIPModule(pl.LightningModule):
    """Fit ``net`` so that ``task(net(z)) ≈ y``.

    Args:
        net: maps z (1, D, Hc, Wc) to an image (1, C, Hc, Wc) on the padded canvas.
        task: the operator A (a ``dip_lightning.tasks.Task``), padded like ``y``.
        optimizer: a callable params -> torch optimizer (Hydra ``_partial_``).
        z: fixed input. y: padded observation. x_true: ground truth (1, C, H, W) or None.
        box: (top, left, H, W) of the real image on the canvas; ``box / task.scale`` on y.
        iters: number of optimisation steps. reg_noise_std: input jitter σ.
        exp_weight: EMA weight w of the outputs, or None for no EMA.
        tv_weight: weight λ of the total-variation term λ·TV(x̂) added to the loss (DIP-TV; 0: off).
        backtrack_db: if set, a drop of PSNR(A(x̂), y) by more than this many dB from the previous
            step restores the parameters and optimiser moments of the last good step (paper: 5).
        eval_every: compute metrics every k steps (also at step 1 and the last step).
        seed: seeds the input-jitter generator.
    """

    def __init__(self, net: nn.Module, task: nn.Module, optimizer: Callable, z: torch.Tensor,
                 y: torch.Tensor, x_true: torch.Tensor | None, box: Sequence[int], iters: int,
                 reg_noise_std: float = 0.0, exp_weight: float | None = None,
                 backtrack_db: float | None = None, tv_weight: float = 0.0, eval_every: int = 10, seed: int = 0,
                 memory_format: str = "contiguous"):
        super().__init__()
        self.automatic_optimization = False
        self.net, self.task, self.optimizer_factory = net, task, optimizer
        self.iters, self.reg_noise_std = int(iters), float(reg_noise_std)
        self.exp_weight = None if exp_weight is None else float(exp_weight)
        self.backtrack_db = None if backtrack_db is None else float(backtrack_db)
        self.tv_weight = float(tv_weight)
        self.eval_every, self.seed = max(1, int(eval_every)), int(seed)
        self.box = tuple(int(v) for v in box)
        s = int(getattr(task, "scale", 1))
        self.obs_box = tuple(v // s for v in self.box)
        if memory_format not in ("contiguous", "channels_last"):
            raise ValueError(f"memory_format={memory_format!r}; choose contiguous or channels_last")
        self.channels_last = memory_format == "channels_last"
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
            z = z.contiguous(memory_format=torch.channels_last)

        self.register_buffer("z", z)
        self.register_buffer("y", y)
        self.register_buffer("x_true", x_true)
        self.has_gt = x_true is not None
        c, (h, w) = y.shape[1], self.box[2:]
        canvas = z.shape[-2:]
        self.register_buffer("ema", torch.zeros(1, c, *canvas))
        self.register_buffer("ema_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("last_out", torch.zeros(1, c, *canvas))
        self.register_buffer("best_image", torch.zeros(1, c, h, w))
        self.register_buffer("best_psnr", torch.full((), -math.inf))
        self.register_buffer("best_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("prev_psnr_obs", torch.full((), -math.inf))
        self.register_buffer("backtracks", torch.zeros((), dtype=torch.long))
        self.eval_steps = [i for i in range(1, self.iters + 1)
                           if i == 1 or i % self.eval_every == 0 or i == self.iters]
        self._row_of = {s_: r for r, s_ in enumerate(self.eval_steps)}
        self.register_buffer("history", torch.full((len(self.eval_steps), len(FIELDS)), math.nan))
        self._snapshot: list[torch.Tensor] | None = None
        self._gen: torch.Generator | None = None
        self._resume_extra: dict | None = None

    # ------------------------------------------------------------------ setup
    def configure_optimizers(self):
        return self.optimizer_factory(self.net.parameters())

    def on_fit_start(self) -> None:
        if self._gen is None or self._gen.device != self.device:
            self._gen = torch.Generator(device=self.device).manual_seed(self.seed)
        pending = getattr(self, "_resume_extra", None)
        if pending is not None:  # restore what on_load_checkpoint read, now that the device is known
            if pending["gen"] is not None:
                self._gen.set_state(pending["gen"])
            snap = pending["snapshot"]
            self._snapshot = None if snap is None else [t.to(self.device) for t in snap]
            self._resume_extra = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Besides weights, buffers and optimiser: the input-jitter RNG and the backtracking snapshot."""
        checkpoint["dip"] = {"gen": None if self._gen is None else self._gen.get_state(),
                             "snapshot": self._snapshot}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resume_extra = checkpoint.get("dip")

    @property
    def rows_done(self) -> int:
        """Number of history rows written so far (derived from the step count)."""
        import bisect

        return bisect.bisect_right(self.eval_steps, self.global_step)

    # ------------------------------------------------------------------ the step
    def forward(self, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.z if z is None else z)

    def _input(self) -> torch.Tensor:
        if self.reg_noise_std <= 0:
            return self.z
        eps = torch.randn(self.z.shape, generator=self._gen, device=self.z.device, dtype=self.z.dtype)
        return self.z + self.reg_noise_std * eps

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        step = self.global_step + 1  # 1-based number of this iteration
        cache: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            out = self.net(self._input())
            a = self.task(out)
            loss = F.mse_loss(a.float(), self.y)
            if self.tv_weight > 0:
                loss = loss + self.tv_weight * total_variation(out.float())
            self.manual_backward(loss)
            cache.update(out=out.detach(), a=a.detach(), loss=loss.detach())
            return loss

        loss = closure()
        self._after_forward(step, cache["out"].float(), cache["a"].float(), cache["loss"])
        calls = [0]

        def step_closure() -> torch.Tensor:  # LBFGS may re-evaluate; the first call reuses this step's
            calls[0] += 1
            return loss if calls[0] == 1 else closure()

        opt.step(closure=step_closure)

    @torch.no_grad()
    def _after_forward(self, step: int, out: torch.Tensor, a: torch.Tensor, loss: torch.Tensor) -> None:
        """Backtracking, EMA, best iterate and (every k steps) metrics, all without a host sync."""
        y_obs = crop(self.y, self.obs_box)
        psnr_obs = psnr(crop(a, self.obs_box), y_obs)
        good = torch.isfinite(loss) & torch.isfinite(psnr_obs)
        if self.backtrack_db is not None:
            good = good & ~(psnr_obs < self.prev_psnr_obs - self.backtrack_db)
            self._backtrack(good)
            self.prev_psnr_obs = torch.where(good, psnr_obs, self.prev_psnr_obs)
            self.backtracks += (~good).long()
        self.last_out = torch.where(good, out, self.last_out) if step > 1 else out.clone()
        if self.exp_weight is not None:
            w = self.exp_weight
            new = torch.where(self.ema_ready, w * self.ema + (1 - w) * out, out)
            self.ema = torch.where(good, new, self.ema)
            self.ema_ready = self.ema_ready | good
        img = crop(out, self.box)
        if self.has_gt:
            p_gt = psnr(img, self.x_true)
            better = good & (p_gt > self.best_psnr)
            self.best_psnr = torch.where(better, p_gt, self.best_psnr)
            self.best_step = torch.where(better, torch.full_like(self.best_step, step), self.best_step)
            self.best_image = torch.where(better, img, self.best_image)
        row = self._row_of.get(step)
        if row is not None:
            nan = torch.full((), math.nan, device=out.device)
            ema_img = crop(self.ema, self.box) if self.exp_weight is not None else None
            vals = [loss.float(), psnr_obs,
                    p_gt if self.has_gt else nan,
                    psnr(crop(self.task(self.ema), self.obs_box), y_obs) if ema_img is not None else nan,
                    psnr(ema_img, self.x_true) if (ema_img is not None and self.has_gt) else nan,
                    ssim(img, self.x_true) if self.has_gt else nan,
                    ssim(ema_img, self.x_true) if (ema_img is not None and self.has_gt) else nan]
            self.history[row] = torch.stack([v.float().reshape(()) for v in vals])

    def _backtrack(self, good: torch.Tensor) -> None:
        """Where ``good`` is False restore θ and Adam-style moments from the last good step;
        then take the (possibly restored) state as the new snapshot. Gradients of a bad step
        are zeroed so the coming optimiser step starts from the restored state."""
        tensors = self._state_tensors()
        if self._snapshot is None or len(self._snapshot) != len(tensors):
            self._snapshot = [t.detach().clone() for t in tensors]
            return
        for t, s in zip(tensors, self._snapshot):
            t.copy_(torch.where(good, t, s))
            s.copy_(t)
        for p in self.net.parameters():
            if p.grad is not None:
                p.grad.copy_(torch.where(good, p.grad, torch.zeros_like(p.grad)))

    def _state_tensors(self) -> list[torch.Tensor]:
        params = list(self.net.parameters())
        out = [p.data for p in params]
        opt = self.optimizers()
        opt = getattr(opt, "optimizer", opt)
        for p in params:  # per-parameter moments (Adam exp_avg/exp_avg_sq, SGD momentum, ...)
            for v in opt.state.get(p, {}).values():
                if torch.is_tensor(v) and v.shape == p.shape:
                    out.append(v)
        return out

    # ------------------------------------------------------------------ results
    def ema_image(self) -> torch.Tensor | None:
        return crop(self.ema, self.box) if self.exp_weight is not None else None

    def final_image(self) -> torch.Tensor:
        return crop(self.last_out, self.box)

    def history_dict(self, upto: int | None = None) -> dict[str, list[float]]:
        n = self.rows_done if upto is None else upto
        h = self.history[:n].cpu()
        d = {"step": self.eval_steps[:n]}
        d.update({f: h[:, i].tolist() for i, f in enumerate(FIELDS)})
        return d
