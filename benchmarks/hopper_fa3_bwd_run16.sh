#!/usr/bin/env bash
# Session 14 (issue 9), the second call: DQ_LAG + WG_OFFSET 1 registered at d=128 (2 stages) after run15; now
#   DQ_STAGE1 -- one dQ staging tile per warpgroup, the copy engine's read of it waited for at the next store (not right
#   after the issue), PINGPONG -- the two consumer warpgroups take turns issuing their matmuls (with DQ_LAG), both.
#   1. GPU exactness: the registered path at d=128 (16 + registry/default/repeatable 7) and `variants and s14` (d=128
#      bf16 / fp16, d=64 bf16 + fp16: 88) in 4 pytest processes beside 2 `--warm-only` (every timed kernel compiled);
#   2. a switch set whose tests failed is dropped from the timing; 3. timed, bf16, ROUNDS rounds alternating: the pass
#      alone on 3 cases (registered, lockstep = the kernel before run15, diag 3, the switch sets), the whole backward
#      per switch set (+ the registered kernel on the heads-fastest grid: longest first when causal) beside the
#      default's, SDPA cuDNN, SDPA flash on the d=128 grid, and hopper bwd's preprocess and dQ conversion launches
#      alone, as registered and with 128-row blocks / 8 warps (--pieces); 4. ncu (SpeedOfLight, WarpStateStats, ComputeWorkloadAnalysis) of one
#      launch of the registered and the lockstep pass at d=128 N=16384 if time is left.
#   run(command="TOTAL_S=260 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run16.sh 2>&1 | tee $OUT/run.log", timeout_s=290)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-260}
. benchmarks/hopper_fa3_bwd_common.sh
KX=("(test_fa3_backward_gpu and d128) or registry_path or repeatable or default_path"
    "variants and s14 and d128 and bf16" "variants and s14 and d128 and fp16" "variants and s14 and d64")
pids=()
for i in 0 1 2 3; do
  timeout "${TEST_TIMEOUT_S:-130}" python -m pytest -q -rf -p no:cacheprovider $T -k "${KX[$i]}" > "$OUT/pt-$i.log" 2>&1 &
  pids+=($!)
done
S128=lag_stage1,lag_pingpong,lag_pingpong_stage1
PV=registered,lockstep,diag3_no_ds_wait,dq_lag_off2,stage1,lag_stage1,lag_pingpong,lag_pingpong_stage1
PC=128/16384/0,128/4096/1,128/1024/1
wpids=()
for half in 0 1; do
  c128=$(echo "$G128" | cut -d, -f$((half * 3 + 1))-$((half * 3 + 3)))
  timeout "${TEST_TIMEOUT_S:-130}" python $D --warm-only --cases "$(echo "$PC" | cut -d, -f$((half + 1)))" --variants $PV \
    --bwd-cases "$c128" --bwd-switches registered,lockstep,heads_fastest,$S128 > "$OUT/warm-128-$half.log" 2>&1 &
  wpids+=($!)
done
bad=(0 0 0 0)
for i in 0 1 2 3; do wait "${pids[$i]}" || bad[$i]=1; done
for w in "${wpids[@]}"; do wait "$w"; done
tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
{ for i in 0 1 2 3; do echo "=== pytest $T -k '${KX[$i]}'"; cat "$OUT/pt-$i.log"; rm -f "$OUT/pt-$i.log"; done; } > "$OUT/pytest.log"
grep -E '^=== |[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s; failed/hung (registered d128, s14 d128 bf16, s14 d128 fp16, s14 d64): ${bad[*]}"
FAILED=$(grep -E '^FAILED' "$OUT/pytest.log" | grep -oE '\-s14_(lag_pingpong_stage1|lag_pingpong|lag_stage1|stage1)\]' \
  | sed 's/^-s14_//; s/\]$//' | sort -u)
if [ "${bad[1]}${bad[2]}" != "00" ] && [ -z "$FAILED" ]; then FAILED="lag_stage1 lag_pingpong lag_pingpong_stage1"; fi
for f in $FAILED; do S128=$(echo ",$S128," | sed "s/,$f,/,/" | sed 's/^,//; s/,$//'); done
echo "whole-backward switch sets: registered,lockstep,heads_fastest,$S128 (dropped: ${FAILED:-none})"
timeout $(( $(left) - 60 )) python $D --out "$OUT" --cases $PC --variants $PV --pieces \
  --bwd-cases "$G128" --bwd-switches registered,lockstep,heads_fastest,$S128 \
  --rounds "${ROUNDS:-3}" --dtype bf16 > "$OUT/diag-128.log" 2>&1
echo "d128 rc=$? at $((SECONDS - T0)) s"
grep -h error "$OUT"/diag-*.log | head -5
for v in registered lockstep; do
  if [ "$(left)" -gt 28 ] && [ "${bad[0]}" = 0 ] && command -v ncu > /dev/null; then
    timeout $(( $(left) / 2 + 2 )) ncu --clock-control none --section SpeedOfLight --section WarpStateStats \
      --section ComputeWorkloadAnalysis -k regex:_hopper_fa3_bwd --launch-count 1 \
      python $D --ncu-case 128/16384/0/$v > "$OUT/ncu-$v.txt" 2>&1
    echo "ncu $v rc=$? at $((SECONDS - T0)) s"
  fi
done
grep -hE "^  _hopper|Duration|Compute \(SM\) Throughput|Issue Slots Busy|Warp Cycles Per Issued|highest-utilized|Tensor" \
  "$OUT"/ncu-*.txt 2>/dev/null | head -16
fa3_bwd_rounds "$OUT"/diag-128.log
