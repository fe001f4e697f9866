"""DIPModule: the one LightningModule for every task (and for K packed fits).

One training step (Ulyanov et al. 2018, Sec. 3), for each fit k = 1 … K (K = 1 unless ``pack``)::

    z'_k = z_k + reg_noise_std · ε_k,  ε_k ~ N(0, I) fresh each step   (input jitter)
    x̂_k  = f_θk(z'_k)                                                   (image on the padded canvas)
    L    = Σ_k mean((A_k(x̂_k) − y_k)²) [+ λ·TV(x̂_k)]                    (A_k: the fit's operator;
                                                                         task.loss: l1, poisson)
           (a method may change z, x̂, L and the estimate: ``dip_lightning.methods``)
    θ ← optimizer step on L
    ema_k ← w·ema_k + (1 − w)·x̂_k                                       (exp_weight w; ema₀ = x̂₀)

K packed fits are one network with K-fold wider grouped layers (``dip_lightning.packing``); all
tensors hold the fits' channels side by side, [fit 0 | fit 1 | …], and every per-fit quantity
(PSNR, best step, backtracking) is a length-K vector.

Everything per step stays on the device: PSNR/SSIM are computed every ``eval_every`` steps from
the step's own x̂ and written into a preallocated ``history`` tensor; the best iterate and the
collapse guard use ``torch.where``, so on a GPU the step never waits for the host. The restore
itself is ``dip_lightning.backtrack.Backtracker``. Callbacks move ``history`` to the host in chunks.

Reading order: setup and checkpoints, the step (``training_step`` → ``_after_forward``), results.
"""
from __future__ import annotations

import bisect
import math
from typing import Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn as nn

from dip_lightning import iterates
from dip_lightning.backtrack import Backtracker, match_moment_layouts
from dip_lightning.io import crop
from dip_lightning.methods.base import Method
from dip_lightning.optimizers import check_optimizer, make_optimizer
from dip_lightning.history import FIELDS, as_dict, metrics_row, padded
from dip_lightning.metrics import masked_psnr, psnr, split, total_variation
from dip_lightning.seeds import stream_seed
from dip_lightning.tasks.base import data_error


class DIPModule(pl.LightningModule):
    """Fit ``net`` so that ``task(net(z)) ≈ y`` (for K fits at once when ``fits`` > 1).

    Args:
        net: maps z (1, K·D, Hc, Wc) to an image (1, K·C, Hc, Wc) on the padded canvas.
        task: the operator A (a ``dip_lightning.tasks.Task``, or a ``PackedTask`` of K), padded like ``y``.
        optimizer: a callable params -> torch optimizer (Hydra ``_partial_``).
        z: fixed input. y: padded observation. x_true: ground truth (1, K·C, H, W) or None.
        box: (top, left, H, W) of the real image on the canvas; ``box / task.scale`` on y.
        iters: number of optimisation steps. reg_noise_std: input jitter σ.
        exp_weight: EMA weight w of the outputs, or None for no EMA.
        tv_weight: weight λ of the total-variation term λ·TV(x̂) added to the loss (DIP-TV; 0: off).
        backtrack_db: if set, a drop of PSNR(A(x̂), y) by more than this many dB from the previous
            step restores the parameters and optimiser moments of the last good step (paper: 5).
            A non-finite loss or output is always backtracked (checked every step when backtrack_db
            is set, else every ``eval_every`` steps); ``backtracks`` counts the restorations.
        eval_every: compute metrics every k steps (also at step 1 and the last step).
        seed: seeds the input-jitter generator (its own stream, ``dip_lightning.seeds``); ``seeds``
            (one per fit) overrides it for K fits.
        fits: K, the number of packed fits. out_channels: K·C of the net's output (default y's).
        method: the DIP variant's hooks (``dip_lightning.methods``; default plain DIP): what is
            trained, the input, extra loss terms, the step's aftermath and the returned estimate.
        loss_weight: pixel weights w of the data term, y's shape (None: all 1), which is then
            Σ w·(A(x̂) − y)² / Σ w per fit (a tile leaves out the band whose y depends on pixels
            beyond the tile).
        holdout_mask: 1 on the observation pixels held out of the data term (``holdout``), y's
            shape; ``psnr/holdout`` scores A(x̂) against y there at every metric row.
    """

    #: backtracking without reading ``good`` on the host: None = on any device but the CPU
    sync_free_backtrack: bool | None = None

    def __init__(self, net: nn.Module, task: nn.Module, optimizer: Callable, z: torch.Tensor,
                 y: torch.Tensor, x_true: torch.Tensor | None, box: Sequence[int], iters: int,
                 reg_noise_std: float = 0.0, exp_weight: float | None = None,
                 backtrack_db: float | None = None, tv_weight: float = 0.0, eval_every: int = 10, seed: int = 0,
                 memory_format: str = "contiguous", fits: int = 1, seeds: Sequence[int] | None = None,
                 out_channels: int | None = None, method: nn.Module | None = None,
                 loss_weight: torch.Tensor | None = None, holdout_mask: torch.Tensor | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.net, self.task, self.optimizer_factory = net, task, optimizer
        self.iters, self.reg_noise_std = int(iters), float(reg_noise_std)
        self.exp_weight = None if exp_weight is None else float(exp_weight)
        self.backtrack_db = None if backtrack_db is None else float(backtrack_db)
        self.tv_weight = float(tv_weight)
        self.data_term = str(getattr(task, "loss", "l2"))  # the task's data term (``Task.loss``, ``data_error``)
        self.eval_every = max(1, int(eval_every))
        self.fits = k = int(fits)
        self.seeds = [int(s) for s in (seeds if seeds is not None else [seed + i for i in range(k)])]
        if len(self.seeds) != k:
            raise ValueError(f"{len(self.seeds)} seeds for {k} fits")
        self.box = tuple(int(v) for v in box)
        s = int(getattr(task, "scale", 1))
        self.obs_box = task.observation_box(self.box) if hasattr(task, "observation_box") else \
            tuple(v // s for v in self.box)  # where y is not padding (None: y is never padded)
        self._view = getattr(task, "view", None)  # estimate -> picture (complex data: magnitude)
        if memory_format not in ("contiguous", "channels_last"):
            raise ValueError(f"memory_format={memory_format!r}; choose contiguous or channels_last")
        self.channels_last = memory_format == "channels_last"
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
            z = z.contiguous(memory_format=torch.channels_last)

        self.register_buffer("z", z)
        self.register_buffer("y", y)
        self.register_buffer("loss_weight", None if loss_weight is None else loss_weight.expand_as(y).contiguous(),
                             persistent=False)  # made again from the config: not in checkpoints
        self.register_buffer("holdout_mask", None if holdout_mask is None else holdout_mask.expand_as(y).contiguous(),
                             persistent=False)
        self.register_buffer("fitted_mask", None if holdout_mask is None else 1 - self.holdout_mask,
                             persistent=False)  # (made once: the guard reads it every step)
        self.register_buffer("x_true", x_true)
        self.has_gt = x_true is not None
        c, (h, w) = int(out_channels or y.shape[1]), self.box[2:]
        self.channels = c // k  # per fit
        canvas = z.shape[-2:]
        self.register_buffer("ema", torch.zeros(1, c, *canvas))
        self.register_buffer("ema_ready", torch.zeros(k, dtype=torch.bool))
        self.register_buffer("last_out", torch.zeros(1, c, *canvas))
        self.register_buffer("best_image", torch.zeros(1, x_true.shape[1] if self.has_gt else c, h, w))
        self.register_buffer("best_psnr", torch.full((k,), -math.inf))
        self.register_buffer("best_step", torch.zeros(k, dtype=torch.long))
        self.register_buffer("prev_psnr_obs", torch.full((k,), -math.inf))
        self.register_buffer("backtracks", torch.zeros(k, dtype=torch.long))
        self.eval_steps = [i for i in range(1, self.iters + 1)
                           if i == 1 or i % self.eval_every == 0 or i == self.iters]
        self._row_of = {s_: r for r, s_ in enumerate(self.eval_steps)}
        self.register_buffer("history", torch.full((len(self.eval_steps), len(FIELDS), k), math.nan))
        self.backtracker = Backtracker(k)
        self._gens: list[torch.Generator] | None = None
        self._resume_extra: dict | None = None
        self.method = Method() if method is None else method  # the variant's hooks (dip_lightning.methods)
        self.method.attach(self)
        check_optimizer(optimizer, self)

    # ------------------------------------------------------------------ setup and checkpoints
    def configure_optimizers(self):
        return make_optimizer(self)

    def on_fit_start(self) -> None:
        if self._gens is None or self._gens[0].device != self.device:
            self._gens = [torch.Generator(device=self.device).manual_seed(stream_seed(s, "jitter")) for s in self.seeds]
        pending = self._resume_extra
        if pending is not None:  # restore what on_load_checkpoint read, now that the device is known
            for g, state in zip(self._gens, pending.get("gens") or []):
                g.set_state(state)
            # ("snapshot" alone: a checkpoint from before the step counters were kept)
            self.backtracker.load(pending.get("backtrack") or {"snapshot": pending.get("snapshot")}, self.device)
            self._resume_extra = None

    def on_train_start(self) -> None:
        """After Lightning restored a checkpoint's optimiser state: moments and the backtracking
        snapshot in their parameters' layout (``dip_lightning.backtrack.match_moment_layouts``)."""
        opt = self._torch_optimizer()
        match_moment_layouts(opt, self.net.parameters())
        self.backtracker.match_layouts(opt)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Besides weights, buffers and optimiser: the input-jitter RNGs and the backtracking snapshot."""
        checkpoint["dip"] = {"gens": None if self._gens is None else [g.get_state() for g in self._gens],
                             "backtrack": self.backtracker.state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resume_extra = checkpoint.get("dip")
        state = checkpoint.get("state_dict", {})
        if "history" in state:  # a checkpoint from before the later columns loads too
            state["history"] = padded(state["history"])

    def _torch_optimizer(self) -> torch.optim.Optimizer:
        opt = self.optimizers()
        return getattr(opt, "optimizer", opt)  # Lightning's wrapper, or the optimiser itself

    # ------------------------------------------------------------------ the step
    def forward(self, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.z if z is None else z)

    def _input(self) -> torch.Tensor:
        """z + reg_noise_std · ε, a fresh ε per fit from the fit's own generator (z: the method's input)."""
        z = self.method.input(self)
        if self.reg_noise_std <= 0:
            return z
        shape = (1, z.shape[1] // self.fits, *z.shape[-2:])
        eps = torch.cat([torch.randn(shape, generator=g, device=z.device, dtype=z.dtype) for g in self._gens], 1)
        return z + self.reg_noise_std * eps

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        step = self.global_step + 1  # 1-based number of this iteration
        k = self.fits
        cache: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            out, extra = self.method.forward(self, self._input())  # extra: the method's loss terms, per fit
            a = self.task(out)
            a32 = a.to(torch.promote_types(a.dtype, torch.float32))  # bf16 -> fp32; fp64 stays fp64
            err = data_error(a32, self.y, self.data_term)
            if self.loss_weight is None:
                losses = err.reshape(k, -1).mean(1)  # per fit
            else:
                w = self.loss_weight.reshape(k, -1)
                losses = (err.reshape(k, -1) * w).sum(1) / w.sum(1)
            loss = self.method.data_loss(losses)
            if extra is not None:
                loss = loss + extra.sum()
            if self.tv_weight > 0:
                loss = loss + self.tv_weight * sum(total_variation(o) for o in split(out.to(a32.dtype), k))
            self.manual_backward(loss)
            cache.update(out=out.detach().to(a32.dtype), a=a32.detach(), losses=losses.detach(),
                         extra=None if extra is None else extra.detach())
            return loss

        loss = closure()
        self._after_forward(step, cache["out"], cache["a"], cache["losses"], cache["extra"])
        calls = [0]

        def step_closure() -> torch.Tensor:  # LBFGS may re-evaluate; the first call reuses this step's
            calls[0] += 1
            return loss if calls[0] == 1 else closure()

        opt.step(closure=step_closure)
        self.method.after_step(self, step, self.last_out)  # the guarded iterate (a bad step's is the last good)

    @torch.no_grad()
    def _after_forward(self, step: int, out: torch.Tensor, a: torch.Tensor, losses: torch.Tensor,
                       extra: torch.Tensor | None = None) -> None:
        """Collapse guard, EMA, best iterate and (every k steps) metrics, all without a host sync.
        In fp32 (or the run's fp64) with autocast off: Lightning runs ``training_step`` under its
        precision's autocast, and in bf16 SSIM's variance subtraction cancels (0.99 -> 0.69)."""
        with torch.autocast(device_type=out.device.type, enabled=False):
            self._bookkeeping(step, out, a, losses, extra)

    def _bookkeeping(self, step: int, out: torch.Tensor, a: torch.Tensor, losses: torch.Tensor,
                     extra: torch.Tensor | None) -> None:
        psnr_obs = psnr(crop(a, self.obs_box), crop(self.y, self.obs_box), self.fits) if self.holdout_mask is None \
            else self.holdout_psnr(a, held_out=False)  # the guard sees the fitted pixels only
        good = iterates.guard(self, step, losses, psnr_obs)
        g = iterates.per_fit(self, good)
        self.last_out = torch.where(g, out, self.last_out) if step > 1 else out.clone()
        if self.exp_weight is not None:
            iterates.update_ema(self, out, good)
        img = self.view(crop(out, self.box))
        p_gt = iterates.update_best(self, step, img, good) if self.has_gt else None
        row = self._row_of.get(step)
        if row is not None:  # one row of ``history`` (``dip_lightning.history.FIELDS``), on the device
            self.history[row] = metrics_row(self, img, losses, psnr_obs, p_gt, extra, self.holdout_psnr(a))

    def holdout_psnr(self, a: torch.Tensor, held_out: bool = True) -> torch.Tensor | None:
        """PSNR of A(x̂) (``a``, padded like y) against y on the held-out pixels (``held_out=False``:
        the fitted ones), per fit; None without a holdout."""
        if self.holdout_mask is None:
            return None
        m = self.holdout_mask if held_out else self.fitted_mask
        return masked_psnr(crop(a.to(self.y.dtype), self.obs_box), crop(self.y, self.obs_box), crop(m, self.obs_box), self.fits)

    # ------------------------------------------------------------------ results
    @property
    def rows_done(self) -> int:
        """Number of history rows written so far (derived from the step count)."""
        return bisect.bisect_right(self.eval_steps, self.global_step)

    def fit_slice(self, x: torch.Tensor, fit: int) -> torch.Tensor:
        """The channels of fit ``fit`` of a packed (1, K·C, …) tensor."""
        c = x.shape[1] // self.fits
        return x[:, fit * c:(fit + 1) * c]

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """The picture of an estimate (the task's ``view``: complex data -> magnitude; else x)."""
        return x if self._view is None else self._view(x)

    def ema_image(self, raw: bool = False) -> torch.Tensor | None:
        """The EMA on the image's box, as a picture (``raw``: as the net paints it, e.g. re/im)."""
        if self.exp_weight is None:
            return None
        x = crop(self.ema, self.box)
        return x if raw else self.view(x)

    def final_image(self, raw: bool = False, estimate: bool = True) -> torch.Tensor:
        """The estimate on the image's box, as a picture (``raw``: as the net paints it): the last
        good iterate, or the method's own estimate (SGLD: the posterior mean; ``estimate=False``:
        the iterate, which the stopping rule watches)."""
        est = self.method.estimate(self) if estimate else None
        x = crop(self.last_out if est is None else est, self.box)
        return x if raw else self.view(x)

    def history_dict(self, fit: int = 0, upto: int | None = None) -> dict[str, list[float]]:
        return as_dict(self.history, self.eval_steps, fit, self.rows_done if upto is None else upto)
