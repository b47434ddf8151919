#!/usr/bin/env bash
# One device call for issue 9 (hopper forward): environment, benchmarks/hopper_bench.py (row-slice
# exactness gate on O and lse + TFLOP/s of the hopper candidates beside flash2, SDPA flash and SDPA cuDNN;
# BENCH_ARGS=--bwd adds the flash2/SDPA backward, issue 7's re-check), the exactness tests on the card
# (tests/test_kernels_hopper.py, the file CI runs in the interpreter, here compiled for the GPU), and one
# ncu profile of the d=128 N=16k forward (hopper vs flash2).  Everything lands in $OUT: env.txt,
# hopper_bench.{json,log}, pytest_hopper.log, ncu_fwd_d128.csv.
#
#   run(command="bash benchmarks/hopper_gpu.sh", timeout_s=330)      ($OUT is set by the device tool)
# Knobs (environment): BENCH_ARGS (e.g. "--bwd --head-dims 128,64"), BUDGET_S / BENCH_TIMEOUT_S, TESTS (pytest files,
# default tests/test_kernels_hopper.py), TEST_TIMEOUT_S, NCU=0 to skip the profile, NCU_KERNELS (regex),
# NCU_ARGS (hopper_ncu.py's arguments), NCU_COUNT, NCU_NAME (the csv's name), WARM_ARGS (set: run
# benchmarks/hopper_warm.py with them first, WARM_TIMEOUT_S), TESTS_DURING_WARM=1 (the tests run beside the warm-up,
# before anything is timed, instead of after the benchmark), PYTEST_K (a pytest -k expression).
set -uo pipefail
set -f  # BENCH_ARGS may hold JSON with brackets: no globbing
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo 'no git history on this machine')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
  ncu --version 2>&1 | tail -1
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if [ "${TESTS_DURING_WARM:-0}" = 1 ]; then  # the exactness tests compile while the warm-up does (nothing is timed yet)
  timeout "${TEST_TIMEOUT_S:-80}" python -m pytest -q -p no:cacheprovider ${TESTS:-tests/test_kernels_hopper.py} \
    ${PYTEST_K:+-k "$PYTEST_K"} > "$OUT/pytest_hopper.log" 2>&1 &
  tests_pid=$!
fi
if [ -n "${WARM_ARGS:-}" ]; then
  timeout "${WARM_TIMEOUT_S:-120}" python benchmarks/hopper_warm.py ${WARM_ARGS} > "$OUT/warm.log" 2>&1
  rc=$?
  echo "warm rc=$rc: $(tail -1 "$OUT/warm.log"); failed: $(grep -c FAILED "$OUT/warm.log")"
  # a variant that failed (or hung) while warming could take the timed run down with it: BENCH_FALLBACK_ARGS then
  if { [ "$rc" != 0 ] || grep -q FAILED "$OUT/warm.log"; } && [ -n "${BENCH_FALLBACK_ARGS:-}" ]; then
    echo "warm failures: benchmark runs with BENCH_FALLBACK_ARGS"; BENCH_ARGS="$BENCH_FALLBACK_ARGS"
  fi
fi
if [ -n "${tests_pid:-}" ]; then wait "$tests_pid"; echo "tests rc=$?"; tail -4 "$OUT/pytest_hopper.log"; fi
timeout "${BENCH_TIMEOUT_S:-170}" python benchmarks/hopper_bench.py --out "$OUT" --budget-s "${BUDGET_S:-130}" ${BENCH_ARGS:-} \
  2>&1 | tee "$OUT/hopper_bench.log" | grep -v '^{'
if [ "${TESTS_DURING_WARM:-0}" != 1 ]; then
  timeout "${TEST_TIMEOUT_S:-80}" python -m pytest -q -p no:cacheprovider ${TESTS:-tests/test_kernels_hopper.py} \
    ${PYTEST_K:+-k "$PYTEST_K"} 2>&1 | tee "$OUT/pytest_hopper.log" | tail -4
fi
if [ "${NCU:-1}" = 1 ]; then
  timeout "${NCU_TIMEOUT_S:-50}" ncu --csv --page details --section SpeedOfLight --section WarpStateStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy \
    -k "regex:${NCU_KERNELS:-_hopper_fwd|_flash2_fwd}" -s 1 -c "${NCU_COUNT:-2}" \
    python benchmarks/hopper_ncu.py ${NCU_ARGS:---d 128 --n 16384 --impls hopper:128,128,4,2 flash2} \
    > "$OUT/${NCU_NAME:-ncu_fwd_d128}.csv" 2> "$OUT/ncu.err"
  echo "ncu rc=$? lines=$(wc -l < "$OUT/${NCU_NAME:-ncu_fwd_d128}.csv")"; tail -3 "$OUT/ncu.err"
fi
echo "--- table"; sed -n '/^| pass/,$p' "$OUT/hopper_bench.log"
