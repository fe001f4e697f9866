"""Lightning callbacks: curve/snapshot logging and throughput measurement."""
from dip_lightning.callbacks.curves import CurveLogger
from dip_lightning.callbacks.progress import PSNRProgressBar
from dip_lightning.callbacks.throughput import Throughput

__all__ = ["CurveLogger", "PSNRProgressBar", "Throughput"]
