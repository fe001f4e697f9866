"""Whether a task config makes a blind run (no ground truth), decided by its class's ``blind``.

A task whose run's image is always the observation itself (flash/no-flash) says so with
``Task.blind = True``. ``task_is_blind`` reads that attribute from the class named by the config's
``_target_``, imported but not instantiated (no photo is read, no physics is built).
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)


def task_is_blind(task_cfg: Any) -> bool:
    """True when ``task_cfg``'s ``_target_`` class has ``blind = True``. False for a config with no
    target, or one whose target cannot be imported (a typo, a missing extra): the run itself then
    reports the import error in its own line, which is clearer than refusing the search here."""
    if task_cfg is None or not hasattr(task_cfg, "get"):
        return False
    target = task_cfg.get("_target_")
    if not target:
        return False
    try:
        obj = locate(str(target))
    except Exception as exc:  # not importable: the run reports it
        log.debug("task._target_=%s cannot be imported (%s): taken as not blind", target, exc)
        return False
    return getattr(obj, "blind", False) is True


def locate(path: str) -> Any:
    """The object at a dotted ``path``: the longest importable module prefix, then attributes (as
    Hydra's ``_target_``), without Hydra's error log for a path that does not resolve."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not name.startswith(exc.name) and not exc.name.startswith(name):
                raise  # the module exists but imports one that does not
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module in {path!r}")
