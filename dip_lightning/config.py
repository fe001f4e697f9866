"""Config helpers that every layer may use: where the configs are (``CONFIG_DIR``), the resolvers the
configs name (``${dip_not:…}``, ``${dip_job_dir:…}`` here; the others registered by the modules
imported below), composing them (``compose_config``), and what of a config decides a job's result
(``computed_by`` for its overrides, ``computed_config`` for the whole). Whoever composes the
configs imports this module."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from dip_lightning import gpu_slots, pairs, slurm, steps  # noqa: F401  (their resolvers: dip_gpus, dip_pair_reference, dip_slurm_fit, dip_task_step)
from dip_lightning.overrides import NOT_COMPUTED, image_name, to_overrides

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def compose_config(overrides: dict[str, Any] | list[str] | None = None) -> DictConfig:
    """Compose ``configs/restore.yaml`` with overrides (dict or ``key=value`` strings), as the CLI does."""
    items = to_overrides(overrides) if isinstance(overrides, dict) else list(overrides or [])
    if not any(o.split("=", 1)[0].lstrip("+") == "paths.output_dir" for o in items):
        stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
        items.append(f"paths.output_dir={Path('outputs/api') / stamp}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="restore", overrides=items)


# ``${dip_not:${deterministic}}``: e.g. cuDNN autotuning (trainer.benchmark) unless the run must be deterministic
OmegaConf.register_new_resolver("dip_not", lambda value: not bool(value), replace=True)


def job_dir_name(image, pack_images=None, seed=None) -> str:
    """``${dip_job_dir:${image},${pack_images},${seed}}``: a job folder named by what it computes,
    '<image stem>/seed=<s>' (packed images: 'pack-<stem>-<stem>/seed=<s>', one: its stem), so a relaunch of the
    same sweep finds each job's folder whatever the job's number."""
    images = list(pack_images or [])
    name = (image_name(images[0]) if len(images) == 1 else ("pack-" + "-".join(map(image_name, images))) if images
            else image_name(image))
    return name if seed is None else f"{name}/seed={seed}"


OmegaConf.register_new_resolver("dip_job_dir", job_dir_name, replace=True)


def computed_by(overrides: list[str]) -> list[str]:
    """The overrides that decide a job's result, sorted: what a finished job must match to be skipped."""
    return sorted(o for o in overrides if not o.lstrip("+~").startswith(NOT_COMPUTED))


def computed_config(cfg: DictConfig) -> dict:
    """The resolved config as flat 'a.b' keys, less the settings of ``NOT_COMPUTED``: what a job's
    checkpoints must have been written with for it to resume from them."""
    flat: dict = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return {k: v for k, v in flat.items() if not k.startswith(NOT_COMPUTED)}
