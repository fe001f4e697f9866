#!/usr/bin/env bash
# The prepared GPU check (issue 6): the gpu-marked tests and the CUDA benchmark figures, in one run of
# about 6-8 minutes on one H100/H200. Results land in $OUT (at most 8 files: the device tool's limit).
#
# The device image has torch, pytorch-lightning and torchmetrics but not hydra-core / omegaconf. Before
# the run, on the CPU machine, in the repo root (wheels are pure Python; .whl/ is git-ignored):
#   echo /.whl/ >> .git/info/exclude
#   pip download -q --no-deps --only-binary=:all: hydra-core==1.3.8 omegaconf==2.3.1 -d .whl
#   pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w .whl
# then run this with carry [".whl"]: `bash scripts/gpu_check.sh`. W&B is not needed (logger=none).
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } \
  2>&1 | tee "$OUT/gpu.txt"

exec > >(tee -a "$OUT/log.txt") 2>&1
# DIP_CHECK_DEVICE=cpu DIP_CHECK_QUICK=1 dry-runs the plumbing on a CPU machine
DEVICE=${DIP_CHECK_DEVICE:-cuda}
B=(python3 scripts/benchmark.py --task denoise --net skip --device "$DEVICE" --steps 50 --warmup 10 --repeats 3)
[ -n "${DIP_CHECK_QUICK:-}" ] && B+=(--quick --steps 2 --warmup 1 --repeats 1)
status=0
step() { echo "== $*"; "$@" || status=1; }
step "${B[@]}" --size 256 --profile 20 --json "$OUT/${DEVICE}256_fp32.json"
step "${B[@]}" --size 256 --precision bf16-mixed --profile 20 --json "$OUT/${DEVICE}256_bf16.json"
step "${B[@]}" --size 256 --precision bf16-mixed --compile --json "$OUT/${DEVICE}256_bf16_compile.json"
step "${B[@]}" --size 128 --pack 8 --json "$OUT/${DEVICE}128_pack8.json"
step python3 -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_benchmark.py tests/test_precision_compile.py
echo "gpu_check: exit $status"
exit $status
