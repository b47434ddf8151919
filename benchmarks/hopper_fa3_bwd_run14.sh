#!/usr/bin/env bash
# Prepared in session 13, run in session 13b (run14, 23:09 UTC: benchmarks/results/hopper-h100-2026-11-26-run14.md): DQ_KSPLIT -- each consumer warpgroup
# reduce-adds its own K/V rows' share of dQ (no dS^T exchange, no lockstep; twice the reduce-add bytes).
# d=128: the registered kernel vs DQ_KSPLIT (single- and double-buffered staging); d=64: 128-row blocks with and without.
# Then the pass alone (registered vs dq_ksplit) on 2 cases for the L2 cost of the doubled adds.
#   1. GPU exactness: `-k "variants and dq_ksplit"` + `bm128 and ksplit` (50 cases) in 3 pytest processes beside 4 `--warm-only`;
#   2. a candidate whose tests failed is dropped; 3. timed, bf16, ROUNDS rounds alternating: the whole backward per
#   candidate beside the default's backward, SDPA cuDNN and SDPA flash (d 64/128 x causal x N 1024/4096/16384).
#   run(command="TOTAL_S=230 bash benchmarks/hopper_fa3_bwd_run14.sh", timeout_s=250)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-230}
. benchmarks/hopper_fa3_bwd_common.sh
KX=("variants and dq_ksplit and d128 and bf16" "variants and dq_ksplit and d128 and fp16" "(variants and dq_ksplit and d64) or (bm128 and ksplit)")
pids=()
for i in 0 1 2; do
  timeout "${TEST_TIMEOUT_S:-90}" python -m pytest -q -rf -p no:cacheprovider $T -k "${KX[$i]}" > "$OUT/pt-$i.log" 2>&1 &
  pids+=($!)
done
S128=registered,dq_ksplit,dq_ksplit_async
S64=bm128,bm128_dq_ksplit,dq_ksplit
wpids=()
for half in 0 1; do
  c128=$(echo "$G128" | cut -d, -f$((half * 3 + 1))-$((half * 3 + 3)))
  c64=$(echo "$G64" | cut -d, -f$((half * 3 + 1))-$((half * 3 + 3)))
  timeout "${TEST_TIMEOUT_S:-90}" python $D --warm-only --cases "" --bwd-cases "$c128" --bwd-switches $S128 \
    > "$OUT/warm-128-$half.log" 2>&1 &
  wpids+=($!)
  timeout "${TEST_TIMEOUT_S:-90}" python $D --warm-only --cases "" --bwd-cases "$c64" --bwd-switches $S64 \
    > "$OUT/warm-64-$half.log" 2>&1 &
  wpids+=($!)
done
bad=(0 0 0)
for i in 0 1 2; do wait "${pids[$i]}" || bad[$i]=1; done
for w in "${wpids[@]}"; do wait "$w"; done
tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
{ for i in 0 1 2; do echo "=== pytest $T -k '${KX[$i]}'"; cat "$OUT/pt-$i.log"; rm -f "$OUT/pt-$i.log"; done; } > "$OUT/pytest.log"
grep -E '^=== |[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s; failed/hung (d128 bf16, d128 fp16, d64): ${bad[*]}"
if [ "${bad[0]}${bad[1]}" != "00" ]; then S128=registered; fi
if [ "${bad[2]}" != 0 ]; then S64=bm128; fi
timeout $(( $(left) / 2 )) python $D --out "$OUT" --cases 128/16384/0,128/4096/1 --variants registered,dq_ksplit \
  --bwd-cases "$G128" --bwd-switches $S128 \
  --rounds "${ROUNDS:-2}" --dtype bf16 > "$OUT/diag-128.log" 2>&1
echo "d128 rc=$? at $((SECONDS - T0)) s"
timeout $(( $(left) - 3 )) python $D --cases "" --bwd-cases "$G64" --bwd-switches $S64 \
  --rounds "${ROUNDS:-2}" --dtype bf16 > "$OUT/diag-64.log" 2>&1
echo "d64 rc=$? at $((SECONDS - T0)) s"
grep -h error "$OUT"/diag-*.log | head -5
fa3_bwd_rounds "$OUT"/diag-128.log "$OUT"/diag-64.log
