"""``dip-restore``: Hydra command line around ``run()`` (overrides as arguments, ``-m`` for sweeps)."""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from dip_lightning.run import run

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="restore")
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg)["metrics"]
    best = metrics.get("psnr_best")
    return best if best is not None else metrics.get("psnr_obs_final")


if __name__ == "__main__":
    main()
