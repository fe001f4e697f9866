"""The benchmark's table, and the machine facts recorded with the timings."""
from __future__ import annotations

import os
import platform


def loadavg() -> list[float] | None:
    """1/5/15-minute load averages: a shared machine's disturbance, recorded with the timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_table(res: dict) -> str:
    def f(v, nd=3):
        return "n/a" if v is None else f"{v:.{nd}f}"

    runs = res["runs"]
    rows = [
        ("Lightning step (it/s)", f(res["it_per_s"]), " ".join(f(v) for v in runs["it_per_s"])),
        ("bare PyTorch loop (it/s)", f(res["bare_it_per_s"]), " ".join(f(v) for v in runs["bare_it_per_s"])),
        ("Lightning overhead (bare/L)", f(res["lightning_overhead"]), ""),
        ("eager fp32 baseline (it/s)", f(res["eager_baseline_it_per_s"]),
         " ".join(f(v) for v in runs["eager_baseline_it_per_s"])),
        ("speedup vs eager", f(res["speedup_vs_eager"]), f"best-of runs: {f(res['speedup_vs_eager_best'])}"),
        ("eager, this process (it/s)", f(res["eager_in_process_it_per_s"]),
         f"with the run's cpu_malloc={res['cpu_malloc']}; baseline above: own process, glibc defaults"),
        ("GFLOP / iteration (fwd+bwd)", f(res["gflop_per_iter"]), ""),
        ("achieved GFLOP/s", f(res["gflops"], 1), ""),
        ("conv peak GFLOP/s", f(res["conv_peak_gflops"], 1),
         f"{res['conv_peak_shape']}, best {res['conv_peak_layout']}" if res["conv_peak_shape"] else ""),
        ("conv floor (it/s)", f(res["conv_floor_it_per_s"]),
         f"convs alone, best layout each: {f(res['conv_floor_ms'], 1)} ms/step"),
        ("max speedup vs eager", f(res["max_speedup_vs_eager"]), "conv floor / eager: the ceiling"),
        ("peak memory (MB)", f(res["peak_mem_mb"], 1), "CUDA allocated" if res["device"] == "cuda" else "peak RSS"),
        ("parameters", f"{res['params']:,}", ""),
        ("first run() (s)", f(res["first_run_s"], 1),
         f"later runs {f(res['later_run_s'], 1)} s" + (": the difference is compiling" if res["compile"] else "")),
    ]
    if res.get("pack"):
        rows += [(f"pack={res['pack']} (fits x it/s)", f(res["pack_it_per_s"]), " ".join(f(v) for v in runs["pack_it_per_s"])),
                 ("sequential fits (fits x it/s)", f(res["sequential_it_per_s"]), "= one fit's it/s"),
                 ("pack speed-up", f(res["pack_speedup"]), f"best-of runs: {f(res['pack_speedup_best'])}"),
                 ("pack conv-floor speed-up", f(res["pack_conv_floor_speedup"]),
                  f"{res['pack']} x single / grouped convs alone: the ceiling")]
    head = (f"{res['task']} · {res['net']} · {res['size']}x{res['size']} (canvas {res['canvas'][0]}x{res['canvas'][1]})"
            f" · {res['device']} · {res['precision']} · compile={res['compile']} · {res['memory_format']}"
            f" · threads {res['threads']} · torch {res['torch_version']}\n"
            f"{res['steps']} timed steps after {res['warmup']} warm-up, {res['repeats']} repeat(s), median"
            f" (then each run) · load average {res['loadavg_before']} -> {res['loadavg_after']}")
    w = max(len(r[0]) for r in rows)
    lines = [head, "-" * 72] + [f"{a:<{w}}  {b:>12}  {c}".rstrip() for a, b, c in rows]
    if res.get("profile"):
        lines += ["", "where a step's time goes (bare loop, self time per step)",
                  *(f"  {p['ms_per_step']:8.2f} ms  {100 * p['share']:5.1f}%  {p['calls_per_step']:6.1f} calls  {p['op']}"
                    for p in res["profile"])]
    return "\n".join(lines)
