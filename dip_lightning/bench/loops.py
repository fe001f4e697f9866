"""The three ways the benchmark steps the same module: through Lightning (``run``'s own ``fit``),
as a bare PyTorch loop over its ``training_step``, and the original code's eager fp32 step."""
from __future__ import annotations

from typing import Any

from dip_lightning.bench.timing import autocast, maxrss_mb, quiet_session, rss_mb, sync, timed_loop


def _optimizer(configured):
    """The optimiser out of whatever ``configure_optimizers`` returned."""
    if isinstance(configured, dict):
        configured = configured["optimizer"]
    if isinstance(configured, (list, tuple)):
        configured = configured[0]
    return configured


def build_module(cfg):
    """``run(cfg)``'s first steps (check, set up, build): the built run, no step taken."""
    from dip_lightning import run as runner, stages

    out_dir = stages.check(cfg)
    stages.set_up(cfg, out_dir)
    return runner.build(cfg, out_dir=out_dir)


def lightning_fit(cfg) -> tuple[Any, float, dict]:
    """``run(cfg)`` up to its ``fit``, the framework's own (only the files are not written).
    Returns (module, it/s of its Throughput callback, memory: ``rss_before_fit_mb`` and
    ``peak_mem_mb``, CUDA's allocated peak or the process's peak RSS)."""
    import torch

    from dip_lightning import stages
    from dip_lightning.loggers import finish_logger

    built = build_module(cfg)
    cuda = str(cfg.trainer.accelerator) in ("gpu", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    memory = {"rss_before_fit_mb": rss_mb()}
    try:
        stages.fit(cfg, built)
    finally:
        finish_logger(built.logger)
    memory["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else maxrss_mb()
    thr = built.callbacks["throughput"]
    timed, expected = thr.step_end - thr.step_warm, int(cfg.iters) - int(cfg.warmup_steps)
    if thr.t_warm is None or timed != expected:
        raise RuntimeError(f"Throughput timed {timed} steps, expected {expected}")
    return built.module, float(thr.it_per_s), memory


def _bare_stepper(cfg, device: str, precision: str):
    """``run()``'s module ready for a plain loop, and ``step(i)`` (i = 1, 2, ...) running its
    ``training_step`` as Lightning would (see ``bare_fit``)."""
    import torch

    module = build_module(cfg).module.to(device)
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
        with autocast(dev_type, precision):
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
    sync(device)
    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for i in range(warm + 1, warm + steps + 1):
            step(i)
        sync(device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events)
    return [{"op": e.key, "ms_per_step": getattr(e, key) / 1e3 / steps, "share": getattr(e, key) / total,
             "calls_per_step": e.count / steps} for e in events[:top]]


def eager_parts(cfg, device: str):
    """Net, task, z and padded y as ``run(cfg)`` builds them (``cfg`` with compile off, NCHW, fp32)."""
    module = build_module(cfg).module
    net = getattr(module.net, "_orig_mod", module.net).to(device).train()
    return net, module.task.to(device), module.z.to(device), module.y.to(device)


def eager_in_fresh_process(overrides: list[str], threads: int, device: str) -> float:
    """``eager_fit`` of the config these ``overrides`` compose, with ``threads`` threads, run in a
    spawned interpreter (see ``benchmark``): glibc's allocator there is as the original code had it,
    whatever ``cpu_malloc`` did to the benchmark's process."""
    from dip_lightning.config import compose_config

    with quiet_session(threads):
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
