"""Reading a sweep folder: its jobs (any launcher's layout) and one row per fit.

A job is a folder with a ``metrics.json`` or a ``.hydra/overrides.yaml`` (the basic, joblib and
gpus launchers' ``N/``, submitit's, Optuna's, reproduce.py's and compare.py's named folders);
hidden folders (``.submitit``) and ``wandb/`` are skipped, and the ``fit<k>/`` folders of a packed
job belong to it. A packed job is one job but K fits: each fit is its own row for the statistics,
with its own seed and image.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dip_lightning.overrides import NOT_COMPUTED, image_name

#: keys that never make a group: how a job ran, and which snapshots it kept
NOT_PARAMS = NOT_COMPUTED + ("snapshot_every", "snapshot_log_spaced")
#: what varies inside a group: repeats (seeds) and the images averaged over
WITHIN_GROUP = ("seed", "image", "pack_images", "pack")


def natural_key(path: Path | str) -> list:
    """Sort '2' before '10'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def seed_key(seed: int | None) -> tuple[bool, int]:
    """Sort seeds ascending, a fit without one last."""
    return seed is None, seed or 0


def number(value) -> float | None:
    """A finite float, or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def job_dirs(sweep: Path) -> list[Path]:
    """Folders under ``sweep`` with a metrics.json or a .hydra/overrides.yaml, outside hidden and wandb
    folders, less the ``fit<k>/`` folders of packed jobs."""
    found = set()
    for path in sweep.rglob("*"):
        if path.name == "metrics.json":
            job = path.parent
        elif path.name == "overrides.yaml" and path.parent.name == ".hydra":
            job = path.parent.parent
        else:
            continue
        parts = job.relative_to(sweep).parts
        if not any(p.startswith(".") or p == "wandb" for p in parts):
            found.add(job)
    found = {j for j in found if not (re.fullmatch(r"fit\d+", j.name) and j.parent in found)}
    return sorted(found, key=lambda d: natural_key(d.relative_to(sweep)))


def read_job(sweep: Path, job: Path) -> dict:
    """One job: its folder, status, reason, the overrides as {key: value} and the metrics."""
    mpath, opath = job / "metrics.json", job / ".hydra" / "overrides.yaml"
    metrics = json.loads(mpath.read_text()) if mpath.is_file() else {}
    overrides = yaml.safe_load(opath.read_text()) if opath.is_file() else metrics.get("overrides")
    params = {}
    for item in overrides or []:
        key, _, value = str(item).partition("=")
        params[key.lstrip("+~")] = value
    return {"job": str(job.relative_to(sweep)) or ".", "dir": job, "status": metrics.get("status") or "missing",
            "reason": metrics.get("reason") or "", "params": params, "metrics": metrics}


@dataclass
class FitRow:
    """One fit of one job: what the statistics average."""

    job: str
    dir: Path
    status: str
    group: tuple[tuple[str, str], ...]
    image: str
    seed: int | None
    metrics: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "early_stopped")

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.group) or "all"


def group_keys(jobs: list[dict]) -> list[str]:
    """The swept keys that make groups: those whose value differs between jobs, less the repeats
    and images (``WITHIN_GROUP``) and the keys that only say where a job ran (``NOT_PARAMS``)."""
    keys = list(dict.fromkeys(k for j in jobs for k in j["params"]))
    varying = [k for k in keys if len({j["params"].get(k) for j in jobs}) > 1]
    return [k for k in varying if k not in WITHIN_GROUP and not k.startswith(NOT_PARAMS)]


def packed_images(value: str | None) -> list[str]:
    """The images of a ``pack_images=[a,b,…]`` override's value ([] for none or null)."""
    if not value or value == "null":
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(f"pack_images={value}").value()
    return [str(v) for v in parsed] if isinstance(parsed, list) else []


def fit_rows(jobs: list[dict]) -> list[FitRow]:
    """Every fit of every job (a packed job's fits from its ``fit_metrics``; one that failed before
    writing them: a row per packed image, with its status), with its group."""
    keys = group_keys(jobs)
    rows = []
    for j in jobs:
        group = tuple((k, j["params"].get(k, "")) for k in keys)
        packed = j["metrics"].get("fit_metrics")
        fits = packed or [{**j["metrics"], "image": image_name(p)}
                          for p in packed_images(j["params"].get("pack_images"))] or [j["metrics"]]
        for i, m in enumerate(fits):
            d = j["dir"] / f"fit{i}" if packed else j["dir"]
            img = m.get("image") or image_name(j["params"].get("image") or "?")
            seed = m.get("seed", number(j["params"].get("seed")))
            rows.append(FitRow(j["job"], d, m.get("status") or j["status"], group, image_name(img),
                               None if seed is None else int(seed), m))
    return rows
