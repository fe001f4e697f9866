"""Throughput benchmark of the framework's training step (``scripts/benchmark.py`` is the CLI).

For one task / net / image size / device / precision it measures, warm-up steps excluded, over
several interleaved repeats (the median is reported):

* ``it_per_s``: the real thing. The real ``configs/restore.yaml`` composed with benchmark overrides
  (no logger, progress bar, early stopping or snapshots) goes through ``run.run()`` itself; only
  ``cfg.trainer``'s target is ``make_trainer``, a ``pl.Trainer`` that lets the benchmark see the
  module and callbacks ``run()`` made. The rate is that of ``run()``'s own ``Throughput`` callback.
* ``bare_it_per_s``: the same module (built by ``run()``, handed over before any step) and its own
  ``training_step``, in a plain PyTorch loop with no Lightning: the three things the step asks of a
  Trainer (its optimiser, ``manual_backward``, the step count) are given directly, inside the
  autocast Lightning's precision uses. ``lightning_overhead`` = bare / Lightning. (The tests check
  that this loop leaves the module bit-identical to ``trainer.fit``.)
* ``eager_baseline_it_per_s``: the original code's way: the net ``run()`` builds with compile off,
  NCHW, in fp32, ``torch.optim.Adam(lr=0.01)``, input jitter, mse; no metrics, EMA or backtracking;
  in a spawned interpreter, whose allocator is glibc's default (``run()`` sets this process's:
  ``cpu_malloc``). ``eager_in_process_it_per_s``: the same step in this process, with that setting.
* ``gflop_per_iter`` (forward + backward, ``torch.utils.flop_counter``), achieved ``gflops`` and
  ``conv_peak_gflops`` (the machine's rate on the net's largest convolution, measured here).
* ``conv_floor_it_per_s``: 1 / the summed time of the step's convolutions run alone (forward +
  backward, each in its faster layout) and ``max_speedup_vs_eager`` = that / the eager baseline:
  the ceiling for any step that uses the same conv kernels. With ``--pack K`` also
  ``pack_conv_floor_speedup``: K single nets' conv floor / the grouped net's (packing's ceiling).
* ``peak_mem_mb``: on CPU the process's peak RSS (``ru_maxrss``) through the first Lightning fit,
  interpreter and libraries included; on CUDA ``torch.cuda.max_memory_allocated`` of the fits.
* ``first_run_s`` / ``later_run_s``: wall time of the first and (median) later whole ``run()``;
  with ``--compile`` their difference is the compile time.

Heavy imports (Lightning, Hydra) happen inside the functions, so ``--help`` and argument errors
are instant.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

#: Hydra overrides that make the benchmark measure the step only (no logging, stopping, images)
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "es=none", "snapshot_every=0",
         "snapshot_log_spaced=false", "ckpt_every=0"]

#: --quick: small versions of the nets (the skip net: 3 levels of 8 channels, 4 input channels)
QUICK_NET = {
    "skip": ["net.channels_down=[8,8,8]", "net.channels_up=[8,8,8]", "net.channels_skip=[2,2,2]"],
    "unet": ["net.feature_scale=16"],
    "resnet": ["net.num_blocks=2", "net.num_channels=8"],
    "decoder": ["net.channels=[8,8,8]"],
    "convdecoder": ["net.channels=[8,8,8]"],
    "texture": ["net.conv_num=4"],
}
QUICK = {"size": 32, "steps": 2, "warmup": 1, "repeats": 1}
FULL = {"size": 256, "steps": 10, "warmup": 3, "repeats": 3}

EAGER_BASELINE = ("the net run() builds, fresh, same class, with stock torch.nn.Conv2d(padding_mode='reflect') layers "
                  "(the original code used ReflectionPad2d + Conv2d), eager fp32 NCHW, not compiled, torch.optim.Adam(lr=0.01), "
                  "input jitter z + reg_noise_std*randn, loss mse(A(net(z)), y); no metrics, EMA or backtracking; "
                  "in a fresh process with glibc's default allocator")


# ---------------------------------------------------------------------------------------- CLI
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
    p.add_argument("--json", dest="json_path", default=None, metavar="OUT", help="write the results here")
    args = p.parse_args(argv)
    if args.pack is not None and args.pack < 2:
        p.error(f"--pack {args.pack}: give the number of packed fits, at least 2")
    base = QUICK if args.quick else FULL
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key, low in (("size", 8), ("steps", 1), ("warmup", 1), ("repeats", 1)):
        if getattr(args, key) < low:
            p.error(f"--{key} must be at least {low}")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def config_overrides(args: argparse.Namespace, out_dir: str | Path, eager: bool = False) -> list[str]:
    """The real config's overrides for this benchmark; ``eager``: the baseline's (no compile, NCHW, fp32)."""
    compiled = False if eager else args.compile
    fmt = "contiguous" if eager else args.memory_format  # None: the config's default
    ov = [f"task={args.task}", f"net={args.net}", f"image={args.image}", f"resize={args.size}",
          f"seed={args.seed}", f"iters={args.warmup + args.steps}", f"warmup_steps={args.warmup}",
          "trainer._target_=dip_lightning.bench.make_trainer",
          f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}", "trainer.devices=1",
          f"trainer.precision={'32-true' if eager else args.precision}",
          *([f"memory_format={fmt}"] if fmt else []),
          f"compile={'true' if compiled else 'false'}", *QUIET]
    if args.threads is not None:
        ov.append(f"threads={args.threads}")
    if args.quick:
        ov += QUICK_NET.get(args.net, []) + ["input.depth=4"]
    ov += list(args.override)
    if eager:  # the original code ran with glibc's defaults (after --override: it cannot change this)
        ov.append("cpu_malloc=system")
    ov.append(f"paths.output_dir={out_dir}")
    return ov


# ------------------------------------------------------------------ building: run() itself does it
#: what the benchmark's Trainer saw of the last ``run()``: the trainer, the module, memory figures
_SESSION: dict[str, Any] = {"capture": False, "trainer": None, "module": None}
_TRAINER_CLASS = None


class Captured(Exception):
    """Raised by the benchmark's Trainer in capture mode: ``run()`` has built the module, no step taken."""


def make_trainer(**kwargs):
    """Hydra target of ``cfg.trainer`` during the benchmark (``trainer._target_`` override).

    Returns a ``pl.Trainer`` whose ``fit`` records the module ``run()`` built and the peak memory of
    the fit, or, in capture mode, hands the untrained module over by raising ``Captured``. So the
    module, task, input and callbacks always come from ``run()`` itself, whatever it does.
    """
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        import pytorch_lightning as pl
        import torch

        class BenchTrainer(pl.Trainer):
            def fit(self, model, *args, **kw):
                _SESSION.update(trainer=self, module=model)
                if _SESSION["capture"]:
                    raise Captured()
                cuda = self.accelerator.__class__.__name__ == "CUDAAccelerator"
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                _SESSION["rss_before_fit_mb"] = _rss_mb()
                out = super().fit(model, *args, **kw)
                _SESSION["peak_mem_mb"] = (torch.cuda.max_memory_allocated() / 2**20 if cuda else _maxrss_mb())
                return out

        _TRAINER_CLASS = BenchTrainer
    return _TRAINER_CLASS(**kwargs)


def _forget() -> None:
    """Drop what the benchmark's Trainer kept of the last ``run()``, so its memory is freed now."""
    _SESSION.update(trainer=None, module=None)
    gc.collect()


def capture_module(cfg):
    """The DIPModule exactly as ``run.run(cfg)`` builds it (net, task, z, y, optimiser factory), untrained."""
    from dip_lightning.run import run

    _SESSION.update(capture=True, trainer=None, module=None)
    try:
        run(cfg)
    except Captured:
        return _SESSION["module"]
    finally:
        _SESSION["capture"] = False
    raise RuntimeError("run() finished without calling trainer.fit; is trainer._target_ overridden?")


# ------------------------------------------------------------------------------------ helpers
def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: str, precision: str):
    """The autocast context Lightning's precision plugin puts around ``training_step``."""
    import torch

    if precision == "bf16-mixed":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _quiet_session(threads: int | None):
    """Lightning's info logs and known warnings off, ``threads`` set; all restored on exit (the
    benchmark may run inside another program, e.g. the tests)."""
    import logging

    import torch

    names = ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning")
    levels = {n: logging.getLogger(n).level for n in names}
    old_threads = torch.get_num_threads()
    with warnings.catch_warnings():
        for msg in (".*does not have many workers.*", ".*The number of training batches.*",
                    ".*log_every_n_steps.*", ".*LeafSpec.*"):  # the last: torch's pytree deprecation, in Lightning
            warnings.filterwarnings("ignore", message=msg)
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)
            torch.set_num_threads(old_threads)


def timed_loop(step: Callable[[int], Any], warmup: int, steps: int, device: str) -> float:
    """Run ``warmup`` untimed then ``steps`` timed calls of ``step(i)`` (i = 1, 2, ...); return it/s.
    Synchronises the device only at the two timing boundaries."""
    for i in range(1, warmup + 1):
        step(i)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(warmup + 1, warmup + steps + 1):
        step(i)
    _sync(device)
    return steps / (time.perf_counter() - t0)


def best_time(once: Callable[[], Any], repeats: int, device: str) -> float:
    """The fastest of ``repeats`` timed calls of ``once()`` (seconds), the device synchronised around each."""
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        once()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _maxrss_mb()


def _maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _optimizer(configured):
    """The optimiser out of whatever ``configure_optimizers`` returned."""
    if isinstance(configured, dict):
        configured = configured["optimizer"]
    if isinstance(configured, (list, tuple)):
        configured = configured[0]
    return configured


# ------------------------------------------------------------------------------- the three loops
def lightning_fit(cfg):
    """``run(cfg)``: the framework's own fit. Returns (module, it/s of run()'s Throughput callback)."""
    from dip_lightning.callbacks import Throughput
    from dip_lightning.run import run

    _SESSION.update(capture=False, trainer=None, module=None)
    run(cfg)
    trainer, module = _SESSION["trainer"], _SESSION["module"]
    thr = next(cb for cb in trainer.callbacks if isinstance(cb, Throughput))
    timed, expected = thr.step_end - thr.step_warm, int(cfg.iters) - int(cfg.warmup_steps)
    if thr.t_warm is None or timed != expected:
        raise RuntimeError(f"Throughput timed {timed} steps, expected {expected}")
    return module, float(thr.it_per_s)


def _bare_stepper(cfg, device: str, precision: str):
    """``run()``'s module ready for a plain loop, and ``step(i)`` (i = 1, 2, ...) running its
    ``training_step`` as Lightning would (see ``bare_fit``)."""
    import torch

    module = capture_module(cfg).to(device)
    module.train()
    opt = _optimizer(module.configure_optimizers())
    count = {"global_step": 0}
    base = type(module)
    module.__class__ = type(base.__name__, (base,), {"global_step": property(lambda self: count["global_step"])})
    module.optimizers = lambda use_pl_optimizer=True: opt
    module.manual_backward = lambda loss, *args, **kwargs: loss.backward(*args, **kwargs)
    module.on_fit_start()
    module.on_train_start()
    dev_type = torch.device(device).type

    def step(i: int) -> None:
        count["global_step"] = i - 1  # Lightning's count during step i
        with _autocast(dev_type, precision):
            module.training_step(i - 1, i - 1)

    return module, step, count


def bare_fit(cfg, device: str, precision: str):
    """The same module and loss without Lightning: ``run()``'s module, its own ``on_fit_start`` and
    ``training_step``, given the three things the step asks of a Trainer (the optimiser,
    ``manual_backward`` = ``loss.backward()``, the step count), inside the autocast Lightning's
    precision puts around the step. Returns (module, it/s)."""
    module, step, count = _bare_stepper(cfg, device, precision)
    steps = int(cfg.iters) - int(cfg.warmup_steps)
    rate = timed_loop(step, int(cfg.warmup_steps), steps, device)
    count["global_step"] = int(cfg.iters)
    return module, rate


def profile_step(cfg, device: str, precision: str, steps: int, top: int = 15) -> list[dict]:
    """Where a step's time goes: ``torch.profiler`` over ``steps`` steps of the bare loop (after the
    warm-up), the ``top`` operators by self time (device time on CUDA, else CPU), per step."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    _, step, _ = _bare_stepper(cfg, device, precision)
    warm = int(cfg.warmup_steps)
    for i in range(1, warm + 1):
        step(i)
    _sync(device)
    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for i in range(warm + 1, warm + steps + 1):
            step(i)
        _sync(device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events)
    return [{"op": e.key, "ms_per_step": getattr(e, key) / 1e3 / steps, "share": getattr(e, key) / total,
             "calls_per_step": e.count / steps} for e in events[:top]]


def eager_parts(cfg, device: str):
    """Net, task, z and padded y as ``run(cfg)`` builds them (``cfg`` with compile off, NCHW, fp32)."""
    module = capture_module(cfg)
    net = getattr(module.net, "_orig_mod", module.net).to(device).train()
    return net, module.task.to(device), module.z.to(device), module.y.to(device)


def eager_in_fresh_process(overrides: list[str], threads: int, device: str) -> float:
    """``eager_fit`` of the config these ``overrides`` compose, with ``threads`` threads, run in a
    spawned interpreter (see ``benchmark``): glibc's allocator there is as the original code had it,
    whatever ``cpu_malloc`` did to the benchmark's process."""
    from dip_lightning.api import compose_config

    with _quiet_session(threads):
        return eager_fit(compose_config(overrides), device)


def eager_fit(cfg, device: str) -> float:
    """The original code's plain eager fp32 NCHW step (see ``EAGER_BASELINE``). Returns it/s."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    net, task, z, y = eager_parts(cfg, device)
    for m in net.modules():  # the framework's Conv2d (own reflection-pad backward) -> the stock layer
        if isinstance(m, nn.Conv2d) and type(m) is not nn.Conv2d:
            m.__class__ = nn.Conv2d
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    sigma = float(cfg.reg_noise_std)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        z_in = z + sigma * torch.randn_like(z) if sigma > 0 else z
        loss = F.mse_loss(task(net(z_in)), y)
        loss.backward()
        opt.step()

    return timed_loop(step, int(cfg.warmup_steps), int(cfg.iters) - int(cfg.warmup_steps), device)


# ------------------------------------------------------------------------------ FLOPs and peak
def convs_of(net, z) -> list[tuple[Any, tuple, tuple, bool]]:
    """(conv, input shape, output shape, needs input grad) of every Conv2d call of one forward of
    ``net`` on ``z`` (with autograd on: which inputs need a gradient is part of a step's cost)."""
    import torch.nn as nn

    seen: list[tuple[Any, tuple, tuple, bool]] = []

    def hook(mod, inputs, output):
        seen.append((mod, tuple(inputs[0].shape), tuple(output.shape), bool(inputs[0].requires_grad)))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        net(z)
    finally:
        for h in handles:
            h.remove()
    return seen


def largest_conv(net, z):
    """(conv module, input shape) of the net's most expensive Conv2d, 3×3 ones preferred."""
    def flops(mod, out_shape) -> int:
        k = mod.kernel_size[0] * mod.kernel_size[1]
        return 2 * mod.in_channels // mod.groups * mod.out_channels * k * out_shape[-2] * out_shape[-1]

    seen = convs_of(net, z)
    if not seen:
        return None, None
    pool = [s for s in seen if tuple(s[0].kernel_size) == (3, 3)] or seen
    conv, shape, _, _ = max(pool, key=lambda s: flops(s[0], s[2]))
    return conv, shape


def conv_peak(net, z, device: str, precision: str, repeats: int) -> dict:
    """The machine's rate on the net's largest conv: forward + backward (input and weight grads) of
    the same Conv2d shape with zero padding (the bare kernel), NCHW and channels_last, best of
    ``repeats`` timings each, under the run's autocast."""
    import torch
    import torch.nn as nn
    from torch.utils.flop_counter import FlopCounterMode

    ref, shape = largest_conv(net, z)
    if ref is None:
        return {"conv_peak_gflops": None, "conv_peak_layout": None, "conv_peak_shape": None}
    dev_type = torch.device(device).type
    best: dict[str, float] = {}
    flops = None
    for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        conv = nn.Conv2d(ref.in_channels, ref.out_channels, ref.kernel_size, stride=ref.stride, padding=ref.padding,
                         dilation=ref.dilation, groups=ref.groups, bias=ref.bias is not None).to(device)
        conv = conv.to(memory_format=fmt)
        x = torch.randn(shape, device=device).contiguous(memory_format=fmt).requires_grad_()
        grad: list[torch.Tensor] = []

        def once() -> None:
            x.grad = None
            conv.zero_grad(set_to_none=True)
            with _autocast(dev_type, precision):
                out = conv(x)
            if not grad:
                grad.append(torch.randn_like(out).contiguous(memory_format=fmt))
            out.backward(grad[0])

        once()  # warm-up (and the gradient's shape)
        if flops is None:
            with FlopCounterMode(display=False) as counter:
                once()
            flops = int(counter.get_total_flops())
        best[layout] = flops / best_time(once, max(2, repeats), device) / 1e9
    layout = max(best, key=best.get)
    c = ref
    return {"conv_peak_gflops": best[layout], "conv_peak_layout": layout,
            "conv_peak_by_layout": best,
            "conv_peak_shape": f"{c.in_channels}->{c.out_channels} {c.kernel_size[0]}x{c.kernel_size[1]} "
                               f"stride {c.stride[0]} on {shape[-2]}x{shape[-1]}"}


def conv_floor(net, z, device: str, precision: str, repeats: int) -> dict:
    """The time of the net's convolutions alone: every Conv2d call of one step (its own padding
    mode, groups, stride; input gradient where the net needs it), forward + backward in isolation,
    each in its faster layout (NCHW or channels_last), best of ``repeats``, summed.

    No implementation that calls these convolution kernels can step faster than
    ``conv_floor_it_per_s``: it is the ceiling that the BatchNorm / activation / padding /
    upsampling / optimiser work is measured against."""
    import copy

    import torch

    dev_type = torch.device(device).type
    total = {"nchw": 0.0, "channels_last": 0.0, "best": 0.0}
    for ref, shape, _, needs_grad in convs_of(net, z):
        times = {}
        for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
            conv = copy.deepcopy(ref).to(device).to(memory_format=fmt)
            x = torch.randn(shape, device=device).contiguous(memory_format=fmt).requires_grad_(needs_grad)
            with _autocast(dev_type, precision):
                grad = torch.randn_like(conv(x))

            def once() -> None:
                x.grad = None
                conv.zero_grad(set_to_none=True)
                with _autocast(dev_type, precision):
                    out = conv(x)
                out.backward(grad)

            once()
            times[layout] = best_time(once, max(2, repeats), device)
        total["nchw"] += times["nchw"]
        total["channels_last"] += times["channels_last"]
        total["best"] += min(times.values())
    return total


def floor_fields(net, z, device: str, precision: str, repeats: int, pack: int | None) -> dict:
    """``conv_floor_*`` of the net, and with ``pack``: the same for the K-packed (grouped) net, so
    ``pack_conv_floor_speedup`` bounds what packing can gain on this machine's conv kernels."""
    import torch

    from dip_lightning.packing import pack_nets

    floor = conv_floor(net, z, device, precision, repeats)
    out = {"conv_floor_ms": 1e3 * floor["best"], "conv_floor_it_per_s": 1.0 / floor["best"],
           "conv_floor_ms_by_layout": {k: 1e3 * v for k, v in floor.items() if k != "best"}}
    if pack:
        packed = pack_nets([net] * pack).to(device)
        pfloor = conv_floor(packed, torch.cat([z] * pack, 1), device, precision, repeats)
        out.update(pack_conv_floor_ms=1e3 * pfloor["best"],
                   pack_conv_floor_speedup=pack * floor["best"] / pfloor["best"])
    return out


# ------------------------------------------------------------------------------------- driver
def benchmark(args: argparse.Namespace) -> dict:
    import pytorch_lightning as pl
    import torch

    from dip_lightning.api import compose_config
    from dip_lightning import malloc as cpu_malloc
    from dip_lightning.nets.blocks import count_parameters

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmark.py: error: --device cuda but torch.cuda.is_available() is False")
    device = "cuda" if args.device == "cuda" else "cpu"
    load_before = _loadavg()
    with _quiet_session(args.threads), tempfile.TemporaryDirectory(prefix="dip_bench_") as tmp:
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
                module, rate = lightning_fit(cfg)
                runs["it_per_s"].append(rate)
                run_s.append(time.perf_counter() - t0)
                _progress(f"repeat {r + 1}/{args.repeats}: Lightning {rate:.3f} it/s (run() took {run_s[-1]:.1f} s)")
                if r == 0:  # on CPU the process's high-water mark: the first fit is the first heavy work
                    peak_mem, rss_before = _SESSION["peak_mem_mb"], _SESSION["rss_before_fit_mb"]
                elif device == "cuda":
                    peak_mem = max(peak_mem, _SESSION["peak_mem_mb"])
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
                module, rate = lightning_fit(cfg_pack)
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
        "precision": args.precision, "compile": bool(args.compile), "memory_format": memory_format,
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
        "python": platform.python_version(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "loadavg_before": load_before, "loadavg_after": _loadavg(),
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


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: a shared machine's disturbance, recorded with the timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _progress(msg: str) -> None:
    print(f"[benchmark] {msg}", file=sys.stderr, flush=True)


def _cpu_model() -> str:
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = benchmark(args)
    print(format_table(res))
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {path}")
    bad = [k for k in ("it_per_s", "bare_it_per_s", "eager_baseline_it_per_s", "speedup_vs_eager")
           if not (isinstance(res[k], float) and math.isfinite(res[k]) and res[k] > 0)]
    if bad:
        print(f"benchmark.py: error: non-finite results {bad}", file=sys.stderr)
        return 1
    return 0
