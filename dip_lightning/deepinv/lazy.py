"""The one place that imports deepinv, and the seeded random pieces the physics presets use."""
from __future__ import annotations

import logging
import sys
import types

import torch

log = logging.getLogger(__name__)

#: the error of PyPI's torchvision (built for the CUDA torch) beside a CPU-only torch build
TORCHVISION_MISMATCH = "operator torchvision::nms does not exist"


def _stub_torchvision_meta() -> None:
    """Drop the half-imported torchvision and stand an empty module in for
    ``torchvision._meta_registrations``, with a one-line warning."""
    log.warning("torchvision's compiled ops do not match this torch build (a CPU torch beside a CUDA "
                "torchvision); skipping its meta registrations, which deepinv's physics do not use")
    for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
        del sys.modules[name]
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")


def ensure_torchvision() -> None:
    """Make an installed torchvision importable beside a mismatched torch build.

    PyPI's torchvision is built for the CUDA torch; beside a CPU torch build ``import torchvision``
    fails in ``torchvision._meta_registrations`` with "operator torchvision::nms does not exist".
    torchmetrics and pytorch_lightning import torchvision whenever it is installed (and deepinv
    needs it), so ``import dip_lightning`` calls this first. Only on that exact error is the
    module replaced by an empty one (torchvision's compiled ops stay unusable; deepinv's physics
    and our code do not use them). Without torchvision, or with a matched pair, it does nothing.
    """
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return
    except RuntimeError as exc:
        if TORCHVISION_MISMATCH not in str(exc):
            raise
        _stub_torchvision_meta()
        import torchvision  # noqa: F401


def import_deepinv() -> types.ModuleType:
    """``import deepinv`` (torchvision first, see ``ensure_torchvision``), with a clear message
    when it is missing."""
    ensure_torchvision()
    try:
        import deepinv
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("deepinv", "torchvision"):
            raise ImportError(f"this needs deepinv ({exc.name} is not installed); "
                              f"pip install -e '.[deepinv]'") from None
        raise
    return deepinv


def seeded_generator() -> torch.Generator:
    """A ``torch.Generator`` seeded from the global RNG, for a deepinv ``rng=`` argument.

    ``PhysicsTask`` builds its physics with the global RNG seeded from the run's seed, so masks,
    sensing matrices and noise drawn from these generators follow the run's seed."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, ())))


def draw_mask(generator, key: str = "mask") -> torch.Tensor:
    """One sample of a deepinv ``PhysicsGenerator`` (e.g. an MRI ``RandomMaskGenerator``): its ``key``."""
    return generator.step(batch_size=1)[key]
