"""Hydra overrides as strings: Python values written as override values, and the one list of quiet
overrides the scripts and the tests share. Plain Python (no Hydra import), so scripts can use it
before any heavy import."""
from __future__ import annotations

import re
from typing import Any

#: overrides for runs nobody watches (scripts, tests): no logger, no progress bar, snapshots only at
#: the log-spaced steps (1, 2, 5, 10, 20, 50, …: a dozen small PNGs that show how the fit went)
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "snapshot_every=0"]

_PLAIN = re.compile(r"^[\w./:\-+@~]*$")


def format_value(v: Any) -> str:
    """A Python value as a Hydra override value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(format_value(x) for x in v) + "]"
    s = str(v)
    if s and _PLAIN.match(s):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_overrides(overrides: dict[str, Any]) -> list[str]:
    """{"optim.lr": 0.01, "iters": 500} -> ["optim.lr=0.01", "iters=500"]."""
    return [f"{k}={format_value(v)}" for k, v in overrides.items()]
