"""Every `dip-restore` command in README.md and the documentation (docs/*.md) runs (shrunk: tiny image, few steps, small net).

Placeholders in the README (paths such as `path/to/hr.png`, `kate_mask.png`, `<run>`) are replaced
with synthetic files; keys that set the size of the work are overridden.
"""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dip_lightning.api import compose_config
from dip_lightning.run import run
from conftest import SMALL_NETS, synthetic_image

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHRINK = {"iters": "6", "resize": "32", "input.depth": "4", "logger": "none", "trainer.enable_progress_bar": "false",
          "threads": "1", "es.window": "3", "snapshot_every": "0"}


def readme_commands() -> list[str]:
    text = "\n".join(p.read_text() for p in PAGES)
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    cmds = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("dip-restore ") and " -m " not in f" {line} ":
                cmds.append(line)
    return list(dict.fromkeys(cmds))  # a command on two pages runs once


COMMANDS = readme_commands()


def test_readme_has_commands():
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, tmp_path):
    img = tmp_path / "img.png"
    Image.fromarray((synthetic_image(40, 44, 3) * 255).astype(np.uint8)).save(img)
    mask = np.full((40, 44), 255, np.uint8)
    mask[10:20, 10:30] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    args = dict(a.split("=", 1) for a in shlex.split(command)[1:])
    for key, value in list(args.items()):
        if key == "task.mask" and value not in ("text", "random", "box"):
            args[key] = str(tmp_path / "mask.png")
        elif key in ("image", "task.flash", "reference") and ("/" in value or "." in value):
            args[key] = str(img)
    shrink = dict(SHRINK, **dict(o.split("=", 1) for o in SMALL_NETS[args.get("net", "skip")]))
    probe = compose_config([f"{k}={v}" for k, v in args.items() if k != "ckpt_path"])
    if "depth" not in probe.input or "SelfGuided" in str(probe.method.get("_target_")):
        shrink.pop("input.depth")  # meshgrid input (also via a preset); Self-Guided's z has the image's channels
    if not probe.get("es") or "window" not in probe.es:  # es=none, es=holdout: no window to shrink
        shrink.pop("es.window")
    if "burn_in" in probe.method:  # SGLD: samples within the few steps
        shrink.update({"method.burn_in": "2", "method.sample_every": "1"})
    if probe.fit_size == "crop":  # the original's centre crop needs at least one multiple of 32
        shrink["resize"] = "null"
    if "channels_down" in probe.net:  # keep a preset's number of levels, shrink the widths
        n = len(probe.net.channels_down)
        for key in ("channels_down", "channels_up", "channels_skip"):
            shrink[f"net.{key}"] = "[" + ",".join(["4"] * n) + "]"
    if "task.mask" in args or "task.flash" in args or "reference" in args or \
            args.get("experiment", "").startswith("paper_inpaint"):
        shrink["resize"] = "null"  # a mask file (a reference) must match the image size
    if "ckpt_path" in args:  # make the checkpoint this command resumes from
        first = {**args, **shrink}
        first.pop("ckpt_path")
        first.update(ckpt_every="3", **{"paths.output_dir": str(tmp_path / "first")})
        run(compose_config([f"{k}={v}" for k, v in first.items()]))
        args["ckpt_path"] = str(tmp_path / "first" / "checkpoints" / "step_000003.ckpt")
    if "ckpt_every" in args:
        args["ckpt_every"] = "3"
    args.update(shrink)
    cfg = compose_config([f"{k}={v}" for k, v in args.items()] + [f"paths.output_dir={tmp_path / 'run'}"])
    m = run(cfg)["metrics"]
    assert m["status"] in ("completed", "early_stopped") and m["iters_done"] >= 1
