"""Continue a sweep's job that was cut short from its own last checkpoint.

With ``ckpt_every=N`` a job writes ``checkpoints/step_NNNNNN.ckpt`` and, beside them,
``checkpoints/job.json``: its resolved config less the settings that do not change its result
(``computed``: paths, threads, logger, ``ckpt_*``, ...). When the same sweep is launched again into
the same folder with ``skip_completed=true``, a job that did not complete (killed, a SLURM time
limit, Ctrl-C) resumes from its latest readable checkpoint if that record equals its own config,
and a resumed run ends with the metrics of an uninterrupted one (tests/test_resume.py,
tests/test_scripts.py). A job that starts afresh first removes the checkpoints in its folder (another
setting's, or its own earlier run's), so a later resume cannot pick them; a resumed job removes
those after the step it continues from (cut off, or unreadable), which it writes anew.
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
STEP_FILE = re.compile(r"^step_(\d+)(?:-v(\d+))?\.ckpt$")  # Lightning adds -v1, -v2 beside a file of the same name


def step(path: Path) -> int:
    """The training step a ``step_*.ckpt`` was written at."""
    return int(STEP_FILE.match(path.name).group(1))


def step_checkpoints(folder: Path) -> list[Path]:
    """``step_*.ckpt`` in ``folder``, the latest first (by step, then by Lightning's version number)."""
    found = [((int(m.group(1)), int(m.group(2) or 0)), p) for p in folder.glob("step_*.ckpt")
             if (m := STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found, key=lambda t: t[0], reverse=True)]


def readable(path: Path) -> bool:
    """A whole checkpoint: torch.save writes a zip whose directory comes last, so a file cut off
    while being written does not open."""
    try:
        with zipfile.ZipFile(path) as z:
            return bool(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def recorded(folder: Path) -> dict | None:
    """The config recorded in ``folder/job.json``, or None when there is none."""
    try:
        return json.loads((folder / RECORD).read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return None


def resumable(out_dir: Path, computed: dict) -> Path | None:
    """The latest readable checkpoint that a job of this same ``computed`` config left in ``out_dir``."""
    folder = out_dir / FOLDER
    if recorded(folder) != computed:
        return None
    return next((p for p in step_checkpoints(folder) if readable(p)), None)


def remove(paths: list[Path], why: str) -> None:
    for p in paths:
        p.unlink()
    if paths:
        log.info("removed %d checkpoint(s) (%s): %s", len(paths), why, ", ".join(p.name for p in paths))


def prepare(out_dir: Path, computed: dict, ckpt_every: int, resume: bool, given: Path | None = None) -> Path | None:
    """Before a job runs: the checkpoint to continue from (only when ``resume`` and none is
    ``given`` by ``ckpt_path``), else None. When the job writes checkpoints, the folder keeps only
    those up to the step it continues from (``given`` or found; none when it starts afresh), never
    ``given`` itself, and the job's config is recorded beside them."""
    folder = out_dir / FOLDER
    found = resumable(out_dir, computed) if (resume and given is None) else None
    if ckpt_every <= 0:
        return found
    start = given or found
    own = start is not None and start.parent.resolve() == folder.resolve() and STEP_FILE.match(start.name)
    remove([p for p in step_checkpoints(folder) if p.resolve() != (start.resolve() if start else None)
            and not (own and readable(p) and step(p) <= step(start))], "not this run's, or after its start")
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RECORD, {"config": computed})
    return found


def keep_latest(out_dir: Path) -> None:
    """``ckpt_keep_all=false``: after the run, only its latest checkpoint stays (Lightning keeps the
    one a run resumed from)."""
    remove(step_checkpoints(out_dir / FOLDER)[1:], "ckpt_keep_all=false")


def check_checkpoint(path: str | Path, module) -> None:
    """A ``ckpt_path`` a run can resume from, else one line naming the file and what is wrong: not
    there, a folder, not a checkpoint (unreadable, or not Lightning's), or one of another setting
    (its tensors' names or shapes differ from this run's). Read memory-mapped: nothing is copied."""
    import pickle

    import torch

    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"ckpt_path={str(path)!r} is a folder; give a checkpoint file (checkpoints/step_*.ckpt)")
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={str(path)!r} does not exist; give a checkpoint file (checkpoints/step_*.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise ValueError(f"ckpt_path={str(path)!r} cannot be read as a checkpoint (corrupt, cut short or another "
                         f"kind of file: {type(exc).__name__}); give a step_*.ckpt this framework wrote") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "pytorch-lightning_version" not in ckpt:
        raise ValueError(f"ckpt_path={str(path)!r} is not a Lightning checkpoint of a DIP run; give a step_*.ckpt "
                         f"this framework wrote")
    mine, theirs = module.state_dict(), ckpt["state_dict"]
    for key, value in mine.items():
        if key == "history" or not torch.is_tensor(value):  # older histories are padded on load; extra states
            continue
        other = theirs.get(key)
        if other is None or not torch.is_tensor(other) or tuple(other.shape) != tuple(value.shape):
            got = "no such tensor" if other is None else f"shape {tuple(other.shape)}"
            raise ValueError(f"ckpt_path={str(path)!r} was written by another setting ({key}: {got}, this run's "
                             f"{tuple(value.shape)}); resume with the config it was written with")
