"""The fast-step switches are correct, not only fast: ``compile=true`` and ``precision=bf16-mixed``
against the fp32 eager run. CPU: compile on a tiny net (inductor's C++ backend), within 0.1 dB.
GPU (``-m gpu``): compile, bf16 and NCHW on the paper's 5-level net, the best PSNR within two fp32
seed-to-seed standard deviations."""
from __future__ import annotations

import pytest
import torch

from conftest import QUIET, TINY_NET
from dip_lightning.run import run


def run_fit(compose_cfg, image: str, *extra: str, out: str) -> dict:
    cfg = compose_cfg(f"image={image}", "task=denoise", "es=none", "eval_every=5", "seed=0", *QUIET, *extra, out=out)
    return run(cfg)


def fit(compose_cfg, image: str, *extra: str, out: str) -> dict:
    return run_fit(compose_cfg, image, *extra, out=out)["metrics"]


@pytest.mark.slow
def test_compile_on_cpu_matches_eager(compose_cfg, image_file):
    """torch.compile (inductor, CPU) of a tiny skip net against eager, 30 steps. The compiled run is
    also ``deterministic=true`` (an earlier deterministic upsampling, a transposed conv, crashed
    inductor); under compile, bilinear upsampling is ``blocks.bilinear_up2``.

    What is compared is what is stable: the fit at an early step. Later the two trajectories part,
    as any two kernel orders do in DIP's early, fast phase (measured here: step 5 16.55 vs 16.57 dB,
    step 20 25.06 vs 21.90, step 30 26.31 vs 26.85), so the end is only checked to be as good."""
    pytest.importorskip("torch._inductor")
    path = image_file(32, 32, 3)
    common = ["iters=30", "input.depth=4", "resize=null", *TINY_NET]
    eager = run_fit(compose_cfg, path, *common, "compile=false", out="eager")
    try:
        compiled = run_fit(compose_cfg, path, *common, "compile=true", "deterministic=true", out="compiled")
    except Exception as exc:  # no C++ toolchain for inductor on this machine: say so, do not pass silently
        if "compiler" in str(exc).lower() or "InductorError" in type(exc).__name__:
            pytest.skip(f"inductor cannot compile here: {str(exc).splitlines()[0][:200]}")
        raise
    assert compiled["metrics"]["status"] == "completed" and compiled["metrics"]["iters_done"] == 30
    for step, tol in ((1, 1e-3), (5, 0.1)):
        a, b = (r["history"]["psnr/gt"][r["history"]["step"].index(step)] for r in (compiled, eager))
        assert a == pytest.approx(b, abs=tol), (step, a, b)
    assert compiled["metrics"]["psnr_best"] > eager["metrics"]["psnr_best"] - 1.0


gpu = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
PAPER_NET = ["image=camera", "resize=128", "iters=300", "trainer.accelerator=gpu", "trainer.devices=1"]

#: The fp32 seed-to-seed spread of psnr_best for this fit (paper net, camera 128², σ = 25, 300 steps),
#: measured on the 2-core CPU: seeds 0, 1, 2 gave 23.86, 24.04, 23.83 dB (std 0.11, range 0.21;
#: `dip-restore -m image=camera resize=128 iters=300 task=denoise es=none eval_every=5 seed=0,1,2`).
#: A switch may move the trajectory like another kernel order does, well inside a seed's spread:
#: the tolerance is two of its standard deviations. (psnr_final is not compared: the last iterate
#: moves 0.1-0.4 dB with fp32 kernel order alone; the best over the run is stable.)
SEED_STD_DB = 0.11
TOLERANCE_DB = 2 * SEED_STD_DB


def fp32_reference(compose_cfg) -> dict:
    """The plain fp32 run: TF32 off, no cuDNN autotuning (trainer.benchmark=false), eager."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return fit(compose_cfg, "camera", *PAPER_NET[1:], "trainer.precision=32-true", "compile=false",
                   "trainer.benchmark=false", out="fp32")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("switch", [
    pytest.param(["trainer.precision=bf16-mixed"], id="bf16", marks=gpu),
    pytest.param(["compile=true"], id="compile", marks=gpu),
    pytest.param(["trainer.precision=bf16-mixed", "compile=true"], id="bf16+compile", marks=gpu),
    pytest.param(["memory_format=contiguous"], id="nchw", marks=gpu),
])
def test_gpu_switch_matches_fp32(compose_cfg, switch):
    """The paper's denoising net on camera 128², 300 steps on the GPU: each switch's best PSNR over
    the run within TOLERANCE_DB of the plain fp32 run's."""
    ref = fp32_reference(compose_cfg)
    other = fit(compose_cfg, "camera", *PAPER_NET[1:], *switch, out="switch")
    assert other["status"] == "completed"
    assert other["psnr_best"] == pytest.approx(ref["psnr_best"], abs=TOLERANCE_DB), (other["psnr_best"], ref["psnr_best"])
