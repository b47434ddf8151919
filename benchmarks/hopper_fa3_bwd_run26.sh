#!/usr/bin/env bash
# Prepared in session 19, NOT RUN: KV_PREFETCH -- the producer prefetches into the L2 the K/V tiles of the CTA one
# wave ahead in launch order (kernels.hopper_gluon_bwd.KV_PREFETCH; two cp.async.bulk.prefetch.L2 of 32 KB at
# d=128), so that a CTA's fill reads K_j, V_j from the L2 instead of DRAM.  run24's two-point fit puts the pass's
# fixed cost per CTA at ~7.6 us (fill, drain, tail) against ~2.5 us per step: ~25 % of the pass at causal N=1024
# (2048 CTAs of 2-16 steps, one resident per SM), ~8 % at causal N=4096.  run25 (WG_BAND: less tensor work in the
# first step, a tie) says those first steps are latency-bound.
#   1. GPU exactness (pytest -n 4, TEST_TIMEOUT_S 120): `test_fa3_backward_kv_prefetch_gpu` -- d128 full / causal
#      top-left / causal heads-fastest / GQA 3 stages / d64 causal / causal with GRID_GROUP 3 (partial last group),
#      1 and 5 positions ahead: dK, dV bit-identical to the kernel without it, dQ by the rule; beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 causal N 1024 / 4096 and non-causal N=1024 (also 2048
#      CTAs, 16 steps each): kv_prefetch (132 ahead), kv_prefetch_half (66), the default, SDPA cuDNN, SDPA flash.
#   Register KV_PREFETCH (a registry rule) where it beats the default beyond the rounds' spread.
#   run(command="TOTAL_S=150 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run26.sh 2>&1 | tee $OUT/run.log", timeout_s=170)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-150}
. benchmarks/hopper_fa3_bwd_common.sh
CASES26=128/1024/1,128/4096/1,128/1024/0
SW=kv_prefetch,kv_prefetch_half
FA3_PYTEST_ARGS="-n 4" fa3_bwd_tests_and_timing "kv_prefetch_gpu" "$CASES26" $SW bf16,fp16 "${TEST_TIMEOUT_S:-120}" \
  "${ROUNDS:-5}"
fa3_bwd_summary $SW default,cuDNN,flash kv_prefetch/default,kv_prefetch_half/default,best/cuDNN,default/cuDNN bf16,fp16
