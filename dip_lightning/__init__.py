"""dip_lightning: Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018) on PyTorch Lightning + Hydra."""
__version__ = "0.1.0"

from dip_lightning.deepinv.lazy import ensure_torchvision as _ensure_torchvision

_ensure_torchvision()  # before torchmetrics / Lightning import an installed torchvision (see there)


def __getattr__(name: str):
    # Lazy: `import dip_lightning` must not pull in Hydra (absent on some GPU images).
    if name == "restore":
        from dip_lightning.api import restore

        return restore
    raise AttributeError(name)


__all__ = ["restore", "__version__"]
