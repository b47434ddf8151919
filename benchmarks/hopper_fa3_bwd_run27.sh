#!/usr/bin/env bash
# Session 21: STREAM_SPLIT -- the three-launch backward as n batch groups on two streams (host code only; the kernels
# unchanged): the groups' passes in order on a pass stream of higher priority, each group's preprocess and dQ
# conversion on the caller's stream, where they run in the tail of the pass before / after them
# (kernels.hopper_gluon_bwd.fa3_bwd_stream_plan).  run24 split causal N=1024 (bf16) into pass 463 + preprocess 97 +
# conversion 73 us with every SM idle 7.2 % of the pass on average; the two memory-bound launches (27 % of the
# backward there) cannot share an SM with a pass CTA (230.8 KB of shared memory, the whole register file), only the
# SMs its tail leaves.
#   1. GPU exactness (pytest -n 4, TEST_TIMEOUT_S 120): `test_fa3_backward_stream_split_gpu` -- d128 causal 4
#      batches, d128 non-causal 3 batches (the fold forced off), GQA bottom-right 3 stages, d64 causal, equal
#      priorities; 2 and 3 groups (uneven): dK, dV bit-identical to the plain launches, dQ by the rule, twice in a
#      row; beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 causal N 1024 / 4096 and non-causal N=1024: split2,
#      split4, split8 (groups of 2 / 4 / 8 ... batches, min(n, batch)), split2_eq (the pass stream at the caller's
#      priority), nofuse (the three launches unsplit: the reference at non-causal, where the default folds), the
#      default, SDPA cuDNN, SDPA flash; then the medians and the paired ratios.
#   Register STREAM_SPLIT (a registry rule) where a split beats the default beyond the rounds' spread.
#   run(command="TOTAL_S=170 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run27.sh 2>&1 | tee $OUT/run.log", timeout_s=190)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-170}
. benchmarks/hopper_fa3_bwd_common.sh
CASES27=128/1024/1,128/4096/1,128/1024/0
SW=split2,split4,split8,split2_eq,nofuse
FA3_PYTEST_ARGS="-n 4" fa3_bwd_tests_and_timing "stream_split" "$CASES27" $SW bf16,fp16 "${TEST_TIMEOUT_S:-120}" \
  "${ROUNDS:-5}"
fa3_bwd_summary $SW default,cuDNN,flash split2/default,split4/default,best/cuDNN,default/cuDNN bf16,fp16
python benchmarks/hopper_fa3_bwd_summary.py paired \
  split2/default,split4/default,split8/default,split2_eq/default,split2/nofuse,split4/nofuse,default/cuDNN \
  "$OUT/diag-bf16.log" "$OUT/diag-fp16.log"
