"""Plugins of dip_lightning that Hydra knows by a ``hydra_plugins.*`` name (it instantiates sweepers
and launchers from that package only): the search's sweeper and the SLURM launcher."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: plugin package name -> (its folder in this package, the class Hydra instantiates)
PLUGINS = {
    "hydra_plugins.dip_lightning_sweeper": (HERE / "search" / "plugin", "DIPOptunaSweeper"),
    "hydra_plugins.dip_lightning_slurm": (HERE / "slurm_plugin", "SlurmLauncher"),
}


def register() -> None:
    """Make ``hydra/sweeper=dip_optuna`` and ``hydra/launcher=slurm`` known to Hydra before
    ``@hydra.main`` composes: an editable install hides mapped ``hydra_plugins`` packages from Hydra's
    plugin scan, so the CLI registers them itself. The launcher needs the ``sweeps`` extra
    (submitit); without it only the sweeper is registered."""
    from hydra.core.plugins import Plugins

    for name, (folder, cls) in PLUGINS.items():
        try:
            shim = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name not in (name, "hydra_plugins"):
                continue  # an extra that is not installed (submitit)
            spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")  # a checkout not installed
            shim = importlib.util.module_from_spec(spec)
            sys.modules[name] = shim
            try:
                spec.loader.exec_module(shim)
            except ModuleNotFoundError:
                del sys.modules[name]
                continue
        Plugins.instance().register(getattr(shim, cls))
