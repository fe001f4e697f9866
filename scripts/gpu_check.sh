#!/usr/bin/env bash
# The prepared GPU check: the gpu-marked tests (the bf16/compile/NCHW switches against fp32, the
# CUDA sync-debug step) and the CUDA benchmark figures, in one go of at most ~8 minutes on one
# H100/H200. Results land in $OUT: gpu.txt, log.txt, bench.json (every benchmark's JSON, keyed by
# its name) and set5.md (the Set5 x4 report's table, when the data are there).
#
# The device image has torch, pytorch-lightning and torchmetrics but not hydra-core / omegaconf /
# wandb. Before the run, on the CPU machine, in the repo root (wheels are pure Python; .whl/ is
# git-ignored):
#   echo /.whl/ >> .git/info/exclude
#   pip download -q --no-deps --only-binary=:all: hydra-core==1.3.8 omegaconf==2.3.1 hydra-joblib-launcher joblib -d .whl
#   pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w .whl
# then run this with carry [".whl"]: `bash scripts/gpu_check.sh`. W&B is not needed (logger=none).
#
# Targets (docs/speed.md): a step at least 3× the plain fp32 NCHW eager step at 512² and 2× at 128²
# (speedup_vs_eager), pack=8 at least 6× 8 sequential fits at 128² (pack_speedup), Set5 x4 within
# 0.3 dB of the paper's average in at most 2 minutes of wall time.
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}   # the interpreter (the tests pass their own, sys.executable)
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
{ nvidia-smi -L; "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } \
  2>&1 | tee "$OUT/gpu.txt"

exec > >(tee -a "$OUT/log.txt") 2>&1
# DIP_CHECK_DEVICE=cpu DIP_CHECK_QUICK=1 dry-runs the plumbing on a CPU machine (the test suite does)
DEVICE=${DIP_CHECK_DEVICE:-cuda}
BUDGET=${DIP_CHECK_BUDGET_S:-450}   # stop starting new steps after this many seconds
JSON=$(mktemp -d)
B=("$PY" scripts/benchmark.py --task denoise --net skip --device "$DEVICE" --steps 30 --warmup 10 --repeats 2)
SIZES=(128 256 512) NAMES=(128 256 512) PACK_SIZE=128 COMPILE=1 SET5=(--suite sr-set5-x4)
if [ -n "${DIP_CHECK_QUICK:-}" ]; then  # tiny images and nets, no compiling: the plumbing in a few minutes
  B+=(--quick --steps 2 --warmup 1 --repeats 1) SIZES=(32 40 48) PACK_SIZE=32 COMPILE= SET5+=(--quick --limit 1)
fi
status=0
step() {  # step NAME TIMEOUT_S COMMAND...: skipped once the budget is spent; a failure is recorded
  local name=$1 limit=$2; shift 2
  if (( SECONDS > BUDGET )); then echo "== $name: skipped (budget of ${BUDGET}s spent)"; status=1; return; fi
  echo "== $name ($SECONDS s in)"
  timeout "$limit" "$@" || { echo "== $name: failed or timed out"; status=1; }
}
for i in 0 1 2; do  # the step through Lightning against the eager step; JSON names say the real run's sizes
  size=${SIZES[$i]} name=${NAMES[$i]}
  step "fp32 ${size}" 90 "${B[@]}" --size "$size" --json "$JSON/fp32_${name}.json"
  step "bf16 ${size}" 90 "${B[@]}" --size "$size" --precision bf16-mixed --json "$JSON/bf16_${name}.json"
done
# the layout auto does not pick on CUDA (NCHW there), at 256²
step "fp32 channels_last ${SIZES[1]}" 90 "${B[@]}" --size "${SIZES[1]}" --memory-format channels_last \
  --json "$JSON/fp32_channels_last_256.json"
if [ -n "$COMPILE" ] && [ "$DEVICE" = cuda ]; then  # the net compiled with CUDA graphs
  for i in 1 2; do
    step "bf16+cudagraphs ${SIZES[$i]}" 150 "${B[@]}" --size "${SIZES[$i]}" --precision bf16-mixed --compile \
      --compile-mode reduce-overhead --json "$JSON/bf16_cudagraphs_${NAMES[$i]}.json"
  done
fi
step "pack=8 ${PACK_SIZE}" 120 "${B[@]}" --size "$PACK_SIZE" --pack 8 --json "$JSON/pack8_128.json"
# the paper's Set5 x4 table at its full recipe, the 5 images as 5 processes on the one GPU
DATA=${DIP_DATA:-../shared/data}
if [ -d "$DATA/set5" ]; then
  t0=$SECONDS
  step "set5 x4" 200 "$PY" scripts/reproduce.py "${SET5[@]}" --data "$DATA" --work "$JSON/set5" --out "$OUT/set5.md" \
    hydra/launcher=joblib hydra.launcher.n_jobs=5 trainer.accelerator="$( [ "$DEVICE" = cuda ] && echo gpu || echo cpu )"
  echo "set5 x4: wall $(( SECONDS - t0 )) s"; cat "$OUT/set5.md" 2>/dev/null
else
  echo "== set5 x4: skipped (no $DATA/set5; give DIP_DATA=DIR)"
fi
TILE_SIZES=2048 TILE=256
[ -n "${DIP_CHECK_QUICK:-}" ] && TILE_SIZES=96 TILE=64
# a tiled fit (tile=256, 8 tiles at a time) of a 2048² image, 2 steps a tile: its peak memory beside the
# whole-image estimate (docs/tiles.md)
step "tiled ${TILE_SIZES}" 180 "$PY" scripts/tile_benchmark.py memory --sizes "$TILE_SIZES" --tile "$TILE" --iters 2 \
  --work "$JSON/tiles" --out "$JSON/tiles.md" tile_batch=8
if [ "$DEVICE" = cuda ]; then
  step "gpu tests" 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_benchmark.py \
    tests/test_precision_compile.py tests/test_sync_free.py
fi
"$PY" - "$JSON" "$OUT/bench.json" <<'PY'
import json, pathlib, sys
runs = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))}
keep = ("it_per_s", "eager_baseline_it_per_s", "speedup_vs_eager", "pack_speedup", "peak_mem_mb", "first_run_s")
for name, r in runs.items():
    print(name, {k: round(r[k], 3) for k in keep if isinstance(r.get(k), (int, float))})
pathlib.Path(sys.argv[2]).write_text(json.dumps(runs, indent=1) + "\n")
PY
echo "gpu_check: exit $status"
exit $status
