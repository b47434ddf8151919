#!/usr/bin/env bash
# Prepared in session 15, NOT RUN: what run17 left out (its 120 s test timeout and its timing share ran out).
#   1. GPU exactness (TEST_TIMEOUT_S 200): the fuse switch sets on the cases run17 did not reach (the other 4 d=128
#      cases, the 3 d=64 cases), `zero_ws_gpu` (three passes in a row, the workspace and counters left zero),
#      registry_path, repeatable, default_path (the registry now folds the conversion in at d=128 fp16 non-causal
#      N <= 4096) beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, N 1024 / 4096 causal and not (the cells the rule may widen
#      to): nofuse (three launches), fuse_ws, and the two timing diagnostics (dQ wrong) fuse_ws_noconv (the
#      end-of-CTA full wait + counter, no conversion) and fuse_ws_nowait (the conversion, no full wait), beside
#      the default's, SDPA cuDNN and SDPA flash; a table printed last.
#   run(command="TOTAL_S=240 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run18.sh 2>&1 | tee $OUT/run.log", timeout_s=270)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-240}
. benchmarks/hopper_fa3_bwd_common.sh
C4=128/1024/0,128/4096/0,128/1024/1,128/4096/1
SW=nofuse,fuse_ws,fuse_ws_noconv,fuse_ws_nowait
K="(s15_fuse and (br_q_lt_kv or rows_see_nothing or q_gt_kv or one_block or d64 or heads_fastest-fp16-s15_fuse_ws)) or zero_ws_gpu or registry_path or repeatable or default_path"
fa3_bwd_tests_and_timing "$K" "$C4" $SW bf16,fp16 "${TEST_TIMEOUT_S:-200}" "${ROUNDS:-3}"
fa3_bwd_summary $SW default,cuDNN fuse_ws/nofuse,fuse_ws/cuDNN bf16,fp16
