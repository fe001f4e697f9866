"""``hydra_plugins.dip_lightning_sweeper``: the name Hydra knows dip_lightning's sweeper by (it
instantiates sweepers from the ``hydra_plugins`` package only). The code is ``dip_lightning.search.sweeper``;
pyproject maps this folder to that package name, and ``dip_lightning.search.register`` registers it."""
from dip_lightning.search import sweeper as _impl


class DIPOptunaSweeper(_impl.DIPOptunaSweeper):
    """``hydra/sweeper=dip_optuna``: see ``dip_lightning.search.sweeper``."""
