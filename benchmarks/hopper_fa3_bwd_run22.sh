#!/usr/bin/env bash
# Prepared in session 16, NOT RUN: the registered d=128 2-stage backward as a persistent walk (PERSISTENT: grid
# (min(items, SMs),), a host LPT table over (K/V block, batch*head_kv) items in sections of one wave's heads).
#   1. GPU exactness (TEST_TIMEOUT_S 110): `test_fa3_backward_persistent_gpu` (8 cases incl. GQA, causal bottom-right
#      seq_q < seq_kv and seq_q > seq_kv -- items with no Q block --, one block; 3 and 5 CTAs so every CTA walks many
#      items), beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 N 1024 / 4096 / 16384 causal and not: nofuse (the
#      registered three launches), persistent (the same launches, the pass as the walk), the default's (the fold at
#      non-causal N <= 4096), SDPA cuDNN, SDPA flash; a table printed last.
#   Adopt (a registry rule, memsim.algorithms_hopper: the pass's grid becomes (CTAs,)) where the same-call medians are
#   faster; the fold (DQ_FUSE) does not run with it yet: persistent vs default decides the non-causal N <= 4096 cells.
#   run(command="TOTAL_S=200 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run22.sh 2>&1 | tee $OUT/run.log", timeout_s=230)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-200}
. benchmarks/hopper_fa3_bwd_common.sh
SW=nofuse,persistent
K="persistent_gpu"
fa3_bwd_tests_and_timing "$K" "$G128" $SW bf16,fp16 "${TEST_TIMEOUT_S:-110}" "${ROUNDS:-5}" 1 || exit 1
fa3_bwd_summary $SW default,cuDNN,flash persistent/nofuse,persistent/default,persistent/cuDNN bf16,fp16
