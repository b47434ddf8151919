#!/usr/bin/env bash
# Prepared in session 14 (the registry/default/repeatable GPU tests of the d=128 kernel registered after run16, fp16 +
# bf16 timing), extended in session 15 with the folded dQ conversion (kernels.hopper_gluon_bwd.DQ_FUSE, DQ_ZERO_WS):
#   1. GPU exactness: `(test_fa3_backward_gpu and d128) or registry_path or repeatable or default_path` (23) + the
#      new switch sets on every case x bf16/fp16 (`s15_fuse`, `s15_fuse_ws`: 44) + `zero_ws_gpu` (3: three passes in
#      a row, the workspace and counters left zero) beside 2 `--warm-only`;
#   2. timed, fp16 then bf16, ROUNDS rounds alternating: the whole backward, registered vs fuse vs fuse_ws, beside the
#      default's, SDPA cuDNN and SDPA flash on the d=128 grid; a table (median TFLOP/s, ratio to cuDNN) printed last.
#   Ran in session 15 as run(command="TOTAL_S=185 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run17.sh 2>&1 | tee $OUT/run.log", timeout_s=215):
#   the 120 s test timeout stopped pytest after 31 of 70 tests (all passed) and the timing's share ran out after fp16's
#   non-causal cells (benchmarks/results/hopper-h100-2026-11-27-run17.md); what it left is run18.sh.
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-200}
. benchmarks/hopper_fa3_bwd_common.sh
K="(test_fa3_backward_gpu and d128) or registry_path or repeatable or default_path or s15_fuse or zero_ws_gpu"
fa3_bwd_tests_and_timing "$K" "$G128" registered,fuse,fuse_ws fp16,bf16 "${TEST_TIMEOUT_S:-120}" "${ROUNDS:-3}"
fa3_bwd_summary registered,fuse,fuse_ws cuDNN,flash registered/cuDNN,fuse/cuDNN,fuse_ws/cuDNN fp16,bf16
