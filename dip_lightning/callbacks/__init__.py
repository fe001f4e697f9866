"""Lightning callbacks: curves, snapshots, early stopping, progress bar, throughput, a SIGTERM at a step boundary."""
from dip_lightning.callbacks.curves import CurveLogger
from dip_lightning.callbacks.divergence import DivergenceGuard
from dip_lightning.callbacks.holdout_stopping import HoldoutStopping
from dip_lightning.callbacks.progress import PSNRProgressBar
from dip_lightning.callbacks.snapshots import Snapshots
from dip_lightning.callbacks.stop_on_signal import StopOnSignal
from dip_lightning.callbacks.stopping import EarlyStopping
from dip_lightning.callbacks.throughput import Throughput

__all__ = ["CurveLogger", "DivergenceGuard", "EarlyStopping", "HoldoutStopping", "PSNRProgressBar", "Snapshots", "StopOnSignal", "Throughput"]
