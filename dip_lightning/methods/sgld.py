"""SGLD-DIP: Bayesian DIP by Langevin dynamics (Cheng, Gadelha, Maji, Sheldon, CVPR 2019).

After every optimiser step each convolution weight gets Gaussian noise,
θ ← θ + σ_p·lr·ε, ε ~ N(0, I) (the authors' code: σ_p = 2, lr = 0.01; only 4-D tensors), so the
iterates sample a posterior instead of converging. After ``burn_in`` steps the output is collected
every ``sample_every`` steps (each a fraction of ``iters`` when below 1, else a number of steps: the
defaults, 0.35 and 0.0025, are the authors' 7000 and 50 of 20000, so any ``iters`` takes samples); the estimate is the samples' mean (the posterior mean), and the
per-pixel standard deviation is saved as ``restored_std.png``. The mean needs no early stopping:
its PSNR stays near the iterates' peak where plain DIP's falls. (Authors' denoising recipe: 20000
steps, burn-in 7000, a sample every 50, input jitter 1/30.)
"""
from __future__ import annotations

import torch

from dip_lightning.methods.base import Method, Streams
from dip_lightning.seeds import stream_seed


def steps_of(value: float, iters: int, least: int) -> int:
    """A number of steps: ``value`` itself when it is 1 or more, else that fraction of ``iters``
    (rounded, at least ``least``)."""
    if value >= 1:
        return int(value)
    return max(least, round(float(value) * iters))


class SGLD(Method):
    name = "sgld"

    def __init__(self, param_noise: float = 2.0, burn_in: float = 0.35, sample_every: float = 0.0025):
        super().__init__()
        if param_noise < 0 or burn_in < 0 or sample_every <= 0:
            raise ValueError(f"method=sgld needs param_noise >= 0, burn_in >= 0 and sample_every > 0; got "
                             f"{param_noise}, {burn_in}, {sample_every}")
        self.param_noise = float(param_noise)
        self.burn_in_cfg, self.sample_every_cfg = burn_in, sample_every
        self.burn_in, self.sample_every = 0, 1  # in steps, set by attach() from iters
        self.streams = Streams()  # per-fit random streams (SGLD: the Langevin noise; Self-Guided: η)

    def attach(self, module) -> None:
        self.burn_in = steps_of(self.burn_in_cfg, module.iters, least=0)
        self.sample_every = steps_of(self.sample_every_cfg, module.iters, least=1)
        if self.burn_in >= module.iters:
            raise ValueError(f"method.burn_in={self.burn_in_cfg} is not below iters={module.iters}: SGLD would take no "
                             f"sample; lower method.burn_in (a fraction below 1 is one of iters: the authors' 0.35)")
        c, canvas = module.last_out.shape[1], module.last_out.shape[-2:]
        self.register_buffer("sum", torch.zeros(1, c, *canvas, dtype=torch.float64))
        self.register_buffer("sum_sq", torch.zeros(1, c, *canvas, dtype=torch.float64))
        self.streams.seeds = [stream_seed(s, "langevin") for s in module.seeds]  # one stream per fit, of its seed

    def samples(self, step: int) -> int:
        """How many outputs are in the mean after ``step`` steps (host arithmetic: no device read)."""
        return 0 if step <= self.burn_in else (step - self.burn_in) // self.sample_every

    @staticmethod
    def noised(module) -> list[torch.nn.Parameter]:
        """The tensors that get the Langevin noise: every 4-D (convolution) weight."""
        return [p for p in module.net.parameters() if p.requires_grad and p.ndim == 4]

    def lr(self, module) -> float:
        return float(module._torch_optimizer().param_groups[0]["lr"])

    @torch.no_grad()
    def after_step(self, module, step: int, out: torch.Tensor) -> None:
        scale = self.param_noise * self.lr(module)
        if scale > 0:
            gens = self.streams.on(out.device)
            for p in self.noised(module):  # packed weights: fit k's block along dim 0, from fit k's stream
                noise = torch.cat([torch.randn(blk.shape, generator=g, device=p.device, dtype=p.dtype)
                                   for blk, g in zip(p.chunk(len(gens), 0), gens)], 0)
                p.add_(noise, alpha=scale)
        if step > self.burn_in and (step - self.burn_in) % self.sample_every == 0:
            o = out.double()
            self.sum += o
            self.sum_sq += o * o

    def estimate(self, module) -> torch.Tensor | None:
        n = self.samples(int(module.global_step))
        return None if n == 0 else (self.sum / n).to(module.last_out.dtype)

    def images(self, module) -> dict[str, torch.Tensor]:
        """The per-pixel posterior standard deviation (saved scaled to its maximum)."""
        n = self.samples(int(module.global_step))
        if n == 0:
            return {}
        mean = self.sum / n
        return {"restored_std": (self.sum_sq / n - mean * mean).clamp_min(0).sqrt().to(module.last_out.dtype)}

    def get_extra_state(self) -> dict:
        return self.streams.state()

    def set_extra_state(self, state: dict) -> None:
        self.streams.load(state)
