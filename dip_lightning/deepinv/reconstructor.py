"""Our DIP as a deepinv reconstructor: ``x̂ = DIPReconstructor(iters=...)(y, physics)``.

It is ``run()``'s engine, not a second loop: the config is composed as ``dip-restore`` composes it,
``dip_lightning.run.build`` makes one fit per measurement in the batch (B packed fits, each from
``seed``) with ``PhysicsTask(physics)`` as the operator, and ``dip_lightning.run.fit`` runs
Lightning's loop over the same ``DIPModule`` step. Nothing is written to disk.
"""
from __future__ import annotations

from typing import Any

import torch

from dip_lightning.deepinv.lazy import import_deepinv

Reconstructor = import_deepinv().models.Reconstructor

#: what a reconstructor call never needs: files, loggers, progress bars, stopping folders
CALL_OVERRIDES = {"logger": "none", "trainer.enable_progress_bar": False, "snapshot_every": 0,
                  "snapshot_log_spaced": False, "ckpt_every": 0, "cpu_malloc": "system"}


class DIPReconstructor(Reconstructor):
    """Deep Image Prior fitted afresh to every call's measurements (deepinv's own carries weights over).

    Args:
        iters: optimisation steps per call.
        seed: every call starts from this seed (the net, z and the input jitter), so two calls on
            the same y give the same x̂; each of B measurements in a batch is fitted with it.
        output: ``ema`` (the running average of the outputs; needs ``exp_weight``) or ``final``.
        overrides: ``dip-restore``'s keys, e.g. ``net="skip"``, ``**{"optim.lr": 0.01}``,
            ``**{"task.complex": True}``; ``task`` is always ``physics``. The step (lr, input
            jitter, TV) follows the physics' data (``dip_lightning.steps``: complex MRI data get
            lr 0.005, no jitter and TV 0.01; tomography TV 0.05) unless these set it.
    """

    def __init__(self, iters: int = 3000, seed: int = 0, output: str = "ema", device: str = "cpu",
                 **overrides: Any):
        super().__init__(device=device)
        if output not in ("ema", "final"):
            raise ValueError(f"output={output!r}; choose ema (the outputs' running average) or final (the last iterate)")
        self.iters, self.seed, self.output = int(iters), int(seed), output
        self.overrides = {k: v for k, v in overrides.items() if k != "task"}
        self.last_metrics: dict | None = None  # the last call's per-fit losses and steps (for inspection)

    def config(self, physics=None):
        """The composed config; with ``physics``, ``task.complex`` from its class (MRI: complex),
        so the step suits its data (``dip_lightning.steps``) unless an override says otherwise."""
        from dip_lightning.config import compose_config
        from dip_lightning.tasks.physics import overrides_for

        found = {} if physics is None else overrides_for(physics)
        return compose_config({"task": "physics", **CALL_OVERRIDES, **found, **self.overrides,
                               "iters": self.iters, "seed": self.seed})

    def forward(self, y: torch.Tensor, physics, **kwargs) -> torch.Tensor:
        """Fit B = ``y.shape[0]`` packed DIPs to y under ``physics``; x̂ has the physics' image shape.
        Runs with gradients on and BatchNorm in training mode whatever the caller's mode."""
        from dip_lightning.instantiate import instantiate
        from dip_lightning.nets.upsample import set_deterministic
        from dip_lightning.run import build
        from dip_lightning.stages import fit

        cfg = self.config(physics)
        if self.output == "ema" and cfg.exp_weight is None:
            raise ValueError("output=ema needs an EMA; set exp_weight (e.g. 0.99) or output='final'")
        set_deterministic(bool(cfg.get("deterministic", False)))
        home = next((t.device for t in (*physics.parameters(), *physics.buffers())), None)
        physics.to("cpu")  # the fit is built on the CPU; Lightning moves it to the trainer's device
        try:
            with torch.inference_mode(False), torch.enable_grad():
                built = build(cfg, make_task=lambda: instantiate(cfg.task, physics=physics),
                              observations=y.detach().to("cpu"))
                status, reason = fit(cfg, built)
        finally:
            if home is not None:
                physics.to(home)  # the caller's physics goes back where it was
        if reason:
            raise RuntimeError(f"the DIP fit {status}: {reason}")
        module = built.module
        x = module.ema_image(raw=True) if self.output == "ema" else module.final_image(raw=True)
        x = torch.cat([module.fit_slice(x, b) for b in range(module.fits)], 0)
        self.last_metrics = {"status": status, "steps": int(module.global_step)}
        return x.detach().to(device=y.device, dtype=y.dtype if y.is_floating_point() else x.dtype)
