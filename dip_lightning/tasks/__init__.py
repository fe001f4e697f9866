"""Restoration tasks as operator objects (observe / apply / pad), one degradation per file."""
from dip_lightning.tasks.base import Task
from dip_lightning.tasks.deblur import Deblur
from dip_lightning.tasks.denoise import Denoise
from dip_lightning.tasks.flash import FlashNoFlash
from dip_lightning.tasks.inpaint import Inpaint
from dip_lightning.tasks.jpeg import JPEGArtifacts
from dip_lightning.tasks.restore import Restore
from dip_lightning.tasks.superres import SuperResolution

__all__ = ["FlashNoFlash", "Task", "Denoise", "SuperResolution", "Inpaint", "Restore", "JPEGArtifacts", "Deblur"]
