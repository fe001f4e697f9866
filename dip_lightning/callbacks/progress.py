"""A progress bar that shows the latest PSNR values without forcing a device sync."""
from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar


class PSNRProgressBar(TQDMProgressBar):
    """Redraws every ``refresh_rate`` steps; shows the metrics the ``CurveLogger`` last moved to the
    host (it flushes every ``log_every`` steps), so the bar itself never reads device tensors."""

    def __init__(self, curves, refresh_rate: int = 10):
        super().__init__(refresh_rate=refresh_rate)
        self.curves = curves

    def get_metrics(self, trainer, pl_module):
        keys = ("psnr/gt", "psnr_ema/gt", "psnr/obs", "psnr/best")
        return {k: f"{v:.2f}" for k, v in self.curves.latest.items() if k in keys or k.startswith("fit0/psnr/gt")}
