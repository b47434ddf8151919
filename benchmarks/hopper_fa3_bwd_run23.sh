#!/usr/bin/env bash
# Session 18: ZERO_NEXT -- the folded conversion's zeros written by every CTA's producer warps into the other of two
# workspaces (kernels.hopper_gluon_bwd.ZERO_NEXT), so that the converting warpgroup (at causal the head's K/V block 0,
# the longest CTA, in the head's tail) only reads dQacc and writes dQ.
#   1. GPU exactness (TEST_TIMEOUT_S 110): `test_fa3_backward_zero_next_gpu` (4 passes: a, a smaller problem, a, a --
#      late and early count-in, the next turn's workspace zero after each, the counters zero) on d128 full /
#      causal top-left / causal bottom-right rows that see nothing / GQA 3 stages (bf16), d128 causal (fp16), d64
#      MQA (bf16), beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 N 1024 / 4096 causal and not: nofuse (three launches:
#      the registered kernel at causal), fuse_ws_early (the fold, early count-in), fuse_ws_early_zn (+ ZERO_NEXT),
#      fuse_ws_early_norezero (timing diagnostic FUSE_DIAG 3: no zeros written at all -- what ZERO_NEXT can save at
#      most; dQ of later passes wrong), the default's (the fold at non-causal), SDPA cuDNN, SDPA flash.
#   Adopt ZERO_NEXT (a registry rule) where early_zn beats the default in the same call; at causal only if it also
#   beats nofuse (the fold is not registered there).
#   run(command="TOTAL_S=190 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run23.sh 2>&1 | tee $OUT/run.log", timeout_s=205)
#   Ran in session 18 at tree 3b5fec3 (benchmarks/results/hopper-h100-2026-11-27-run23.md): ZERO_NEXT exact,
#   0.98-1.02x the fold it changes -- not adopted, and removed afterwards with its tests and diag switches; to run
#   this script again, check out 3b5fec3.
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-190}
. benchmarks/hopper_fa3_bwd_common.sh
C4=128/1024/0,128/4096/0,128/1024/1,128/4096/1
SW=nofuse,fuse_ws_early,fuse_ws_early_zn,fuse_ws_early_norezero
K="zero_next_gpu and ((bf16 and (d128_full- or d128_causal_tl- or rows_see_nothing or gqa_s3 or d64_full_mqa)) or (fp16 and d128_causal_tl-))"
fa3_bwd_tests_and_timing "$K" "$C4" $SW bf16,fp16 "${TEST_TIMEOUT_S:-110}" "${ROUNDS:-5}"
fa3_bwd_summary $SW default,cuDNN,flash fuse_ws_early_zn/fuse_ws_early,fuse_ws_early_zn/default,fuse_ws_early_zn/nofuse,fuse_ws_early_norezero/fuse_ws_early,fuse_ws_early_zn/cuDNN,best/cuDNN bf16,fp16
