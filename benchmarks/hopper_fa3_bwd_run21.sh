#!/usr/bin/env bash
# Prepared in session 16, NOT RUN: the end-of-CTA dQ fold counting in before the dK/dV stores (FUSE_EARLY), the
# tests run20 did not reach, and the registered bf16 fold (FA3_BWD_DQ_FUSE widened in session 16) on the GPU.
#   1. GPU exactness (TEST_TIMEOUT_S 170): s16_fuse_ws_early on the 8 d=128 cases x bf16/fp16; the registered path
#      at bf16 (test_fa3_backward_gpu d128 bf16 -- d128_full folds now --, registry_path own_launch, repeatable,
#      default_path); fuse_step_gpu chunk3 (the one run20 left); GRID_GROUP 3 on the 7 causal cases (bf16; a partial
#      last group where heads % 3 != 0) and -1 on d128_causal_tl, beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 N 1024 / 4096 causal and not: nofuse, fuse_ws,
#      fuse_ws_early and the no-conversion diagnostics of both (fuse_ws_noconv, fuse_ws_early_noconv: dQ wrong),
#      group_wave (causal: GRID_GROUP -1, launch order by groups of one wave's heads, longest first; = nofuse's
#      order elsewhere),
#      beside the default's, SDPA cuDNN and SDPA flash; a table printed last.
#   Reading: fuse_ws_early > fuse_ws -> the release's MEMBAR waited for the epilogue's stores (adopt: the switch on
#   where faster); fuse_ws_noconv ~ fuse_ws at causal (run18) says the conversion is not where the fold's time goes
#   there -- the end-of-CTA completion wait of the reduce-adds (and the MEMBAR) is the suspect.
#   run(command="TOTAL_S=300 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run21.sh 2>&1 | tee $OUT/run.log", timeout_s=330)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-300}
. benchmarks/hopper_fa3_bwd_common.sh
C4=128/1024/0,128/4096/0,128/1024/1,128/4096/1
SW=nofuse,fuse_ws,fuse_ws_early,fuse_ws_noconv,fuse_ws_early_noconv,group_wave
K="(s16_fuse_ws_early and d128) or (test_fa3_backward_gpu and d128 and bf16) or (registry_path and own_launch) or repeatable or default_path or (fuse_step_gpu and causal_tl_gqa and bf16 and True and chunk3) or (s16_group3 and bf16 and causal) or (s16_group_wave and d128_causal_tl-bf16)"
fa3_bwd_tests_and_timing "$K" "$C4" $SW bf16,fp16 "${TEST_TIMEOUT_S:-170}" "${ROUNDS:-5}"
fa3_bwd_summary $SW default,cuDNN,flash fuse_ws_early/fuse_ws,fuse_ws_early/nofuse,fuse_ws_early/cuDNN,group_wave/nofuse,group_wave/cuDNN bf16,fp16
