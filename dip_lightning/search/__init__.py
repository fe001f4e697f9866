"""Hyperparameter search: a Hydra sweeper on Optuna's ask-and-tell interface (``sweeper``), its
search space from Hydra's sweep syntax (``space``), and the job side that reports a trial's curve
and stops it when the pruner says so (``pruning``). ``hparams_search=NAME`` picks a search
(``configs/hparams_search/``); the study lives in the sweep folder (``optuna.journal``).
``dip_lightning.hydra_plugins`` makes the sweeper known to Hydra."""

