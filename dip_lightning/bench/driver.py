"""``benchmark(args)``: the interleaved repeats of every measurement, and the result fields."""
from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from dip_lightning.bench.overrides import EAGER_BASELINE, config_overrides
from dip_lightning.bench.convs import conv_peak, floor_fields
from dip_lightning.bench.loops import bare_fit, eager_fit, eager_in_fresh_process, eager_parts, lightning_fit, profile_step
from dip_lightning.bench.report import cpu_model, loadavg
from dip_lightning.bench.timing import quiet_session


def _progress(msg: str) -> None:
    print(f"[benchmark] {msg}", file=sys.stderr, flush=True)


def _forget() -> None:
    """Free what the last fit left, now, before the next measurement."""
    gc.collect()

def benchmark(args: argparse.Namespace) -> dict:
    import pytorch_lightning as pl
    import torch

    from dip_lightning.config import compose_config
    from dip_lightning import malloc as cpu_malloc
    from dip_lightning.nets.blocks import count_parameters

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmark.py: error: --device cuda but torch.cuda.is_available() is False")
    device = "cuda" if args.device == "cuda" else "cpu"
    load_before = loadavg()
    with quiet_session(args.threads), tempfile.TemporaryDirectory(prefix="dip_bench_") as tmp:
        cfg = compose_config(config_overrides(args, tmp))
        cfg_eager = compose_config(config_overrides(args, tmp, eager=True))
        runs: dict[str, list[float]] = {"it_per_s": [], "bare_it_per_s": [], "eager_baseline_it_per_s": [],
                                        "eager_in_process_it_per_s": []}
        run_s: list[float] = []  # wall time of each whole Lightning run()
        peak_mem = rss_before = None
        # The eager baseline runs in a fresh interpreter: run() sets this process's allocator
        # (cpu_malloc=reuse), which the original code did not have. It also runs here, with it.
        # (The worker starts at the first submit; a worker that dies raises BrokenProcessPool.)
        baseline_proc = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        eager_job = (config_overrides(args, tmp, eager=True), torch.get_num_threads(), device)
        try:
            for r in range(args.repeats):  # interleaved, so a change of machine load hits all of them alike
                t0 = time.perf_counter()
                module, rate, memory = lightning_fit(cfg)
                runs["it_per_s"].append(rate)
                run_s.append(time.perf_counter() - t0)
                _progress(f"repeat {r + 1}/{args.repeats}: Lightning {rate:.3f} it/s (run() took {run_s[-1]:.1f} s)")
                if r == 0:  # on CPU the process's high-water mark: the first fit is the first heavy work
                    peak_mem, rss_before = memory["peak_mem_mb"], memory["rss_before_fit_mb"]
                elif device == "cuda":
                    peak_mem = max(peak_mem, memory["peak_mem_mb"])
                canvas = list(module.z.shape[-2:])
                memory_format = "channels_last" if module.channels_last else "contiguous"
                params = count_parameters(module.net)
                del module
                _forget()
                t0 = time.perf_counter()
                module, rate = bare_fit(cfg, device, args.precision)
                runs["bare_it_per_s"].append(rate)
                _progress(f"repeat {r + 1}/{args.repeats}: bare {rate:.3f} it/s ({time.perf_counter() - t0:.1f} s)")
                del module
                _forget()
                t0 = time.perf_counter()
                cpu_malloc.release()  # this process's kept heap is free memory for the child
                runs["eager_baseline_it_per_s"].append(baseline_proc.submit(eager_in_fresh_process, *eager_job).result())
                _progress(f"repeat {r + 1}/{args.repeats}: eager {runs['eager_baseline_it_per_s'][-1]:.3f} it/s "
                          f"(own process, {time.perf_counter() - t0:.1f} s)")
                t0 = time.perf_counter()
                runs["eager_in_process_it_per_s"].append(eager_fit(cfg_eager, device))
                _progress(f"repeat {r + 1}/{args.repeats}: eager {runs['eager_in_process_it_per_s'][-1]:.3f} it/s "
                          f"(this process, {time.perf_counter() - t0:.1f} s)")
                _forget()
        finally:
            baseline_proc.shutdown(cancel_futures=True)
        if args.pack:  # K packed fits through Lightning: fits × steps per second
            cfg_pack = compose_config(config_overrides(args, tmp) + [f"pack={args.pack}"])
            runs["pack_it_per_s"] = []
            for r in range(args.repeats):
                module, rate, _ = lightning_fit(cfg_pack)
                runs["pack_it_per_s"].append(args.pack * rate)
                _progress(f"repeat {r + 1}/{args.repeats}: pack={args.pack} {args.pack * rate:.3f} fit-it/s")
                del module
                _forget()
        breakdown = profile_step(cfg, device, args.precision, args.profile) if args.profile else None
        _forget()
        net, task, z, y = eager_parts(cfg_eager, device)
        from dip_lightning.flops import step_flops

        flops = step_flops(net, z, task, y)
        peak = conv_peak(net, z, device, args.precision, max(3, args.repeats))
        peak.update(floor_fields(net, z, device, args.precision, max(3, args.repeats), args.pack))
        threads = torch.get_num_threads()
        del net, task, z, y
        _forget()

    med = {k: statistics.median(v) for k, v in runs.items()}
    best = {k: max(v) for k, v in runs.items()}  # interference only slows a run: best-of is the other estimate
    gflop = flops / 1e9
    res = {
        "task": args.task, "net": args.net, "size": args.size, "canvas": canvas, "device": device,
        "precision": args.precision, "compile": bool(args.compile), "compile_mode": args.compile_mode,
        "memory_format": memory_format,
        "cpu_malloc": str(cfg.get("cpu_malloc")), "cpu_malloc_reuse": cpu_malloc.in_effect(),
        "channels_last": memory_format == "channels_last",
        "threads": threads, "quick": bool(args.quick),
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "params": int(params),
        "it_per_s": med["it_per_s"],
        "bare_it_per_s": med["bare_it_per_s"],
        "lightning_overhead": med["bare_it_per_s"] / med["it_per_s"],
        "eager_baseline_it_per_s": med["eager_baseline_it_per_s"],
        "speedup_vs_eager": med["it_per_s"] / med["eager_baseline_it_per_s"],
        "it_per_s_best": best["it_per_s"],
        "bare_it_per_s_best": best["bare_it_per_s"],
        "eager_baseline_it_per_s_best": best["eager_baseline_it_per_s"],
        "eager_in_process_it_per_s": med["eager_in_process_it_per_s"],
        "eager_in_process_it_per_s_best": best["eager_in_process_it_per_s"],
        "speedup_vs_eager_best": best["it_per_s"] / best["eager_baseline_it_per_s"],
        # wall time of a whole run() (setup, warm-up and timed steps); the first one includes compiling
        "first_run_s": run_s[0],
        "later_run_s": statistics.median(run_s[1:]) if len(run_s) > 1 else None,
        "gflop_per_iter": gflop,
        "gflops": gflop * med["it_per_s"],
        **peak,
        "peak_mem_mb": peak_mem,
        "peak_mem_kind": ("torch.cuda.max_memory_allocated of the Lightning fits" if device == "cuda" else
                          "ru_maxrss: process peak RSS through the first Lightning fit (interpreter and "
                          "libraries included)"),
        "rss_before_fit_mb": rss_before,
        "runs": runs,
        "eager_baseline": EAGER_BASELINE,
        "overrides": [o for o in config_overrides(args, "<tmp>") if not o.startswith("paths.")],
        "torch_version": torch.__version__, "lightning_version": pl.__version__,
        "python": platform.python_version(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "loadavg_before": load_before, "loadavg_after": loadavg(),
    }
    if args.pack:
        # K sequential fits do K × steps in K × the time of one: their rate is the single fit's
        res.update(pack=args.pack, pack_it_per_s=med["pack_it_per_s"], sequential_it_per_s=med["it_per_s"],
                   pack_speedup=med["pack_it_per_s"] / med["it_per_s"], pack_it_per_s_best=best["pack_it_per_s"],
                   pack_speedup_best=best["pack_it_per_s"] / best["it_per_s"])
    if breakdown is not None:
        res["profile"] = breakdown
    if res["conv_peak_gflops"]:
        res["fraction_of_conv_peak"] = res["gflops"] / res["conv_peak_gflops"]
    # the most any step built on these conv kernels could gain over the eager baseline
    res["max_speedup_vs_eager"] = res["conv_floor_it_per_s"] / res["eager_baseline_it_per_s"]
    return res
