"""Python API: ``restore(image, task="denoise", **overrides) -> (restored, metrics)``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dip_lightning.config import compose_config
from dip_lightning.instantiate import instantiate
from dip_lightning.io import load_image
from dip_lightning.overrides import QUIET, to_overrides
from dip_lightning.run import run

__all__ = ["QUIET", "compose_config", "restore", "to_overrides"]


def restore(image: str | Path | np.ndarray | torch.Tensor, task: str = "denoise", physics=None,
            **overrides: Any) -> tuple[np.ndarray, dict]:
    """Restore ``image`` with DIP; same code path as ``dip-restore``.

    ``image``: a path, a skimage sample name, an (H, W[, C]) array (uint8 or float in [0, 1]) or a
    (C, H, W) tensor. ``overrides`` are the command line's overrides as keywords
    (``iters=500, seed=1, net="skip"``; dotted keys via ``**{"optim.lr": 0.01}``;
    ``output_dir=...`` is short for ``paths.output_dir``). ``cpu_malloc`` defaults to ``system``
    here: ``reuse`` changes glibc's allocator for the whole process, which suits the CLI (it owns
    its process) but not a notebook or service that calls ``restore``; pass ``cpu_malloc="reuse"``
    for the faster CPU steps. ``physics`` (a ``deepinv.physics.Physics``) is the task itself
    (``task=physics``; ``task.size`` / ``task.channels`` / ``task.complex`` still apply).
    Returns the restored image (H×W or H×W×C float32 array in [0, 1], the input's size unless
    ``fit_size="crop"``) and the metrics dict (also written to ``<output_dir>/metrics.json``).
    """
    ov = {"task": "physics" if physics is not None else task, "cpu_malloc": "system", **overrides}
    if physics is not None:  # the step follows the data (dip_lightning/steps.py); the caller's keys win
        from dip_lightning.tasks.physics import overrides_for

        ov = {**overrides_for(physics), **ov}
    if "output_dir" in ov:
        ov["paths.output_dir"] = str(ov.pop("output_dir"))
    tensor = None
    if isinstance(image, (str, Path)):
        ov["image"] = str(image)
    else:
        tensor = load_image(image)
        ov.setdefault("image", "array")
    cfg = compose_config(ov)
    make_task = None if physics is None else (lambda: instantiate(cfg.task, physics=physics))
    result = run(cfg, image=tensor, make_task=make_task)
    out = result["restored"].numpy().transpose(1, 2, 0)
    return (out[:, :, 0] if out.shape[2] == 1 else out), result["metrics"]
