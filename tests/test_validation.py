"""Bad input gets one clear error and leaves no success output; divergence ends 'diverged';
same seed ⇒ same metrics; the run folder records how to rerun it."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import ConfigCompositionException
from PIL import Image

import dip_lightning.checks as checks
from dip_lightning.run import run
from conftest import QUIET, TINY_NET, synthetic_image

TIMING = {"wall_s", "fit_s", "it_per_s", "s_to_95", "output_dir", "peak_mem_mb"}  # measurements of the machine


def write(path: Path, a: np.ndarray) -> Path:
    Image.fromarray(a).save(path)
    return path


def rgb8(h=20, w=24):
    return (synthetic_image(h, w, 3) * 255).astype(np.uint8)


def no_success_output(out: Path) -> bool:
    m = out / "metrics.json"
    completed = m.is_file() and json.loads(m.read_text())["status"] == "completed"
    return not completed and not (out / "restored.png").exists()


@pytest.fixture
def tiny(compose_cfg):
    def make(*over, out="run"):
        return compose_cfg("iters=3", "input.depth=4", *QUIET, *TINY_NET, *over, out=out)
    return make


def bad_cases(tmp: Path):
    """(name, overrides, exception type, words of the message)."""
    img = write(tmp / "ok.png", rgb8())
    (tmp / "text.png").write_text("not an image")
    raw = (tmp / "ok.png").read_bytes()
    (tmp / "trunc.png").write_bytes(raw[: len(raw) // 2])
    small_mask = write(tmp / "m_small.png", np.full((10, 10), 255, np.uint8))
    black = write(tmp / "m_black.png", np.zeros((20, 24), np.uint8))
    white = write(tmp / "m_white.png", np.full((20, 24), 255, np.uint8))
    blocker = tmp / "afile"
    blocker.write_text("")
    return [
        ("missing image", ["image=/no/such/file.png"], FileNotFoundError, ["/no/such/file.png", "astronaut"]),
        ("not an image", [f"image={tmp / 'text.png'}"], ValueError, ["cannot read", "text.png"]),
        ("truncated", [f"image={tmp / 'trunc.png'}"], ValueError, ["cannot read", "trunc.png"]),
        ("mask size", [f"image={img}", "task=inpaint", f"task.mask={small_mask}"], ValueError,
         ["10x10", "20x24"]),
        ("mask no known", [f"image={img}", "task=inpaint", f"task.mask={black}"], ValueError, ["no known pixels"]),
        ("mask no missing", [f"image={img}", "task=inpaint", f"task.mask={white}"], ValueError, ["no missing pixels"]),
        ("sr factor", [f"image={write(tmp / 'odd.png', rgb8(21, 22))}", "task=sr", "task.factor=4",
                       "task.modcrop=false"], ValueError, ["21x22", "task.factor=4"]),
        ("negative sigma", [f"image={img}", "task.sigma=-5"], ValueError, ["task.sigma=-5"]),
        ("zero lr", [f"image={img}", "optim.lr=0"], ValueError, ["optim.lr=0"]),
        ("negative lr", [f"image={img}", "optim.lr=-0.01"], ValueError, ["optim.lr=-0.01"]),
        ("zero iters", [f"image={img}", "iters=0"], ValueError, ["iters=0"]),
        ("unwritable output", [f"image={img}"], ValueError, ["cannot write", "afile"]),
        ("alpha without alpha", [f"image={img}", "task=inpaint", "task.mask=alpha"], ValueError, ["no alpha channel"]),
        ("cpu_malloc", [f"image={img}", "cpu_malloc=jemalloc"], ValueError, ["cpu_malloc=jemalloc", "reuse", "system"]),
    ], blocker


@pytest.mark.parametrize("case", range(14))
def test_bad_input_is_one_clear_error(case, tiny, tmp_path):
    cases, blocker = bad_cases(tmp_path)
    name, over, exc, words = cases[case]
    out = blocker / "sub" if name == "unwritable output" else tmp_path / "out"
    cfg = tiny(*over, out=str(out))
    with pytest.raises(exc) as info:
        run(cfg)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, (name, msg)
    if name != "unwritable output":
        assert no_success_output(out)


@pytest.mark.parametrize("override,words", [("task=denoize", ["denoise", "sr", "inpaint"]),
                                            ("net=skipp", ["skip", "unet"]),
                                            ("optim=adamw", ["adam", "lbfgs"]),
                                            ("itters=5", ["itters"])])
def test_unknown_names_list_the_valid_ones(override, words, tiny):
    with pytest.raises(ConfigCompositionException) as info:
        tiny(override)
    text = str(info.value) + str(info.value.__cause__ or "")
    for w in words:
        assert w in text


def test_images_that_must_work(tiny, tmp_path):
    a16 = (synthetic_image(20, 24, 1) * 65535).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    Image.fromarray(rgb8()).convert("P", palette=Image.ADAPTIVE).save(tmp_path / "pal.png")
    Image.fromarray(rgb8()).convert("CMYK").save(tmp_path / "cmyk.jpg")
    write(tmp_path / "one.png", np.array([[200]], np.uint8))
    for name, channels, size in [("g16.png", 1, (20, 24)), ("pal.png", 3, (20, 24)), ("cmyk.jpg", 3, (20, 24)),
                                 ("one.png", 1, (1, 1))]:
        res = run(tiny(f"image={tmp_path / name}", out=f"o_{name}"))
        assert res["restored"].shape == (channels, *size), name
        assert res["metrics"]["status"] == "completed"


def test_rgba_alpha_dropped_with_a_note_or_used_as_mask(tiny, tmp_path):
    rgba = np.dstack([rgb8(), np.full((20, 24), 255, np.uint8)])
    rgba[5:10, 6:12, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        res = run(tiny(f"image={tmp_path / 'a.png'}", out="drop"))
    assert res["restored"].shape == (3, 20, 24)
    res = run(tiny(f"image={tmp_path / 'a.png'}", "task=inpaint", "task.mask=alpha", out="mask"))
    observed = np.asarray(Image.open(res["output_dir"] / "observed.png"))
    assert (observed[5:10, 6:12] == 0).all() and observed[12:, 14:].max() > 0
    # fit_size=crop centre-crops a 22x26 image to 16x24 (the tiny net's multiple is 8), offset (3, 1):
    # the alpha mask is cropped alike
    rgba = np.dstack([rgb8(22, 26), np.full((22, 26), 255, np.uint8)])
    rgba[6:11, 7:13, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    res = run(tiny(f"image={tmp_path / 'b.png'}", "task=inpaint", "task.mask=alpha", "fit_size=crop", out="crop"))
    observed = np.asarray(Image.open(res["output_dir"] / "observed.png"))
    assert observed.shape[:2] == (16, 24)
    assert (observed[3:8, 6:12] == 0).all() and observed[:3].min() > 0 and observed[8:, 14:].max() > 0


def test_huge_image_is_refused_before_allocating(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "available_bytes", lambda device="cpu": 10 * 2 ** 20)  # 10 MiB free
    img = write(tmp_path / "big.png", (synthetic_image(200, 300, 3) * 255).astype(np.uint8))
    with pytest.raises(MemoryError, match=r"GiB .* free; restore it in tiles with tile=(\d+), shrink it with resize") as e:
        run(tiny(f"image={img}"))
    tile = re.search(r"tile=(\d+)", str(e.value)).group(1)  # the tile it names passes the same check
    assert run(tiny(f"image={img}", f"tile={tile}", "iters=1", out="tiled"))["metrics"]["image_size"] == [200, 300]


@pytest.mark.parametrize("lr", ["1e8", "1e30"])
def test_divergence_ends_diverged_with_best_so_far_outputs(lr, tiny, tmp_path):
    img = write(tmp_path / "i.png", rgb8())
    res = run(tiny(f"image={img}", f"optim.lr={lr}", "iters=400", "eval_every=2", "max_backtracks=5"))
    m = res["metrics"]
    assert m["status"] == "diverged" and "lower optim.lr" in m["reason"]
    assert m["backtracks"] >= 5 and m["iters_done"] < 400
    for f in ("restored.png", "restored_best.png", "restored_ema.png", "psnr.png"):
        assert (res["output_dir"] / f).is_file()
    assert np.isfinite(m["psnr_best"])


def test_deterministic_profile_same_seed_same_metrics(tiny, tmp_path):
    img = write(tmp_path / "i.png", rgb8())
    ms = []
    for k in range(2):
        res = run(tiny(f"image={img}", "deterministic=true", "seed=7", "iters=8", "eval_every=2", out=f"d{k}"))
        ms.append(json.loads((res["output_dir"] / "metrics.json").read_text()))
    assert {k: v for k, v in ms[0].items() if k not in TIMING} == {k: v for k, v in ms[1].items() if k not in TIMING}


def test_run_folder_records_how_to_rerun(tiny, tmp_path):
    img = write(tmp_path / "i.png", rgb8())
    d = run(tiny(f"image={img}", "seed=11"))["output_dir"]
    env = json.loads((d / "environment.json").read_text())
    assert env["seed"] == 11 and env["packages"]["torch"] and env["packages"]["pytorch-lightning"]
    assert "git" in env and "argv" in env
    assert "seed: 11" in (d / "config.yaml").read_text()


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "dip_lightning", "image=/no/such.png", "logger=none", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "/no/such.png" in errors[0] and "Traceback" not in proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "failed" and "/no/such.png" in m["reason"] and not (out / "restored.png").exists()
    bad = subprocess.run([sys.executable, "-m", "dip_lightning", "task=denoize", f"hydra.run.dir={out}2"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "Available options" in bad.stderr and "denoise" in bad.stderr


def test_bad_evaluation_settings_are_one_line_errors(tiny, tmp_path):
    img = write(tmp_path / "e.png", rgb8())
    with pytest.raises(ValueError, match="^eval_protocol=psnr: should be 'full' or 'y_shaved'"):
        run(tiny(f"image={img}", "eval_protocol=psnr"))
    with pytest.raises(ValueError, match="eval_output=ema but exp_weight=null"):
        run(tiny(f"image={img}", "eval_protocol=full", "eval_output=ema", "exp_weight=null"))
    m = run(tiny(f"image={img}", "eval_protocol=full", "eval_output=best"))["metrics"]
    assert m["eval_protocol"] == "full" and m["eval_output"] == "best" and m["psnr_eval"] > 0


@pytest.mark.parametrize("observed", [False, True])
def test_a_mask_file_is_cropped_like_the_image_with_fit_size_crop(tiny, tmp_path, observed):
    """A 22x26 image and its 22x26 mask file: fit_size=crop centre-crops both to 16x24 at (3, 1)."""
    Image.fromarray(rgb8(22, 26)).save(tmp_path / "c.png")
    mask = np.full((22, 26), 255, np.uint8)
    mask[6:11, 7:13] = 0
    Image.fromarray(mask).save(tmp_path / "m.png")
    res = run(tiny(f"image={tmp_path / 'c.png'}", "task=inpaint", f"task.mask={tmp_path / 'm.png'}", "fit_size=crop",
                   f"observed={str(observed).lower()}", out=f"m{observed}"))
    observed_png = np.asarray(Image.open(res["output_dir"] / "observed.png"))
    assert observed_png.shape[:2] == (16, 24) and res["restored"].shape == (3, 16, 24)
    assert (observed_png[3:8, 6:12] == 0).all() and observed_png[:3].min() > 0 and observed_png[8:, 14:].max() > 0


def test_the_memory_check_counts_early_stoppings_ring_buffer(tiny, tmp_path, monkeypatch):
    from dip_lightning.checks import stopping_bytes

    img = write(tmp_path / "r.png", rgb8())
    cfg = tiny(f"image={img}", "es=wmv", "es.window=100")
    assert stopping_bytes(cfg, 3 * 32 * 32) == 3 * 32 * 32 * (4 * 100 + 8 + 4)
    assert stopping_bytes(tiny("es=emv"), 10) == 10 * 12 and stopping_bytes(tiny("es=none"), 10) == 0
    monkeypatch.setattr(checks, "available_bytes", lambda device="cpu": 2 ** 30)  # 1 GiB free
    run(tiny(f"image={img}", "es=wmv", "es.window=100", out="fits"))
    with pytest.raises(MemoryError, match="shorter es.window"):  # 10^6 outputs of 3x24x24 fp32: 6.4 GiB
        run(tiny(f"image={img}", "es=wmv", "es.window=1000000", out="ring"))


def test_environment_records_the_device_that_ran(tiny, monkeypatch):
    import torch

    from dip_lightning.checks import run_device
    from dip_lightning.provenance import environment

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    assert run_device(tiny("trainer.accelerator=cpu")) == "cpu" and run_device(tiny("trainer.accelerator=gpu")) == "cuda"
    assert environment(0, False, "cpu")["device"] == "cpu" and environment(0, False, "cuda")["device"] == "Fake GPU"


def test_bad_compile_mode_is_a_one_line_error(tiny, tmp_path):
    img = write(tmp_path / "c.png", rgb8())
    with pytest.raises(ValueError, match="^compile_mode=fast: should be 'default', 'reduce-overhead'"):
        run(tiny(f"image={img}", "compile=true", "compile_mode=fast"))


BAD_VALUES = [  # (overrides, the start of the one line)
    (["task=sr", "task.factor=1"], "task.factor=1: should be greater than or equal to 2 (allowed: the SR factor"),
    (["task=jpeg", "task.quality=100"], "task.quality=100: should be less than or equal to 95"),
    (["task=inpaint", "task.missing=1.5"], "task.missing=1.5: should be less than 1"),
    (["task=deblur", "task.kernel=box"], "task.kernel=box: should be 'gaussian', 'uniform' or 'file'"),
    (["task.sigma=abc"], "task.sigma=abc: should be a valid number"),
    (["net.act=relu"], "net.act=relu: should be 'LeakyReLU'"),
    (["net.channels_down=[8,0,8]"], "net.channels_down=[8, 0, 8]: should be greater than or equal to 1"),
    (["net.need_sigmoid=1"], "net.need_sigmoid=1: should be a valid boolean"),
    (["++net.widths=3"], "net.widths: SkipNet takes no such key (its keys: channels_down"),
    (["net.upsample_mode=cubic"], "net.upsample_mode=cubic: should be 'bilinear' or 'nearest'"),
    (["optim.lr=-1"], "optim.lr=-1: should be greater than 0"),
    (["input.depth=0"], "input.depth=0: should be greater than or equal to 1"),
    (["es.window=1"], "es.window=1: should be greater than or equal to 2"),
    (["es.mode=halt"], "es.mode=halt: should be 'mark' or 'stop'"),
    (["method=sgld", "method.sample_every=0"], "method.sample_every=0: should be greater than 0"),
    (["method=selfguided", "method.samples=0"], "method.samples=0: should be greater than or equal to 1"),
    (["exp_weight=1.0"], "exp_weight=1.0: should be less than 1"),
    (["resize=4"], "resize=4: should be greater than or equal to 8"),
    (["seed=1.5"], "seed=1.5: should be a valid integer"),
    (["memory_format=nhwc"], "memory_format=nhwc: should be 'auto', 'channels_last' or 'contiguous'"),
    (["eval_protocol=y"], "eval_protocol=y: should be 'full' or 'y_shaved'"),
    (["pack=0"], "pack=0: should be greater than or equal to 1"),
]


@pytest.mark.parametrize("over, start", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_every_group_has_a_schema_and_a_bad_value_is_one_line(tiny, over, start):
    """dip_lightning/schema.py: a bad value anywhere is one line naming the key, the value and what is
    allowed, before anything is built."""
    with pytest.raises(ValueError) as info:
        run(tiny(*over))
    msg = str(info.value)
    assert msg.startswith(start) and "\n" not in msg, msg
    assert "allowed:" in msg or "takes no such key" in msg


def test_sr_factor_1_is_refused_by_the_cli_in_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dip_lightning", "task=sr", "task.factor=1", "iters=1", "logger=none",
                           f"hydra.run.dir={tmp_path / 'r'}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "torchvision" not in line]
    assert lines == [lines[-1]] and lines[-1].startswith("error: task.factor=1: should be greater than or equal to 2")
