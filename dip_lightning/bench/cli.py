"""``scripts/benchmark.py``'s arguments, the real config's overrides they make, and ``main``."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from dip_lightning.bench.overrides import config_overrides

QUICK = {"size": 32, "steps": 2, "warmup": 1, "repeats": 1}
FULL = {"size": 256, "steps": 10, "warmup": 3, "repeats": 3}
COUNT = {"size": 64, "steps": 50, "warmup": 100, "repeats": 1}  # counts do not depend on the size; ES-WMV fills its window of 100 in the warm-up

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmark.py",
        description="it/s of the DIP training step: through Lightning, as a bare PyTorch loop, and the "
                    "original eager fp32 way; FLOPs, achieved GFLOP/s, conv peak and peak memory.")
    p.add_argument("--task", default="denoise", help="task config name (configs/task), default denoise")
    p.add_argument("--net", default="skip", help="net config name (configs/net), default skip")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 256; --quick: 32)")
    p.add_argument("--image", default="astronaut", help="image path or skimage sample (default astronaut)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("32-true", "bf16-mixed"), default="32-true")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (config compile=true)")
    p.add_argument("--compile-mode", default="default",
                   choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                   help="torch.compile's mode with --compile (reduce-overhead: CUDA graphs)")
    p.add_argument("--memory-format", choices=("channels_last", "contiguous"), default=None,
                   help="the run's memory_format (default: the config's, channels_last)")
    p.add_argument("--channels-last", action="store_const", const="channels_last", dest="memory_format",
                   help="short for --memory-format channels_last")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--quick", action="store_true",
                   help="tiny image and net, 2 steps, 1 repeat: all the fields in seconds")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats, median reported (default 3)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 10)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before each repeat (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override of the real config (repeatable), e.g. optim.lr=0.02")
    p.add_argument("--pack", type=int, default=None, metavar="K",
                   help="also time K fits packed in one grouped net (pack=K) against K sequential fits")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N steps of the bare loop: the top operators by self time, per step")
    p.add_argument("--count-ops", action="store_true",
                   help="count the ATen ops per step instead of timing (ours with the GPU code path and a "
                        "dip-restore run's defaults, early stopping included, against the eager step): "
                        "dispatched and kernel-launching ops; --steps (default 50) after --warmup (default 100)")
    p.add_argument("--json", dest="json_path", default=None, metavar="OUT", help="write the results here")
    args = p.parse_args(argv)
    if args.pack is not None and args.pack < 2:
        p.error(f"--pack {args.pack}: give the number of packed fits, at least 2")
    base = QUICK if args.quick else COUNT if args.count_ops else FULL
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key, low in (("size", 8), ("steps", 1), ("warmup", 1), ("repeats", 1)):
        if getattr(args, key) < low:
            p.error(f"--{key} must be at least {low}")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def count_overrides(args: argparse.Namespace, out_dir: str | Path, eager: bool = False) -> list[str]:
    """``config_overrides`` for ``--count-ops``: ours keeps a ``dip-restore`` run's early stopping."""
    from dip_lightning.layout import resolve_memory_format

    ov = config_overrides(args, out_dir, eager)
    if eager:
        return ov
    layout = [] if args.memory_format else [f"memory_format={resolve_memory_format('auto', 'cuda')}"]
    return [o for o in ov if o != "es=none"] + layout  # (the GPU path: auto's layout on CUDA)


def write_result(res: dict, json_path: str | None) -> None:
    """``res`` as JSON at ``json_path`` (``--json``), when one is given."""
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {path}")


def count_main(args: argparse.Namespace) -> int:
    """``--count-ops``: print (and with ``--json`` write) the ops per step, ours against eager."""
    import tempfile

    from dip_lightning.bench.opcount import count_ops, format_counts
    from dip_lightning.bench.timing import quiet_session

    with quiet_session(args.threads), tempfile.TemporaryDirectory(prefix="dip_count_") as tmp:
        res = count_ops(count_overrides(args, tmp), count_overrides(args, tmp, eager=True), args.steps, args.warmup)
    res["overrides"] = [o for o in count_overrides(args, "<tmp>") if not o.startswith("paths.")]
    print(format_counts(res))
    write_result(res, args.json_path)
    return 0


def main(argv: list[str] | None = None) -> int:
    from dip_lightning.bench.driver import benchmark
    from dip_lightning.bench.report import format_table

    args = parse_args(argv)
    if args.count_ops:
        return count_main(args)
    res = benchmark(args)
    print(format_table(res))
    write_result(res, args.json_path)
    bad = [k for k in ("it_per_s", "bare_it_per_s", "eager_baseline_it_per_s", "speedup_vs_eager")
           if not (isinstance(res[k], float) and math.isfinite(res[k]) and res[k] > 0)]
    if bad:
        print(f"benchmark.py: error: non-finite results {bad}", file=sys.stderr)
        return 1
    return 0
