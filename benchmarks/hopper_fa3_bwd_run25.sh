#!/usr/bin/env bash
# Session 19: WG_BAND -- the causal diagonal band per consumer warpgroup (kernels.hopper_gluon_bwd.WG_BAND): at d=128
# with 64-row Q blocks every K/V block j's first step (Q block 2j) sees none of warpgroup 1's 64 keys; warpgroup 1 then
# skips its S^T, dP^T, dV, dK matmuls and exponentials (zeros as its dS^T rows, the lagged dQ as usual), and each
# warpgroup masks only its own band.  run24 (this session) put causal N=1024's gap in the pass's per-CTA work: the
# pass alone 463 us, preprocess 97 + conversion 73 us (at the copy rate), together = the whole backward (625-634 us)
# vs SDPA cuDNN's 601-610 us.
#   1. GPU exactness (pytest -n 4, TEST_TIMEOUT_S 120): `test_fa3_backward_wg_band_gpu` -- the three launches (the
#      registered causal form) on the 6 causal d=128 2-stage shapes x bf16/fp16, the fold on 2 shapes (bf16): the rule,
#      and dK, dV equal to the kernel without it; beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 causal N 1024 / 4096: wg_band, the default (the
#      registered kernel), SDPA cuDNN, SDPA flash.
#   Register WG_BAND (a registry rule, causal) where wg_band/default > 1 beyond the rounds' spread.
#   run(command="TOTAL_S=150 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run25.sh 2>&1 | tee $OUT/run.log", timeout_s=170)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-150}
. benchmarks/hopper_fa3_bwd_common.sh
CASES25=128/1024/1,128/4096/1
SW=wg_band
K="wg_band_gpu and (three_launches or (fold and bf16 and (d128_causal_tl- or br_q_lt_kv_s2)))"
FA3_PYTEST_ARGS="-n 4" fa3_bwd_tests_and_timing "$K" "$CASES25" $SW bf16,fp16 "${TEST_TIMEOUT_S:-120}" "${ROUNDS:-5}"
fa3_bwd_summary $SW default,cuDNN,flash wg_band/default,wg_band/cuDNN,default/cuDNN bf16,fp16
