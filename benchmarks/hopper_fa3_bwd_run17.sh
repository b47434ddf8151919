#!/usr/bin/env bash
# Prepared in session 14, NOT RUN: the next session's first call for the d=128 backward as registered after run16
# (DQ_LAG + WG_OFFSET 1 + DQ_STAGE1 at d=128, 2 stages).  run16 ran the registry/default/repeatable GPU tests with the
# kernel before DQ_STAGE1 (its variant tests covered the final kernel: the same sm_90a SASS), and timed bf16 only.
#   1. GPU exactness of the final kernel through every path: `(test_fa3_backward_gpu and d128) or registry_path or
#      repeatable or default_path` (23) beside 2 `--warm-only`;
#   2. timed, fp16 then bf16, ROUNDS rounds alternating: the whole backward, registered vs the lockstep kernel, beside
#      the default's, SDPA cuDNN and SDPA flash on the d=128 grid.
#   run(command="TOTAL_S=200 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run17.sh 2>&1 | tee $OUT/run.log", timeout_s=230)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-200}
. benchmarks/hopper_fa3_bwd_common.sh
K="(test_fa3_backward_gpu and d128) or registry_path or repeatable or default_path"
timeout "${TEST_TIMEOUT_S:-120}" python -m pytest -q -rf -p no:cacheprovider $T -k "$K" > "$OUT/pytest.log" 2>&1 &
tp=$!
wpids=()
for dt in fp16 bf16; do
  timeout "${TEST_TIMEOUT_S:-120}" python $D --warm-only --dtype $dt --cases "" --bwd-cases "$G128" \
    --bwd-switches registered,lockstep > "$OUT/warm-$dt.log" 2>&1 &
  wpids+=($!)
done
bad=0; wait $tp || bad=1
for w in "${wpids[@]}"; do wait "$w"; done
tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
grep -E '[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s; failed/hung: $bad"
for dt in fp16 bf16; do
  timeout $(( $(left) / 2 - 2 )) python $D --out "$OUT" --dtype $dt --cases "" --bwd-cases "$G128" \
    --bwd-switches registered,lockstep --rounds "${ROUNDS:-3}" > "$OUT/diag-$dt.log" 2>&1
  echo "$dt rc=$? at $((SECONDS - T0)) s"
done
python - "$OUT"/diag-fp16.log "$OUT"/diag-bf16.log <<'PY'
import json, sys, collections, statistics
t = collections.defaultdict(list)
for fn in sys.argv[1:]:
    for l in open(fn):
        if l.startswith("{"):
            r = json.loads(l)
            if "tflops" in r:
                t[(r["dtype"], r["causal"], r["seq"], r["impl"])].append(r["tflops"])
for k, v in t.items():
    print(*k, round(statistics.median(v)), "/".join(str(round(x)) for x in v))
PY
