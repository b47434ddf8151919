#!/usr/bin/env bash
# Session 16: the folded dQ conversion per (Q block, column half) in the loop (FUSE_STEP), and more rounds for the
# bf16 / causal widening of FA3_BWD_DQ_FUSE.
#   1. GPU exactness (TEST_TIMEOUT_S 170): s16_fuse_step_ws on the 8 d=128 cases x bf16/fp16, zero_ws_gpu with the
#      step form (3 passes in a row, workspace + counters left zero), fuse_step_gpu (GQA s2, causal bottom-right
#      seq_q < seq_kv s2, heads-fastest GQA causal; with / without the workspace), beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 N 1024 / 4096 / 16384 causal and not: nofuse (three
#      launches), fuse_ws (the end-of-CTA conversion), fuse_step_ws, beside the default's, SDPA cuDNN and SDPA flash;
#      a table printed last.
#   run(command="TOTAL_S=250 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run19.sh 2>&1 | tee $OUT/run.log", timeout_s=280)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-250}
. benchmarks/hopper_fa3_bwd_common.sh
C6=128/1024/0,128/4096/0,128/1024/1,128/4096/1,128/16384/0,128/16384/1
SW=nofuse,fuse_ws,fuse_step_ws
K="(s16_fuse_step_ws and d128) or (zero_ws_gpu and step and not gqa_s3 and not d64 and not q_lt_kv) or fuse_step_gpu"
fa3_bwd_tests_and_timing "$K" "$C6" $SW bf16,fp16 "${TEST_TIMEOUT_S:-170}" "${ROUNDS:-5}"
fa3_bwd_summary $SW default,cuDNN,flash fuse_ws/nofuse,fuse_step_ws/nofuse,fuse_step_ws/cuDNN,best/cuDNN bf16,fp16
