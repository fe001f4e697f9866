"""``hydra_plugins.dip_lightning_slurm``: the name Hydra knows dip_lightning's SLURM launcher by. The
code is ``dip_lightning.slurm_launcher``; pyproject maps this folder to that package name, and
``dip_lightning.hydra_plugins.register`` registers it."""
from dip_lightning import slurm_launcher as _impl


class SlurmLauncher(_impl.SlurmLauncher):
    """``hydra/launcher=slurm``: see ``dip_lightning.slurm_launcher``."""
