#!/usr/bin/env python
"""Reproduce a table of the paper as one Hydra multirun: one job per image (× seed), any launcher.

    python scripts/reproduce.py --suite NAME --data DIR [--quick] [--work DIR] [--out FILE] [--pack K]
                                [--limit N] [OVERRIDES...]

A suite (``configs/suite/NAME.yaml``) is data: the recipe (an experiment preset), the image folder
under DIR, the evaluation protocol and the paper's numbers. ``--suite pairs`` restores observations
made elsewhere, DIR/observed/NAME.*, each scored against DIR/reference/NAME.* (``dip_lightning.pairs``). OVERRIDES go to every job, e.g.
``seed=0,1,2`` (a sweep: images × seeds), ``hydra/launcher=joblib hydra.launcher.n_jobs=2``,
``hydra/launcher=slurm`` or ``iters=500``. The jobs land in the sweep folder ``--work`` (default
``outputs/reproduce/<suite>[-quick]``) as ``<image>/seed=<s>/``; each writes its protocol's score
(``psnr_eval``) into its metrics.json. Launching again into the same folder skips every job whose
metrics.json says ``completed`` (``skip_completed=true``), so a cut-short reproduction continues.
Then ``scripts/collect.py`` writes the report into the sweep folder, and ``--out`` gets its table.
``--pack K`` fits up to K images of one size per job, packed in one net, each with its lone seed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

try:
    import dip_lightning  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dip_lightning.io import IMAGE_EXT, load_image
from dip_lightning.multirun import launch, record_command
from dip_lightning.pairs import check_pairs
from dip_lightning.overrides import QUIET, format_value, subdir_of, swept_keys

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "configs" / "suite"
GROUPS = tuple(p.name for p in (ROOT / "configs").iterdir() if p.is_dir())  # config groups: net, task, …
QUICK = ["resize=64", "iters=60", "eval_every=5"]
QUICK_PAIRS = ["iters=60", "eval_every=5"]  # a pair is restored at its own size (resize would part it from its reference)


def suites() -> list[str]:
    return sorted(p.stem for p in SUITES.glob("*.yaml"))


def load_suite(name: str) -> dict:
    return {"suite": name, **yaml.safe_load((SUITES / f"{name}.yaml").read_text())}


def pack_groups(images: list[Path], pack: int, shape_of) -> list[list[Path]]:
    """Consecutive groups of at most ``pack`` images that share a shape, in file order."""
    by_shape: dict[tuple, list[Path]] = {}
    for p in images:
        by_shape.setdefault(tuple(shape_of(p)), []).append(p)
    out = [same[i:i + pack] for same in by_shape.values() for i in range(0, len(same), pack)]
    return sorted(out, key=lambda g: images.index(g[0]))


def sweep_overrides(suite: dict, images: list[Path], work: Path, pack: int, quick: bool, extra: list[str],
                    shape_of) -> list[str]:
    """The multirun's overrides: the recipe, the protocol, the images as a sweep (or packed groups),
    quiet and resumable jobs in named folders, then the user's overrides."""
    ov = [f"experiment={suite['experiment']}", *suite.get("overrides", []),
          f"eval_protocol={suite['eval_protocol']}", f"eval_output={suite['eval_output']}",
          *QUIET, *((QUICK_PAIRS if suite.get("pairs") else QUICK) if quick else []), "skip_completed=true",
          f"hydra.sweep.dir={format_value(str(work))}",
          "hydra.sweep.subdir='" + subdir_of(swept_keys(extra, ("seed", "image", "pack_images")), GROUPS,
                                             "${dip_job_dir:${image},${pack_images},${seed}}") + "'"]
    if pack > 1:
        groups = pack_groups(images, pack, shape_of)
        ov.append("image=" + format_value(str(images[0])))
        ov.append("pack_images=" + ",".join("[" + ",".join(format_value(str(p)) for p in g) + "]" for g in groups))
    else:
        ov.append("image=" + ",".join(format_value(str(p)) for p in images))
    if not any(o.split("=", 1)[0] == "seed" for o in extra):
        ov.append("seed=0")
    return ov + extra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", required=True, choices=suites())
    ap.add_argument("--data", required=True, type=Path, help="folder holding the suites' image folders")
    ap.add_argument("--quick", action="store_true", help="64-px images, 60 steps: minutes on a CPU, not comparable")
    ap.add_argument("--out", type=Path, help="also write the report's table here (markdown)")
    ap.add_argument("--work", type=Path, help="the sweep folder (default: outputs/reproduce/<suite>[-quick])")
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--pack", type=int, default=1, metavar="K",
                    help="fit up to K images of one size per job, packed in one net (default 1)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every job, e.g. seed=0,1,2 iters=500")
    args = ap.parse_args(argv)

    suite = load_suite(args.suite)
    folder = args.data / suite["folder"]
    if suite.get("pairs"):  # DIR/observed/NAME.* with DIR/reference/NAME.* (dip_lightning/pairs.py)
        try:
            images = check_pairs(args.data)[: args.limit]
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif not folder.is_dir():
        print(f"error: {folder} does not exist; --data must hold {suite['folder']}/", file=sys.stderr)
        return 2
    else:
        images = sorted(p.resolve() for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT)[: args.limit]
    if not images:
        print(f"error: no images in {folder}", file=sys.stderr)
        return 2
    if args.pack < 1:
        print(f"error: --pack {args.pack}: give the number of images fitted at once, at least 1", file=sys.stderr)
        return 2
    work = (args.work or Path("outputs/reproduce") / (args.suite + ("-quick" if args.quick else ""))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    # what the paper's average is over: its images (a folder may hold some of them), else the folder's
    every = sorted(set(suite.get("paper") or {}) | {p.stem for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT})
    record_command(work, "reproduce.py", sys.argv[1:] if argv is None else argv)
    (work / "suite.json").write_text(json.dumps({**suite, "quick": args.quick, "images": every}, indent=2) + "\n")
    resize = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("resize=")), "64" if args.quick else None)
    shape = lambda p: load_image(p, None if resize in (None, "null") else int(resize)).shape  # noqa: E731
    ov = sweep_overrides(suite, images, work, args.pack, args.quick, list(args.overrides), shape)
    rc = launch(ov)
    if rc:
        print(f"error: the multirun exited with {rc}", file=sys.stderr)
        return rc
    sys.path.insert(0, str(ROOT / "scripts"))
    from collect import collect

    text = collect(work)  # a --quick suite's report says it is not comparable (suite.json's "quick")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
