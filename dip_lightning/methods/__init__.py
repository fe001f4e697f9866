"""DIP variants as small objects the one ``DIPModule`` calls at fixed points (``method=...``).

``Method`` (plain DIP) is the identity at every hook; ``SGLD``, ``DRP`` and ``SelfGuided`` change
what is trained, the loss, what happens after the optimiser step, and which image is returned.
"""
from dip_lightning.methods.base import Method
from dip_lightning.methods.drp import DRP
from dip_lightning.methods.selfguided import SelfGuided
from dip_lightning.methods.sgld import SGLD

__all__ = ["DRP", "Method", "SGLD", "SelfGuided"]
