#!/usr/bin/env bash
# Prepared in session 14 (the registry/default/repeatable GPU tests of the d=128 kernel registered after run16, fp16 +
# bf16 timing), extended in session 15 with the folded dQ conversion (kernels.hopper_gluon_bwd.DQ_FUSE, DQ_ZERO_WS):
#   1. GPU exactness: `(test_fa3_backward_gpu and d128) or registry_path or repeatable or default_path` (23) + the
#      new switch sets on every case x bf16/fp16 (`s15_fuse`, `s15_fuse_ws`: 44) + `zero_ws_gpu` (3: three passes in
#      a row, the workspace and counters left zero) beside 2 `--warm-only`;
#   2. timed, fp16 then bf16, ROUNDS rounds alternating: the whole backward, registered vs fuse vs fuse_ws, beside the
#      default's, SDPA cuDNN and SDPA flash on the d=128 grid; a table (median TFLOP/s, ratio to cuDNN) printed last.
#   Ran in session 15 as run(command="TOTAL_S=185 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run17.sh 2>&1 | tee $OUT/run.log", timeout_s=215):
#   the 120 s test timeout stopped pytest after 31 of 70 tests (all passed) and the timing's share ran out after fp16's
#   non-causal cells (benchmarks/results/hopper-h100-2026-11-27-run17.md); what it left is run18.sh.
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-200}
. benchmarks/hopper_fa3_bwd_common.sh
K="(test_fa3_backward_gpu and d128) or registry_path or repeatable or default_path or s15_fuse or zero_ws_gpu"
timeout "${TEST_TIMEOUT_S:-120}" python -m pytest -q -rf -p no:cacheprovider $T -k "$K" > "$OUT/pytest.log" 2>&1 &
tp=$!
wpids=()
for dt in fp16 bf16; do
  timeout "${TEST_TIMEOUT_S:-120}" python $D --warm-only --dtype $dt --cases "" --bwd-cases "$G128" \
    --bwd-switches registered,fuse,fuse_ws > "$OUT/warm-$dt.log" 2>&1 &
  wpids+=($!)
done
bad=0; wait $tp || bad=1
for w in "${wpids[@]}"; do wait "$w"; done
tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
grep -E '[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s; failed/hung: $bad"
for dt in fp16 bf16; do
  timeout $(( $(left) / 2 - 2 )) python $D --out "$OUT" --dtype $dt --cases "" --bwd-cases "$G128" \
    --bwd-switches registered,fuse,fuse_ws --rounds "${ROUNDS:-3}" > "$OUT/diag-$dt.log" 2>&1
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
med = {k: statistics.median(v) for k, v in t.items()}
for k, v in sorted(t.items()):
    print(*k, round(med[k]), "/".join(str(round(x)) for x in v))
print("\n| dtype | causal | N | registered | fuse | fuse_ws | cuDNN | flash | best/cuDNN |")
for dt, c, n in sorted({k[:3] for k in t}):
    g = lambda i: med.get((dt, c, n, i), float("nan"))  # noqa: E731
    ours = [g("bwd:hopper_fa3"), g("bwd:hopper_fa3[fuse]"), g("bwd:hopper_fa3[fuse_ws]")]
    cu = g("bwd:sdpa_cudnn")
    print(f"| {dt} | {c} | {n} | " + " | ".join(f"{x:.0f}" for x in ours + [cu, g("bwd:sdpa_flash")])
          + " | " + " / ".join(f"{x / cu:.3f}" for x in ours) + " |")
PY
