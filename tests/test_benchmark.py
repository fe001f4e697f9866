"""scripts/benchmark.py: every field present and sane (as a subprocess and in-process), --pack fields,
the bare loop is the Lightning step to the bit, and a CUDA bf16 run where a GPU exists."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dip_lightning.bench.cli import main, parse_args
from dip_lightning.bench.loops import bare_fit, lightning_fit
from dip_lightning.bench.overrides import config_overrides
from dip_lightning.bench.report import format_table
from dip_lightning.bench.timing import quiet_session

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark.py"

RATES = ["it_per_s", "bare_it_per_s", "lightning_overhead", "eager_baseline_it_per_s", "speedup_vs_eager",
         "gflop_per_iter", "gflops", "conv_peak_gflops", "peak_mem_mb", "it_per_s_best", "bare_it_per_s_best",
         "eager_baseline_it_per_s_best", "speedup_vs_eager_best", "conv_floor_it_per_s", "conv_floor_ms",
         "max_speedup_vs_eager", "first_run_s", "eager_in_process_it_per_s"]
FIELDS = RATES + ["params", "size", "device", "precision", "compile", "threads", "torch_version", "steps",
                  "repeats"]


def quick_skip_params() -> int:
    """Parameters of --quick's skip net (3 levels of 8 channels, 4 input and 3 output channels)."""
    from dip_lightning.nets import SkipNet
    from dip_lightning.nets.blocks import count_parameters

    return count_parameters(SkipNet(4, 3, channels_down=[8, 8, 8], channels_up=[8, 8, 8], channels_skip=[2, 2, 2]))


def check(res: dict, device: str = "cpu", precision: str = "32-true", repeats: int = 1) -> None:
    for k in FIELDS:
        assert k in res and res[k] is not None, k
    for k in RATES:
        assert isinstance(res[k], float) and math.isfinite(res[k]) and res[k] > 0, (k, res[k])
    assert res["size"] == 32 and res["canvas"] == [32, 32]
    assert res["device"] == device and res["precision"] == precision and res["compile"] is False
    assert res["threads"] >= 1 and res["torch_version"] == torch.__version__
    assert res["steps"] == 2 and res["repeats"] == repeats
    assert res["params"] == quick_skip_params()
    for k, runs in res["runs"].items():
        assert len(runs) == repeats and all(r > 0 for r in runs), k
        assert res[k] <= res[f"{k}_best"] == max(runs), k
    assert res["speedup_vs_eager"] == pytest.approx(res["it_per_s"] / res["eager_baseline_it_per_s"])
    assert res["lightning_overhead"] == pytest.approx(res["bare_it_per_s"] / res["it_per_s"])
    assert res["gflops"] == pytest.approx(res["gflop_per_iter"] * res["it_per_s"])
    # the largest 3×3 conv of the quick skip net: (2 skip + 8 deep) -> 8 channels at full resolution,
    # forward + backward = 3 × 2·10·8·9·32² FLOPs, a part of the whole step's
    assert res["conv_peak_shape"].startswith("10->8 3x3 stride 1 on 32x32")
    assert res["conv_peak_layout"] in ("nchw", "channels_last")
    assert 3 * 2 * 10 * 8 * 9 * 32 * 32 < res["gflop_per_iter"] * 1e9 < 1e9
    # the convs alone are part of the step, each in its faster layout
    assert res["conv_floor_it_per_s"] == pytest.approx(1e3 / res["conv_floor_ms"])
    assert res["conv_floor_ms"] <= min(res["conv_floor_ms_by_layout"].values()) + 1e-9
    assert res["max_speedup_vs_eager"] == pytest.approx(res["conv_floor_it_per_s"] / res["eager_baseline_it_per_s"])
    assert res["memory_format"] in ("channels_last", "contiguous")
    assert res["cpu_malloc"] == "reuse" and "fresh process" in res["eager_baseline"]


def test_script_quick_writes_every_field(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check(json.loads(out.read_text()))
    assert "Lightning step (it/s)" in proc.stdout and "speedup vs eager" in proc.stdout


def test_in_process_with_repeats(tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    assert main(["--quick", "--threads", "1", "--repeats", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    check(res, repeats=2)
    assert res["threads"] == 1
    assert 0 < res["later_run_s"] and "first run() (s)" in format_table(res)
    assert "conv peak GFLOP/s" in capsys.readouterr().out


def test_pack_fields(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--pack", "2", "--profile", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    for key in ("pack_it_per_s", "sequential_it_per_s", "pack_speedup", "pack_conv_floor_ms",
                "pack_conv_floor_speedup"):
        assert res[key] > 0 and math.isfinite(res[key]), key
    assert res["pack_speedup"] == pytest.approx(res["pack_it_per_s"] / res["sequential_it_per_s"])
    assert "pack speed-up" in proc.stdout
    prof = res["profile"]  # --profile: the top operators of a step, largest first
    assert 0 < len(prof) <= 15 and "where a step's time goes" in proc.stdout
    assert all(p["ms_per_step"] > 0 and 0 < p["share"] <= 1 for p in prof)
    assert [p["ms_per_step"] for p in prof] == sorted((p["ms_per_step"] for p in prof), reverse=True)
    bad = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--pack", "1"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "--pack 1" in bad.stderr


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_bare_loop_is_the_lightning_step(tmp_path, precision):
    """Same config, same seed: the bare loop leaves the module exactly as trainer.fit does
    (weights, BatchNorm statistics, EMA, best iterate, metric history, backtracking), also under
    bf16 autocast (Lightning's bf16-mixed on the CPU)."""
    from dip_lightning.api import compose_config

    args = parse_args(["--quick", "--threads", "1", "--steps", "3", "--warmup", "1", "--precision", precision])
    cfg = compose_config(config_overrides(args, tmp_path) + ["eval_every=2"])
    with quiet_session(threads=1):
        lit, _, _ = lightning_fit(cfg)
        bare, _ = bare_fit(cfg, "cpu", precision)
    a, b = lit.state_dict(), bare.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]) or (a[k].is_floating_point() and torch.equal(a[k].nan_to_num(), b[k].nan_to_num())), k
    assert int(bare.best_step) >= 1 and torch.isfinite(bare.history[0]).any()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(SystemExit, match="torch.cuda.is_available"):
        main(["--quick", "--device", "cuda"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--precision", "bf16-mixed", "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    check(res, device="cuda", precision="bf16-mixed")
    assert res["gpu"]


def test_gpu_check_script_parses_and_names_real_files():
    """scripts/gpu_check.sh (the prepared device run) is valid bash and runs files that exist."""
    script = ROOT / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    for path in ("scripts/benchmark.py", "scripts/tile_benchmark.py", "tests/test_benchmark.py", "tests/test_precision_compile.py",
                 "tests/test_sync_free.py"):
        assert path in text and (ROOT / path).is_file(), path


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    """The prepared device run, dry-run on this CPU (DIP_CHECK_DEVICE=cpu DIP_CHECK_QUICK=1: tiny
    sizes, no compiling): every benchmark step runs, and bench.json holds each one's fields."""
    # the interpreter that runs the tests, whatever `python3` on PATH is (the project's env need not be active)
    from skimage import data as samples
    from skimage.io import imsave

    set5 = tmp_path / "data" / "set5"  # stand-ins for the Set5 images (the project never needs ../shared)
    set5.mkdir(parents=True)
    for name in ("baby", "bird", "butterfly", "head", "woman"):
        imsave(set5 / f"{name}.png", samples.astronaut()[::4, ::4], check_contrast=False)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "DIP_CHECK_DEVICE": "cpu", "DIP_CHECK_QUICK": "1", "OUT": str(out), "PYTHON": sys.executable,
           "DIP_DATA": str(tmp_path / "data")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    runs = json.loads((out / "bench.json").read_text())
    assert set(runs) == {f"{p}_{s}" for p in ("fp32", "bf16") for s in (128, 256, 512)} | {
        "fp32_channels_last_256", "pack8_128"}
    assert all(r["it_per_s"] > 0 for r in runs.values()) and runs["pack8_128"]["pack_speedup"] > 0
    assert runs["bf16_256"]["precision"] == "bf16-mixed" and runs["fp32_512"]["size"] == 48
    assert runs["fp32_256"]["memory_format"] == "contiguous" or runs["fp32_256"]["device"] == "cpu"
    assert runs["fp32_channels_last_256"]["memory_format"] == "channels_last"
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "gpu.txt", "log.txt", "set5.md"]
    assert "| all | **average** |" in (out / "set5.md").read_text()  # Set5 x4 against the paper
    assert "| 96×96 | 4 |" in (out / "log.txt").read_text()  # the tiled fit's memory row
