"""The optimisation step a task's data need: the paper's for images, another for complex data.

``optim.lr``, ``reg_noise_std`` and ``tv_weight`` default to ``${dip_task_step:KEY,PAPER_VALUE}``:
the paper's value, unless the task's image is complex (``task.complex``, or deepinv's MRI physics as
``task.physics``), where ``COMPLEX_STEP`` holds. An explicit value (command line, experiment
preset, API keyword) replaces the interpolation, so it always wins.

Why (measured on deepinv's single-coil MRI ×4, 64², 300 steps, ``scripts/compare_deepinv.py``
and the README's deepinv section): a complex image is painted by a linear output (no sigmoid), and
the paper's step does not suit it: lr 0.01 with no input jitter diverges (50 backtracks within
100 steps), with the jitter 1/30 it ends below the zero-filled A^T y (astronaut 14.93 against
15.90 dB). With lr 0.005 and no jitter the fit is stable but fills the unmeasured k-space with
high-frequency texture (astronaut 15.30 dB); a TV term λ·TV(x̂) removes it. Real-valued physics
(CT with 30 angles, inpainting, blur) keep the paper's step: on CT the jitter is what keeps the
fit off the sinogram's noise (camera EMA 20.75 dB with it, 17.01 without, A^T y 12.63).
"""
from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

#: the step for complex images (linear output): see the module docstring
COMPLEX_STEP = {"optim.lr": 0.005, "reg_noise_std": 0.0, "tv_weight": 0.01}

#: deepinv physics whose image is complex (the classes' names; PhysicsTask checks the class itself)
COMPLEX_PHYSICS = ("MRI", "MultiCoilMRI", "DynamicMRI", "SequentialMRI", "MRIMixin")


def task_is_complex(task: Any) -> bool:
    """Whether a task config paints a complex image: ``complex: true``, or (``complex: null``) a
    ``physics`` node whose class is one of deepinv's MRI physics."""
    if task is None or not hasattr(task, "get"):
        return False
    flag = task.get("complex")
    if flag is not None:
        return bool(flag)
    physics = task.get("physics")
    target = physics.get("_target_") if (physics is not None and hasattr(physics, "get")) else None
    return target is not None and str(target).rsplit(".", 1)[-1] in COMPLEX_PHYSICS


def task_step(key: str, paper: Any, _root_: Any = None) -> Any:
    """``${dip_task_step:KEY,PAPER}``: ``COMPLEX_STEP[KEY]`` for a complex task, else ``PAPER``."""
    task = _root_.get("task") if _root_ is not None else None
    return COMPLEX_STEP[key] if (key in COMPLEX_STEP and task_is_complex(task)) else paper


OmegaConf.register_new_resolver("dip_task_step", task_step, replace=True)
