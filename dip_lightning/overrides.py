"""Hydra overrides as strings: Python values written as override values, and the one list of quiet
overrides the scripts and the tests share. Plain Python (no Hydra import), so scripts can use it
before any heavy import."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: overrides for runs nobody watches (scripts, tests): no logger, no progress bar, snapshots only at
#: the log-spaced steps (1, 2, 5, 10, 20, 50, …: a dozen small PNGs that show how the fit went)
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "snapshot_every=0"]

#: settings that say where, how fast or how quietly a job ran, never what it computed (prefixes of
#: flat 'a.b' keys and of overrides): a finished job is skipped, a checkpoint resumed from, and a
#: report groups jobs, regardless of them
NOT_COMPUTED = ("skip_completed", "threads", "hydra", "logger", "trainer.enable_progress_bar", "progress_every",
                "paths.", "ckpt_", "optuna")

_PLAIN = re.compile(r"^[\w./:\-+@]*$")


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
    return quote(s)


def quote(s: str) -> str:
    """``s`` as a quoted Hydra override value that Hydra and OmegaConf read back as ``s`` exactly:
    quotes escaped, the backslashes before a quote or the end doubled (Hydra keeps the others as
    they are), ``${`` escaped so that OmegaConf does not resolve it."""
    s = re.sub(r"(\\+)(?='|$|\$\{)", lambda m: m.group(1) * 2, s)
    return "'" + s.replace("'", "\\'").replace("${", "\\${") + "'"


def to_overrides(overrides: dict[str, Any]) -> list[str]:
    """{"optim.lr": 0.01, "iters": 500} -> ["optim.lr=0.01", "iters=500"]."""
    return [f"{k}={format_value(v)}" for k, v in overrides.items()]


def is_sweep(value: str) -> bool:
    """Does an override value sweep (``a,b``, ``range(…)``, ``choice(…)``, ``interval(…)``), i.e. has a
    comma outside brackets and quotes, or is one of Hydra's sweep functions?"""
    v = value.strip()
    if re.match(r"^(range|choice|interval|glob)\(", v):
        return True
    depth, quote = 0, None
    for i, ch in enumerate(v):
        if quote:
            if ch == quote and v[i - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def swept_keys(overrides: list[str], exclude: tuple[str, ...] = ()) -> list[str]:
    """The keys the ``overrides`` sweep (their ``+``/``++``/``~`` prefixes dropped), less ``exclude``."""
    out = []
    for o in overrides:
        key, sep, value = o.partition("=")
        key = key.lstrip("+~")
        if sep and is_sweep(value) and key not in exclude and not key.startswith("hydra"):
            out.append(key)
    return out


def subdir_of(keys: list[str], groups: tuple[str, ...], tail: str) -> str:
    """A ``hydra.sweep.subdir`` naming each job by its swept ``keys`` (a config group by its choice)
    and then ``tail``: e.g. 'optim.lr=${optim.lr}/' + tail."""
    parts = [f"{k}=${{hydra.runtime.choices.{k}}}" if k in groups else f"{k}=${{{k}}}" for k in keys]
    return "/".join([*parts, tail])


def image_name(value) -> str:
    """A short name of an image override: a file's stem ('data/set5/baby.png' -> 'baby'), or a
    sample's name ('astronaut'); job folders, metrics.json and the report all use it."""
    value = str(value).strip("'\"")
    return Path(value).stem if ("/" in value or "." in value) else value

