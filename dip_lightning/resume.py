"""Continue a sweep's job that was cut short from its own last checkpoint.

With ``ckpt_every=N`` a job writes ``checkpoints/step_NNNNNN.ckpt`` and, beside them,
``checkpoints/job.json`` with the overrides that decide its result. When the same sweep is
launched again into the same folder with ``skip_completed=true``, a job that did not complete
(killed, a SLURM time limit, Ctrl-C) resumes from its latest readable checkpoint if that record
matches, and a resumed run ends with the metrics of an uninterrupted one (tests/test_resume.py).
Checkpoints left by another setting are removed before the job writes its own, and a resumed job
removes those after the step it continues from (cut off, or unreadable), which it writes anew.
"""
from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path

from dip_lightning.outputs import write_json

log = logging.getLogger(__name__)

FOLDER = "checkpoints"
RECORD = "job.json"
STEP_FILE = re.compile(r"^step_(\d+)(-v\d+)?\.ckpt$")  # Lightning adds -v1 beside a file of the same name


def step_checkpoints(folder: Path) -> list[Path]:
    """``step_*.ckpt`` in ``folder``, latest step first."""
    found = [(int(m.group(1)), p.name, p) for p in folder.glob("step_*.ckpt") if (m := STEP_FILE.match(p.name))]
    return [p for *_, p in sorted(found, reverse=True)]


def step(path: Path) -> int:
    """The training step a ``step_*.ckpt`` was written at."""
    return int(STEP_FILE.match(path.name).group(1))


def readable(path: Path) -> bool:
    """A whole checkpoint: torch.save writes a zip whose directory comes last, so a file cut off
    while being written (the job killed mid-save) does not open."""
    try:
        with zipfile.ZipFile(path) as z:
            return bool(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def recorded_overrides(folder: Path) -> list[str] | None:
    """The overrides in ``folder/job.json``, or None when there is none."""
    try:
        return json.loads((folder / RECORD).read_text()).get("overrides")
    except (OSError, ValueError, AttributeError):
        return None


def resumable(out_dir: Path, computed: list[str]) -> Path | None:
    """The latest readable checkpoint this same job (``computed`` overrides) left in ``out_dir``."""
    folder = out_dir / FOLDER
    if recorded_overrides(folder) != computed:
        return None
    return next((p for p in step_checkpoints(folder) if readable(p)), None)


def prepare(out_dir: Path, computed: list[str], ckpt_every: int, resume: bool) -> Path | None:
    """Before a job runs: the checkpoint to continue from (only when ``resume``), else None. When
    the job will write checkpoints and starts afresh, the ones left by an earlier setting go, so a
    later resume cannot pick them; the job's overrides are recorded beside the new ones."""
    folder = out_dir / FOLDER
    found = resumable(out_dir, computed) if resume else None
    if ckpt_every <= 0:
        return found
    for stale in step_checkpoints(folder):
        if found is None or stale != found and not (readable(stale) and step(stale) <= step(found)):
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RECORD, {"overrides": computed})
    return found
