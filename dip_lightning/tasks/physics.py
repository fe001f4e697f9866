"""Any deepinv physics as a task: E = mean((A(x̂) − y)²), with A and y = physics(x) from deepinv.

The observation may have any shape (k-space (1, 2, H, W), a sinogram, a compressed-sensing
vector (1, m)), so y is never padded or cropped: the net paints on an image-space canvas padded to
its multiple, and ``forward`` crops the canvas back to the physics' image size before A.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from dip_lightning.io import pil_resize
from dip_lightning.seeds import stream_seed
from dip_lightning.steps import CT_PHYSICS, CT_STEP
from dip_lightning.tasks.base import Task


def _is_config(node: Any) -> bool:
    return hasattr(node, "get") and node.get("_target_") is not None


class PhysicsTask(Task):
    """``physics``: a ``deepinv.physics.Physics``, or a config node (``_target_``) built when the
    observation is made, with the global RNG seeded from the run's seed, so a random mask, a
    sensing matrix or the noise (deepinv's noise models draw from the global RNG unless given an
    ``rng``; ours get ``dip_lightning.deepinv.seeded_generator``) follow the seed: the same seed
    gives the same y. A physics object's own noise generator is reseeded from the run's seed.

    ``size`` (int or [H, W]): the clean image is resized (its shorter side) and centre-cropped to
    the physics' image size first; None keeps it. ``channels``: 1 makes it grayscale (channel mean).
    ``complex``: the image is complex, real + imaginary as 2 channels (MRI): a grayscale image
    becomes real + 0j, the net's output is linear (no sigmoid), and PSNR, the pictures and the
    stopping rule use the magnitude; None: True for deepinv's MRI physics.
    """

    image_observation = False  # y is not an image of the restored size: never padded or cropped
    local = False  # a physics may mix the whole image (MRI, CT, compressed sensing): never tiled

    def __init__(self, physics: Any, size: int | Sequence[int] | None = None, channels: int | None = None,
                 complex: bool | None = None):
        super().__init__()
        _ = self._dinv  # deepinv is needed from here on: a clear ImportError when it is missing
        if physics is None:
            raise ValueError("task=physics needs task.physics: a deepinv physics config node with its _target_ "
                             "(see configs/task/deepinv_*.yaml), or restore(..., physics=obj)")
        self.physics_cfg = physics if _is_config(physics) else None
        self.physics = None if self.physics_cfg is not None else physics
        if self.physics is not None and not isinstance(self.physics, self._dinv.physics.Physics):
            raise ValueError(f"task.physics is a {type(physics).__name__}; give a deepinv.physics.Physics "
                             f"or a config node with its _target_")
        self.size = None if size is None else ((int(size),) * 2 if isinstance(size, int) else tuple(int(s) for s in size))
        self.channels = None if channels is None else int(channels)
        if self.channels not in (None, 1, 3):
            raise ValueError(f"task.channels={channels}; choose 1 (grayscale), 3 or null (keep the image's)")
        self.complex = complex
        if complex is None:  # the physics' class decides, before it is built (the net's output needs it)
            self.complex = self._is_mri(self.physics if self.physics is not None else self._target_class())
        self.image_shape: tuple[int, ...] | None = None  # (C, H, W) of the image A takes
        self.box: tuple[int, int, int, int] | None = None  # the image on the canvas

    @property
    def _dinv(self):
        from dip_lightning.deepinv.lazy import import_deepinv

        return import_deepinv()

    def _target_class(self) -> type:
        from hydra.utils import get_class

        return get_class(str(self.physics_cfg["_target_"]))

    def _is_mri(self, physics) -> bool:
        return self.physics_is_complex(physics)

    @staticmethod
    def physics_is_complex(physics) -> bool:
        """True for deepinv's MRI physics (an object or its class): their images are complex."""
        from dip_lightning.deepinv.lazy import import_deepinv

        dinv = import_deepinv()
        mri = getattr(dinv.physics, "MRIMixin", None) or dinv.physics.MRI
        return issubclass(physics, mri) if isinstance(physics, type) else isinstance(physics, mri)

    # ------------------------------------------------------------------ the physics, seeded
    def _build(self, seed: int, reseed_noise: bool = True) -> None:
        """Build the physics from its config (or reseed the object's noise) under ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.physics_cfg is not None:
                from dip_lightning.instantiate import instantiate

                self.physics = instantiate(self.physics_cfg, _convert_="all")
                self.physics_cfg = None
            noise = getattr(self.physics, "noise_model", None)
            if reseed_noise and getattr(noise, "rng", None) is not None:
                noise.rng_manual_seed(int(torch.randint(0, 2 ** 62, ())))

    @property
    def linear_output(self) -> bool:
        return bool(self.complex)

    def net_channels(self, channels: int) -> int:
        if self.complex:
            return 2
        if self.image_shape is not None:
            return int(self.image_shape[0])
        return self.channels or channels

    # ------------------------------------------------------------------ observation
    def crop_ground_truth(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 1 or (self.complex and x.shape[1] == 3):
            x = x.mean(1, keepdim=True)
        elif self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            (h, w), (th, tw) = x.shape[-2:], self.size
            s = max(th / h, tw / w)  # cover the target, then centre-crop
            rh, rw = max(th, round(h * s)), max(tw, round(w * s))
            x = pil_resize(x[0], rh, rw, "lanczos")[None]
            t, l_ = (rh - th) // 2, (rw - tw) // 2
            x = x[..., t:t + th, l_:l_ + tw]
        return x

    def _signal(self, x: torch.Tensor) -> torch.Tensor:
        """The image as the physics takes it: real + 0j for complex data."""
        if self.complex and x.shape[1] == 1:
            return torch.cat([x, torch.zeros_like(x)], 1)
        return x

    def simulate(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """y = physics(x): the physics (mask, matrix) and the noise from streams of the observation
        seed (``dip_lightning.seeds``); ``generator`` itself is not drawn from, so z is the same
        as for any task that draws nothing (e.g. inpainting with a mask file)."""
        base = generator.initial_seed()
        self._build(stream_seed(base, "physics"))
        xs = self._signal(x)
        self.image_shape = tuple(xs.shape[1:])
        with torch.random.fork_rng(devices=[]):  # global-RNG noise follows the run's seed too
            torch.manual_seed(stream_seed(base, "noise"))
            return self.physics(xs)

    def adopt(self, y: torch.Tensor) -> torch.Tensor:
        """An observation given as it is: the image shape comes from the physics (its adjoint's)."""
        self._build(0, reseed_noise=False)  # y has its noise already
        if self.image_shape is None:
            self.image_shape = self.infer_image_shape(y)
        with torch.no_grad():
            a = self.forward(torch.zeros(1, *self.image_shape, dtype=y.dtype, device=y.device))
        if a.shape != y.shape:
            raise ValueError(f"the physics maps one image {tuple(self.image_shape)} to {tuple(a.shape)}, but each "
                             f"measurement is {tuple(y.shape)}; a physics with per-batch parameters (e.g. a mask of "
                             f"batch B) cannot be fitted one measurement at a time")
        return y

    def infer_image_shape(self, y: torch.Tensor) -> tuple[int, ...]:
        if isinstance(self.physics, self._dinv.physics.LinearPhysics):
            return tuple(self.physics.A_adjoint(y[:1]).shape[1:])
        size = getattr(self.physics, "img_size", None)
        if size is None or len(size) != 3:
            raise ValueError(f"cannot tell the image shape of {type(self.physics).__name__} from y of shape "
                             f"{tuple(y.shape)}; give the physics an img_size (C, H, W)")
        return tuple(int(s) for s in size)

    def observation_hw(self, y: torch.Tensor) -> tuple[int, int]:
        return tuple(self.image_shape[-2:])

    def observation_box(self, box: Sequence[int]):
        return None  # y is never padded

    def pad_observation(self, y: torch.Tensor, pads: Sequence[int]) -> torch.Tensor:
        return y

    def pad(self, pads: Sequence[int]) -> None:
        t, _, l_, _ = (int(p) for p in pads)
        self.box = (t, l_, *self.image_shape[-2:])

    # ------------------------------------------------------------------ operator and pictures
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A(crop(x)), in fp32 (or fp64) with autocast off: FFTs and complex views refuse bf16."""
        if self.box is not None:
            t, l_, h, w = self.box
            x = x[..., t:t + h, l_:l_ + w]
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.physics.A(x.to(torch.promote_types(x.dtype, torch.float32)))

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """Complex (re, im) -> magnitude; else x."""
        if not self.complex:
            return x
        return torch.sqrt(x[:, 0:1] ** 2 + x[:, 1:2] ** 2)

    def baseline(self, y: torch.Tensor) -> torch.Tensor | None:
        """A^T y for linear physics (deepinv's own "no learning" estimate; MRI: the zero-filled
        image, inpainting: y), as a picture; None for non-linear physics."""
        if not isinstance(self.physics, self._dinv.physics.LinearPhysics):
            return None
        with torch.enable_grad():  # some adjoints (CT's) are computed by autograd
            x = self.physics.A_adjoint(y)
        return self.view(x.detach())

    def picture(self, y: torch.Tensor) -> torch.Tensor:
        """y itself when it is an image of the restored shape, else the baseline scaled to [0, 1]."""
        if self.image_shape is not None and tuple(y.shape[1:]) == tuple(self.image_shape) and not self.complex:
            return y.clamp(0, 1)
        b = self.baseline(y)
        if b is None:
            return torch.zeros(1, 1, *self.image_shape[-2:])
        return (b / b.abs().amax().clamp_min(1e-12)).clamp(0, 1)


def overrides_for(physics: Any) -> dict[str, Any]:
    """For a deepinv physics object: ``task.complex`` from its class, and the CT step's values for
    a tomography (the caller's own overrides go over these)."""
    found: dict[str, Any] = {"task.complex": PhysicsTask.physics_is_complex(physics)}
    if type(physics).__name__ in CT_PHYSICS:
        found.update(CT_STEP)
    return found
