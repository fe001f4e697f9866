"""deepinv interop (the optional extra ``pip install -e '.[deepinv]'``).

Both directions of issue 15: any ``deepinv.physics.Physics`` is a task
(``dip_lightning.tasks.physics.PhysicsTask``, ``task=physics`` and the ``task=deepinv_*`` presets),
and our DIP is a deepinv reconstructor (``DIPReconstructor``). Importing this package does not
import deepinv: ``import_deepinv()`` does, when a deepinv task or the reconstructor is used.
"""
from __future__ import annotations

from dip_lightning.deepinv.lazy import draw_mask, import_deepinv, seeded_generator

__all__ = ["DIPReconstructor", "draw_mask", "import_deepinv", "seeded_generator"]


def __getattr__(name: str):
    if name == "DIPReconstructor":  # a deepinv Reconstructor subclass: importing it imports deepinv
        from dip_lightning.deepinv.reconstructor import DIPReconstructor

        return DIPReconstructor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
