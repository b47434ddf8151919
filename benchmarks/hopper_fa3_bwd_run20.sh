#!/usr/bin/env bash
# Session 16, after run19 (per-step FUSE_STEP exact but 0.76-0.91x; FA3_BWD_DQ_FUSE widened to bf16): the folded
# conversion per CHUNK of Q blocks (one full wait + GPU-scope atomic per chunk instead of per step).
#   1. GPU exactness (TEST_TIMEOUT_S 45): s16_fuse_chunk4_ws on 4 d=128 cases (bf16), fuse_step_gpu chunks of 3 (a
#      partial last chunk) with the workspace (bf16), the registered bf16 fold (
#      registry_path own_launch-full), beside a `--warm-only`;
#   2. timed, bf16, ROUNDS rounds alternating, d=128 N 1024 / 4096 causal and not: nofuse (three launches),
#      fuse_chunk4_ws, fuse_chunk16_ws, the default's (= fuse_ws at non-causal since run19), SDPA cuDNN, SDPA flash.
#   run(command="TOTAL_S=72 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run20.sh 2>&1 | tee $OUT/run.log", timeout_s=95)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-100}
. benchmarks/hopper_fa3_bwd_common.sh
C4=128/1024/0,128/4096/0,128/1024/1,128/4096/1
SW=nofuse,fuse_chunk4_ws,fuse_chunk16_ws
K="(s16_fuse_chunk4_ws and bf16 and (d128_full- or d128_causal_tl- or one_block or q_gt_kv)) or (fuse_step_gpu and bf16 and True and chunk3) or (registry_path and own_launch and full)"
fa3_bwd_tests_and_timing "$K" "$C4" $SW bf16 "${TEST_TIMEOUT_S:-45}" "${ROUNDS:-3}"
fa3_bwd_summary $SW default,cuDNN,flash fuse_chunk4_ws/nofuse,fuse_chunk16_ws/nofuse,best/cuDNN bf16
