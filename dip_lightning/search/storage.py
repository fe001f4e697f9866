"""Where a study lives, and the pruner a study names (the sweeper and its jobs build the same one)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

JOURNAL = "optuna.journal"
PRUNERS = ("none", "median", "successive_halving", "hyperband")


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    """``journal://<abs path>`` for a journal file (default ``<sweep dir>/optuna.journal``), or the RDB URL as given."""
    if storage is None or str(storage) in ("", "null"):
        return f"journal://{(Path(sweep_dir) / JOURNAL).resolve()}"
    s = str(storage)
    if "://" in s and not s.startswith("journal://"):
        return s  # sqlite:///…, postgresql://…, mysql://…
    return f"journal://{Path(s[len('journal://'):] if s.startswith('journal://') else s).expanduser().resolve()}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """A journal file (with a file lock: safe for several processes, also on a shared file system)
    or an RDB storage (with a heartbeat, so a dead process's trials can be found)."""
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)


def make_pruner(spec: dict[str, Any] | None) -> optuna.pruners.BasePruner:
    """``{"name": none | median | successive_halving | hyperband, **its keyword arguments}``; steps
    are training steps (a trial reports at its metric rows)."""
    spec = dict(spec or {"name": "none"})
    name = str(spec.pop("name", "none"))
    kinds = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
             "successive_halving": optuna.pruners.SuccessiveHalvingPruner, "hyperband": optuna.pruners.HyperbandPruner}
    if name not in kinds:
        raise ValueError(f"hydra.sweeper.pruner.name={name}; choose {', '.join(PRUNERS)}")
    try:
        return kinds[name](**spec)
    except TypeError as exc:
        raise ValueError(f"hydra.sweeper.pruner: {name} takes no such argument ({exc})") from None
