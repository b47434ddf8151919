#!/usr/bin/env bash
# Second device call of session 13 (run13b): hopper_fa3 bwd's candidates on the 12-cell grid after run13a showed
# MMA_ORDER 1 slower (the pass alone 0.88-0.98x).  Candidates: MMA_ORDER 2 (dV issued before the wait for dP^T), 3
# stages, DQ_ASYNC at d=128; at d=64 DQ_DEFER (step i's dQ hand-off under step i+1's S^T/dP^T) and 128-row Q blocks
# (FA3_BWD_BLOCK_MS).
#   1. GPU exactness of what run13a did not test (bm128 x {registered, sync, dq_defer}, dq_defer variants at d=64;
#      bf16 + fp16) in 3 pytest processes beside 4 `--warm-only` processes;
#   2. a candidate whose tests failed is dropped; 3. timed, bf16, ROUNDS rounds alternating: the whole backward per
#   candidate beside the default's backward, SDPA cuDNN and SDPA flash (d 64/128 x causal x N 1024/4096/16384).
#   run(command="TOTAL_S=230 bash benchmarks/hopper_fa3_bwd_run13b.sh", timeout_s=250)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-230}
. benchmarks/hopper_fa3_bwd_common.sh
KX=("bm128 and bf16" "bm128 and fp16" "variants and dq_defer and d64")
pids=()
for i in 0 1 2; do
  timeout "${TEST_TIMEOUT_S:-90}" python -m pytest -q -rf -p no:cacheprovider $T -k "${KX[$i]}" > "$OUT/pt-$i.log" 2>&1 &
  pids+=($!)
done
S128=registered,order2,s3,order2_s3,dq_async_on
S64=registered,order2,dq_defer,order2_dq_defer,bm128,bm128_sync
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
echo "tests done at $((SECONDS - T0)) s; failed/hung (bm128 bf16, bm128 fp16, dq_defer d64): ${bad[*]}"
if [ "${bad[0]}${bad[1]}" != "00" ]; then S64=registered,order2,dq_defer,order2_dq_defer; fi
if [ "${bad[2]}" != 0 ]; then S64=$(echo "$S64" | sed "s/,dq_defer,order2_dq_defer//"); fi
timeout $(( $(left) / 2 )) python $D --out "$OUT" --cases "" --bwd-cases "$G128" --bwd-switches $S128 \
  --rounds "${ROUNDS:-2}" --dtype bf16 > "$OUT/diag-128.log" 2>&1
echo "d128 rc=$? at $((SECONDS - T0)) s"
timeout $(( $(left) - 3 )) python $D --cases "" --bwd-cases "$G64" --bwd-switches $S64 \
  --rounds "${ROUNDS:-2}" --dtype bf16 > "$OUT/diag-64.log" 2>&1
echo "d64 rc=$? at $((SECONDS - T0)) s"
grep -h error "$OUT"/diag-*.log | head -5
fa3_bwd_rounds "$OUT"/diag-128.log "$OUT"/diag-64.log
