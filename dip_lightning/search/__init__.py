"""Hyperparameter search: a Hydra sweeper on Optuna's ask-and-tell interface (``sweeper``), its
search space from Hydra's sweep syntax (``space``), and the job side that reports a trial's curve
and stops it when the pruner says so (``pruning``). ``hparams_search=NAME`` picks a search
(``configs/hparams_search/``); the study lives in the sweep folder (``optuna.journal``)."""


def register() -> None:
    """Make ``hydra/sweeper=dip_optuna`` known to Hydra before ``@hydra.main`` composes: an editable
    install hides mapped ``hydra_plugins`` packages from Hydra's plugin scan, so the CLI registers
    the sweeper itself (importing it costs nothing: Optuna is imported when a search starts)."""
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    from hydra.core.plugins import Plugins

    name = "hydra_plugins.dip_lightning_sweeper"
    try:
        shim = importlib.import_module(name)
    except ImportError:  # a checkout that is not installed: load the folder under its plugin name
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "plugin" / "__init__.py")
        shim = importlib.util.module_from_spec(spec)
        sys.modules[name] = shim
        spec.loader.exec_module(shim)
    Plugins.instance().register(shim.DIPOptunaSweeper)
