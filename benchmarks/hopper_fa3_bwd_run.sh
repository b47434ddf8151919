#!/usr/bin/env bash
# One device call for hopper_fa3 bwd's switches (issue 9, session 12; run11d): STAT_SMEM, DQ_ASYNC and both.
#   1. the GPU exactness tests of each switch (tests/test_kernels_hopper_gluon_bwd.py -k variants: 22 cases each,
#      bf16 + fp16), 9 pytest processes in parallel under TEST_TIMEOUT_S, beside `hopper_fa3_bwd_diag.py --warm-only`
#      for bf16 and fp16 (compiles what is timed next; nothing timed while the tests run);
#   2. a switch whose tests did not all pass (or hung) is dropped from the timing;
#   3. timed, bf16: the pass alone per switch on 4 cases, and the whole backward per switch beside the default's
#      backward, SDPA cuDNN and SDPA flash on the 12-cell grid (d 64/128 x causal x N 1024/4096/16384; B*N = 16k,
#      H*d = 2048), ROUNDS rounds in alternating order; 4. fp16: the whole backward on the 4 cases (1 round) if
#      TOTAL_S leaves room.
#   run(command="TOTAL_S=160 bash benchmarks/hopper_fa3_bwd_run.sh", timeout_s=175)     ($OUT: the device tool)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-150}
. benchmarks/hopper_fa3_bwd_common.sh
CASES=128/16384/0,128/4096/1,64/16384/0,128/1024/1
GRID=$G128,$G64
# --- 1. exactness (9 processes) beside the warm-up
SW=(dq_tma_stat_smem dq_tma_async dq_tma_stat_smem_async)
KX=("variants and stat_smem and not async" "variants and dq_tma_async" "variants and stat_smem_async")
PART=("d128 and bf16" "d128 and fp16" "d64")
pids=(); names=()
for i in 0 1 2; do
  for j in 0 1 2; do
    timeout "${TEST_TIMEOUT_S:-75}" python -m pytest -q -rf -p no:cacheprovider $T -k "${KX[$i]} and ${PART[$j]}" \
      > "$OUT/pt-$i-$j.log" 2>&1 &
    pids+=($!); names+=("$i")
  done
done
W="--cases $CASES --bwd-cases $GRID --variants dq_tma,dq_tma_stat_smem,dq_tma_async,dq_tma_stat_smem_async --bwd-switches registered,stat_smem,dq_async,stat_smem_async"
timeout "${TEST_TIMEOUT_S:-75}" python $D --warm-only $W --dtype bf16 > "$OUT/warm-bf16.log" 2>&1 &
wb=$!
timeout "${TEST_TIMEOUT_S:-75}" python $D --warm-only ${W/--bwd-cases $GRID/} --dtype fp16 > "$OUT/warm-fp16.log" 2>&1 &
wf=$!
bad=(0 0 0)
for n in "${!pids[@]}"; do
  wait "${pids[$n]}"; rc=$?
  [ "$rc" != 0 ] && bad[${names[$n]}]=1
done
wait $wb; echo "warm bf16 rc=$? $(tail -1 "$OUT/warm-bf16.log")"
wait $wf; echo "warm fp16 rc=$? $(tail -1 "$OUT/warm-fp16.log")"
{ for i in 0 1 2; do for j in 0 1 2; do
    echo "=== pytest $T -k '${KX[$i]} and ${PART[$j]}'"; cat "$OUT/pt-$i-$j.log"; rm -f "$OUT/pt-$i-$j.log"
  done; done; } > "$OUT/pytest.log"
grep -E '^=== |[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s; failed/hung switches (stat_smem, async, both): ${bad[*]}"
# --- 2. the switches that passed
V=dq_tma; B=registered; BN=(stat_smem dq_async stat_smem_async)
for i in 0 1 2; do [ "${bad[$i]}" = 0 ] && V="$V,${SW[$i]}" && B="$B,${BN[$i]}"; done
# --- 3. bf16, timed
timeout $(( $(left) - 5 )) python $D --out "$OUT" --cases $CASES --bwd-cases $GRID --variants $V --bwd-switches $B \
  --rounds "${ROUNDS:-2}" --dtype bf16 > "$OUT/diag-bf16.log" 2>&1
echo "bf16 rc=$? at $((SECONDS - T0)) s"
# --- 4. fp16, timed (the 4 cases, whole backward only), if room
if [ "$(left)" -gt 35 ]; then
  timeout $(( $(left) - 3 )) python $D --out "$OUT" --cases "" --bwd-cases $CASES --bwd-switches $B --rounds 1 \
    --dtype fp16 > "$OUT/diag-fp16.log" 2>&1
  echo "fp16 rc=$? at $((SECONDS - T0)) s"
fi
grep -h -c '"ms"' "$OUT/diag-bf16.log" "$OUT/diag-fp16.log" 2>/dev/null; grep -h error "$OUT"/diag-*.log | head -5
