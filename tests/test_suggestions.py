"""Every fix a validation error suggests works: each error is provoked with a real composed config,
the ``key=value`` overrides it suggests are taken from its one line and applied to the same config,
and the run is then accepted (its checks pass, its tiles plan, or a tiny run of a few steps
completes). And ``tile=SIZE`` alone (the overlap left to its default) runs for small tiles."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dip_lightning import checks
from dip_lightning.instantiate import instantiate
from dip_lightning.run import run
from dip_lightning.stages import check
from dip_lightning.regions import auto_overlap, observe, plan_tiles as plan
from conftest import QUIET, SMALL_NETS, TINY_NET, synthetic_image

#: a tiny run: one thread, 4 input channels, 2 steps, metrics every step
BASE = [*QUIET, "input.depth=4", "iters=2", "eval_every=1"]
#: config groups whose selection (``net=skip``) replaces the group, its ``net.*`` overrides with it
GROUPS = ("net", "optim", "task", "method")
#: one ``key=value`` override in a message (not a ``<placeholder>``)
TOKEN = re.compile(r"(?<![\w.+<])([a-z_][\w.]*)=([^\s,;()<>]+)")


def write(path: Path, h: int, w: int, channels: int = 3) -> Path:
    a = (synthetic_image(h, w, channels) * 255).round().astype(np.uint8)
    Image.fromarray(a).save(path)
    return path


def compose(compose_cfg, overrides: list[str], out: str):
    """The real config with ``overrides`` and a tiny net of the chosen architecture."""
    net = next((o.split("=", 1)[1] for o in overrides if o.startswith("net=")), "skip")
    return compose_cfg(*BASE, *SMALL_NETS.get(net, TINY_NET), *overrides, out=out)


def suggestions(msg: str, marker: str, stop: str | None = None) -> list[list[str]]:
    """The alternatives a message suggests after its last ``marker`` (up to ``stop``): each the
    ``key=value`` overrides of one alternative (alternatives are joined by "or")."""
    assert marker in msg, msg
    tail = msg.rsplit(marker, 1)[1]
    if stop is not None:
        tail = tail.split(stop, 1)[0]
    alternatives = [TOKEN.findall(part) for part in re.split(r"\bor\b", tail)]
    return [[f"{k}={v}" for k, v in alt] for alt in alternatives if alt]


def apply(overrides: list[str], fix: list[str], paths: dict[str, str]) -> list[str]:
    """``overrides`` with each ``key=value`` of ``fix`` in place of that key's (and, for a group
    selection, of its sub-keys); placeholders such as PATH filled from ``paths``."""
    out = list(overrides)
    for token in fix:
        key, value = token.split("=", 1)
        value = paths.get(value, value)
        plus, kept = "", []
        for o in out:
            name = o.split("=", 1)[0]
            bare = name.lstrip("+")
            if bare == key or (key in GROUPS and bare.startswith(key + ".")):
                plus = "+" if (bare == key and name.startswith("+")) else plus
                continue
            kept.append(o)
        out = [*kept, f"{plus}{key}={value}"]
    return out


def stage(name: str, cfg) -> dict | None:
    """Run ``cfg`` as far as ``name`` says: its checks, its tile plan, or a whole tiny run."""
    check(cfg)
    if name == "plan":
        plan(cfg, observe(cfg))
    elif name == "run":
        return run(cfg)
    return None


@dataclass
class Case:
    name: str
    overrides: list[str]        # the bad config (besides BASE and the tiny net)
    provoke: str                # the stage that refuses it: check | plan | run
    marker: str                 # the suggestion follows the message's last marker ...
    alternatives: int = 1       # ... and holds at least this many alternatives
    accept: str = "check"       # the stage the fixed config must pass
    stop: str | None = None     # ... up to this text
    exc: type = ValueError
    words: list[str] = field(default_factory=list)   # further words the message must hold
    extra: list[list[str]] = field(default_factory=list)  # alternatives named without key= (net=resnet)
    deepinv: bool = False


CASES = [
    Case("iters", ["iters=0"], "check", "e.g."),
    Case("noise sigma", ["task.sigma=-5"], "check", "e.g."),
    Case("learning rate", ["optim.lr=0"], "check", "e.g."),
    Case("sr factor", ["task=sr", "task.factor=1"], "check", "e.g."),
    Case("negative overlap", ["tile=32", "tile_overlap=-1"], "check", "e.g.", accept="plan"),
    Case("ema output", ["eval_output=ema", "exp_weight=null"], "check", "set ", alternatives=2),
    Case("overlap of the tile", ["tile=32", "tile_overlap=32"], "plan", "e.g.", accept="run"),
    Case("sr overlap above the tile", ["task=sr", "task.factor=2", "tile=24", "tile_overlap=40"], "plan", "e.g.",
         accept="plan"),
    Case("deblur margin", ["task=deblur", "tile=32", "tile_overlap=6"], "plan", "e.g.", accept="run"),
    Case("sr x4 margin", ["task=sr", "task.factor=4", "tile=24", "tile_overlap=8"], "plan", "e.g.", accept="plan"),
    Case("margin beyond the tile", ["task=deblur", "task.size=21", "tile=16", "tile_overlap=4"], "plan", "e.g.",
         accept="plan", words=["tile=", "tile_overlap="]),
    Case("default overlap beyond the tile", ["task=deblur", "task.size=21", "tile=16"], "plan", "e.g.",
         accept="plan"),
    Case("tiles crop", ["tile=32", "fit_size=crop"], "plan", "use ", accept="plan"),
    Case("sr modcrop", ["task=sr", "task.factor=4", "task.modcrop=false", "image=ODD"], "run", "set ", accept="run"),
    Case("deblur kernel width", ["task=deblur", "task.size=8"], "run", "e.g.", accept="run"),
    Case("net that cannot be packed", ["net=unet", "pack=2"], "run", "use ", alternatives=2, accept="run"),
    Case("packed amsgrad", ["pack=2", "+optim.amsgrad=true"], "run", "; set ", alternatives=2, accept="run"),
    Case("packed lbfgs", ["optim=lbfgs", "pack=2"], "run", "use ", alternatives=2, accept="run"),
    Case("lbfgs groups", ["method=selfguided", "optim=lbfgs"], "run", "use ", accept="run"),
    Case("drp without batchnorm", ["method=drp", "net=resnet", "net.norm_layer=none"], "run", "e.g.",
         accept="run"),
    Case("legacy with nothing to change", ["legacy=true", "net.upsample_mode=nearest", "net.norm_layer=none"],
         "run", "set ", accept="run"),
    Case("crop below the multiple", ["image=TINY", "fit_size=crop"], "run", "use ", stop=" instead", accept="run"),
    Case("packed sizes", ["pack_images=[A,B]", "pack=2"], "run", "e.g.", accept="run"),
    Case("packed channels", ["pack_images=[A,GRAY]", "pack=2"], "run", "fit each alone", accept="run"),
    Case("memory", ["image=BIG"], "run", "in tiles with", stop=",", exc=MemoryError, accept="run"),
    Case("global operator in tiles", ["task=deepinv_blur", "task.size=32", "tile=32"], "plan", "use ",
         accept="run", deepinv=True),
    Case("crop of a physics observation", ["task=deepinv_blur", "task.size=32", "observed=true", "fit_size=crop",
                                           "image=SQUARE"],
         "run", "use ", accept="run", deepinv=True),
]


def deepinv_works() -> bool:
    try:
        from dip_lightning.deepinv import import_deepinv

        import_deepinv()
    except Exception:
        return False
    return True


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_suggested_fix_is_accepted(case, compose_cfg, tmp_path, monkeypatch):
    if case.deepinv and not deepinv_works():
        pytest.skip("deepinv cannot be imported here")
    paths = {"ODD": write(tmp_path / "odd.png", 21, 22), "TINY": write(tmp_path / "tiny.png", 6, 7),
             "A": write(tmp_path / "a.png", 20, 24), "B": write(tmp_path / "b.png", 30, 36),
             "GRAY": write(tmp_path / "gray.png", 20, 24, 1), "BIG": write(tmp_path / "big.png", 96, 96),
             "SQUARE": write(tmp_path / "square.png", 32, 32), "IMG": write(tmp_path / "img.png", 40, 36)}
    paths = {k: str(v) for k, v in paths.items()}
    paths["PATH"] = paths["A"]

    def fill(o: str) -> str:
        key, _, value = o.partition("=")
        for name, path in paths.items():
            value = re.sub(rf"\b{name}\b", path, value) if name != "PATH" else value
        return f"{key}={value}"

    bad = [fill(o) for o in case.overrides]
    if not any(o.startswith(("image=", "pack_images=")) for o in bad):
        bad = [f"image={paths['IMG']}", *bad]
    if case.name == "memory":  # room for a 64 px tile's step, not the 96 px image's
        cfg = compose(compose_cfg, bad, "probe")
        net = instantiate(cfg.net, in_channels=4, out_channels=3)

        def need(side: int) -> int:
            return checks.estimate_step_bytes(net, 4, (side, side)) + checks.stopping_bytes(cfg, 3 * side * side)

        assert need(64) < need(96)
        monkeypatch.setattr(checks, "available_bytes", lambda device="cpu": (3 * need(64) + need(96)) // 4)

    with pytest.raises(case.exc) as info:
        stage(case.provoke, compose(compose_cfg, bad, "bad"))
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in case.words), msg
    found = suggestions(msg, case.marker, case.stop)
    assert len(found) >= case.alternatives, msg
    for i, fix in enumerate(found + case.extra):
        cfg = compose(compose_cfg, apply(bad, fix, paths), f"fixed{i}")
        result = stage(case.accept, cfg)
        if result is not None:
            assert result["metrics"]["status"] in ("completed", "early_stopped"), (fix, result["metrics"])


def test_every_net_a_pack_error_names_packs(compose_cfg, tmp_path):
    """The nets the message names, as net=NAME or bare in a list, each pack."""
    image = f"image={write(tmp_path / 'img.png', 24, 24)}"
    with pytest.raises(ValueError) as info:
        run(compose(compose_cfg, [image, "net=texture", "pack=2"], "bad"))
    named = re.split(r"[\s,=]+", str(info.value).rsplit("use ", 1)[1])
    nets = sorted({p.stem for p in (Path(__file__).parent.parent / "configs" / "net").glob("*.yaml")} & set(named))
    assert nets, str(info.value)
    for net in nets:
        res = run(compose(compose_cfg, [image, f"net={net}", "pack=2"], net))
        assert res["metrics"]["fits"] == 2 and res["metrics"]["status"] == "completed"


@pytest.mark.parametrize("overrides, size, tiles", [
    (["tile=32"], (48, 40), 4),
    (["tile=48", "task=deblur"], (72, 64), 4),
    (["tile=48", "task=sr", "task.factor=2"], (72, 72), 4),
    (["tile=64", "task=sr", "task.factor=8"], (80, 80), 4),
], ids=["denoise-32", "deblur-48", "sr2-48", "sr8-64"])
def test_a_tile_size_alone_runs_with_the_default_overlap(overrides, size, tiles, compose_cfg, tmp_path):
    path = write(tmp_path / "img.png", *size)
    cfg = compose(compose_cfg, [f"image={path}", "iters=3", *overrides], "tiled")
    assert cfg.tile_overlap is None  # the default: chosen from the tile
    res = run(cfg)
    m = res["metrics"]
    task = instantiate(cfg.task)
    assert m["status"] == "completed" and m["iters_done"] == 3 and m["tiles"] == tiles
    assert m["tile_overlap"] == auto_overlap(m["tile"], int(task.tile_align), int(task.tile_margin))
    assert 2 * task.tile_margin < m["tile_overlap"] < m["tile"]
    assert tuple(res["restored"].shape[-2:]) == size


def test_the_default_overlap_follows_the_tile_and_the_task():
    assert auto_overlap(256) == 32 and auto_overlap(64) == 16 and auto_overlap(32) == 8 and auto_overlap(16) == 4
    assert auto_overlap(48, 1, 4) == 12 and auto_overlap(32, 1, 4) == 9  # above twice deblurring's margin
    assert auto_overlap(256, 8, 16) == 40 and auto_overlap(64, 8, 16) == 40  # SR x8: aligned, above 2 x 16
    assert auto_overlap(24, 8) == 8 and auto_overlap(16, 1, 10) is None
    for align in (1, 2, 3, 4, 8):
        for margin in (0, 1, 4, 6, 8, 16):
            if margin % align and align > 1:
                continue
            for size in range(max(16, align), 300, align):
                o = auto_overlap(size, align, margin)
                if o is not None:
                    assert (2 * margin < o if margin else o >= 0) and o <= size - align, (size, align, margin, o)
                    assert o <= max(32, (2 * margin // align + 1) * align)
