#!/usr/bin/env bash
# One device call for hopper_fa3 bwd's matmul order (issue 9, session 13; run13a): MMA_ORDER 1 (FlashAttention-3's:
# dV issued before the wait for dP^T, dQ before dK, dQ's reduce-add while dK runs) and 2 (dV early only), 3 stages.
#   1. the GPU exactness tests of each order (tests/test_kernels_hopper_gluon_bwd.py -k variants: 22 cases each, bf16 +
#      fp16), 9 pytest processes in parallel under TEST_TIMEOUT_S, beside `hopper_fa3_bwd_diag.py --warm-only` (d=128
#      and d=64 apart: compiles what is timed next; nothing timed while the tests run);
#   2. an order whose tests did not all pass (or hung) is dropped from the timing;
#   3. timed, bf16: the pass alone (registered, order1, the diagnostics without dQ adds / without dQ) on 4 cases, and
#      the whole backward per switch beside the default's backward, SDPA cuDNN and SDPA flash on the 12-cell grid
#      (d 64/128 x causal x N 1024/4096/16384; B*N = 16k, H*d = 2048), ROUNDS rounds in alternating order;
#   4. if TOTAL_S leaves room: ncu of one launch of the order-1 pass (d=128 N=16384 non-causal), default cache
#      control, --clock-control none.
#   run(command="TOTAL_S=300 bash benchmarks/hopper_fa3_bwd_run13.sh", timeout_s=320)     ($OUT: the device tool)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-300}
. benchmarks/hopper_fa3_bwd_common.sh
CASES=128/16384/0,128/4096/1,64/16384/0,128/1024/1
# --- 1. exactness (9 processes) beside the warm-up (4 processes)
SW=(order1 order1_async order2)
KX=("variants and order1 and not async" "variants and order1_async" "variants and order2")
PART=("d128 and bf16" "d128 and fp16" "d64")
pids=(); names=()
for i in 0 1 2; do
  for j in 0 1 2; do
    timeout "${TEST_TIMEOUT_S:-100}" python -m pytest -q -rf -p no:cacheprovider $T -k "${KX[$i]} and ${PART[$j]}" \
      > "$OUT/pt-$i-$j.log" 2>&1 &
    pids+=($!); names+=("$i")
  done
done
ALLSW=registered,order1,order2,order1_async@128,order1_sync@64,s3@128,order1_s3@128
PV=registered,order1,diag1_stat_smem,diag2_stat_smem
wpids=()
for g in "$G128" "$G64"; do
  for half in 0 1; do
    cs=$(echo "$g" | cut -d, -f$((half * 3 + 1))-$((half * 3 + 3)))
    timeout "${TEST_TIMEOUT_S:-100}" python $D --warm-only --cases "" --bwd-cases "$cs" --bwd-switches $ALLSW \
      --dtype bf16 > "$OUT/warm-$half-${g:0:3}.log" 2>&1 &
    wpids+=($!)
  done
done
timeout "${TEST_TIMEOUT_S:-100}" python $D --warm-only --cases $CASES --variants $PV --bwd-cases "" --dtype bf16 \
  > "$OUT/warm-pass.log" 2>&1 &
wpids+=($!)
bad=(0 0 0)
for n in "${!pids[@]}"; do
  wait "${pids[$n]}"; rc=$?
  [ "$rc" != 0 ] && bad[${names[$n]}]=1
done
for w in "${wpids[@]}"; do wait "$w"; done
tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
{ for i in 0 1 2; do for j in 0 1 2; do
    echo "=== pytest $T -k '${KX[$i]} and ${PART[$j]}'"; cat "$OUT/pt-$i-$j.log"; rm -f "$OUT/pt-$i-$j.log"
  done; done; } > "$OUT/pytest.log"
grep -E '^=== |[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s; failed/hung (order1, order1_async, order2): ${bad[*]}"
# --- 2. the orders that passed (registered, s3 always)
B=registered,s3@128
[ "${bad[0]}" = 0 ] && B="$B,order1,order1_sync@64,order1_s3@128" && PV="$PV" || PV=registered,diag1_stat_smem,diag2_stat_smem
[ "${bad[1]}" = 0 ] && B="$B,order1_async@128"
[ "${bad[2]}" = 0 ] && B="$B,order2"
# --- 3. bf16, timed
NCU_S=${NCU_S:-45}
timeout $(( $(left) - NCU_S )) python $D --out "$OUT" --cases $CASES --variants $PV --bwd-cases "$G128,$G64" \
  --bwd-switches $B --rounds "${ROUNDS:-2}" --dtype bf16 > "$OUT/diag-bf16.log" 2>&1
echo "bf16 rc=$? at $((SECONDS - T0)) s"
# --- 4. ncu of the order-1 pass, if room
if [ "$(left)" -gt 25 ] && [ "${bad[0]}" = 0 ] && command -v ncu > /dev/null; then
  timeout $(( $(left) - 3 )) ncu --clock-control none --section SpeedOfLight --section WarpStateStats \
    --section ComputeWorkloadAnalysis --section LaunchStats -k regex:_hopper_fa3_bwd --launch-count 1 \
    python $D --ncu-case 128/16384/0/order1 > "$OUT/ncu-order1.txt" 2>&1
  echo "ncu rc=$? at $((SECONDS - T0)) s"
fi
grep -h -c '"ms"' "$OUT/diag-bf16.log"; grep -h error "$OUT"/diag-*.log | head -5
fa3_bwd_rounds "$OUT/diag-bf16.log"
