"""``instantiate(node)``: Hydra's, but a constructor's own one-line error reaches the user unwrapped.

A low file of its own: problem preparation, the run and the scripts all build objects from config
nodes, and none of them should import another just for this.
"""
from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate


def instantiate(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)``; a ValueError / FileNotFoundError raised by the
    constructor (our messages name the bad value and the fix) is re-raised as itself instead of
    inside Hydra's InstantiationException."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, (ValueError, FileNotFoundError, ImportError)):
            raise exc.__cause__ from None
        raise
