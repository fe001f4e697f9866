"""The optimisation step a task's data need: the paper's for images, other ones for MRI and CT.

``optim.lr``, ``reg_noise_std``, ``tv_weight`` and ``backtrack_db`` default to ``${dip_task_step:KEY,PAPER}``:
the paper's value, unless the task's image is complex (``task.complex``, or deepinv's MRI physics as
``task.physics``: ``COMPLEX_STEP``) or its physics is a tomography (``CT_STEP``). An explicit value
(command line, experiment preset, API keyword) replaces the interpolation, so it always wins. For a
physics *object* (``restore(physics=...)``, ``DIPReconstructor``), ``overrides_for`` gives the same.

Why (deepinv physics at 64², ``scripts/compare_deepinv.py``; docs/deepinv.md has the
table): a complex image is painted by a linear output (no sigmoid), and the paper's step does not
suit it: lr 0.01 with no input jitter diverges (50 backtracks within 100 steps), with the jitter
1/30 it ends below the zero-filled A^T y (astronaut 14.93 against 15.90 dB at 300 steps). With
lr 0.005 and no jitter the fit is stable but fills the unmeasured k-space with high-frequency
texture (astronaut 15.35 dB at 1000 steps); a TV term λ·TV(x̂), λ = 0.01, removes it (16.22 dB;
λ = 0.03: 16.02). Sparse-angle CT (30 angles) keeps the paper's step, whose input jitter keeps the
first few hundred steps off the sinogram's noise, but by 1000 steps the fit has followed the noise
(coffee EMA 12.24 dB against A^T y 14.82; rocket 12.64 against 21.50); λ = 0.05 holds it there
(18.67 and 23.85 dB; λ = 0.01: 19.10 and 21.12). Inpainting and blur keep the paper's step.

Complex data also go without the collapse guard (``backtrack_db``; NaN/Inf are still restored): with
no input jitter a restored step is retried exactly as it was, so the early data-fit swings of the
linear output (more than 5 dB from one step to the next) were restored again and again, and 3 of 9
MRI fits (coffee / chelsea / rocket × 3 seeds) ended "diverged" at step 100.
"""
from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

#: the step for complex images (linear output), and for tomography: see the module docstring
COMPLEX_STEP = {"optim.lr": 0.005, "reg_noise_std": 0.0, "tv_weight": 0.01, "backtrack_db": None}
CT_STEP = {"tv_weight": 0.05}

#: deepinv physics whose image is complex (the classes' names; PhysicsTask checks the class itself)
COMPLEX_PHYSICS = ("MRI", "MultiCoilMRI", "DynamicMRI", "SequentialMRI", "MRIMixin")
#: deepinv's tomography physics
CT_PHYSICS = ("Tomography",)


def physics_name(task: Any) -> str:
    """The class name of a task config's ``physics`` node ('' when there is none)."""
    physics = task.get("physics") if (task is not None and hasattr(task, "get")) else None
    target = physics.get("_target_") if (physics is not None and hasattr(physics, "get")) else None
    return "" if target is None else str(target).rsplit(".", 1)[-1]


def task_is_complex(task: Any) -> bool:
    """Whether a task config paints a complex image: ``complex: true``, or (``complex: null``) a
    ``physics`` node whose class is one of deepinv's MRI physics."""
    if task is None or not hasattr(task, "get"):
        return False
    flag = task.get("complex")
    if flag is not None:
        return bool(flag)
    return physics_name(task) in COMPLEX_PHYSICS


def task_step(key: str, paper: Any, _root_: Any = None) -> Any:
    """``${dip_task_step:KEY,PAPER}``: the complex or CT step's value of KEY for such a task, else ``PAPER``."""
    task = _root_.get("task") if _root_ is not None else None
    step = COMPLEX_STEP if task_is_complex(task) else CT_STEP if physics_name(task) in CT_PHYSICS else {}
    return step.get(key, paper)


OmegaConf.register_new_resolver("dip_task_step", task_step, replace=True)
