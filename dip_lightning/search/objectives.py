"""The metrics a search can maximise, what each needs, and the curve a trial reports for it.

An objective is a key of the trial's metrics.json. ``curve`` is the metric row (``history.FIELDS``)
whose values stand for it while the fit runs, so that a pruner compares like with like; ``running_max``
turns a curve into "the best so far" (``psnr_best``). An objective without a curve (``psnr_eval``:
a protocol's score, computed once at the end; ``es_psnr``: known once the stopping rule fires) can be
searched but not pruned.
"""
from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class Objective:
    curve: str | None          # the metric row reported to the pruner (None: cannot be pruned)
    running_max: bool = False  # report the best value so far
    ground_truth: bool = True  # needs a reference image
    ema: bool = False          # needs the EMA (exp_weight not null)


OBJECTIVES: dict[str, Objective] = {
    "psnr_best": Objective("psnr/gt", running_max=True),
    "psnr_final": Objective("psnr/gt"),
    "psnr_ema_final": Objective("psnr_ema/gt", ema=True),
    "ssim_final": Objective("ssim/gt"),
    "psnr_obs_final": Objective("psnr/obs", ground_truth=False),
    "psnr_ema_obs_final": Objective("psnr_ema/obs", ground_truth=False, ema=True),
    "psnr_holdout": Objective("psnr/holdout", ground_truth=False),
    "es_psnr": Objective(None),
    "psnr_eval": Objective(None),
}


def check_objective(name: str, cfg: DictConfig, blind: bool, pruning: bool) -> Objective:
    """``name``'s Objective for a search of ``cfg`` (``blind``: no ground truth; ``pruning``: a pruner
    is set), or a one-line ValueError naming what is wrong and the objectives that would work."""
    if name not in OBJECTIVES:
        raise ValueError(f"hydra.sweeper.objective={name} is not a metric a search can maximise; choose one of "
                         f"{', '.join(OBJECTIVES)}")
    obj = OBJECTIVES[name]
    if obj.ground_truth and blind:
        raise ValueError(f"hydra.sweeper.objective={name} needs a ground truth, and this run has none (observed=true "
                         "or task=flash); search on a clean image with a simulated corruption, or use "
                         "holdout=0.1 hydra.sweeper.objective=psnr_holdout (the output on held-out pixels)")
    if obj.ema and cfg.get("exp_weight") is None:
        raise ValueError(f"hydra.sweeper.objective={name} scores the EMA, and exp_weight=null turns it off; "
                         "set exp_weight=0.99 or choose another objective")
    if name == "psnr_holdout" and not cfg.get("holdout"):
        raise ValueError("hydra.sweeper.objective=psnr_holdout scores the output on held-out pixels, and holdout=null "
                         "holds none out; set holdout=0.1 (the fraction of pixels left out of the data term)")
    if name == "psnr_eval" and not cfg.get("eval_protocol"):
        raise ValueError("hydra.sweeper.objective=psnr_eval is a protocol's score, and eval_protocol=null names none; "
                         "set eval_protocol=full (or y_shaved for SR), or use hydra.sweeper.objective=psnr_best")
    if name == "es_psnr" and not cfg.get("es"):
        raise ValueError("hydra.sweeper.objective=es_psnr is the PSNR where early stopping fires, and es=none; "
                         "set es=wmv, or use hydra.sweeper.objective=psnr_best")
    if pruning and obj.curve is None:
        curved = ", ".join(k for k, o in OBJECTIVES.items() if o.curve is not None)
        raise ValueError(f"hydra.sweeper.objective={name} is known only at the end of a trial, so no pruner can "
                         f"compare trials on it; set hydra.sweeper.pruner.name=none, or prune on one of {curved}")
    return obj
