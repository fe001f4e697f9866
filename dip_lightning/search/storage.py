"""Where a study lives, and the pruner a study names (the sweeper and its jobs build the same one)."""
from __future__ import annotations

import time
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
    or an RDB storage. (Optuna's own heartbeat is not used: it works only under ``Study.optimize``;
    the sweeper keeps its own liveness signal in the study, ``liveness.py``.)"""
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    return optuna.storages.RDBStorage(url)


def make_study(storage: optuna.storages.BaseStorage, name: str, direction: str,
               pruner: dict[str, Any] | None) -> optuna.Study:
    """The study ``name`` (created, or loaded to be continued) with the pruner ``pruner`` names, both
    set on the study object (Optuna's samplers read it: Hyperband's brackets) and kept in the study
    (its jobs build the same pruner from it)."""
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True,
                                pruner=make_pruner(pruner))
    study.set_user_attr("pruner", dict(pruner or {"name": "none"}))
    size_brackets(study)
    return study


def size_brackets(study: optuna.Study) -> None:
    """Let Hyperband place trials in brackets in this process. Optuna sizes the brackets inside
    ``prune``, which only the jobs call; until then every trial is in bracket 0, and the sampler,
    which reads the study through the asked trial's bracket, would see every trial. (With
    ``max_resource: auto`` the brackets are sized once a trial has completed.)"""
    pruner = study.pruner
    if isinstance(pruner, optuna.pruners.HyperbandPruner) and not pruner._pruners:
        pruner._try_initialization(study)


def claim_folder(sweep_dir: Path, study: str, url: str) -> None:
    """Record that ``sweep_dir`` holds study ``study`` in ``url`` (``search.json``, the URL without
    its password); refuse in one line a search of another study, or of the same name in another
    storage, whose trial folders (``trial_NNNN``) would collide with this one's. Two sweepers that
    start together agree: the file is created once, and the second reads it."""
    import json

    from dip_lightning.overrides import format_value

    record = Path(sweep_dir) / "search.json"
    mine = {"study": str(study), "storage": shown_url(url)}
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    try:
        with open(record, "x") as f:
            f.write(json.dumps(mine) + "\n")
        return
    except FileExistsError:
        pass
    for _ in range(50):  # (the other sweeper may be writing it this instant)
        try:
            held = json.loads(record.read_text())
            break
        except ValueError:
            time.sleep(0.1)
    else:
        raise ValueError(f"{record} is not a search record; remove it, or give another hydra.sweep.dir")
    if held != mine:
        other = Path(sweep_dir).parent / f"{Path(sweep_dir).name}-{study}"
        raise ValueError(f"hydra.sweep.dir={sweep_dir} holds the trials of study {held['study']!r} in "
                         f"{held['storage']}; give study {study!r} in {shown_url(url)} its own folder, e.g. "
                         f"hydra.sweep.dir={format_value(str(other))}")


def shown_url(url: str) -> str:
    """``url`` with its password hidden (an RDB URL), to be written or printed."""
    if url.startswith("journal://"):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: it has no password we could find
        return url


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
