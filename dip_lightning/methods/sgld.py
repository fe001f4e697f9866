"""SGLD-DIP: Bayesian DIP by Langevin dynamics (Cheng, Gadelha, Maji, Sheldon, CVPR 2019).

After every optimiser step each convolution weight gets Gaussian noise,
θ ← θ + σ_p·lr·ε, ε ~ N(0, I) (the authors' code: σ_p = 2, lr = 0.01; only 4-D tensors), so the
iterates sample a posterior instead of converging. After ``burn_in`` steps the output is collected
every ``sample_every`` steps; the estimate is the samples' mean (the posterior mean), and the
per-pixel standard deviation is saved as ``restored_std.png``. The mean needs no early stopping:
its PSNR stays near the iterates' peak where plain DIP's falls. (Authors' denoising recipe: 20000
steps, burn-in 7000, a sample every 50, input jitter 1/30.)
"""
from __future__ import annotations

import torch

from dip_lightning.methods.base import Method
from dip_lightning.seeds import stream_seed


class SGLD(Method):
    name = "sgld"

    def __init__(self, param_noise: float = 2.0, burn_in: int = 7000, sample_every: int = 50):
        super().__init__()
        if param_noise < 0 or burn_in < 0 or sample_every < 1:
            raise ValueError(f"method=sgld needs param_noise >= 0, burn_in >= 0 and sample_every >= 1; got "
                             f"{param_noise}, {burn_in}, {sample_every}")
        self.param_noise, self.burn_in, self.sample_every = float(param_noise), int(burn_in), int(sample_every)
        self._gen: torch.Generator | None = None
        self._gen_state: torch.Tensor | None = None

    def attach(self, module) -> None:
        c, canvas = module.last_out.shape[1], module.last_out.shape[-2:]
        self.register_buffer("sum", torch.zeros(1, c, *canvas, dtype=torch.float64))
        self.register_buffer("sum_sq", torch.zeros(1, c, *canvas, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self._seed = stream_seed(module.seeds[0], "langevin")  # its own stream of the run's seed

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self._seed)
            if self._gen_state is not None:
                self._gen.set_state(self._gen_state)
                self._gen_state = None
        return self._gen

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
            gen = self._generator(out.device)
            for p in self.noised(module):
                p.add_(torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype), alpha=scale)
        if step > self.burn_in and (step - self.burn_in) % self.sample_every == 0:
            o = out.double()
            self.sum += o
            self.sum_sq += o * o
            self.count += 1

    def estimate(self, module) -> torch.Tensor | None:
        if int(self.count) == 0:
            return None
        return (self.sum / self.count).to(module.last_out.dtype)

    def images(self, module) -> dict[str, torch.Tensor]:
        n = int(self.count)
        if n == 0:
            return {}
        mean = self.sum / n
        std = (self.sum_sq / n - mean * mean).clamp_min(0).sqrt()
        return {"restored_std": (std / std.amax().clamp_min(1e-12)).to(module.last_out.dtype)}

    def get_extra_state(self) -> dict:
        return {"gen": None if self._gen is None else self._gen.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self._gen, self._gen_state = None, (state or {}).get("gen")
