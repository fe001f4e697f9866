"""Early stopping without ground truth: ES-WMV and ES-EMV (Wang et al., "Early Stopping for Deep
Image Prior", TMLR 2023).

Both track how much the output still moves. ES-WMV: the windowed moving variance of the last W
outputs x_{t−W+1..t},

    VAR_t = 1/(W·N) · Σ_w ‖x_{t−w} − x̄_t‖² = 1/(W·N) · Σ_w ‖x_{t−w}‖² − 1/N · ‖x̄_t‖²,

kept with running sums (S1 = Σ x, S2 = Σ ‖x‖², float64) and a ring buffer of the W outputs, so a
step costs O(image), not O(W·image). ES-EMV replaces the window by exponential moving statistics
(μ ← μ + α·δ, v ← (1 − α)·(v + α·‖δ‖²/N), δ = x − μ): constant memory. The detection is the step of
the minimum variance once it has not improved for ``patience`` steps; the output at that step is
the answer. All statistics live on the device; the host reads the stall counter only every
``check_every`` steps (to stop the fit).
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch


class VarianceTracker:
    """The ES statistics on a stream of images, independent of Lightning (also used in tests).

    Images are (1, K·C, H, W) with the channels of K packed fits side by side (K = ``fits``); the
    variance is per fit, a length-K vector."""

    def __init__(self, method: str = "wmv", window: int = 100, alpha: float = 0.1, fits: int = 1):
        if method not in ("wmv", "emv"):
            raise ValueError(f"es.method={method!r}; choose wmv or emv")
        if int(window) < 2:
            raise ValueError(f"es.window={window} must be at least 2")
        if not 0.0 < float(alpha) < 1.0:
            raise ValueError(f"es.alpha={alpha} must be in (0, 1)")
        self.method, self.window, self.alpha, self.fits = method, int(window), float(alpha), int(fits)
        self.count = 0
        self.state: dict[str, torch.Tensor] = {}

    def _per_fit_sum(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.fits, -1).sum(1)

    def update(self, x: torch.Tensor) -> torch.Tensor | None:
        """Add one image; return the current per-fit variance (K,), None while warming up."""
        x = x.detach()
        n = x.numel() // self.fits
        if not self.state:
            z64 = dict(device=x.device, dtype=torch.float64)
            if self.method == "wmv":
                self.state = {"ring": torch.zeros((self.window, *x.shape), device=x.device, dtype=x.dtype),
                              "s1": torch.zeros(x.shape, **z64), "s2": torch.zeros(self.fits, **z64)}
            else:
                self.state = {"mu": x.double().clone(), "var": torch.zeros(self.fits, **z64)}
        s = self.state
        self.count += 1
        if self.method == "wmv":
            slot = (self.count - 1) % self.window
            old = s["ring"][slot].double()
            xd = x.double()
            s["s1"] += xd - old
            s["s2"] += self._per_fit_sum(xd * xd) - self._per_fit_sum(old * old)
            s["ring"][slot] = x
            if self.count < self.window:
                return None
            mean = s["s1"] / self.window
            return (s["s2"] / self.window - self._per_fit_sum(mean * mean)).clamp_min(0.0) / n
        delta = x.double() - s["mu"]
        s["mu"] += self.alpha * delta
        s["var"] = (1 - self.alpha) * (s["var"] + self.alpha * self._per_fit_sum(delta * delta) / n)
        return s["var"] if self.count >= self.window else None


def newly_detected(best_step: torch.Tensor, detected: list, step: int, patience: int) -> list[int]:
    """The fits not yet detected whose best step is ``patience`` or more steps old (one host read);
    their ``detected`` entries are set to that step."""
    new = []
    for fit, best in enumerate(best_step.tolist()):
        if detected[fit] is None and best > 0 and step - best >= patience:
            detected[fit] = best
            new.append(fit)
    return new


def stopping_result(best_step: torch.Tensor | None, detected: list, fit: int, method: str) -> dict:
    """es_step of ``fit``: the detected step, or without detection the best step so far (None before any)."""
    if best_step is None or int(best_step[fit]) == 0:
        return {"es_step": None, "es_detected": False, "es_method": method}
    found = detected[fit] if fit < len(detected) else None
    return {"es_step": found or int(best_step[fit]), "es_detected": found is not None, "es_method": method}


class EarlyStopping(pl.Callback):
    """ES-WMV / ES-EMV as a callback on the step's own output (the cropped image), per packed fit.

    Args:
        method: 'wmv' (windowed moving variance) or 'emv' (exponential moving variance).
        window: W for WMV; for EMV the number of warm-up steps before tracking starts.
        patience: P, steps without a new variance minimum that count as detection.
        alpha: EMV smoothing (published 0.1).
        mode: 'stop' ends the fit at detection (of every packed fit); 'mark' keeps going and records it.
        check_every: how often the host looks at the stall counter (one sync per check).
    Published defaults (ES-WMV): W = 100, P = 1000.
    """

    def __init__(self, method: str = "wmv", window: int = 100, patience: int = 1000, alpha: float = 0.1,
                 mode: str = "stop", check_every: int = 50):
        if mode not in ("stop", "mark"):
            raise ValueError(f"es.mode={mode!r}; choose stop or mark")
        if int(patience) < 1:
            raise ValueError(f"es.patience={patience} must be a positive number of steps")
        self.tracker = VarianceTracker(method, window, alpha)
        self.patience, self.mode, self.check_every = int(patience), mode, max(1, int(check_every))
        self.best_var: torch.Tensor | None = None
        self.best_step: torch.Tensor | None = None
        self.image: torch.Tensor | None = None
        self.detected: list[int | None] = []
        self.stopped = False

    @property
    def method(self) -> str:
        return self.tracker.method

    def on_train_start(self, trainer, module) -> None:
        """Size the statistics for the module's fits; after a resume move them to its device."""
        k = getattr(module, "fits", 1)
        self.tracker.fits = k  # also after a resume, whose state_dict restored ``detected`` (K long)
        if len(self.detected) != k:
            self.detected = [None] * k
        if self.detected and all(d is not None for d in self.detected):
            self.tracker.state = {}  # a checkpoint written after detection by an older version kept it
        dev = module.device
        self.tracker.state = {key: v.to(dev) for key, v in self.tracker.state.items()}
        for name in ("best_var", "best_step", "image"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, v.to(dev))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        k = getattr(module, "fits", 1)
        if not self.detected:
            self.tracker.fits, self.detected = k, [None] * k
        if all(d is not None for d in self.detected):
            return
        step = trainer.global_step
        x = module.final_image(estimate=False)  # the iterate (not a method's running estimate)
        var = self.tracker.update(x)
        if self.image is None:
            self.image = x.clone()
            self.best_var = torch.full((k,), math.inf, device=x.device, dtype=torch.float64)
            self.best_step = torch.zeros(k, device=x.device, dtype=torch.long)
        if var is not None:
            # a fit already detected keeps its image and step (its best variance is frozen at -inf)
            better = var < self.best_var
            self.best_var = torch.where(better, var, self.best_var)
            self.best_step = torch.where(better, torch.full_like(self.best_step, step), self.best_step)
            per_channel = better.repeat_interleave(x.shape[1] // k).view(1, -1, 1, 1)
            self.image = torch.where(per_channel, x, self.image)
        if step % self.check_every == 0 and var is not None:
            for fit in newly_detected(self.best_step, self.detected, step, self.patience):  # one host sync
                self.best_var[fit] = -math.inf
            if all(d is not None for d in self.detected):
                self.tracker.state = {}  # no longer updated: free the window (W images) and its checkpoint share
                if self.mode == "stop":
                    self.stopped = True
                    trainer.should_stop = True

    # ------------------------------------------------------------- results / checkpointing
    def result(self, fit: int = 0) -> dict:
        """es_step: detected step (or, without detection, the minimum-variance step so far)."""
        return stopping_result(self.best_step, self.detected, fit, self.method)

    def state_dict(self) -> dict:
        return {"tracker_state": self.tracker.state, "count": self.tracker.count, "best_var": self.best_var,
                "best_step": self.best_step, "image": self.image, "detected": self.detected,
                "stopped": self.stopped}

    def load_state_dict(self, state: dict) -> None:
        self.tracker.state, self.tracker.count = state["tracker_state"], state["count"]
        self.best_var, self.best_step, self.image = state["best_var"], state["best_step"], state["image"]
        self.detected, self.stopped = state["detected"], state["stopped"]
