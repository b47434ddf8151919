#!/usr/bin/env bash
# One device call for issue 9 (hopper forward): environment, the exactness tests on the card
# (tests/test_kernels_hopper.py, the same file CI runs in the interpreter, here compiled for the GPU: the
# warp-specialised and the pipelined variants), then benchmarks/hopper_bench.py (row-slice exactness gate
# + TFLOP/s of the hopper candidates beside flash2, SDPA flash and SDPA cuDNN; flash2/SDPA backward too,
# issue 7's re-check).  Everything lands in $OUT: env.txt, pytest_hopper.log, hopper_bench.{json,log}.
#
#   run(command="bash benchmarks/hopper_gpu.sh", timeout_s=330)      ($OUT is set by the device tool)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo 'no git history on this machine')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout "${BENCH_TIMEOUT_S:-200}" python benchmarks/hopper_bench.py --out "$OUT" --budget-s "${BUDGET_S:-150}" ${BENCH_ARGS:---bwd} \
  2>&1 | tee "$OUT/hopper_bench.log" | grep -v '^{' 
timeout "${TEST_TIMEOUT_S:-100}" python -m pytest -q -p no:cacheprovider tests/test_kernels_hopper.py 2>&1 | tee "$OUT/pytest_hopper.log" | tail -5
echo "--- table"; sed -n '/^| pass/,$p' "$OUT/hopper_bench.log"
