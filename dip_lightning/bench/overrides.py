"""The real config's overrides that a benchmark runs with: the step alone (``STEP_ONLY``), small nets
(``QUICK_NET``), and ours against the original code's eager step (``config_overrides``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from dip_lightning.overrides import QUIET

#: Hydra overrides that make the benchmark measure the step only (no logging, stopping, images)
STEP_ONLY = [*QUIET, "snapshot_log_spaced=false", "es=none", "ckpt_every=0"]

#: --quick: small versions of the nets (the skip net: 3 levels of 8 channels, 4 input channels)
QUICK_NET = {
    "skip": ["net.channels_down=[8,8,8]", "net.channels_up=[8,8,8]", "net.channels_skip=[2,2,2]"],
    "unet": ["net.feature_scale=16"],
    "resnet": ["net.num_blocks=2", "net.num_channels=8"],
    "decoder": ["net.channels=[8,8,8]"],
    "convdecoder": ["net.channels=[8,8,8]"],
    "texture": ["net.conv_num=4"],
}

EAGER_BASELINE = ("the net run() builds, fresh, same class, with stock torch.nn.Conv2d(padding_mode='reflect') layers "
                  "(the original code used ReflectionPad2d + Conv2d), eager fp32 NCHW, not compiled, torch.optim.Adam(lr=0.01), "
                  "input jitter z + reg_noise_std*randn, loss mse(A(net(z)), y); no metrics, EMA or backtracking; "
                  "in a fresh process with glibc's default allocator")


def config_overrides(args: argparse.Namespace, out_dir: str | Path, eager: bool = False) -> list[str]:
    """The real config's overrides for this benchmark; ``eager``: the baseline's (no compile, NCHW, fp32)."""
    compiled = False if eager else args.compile
    fmt = "contiguous" if eager else args.memory_format  # None: the config's default
    ov = [f"task={args.task}", f"net={args.net}", f"image={args.image}", f"resize={args.size}",
          f"seed={args.seed}", f"iters={args.warmup + args.steps}", f"warmup_steps={args.warmup}",
          f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}", "trainer.devices=1",
          f"trainer.precision={'32-true' if eager else args.precision}",
          *([f"memory_format={fmt}"] if fmt else []),
          f"compile={'true' if compiled else 'false'}", f"compile_mode={args.compile_mode}", *STEP_ONLY]
    if args.threads is not None:
        ov.append(f"threads={args.threads}")
    if args.quick:
        ov += QUICK_NET.get(args.net, []) + ["input.depth=4"]
    ov += list(args.override)
    if eager:  # the original code ran with glibc's defaults (after --override: it cannot change this)
        ov.append("cpu_malloc=system")
    ov.append(f"paths.output_dir={out_dir}")
    return ov
