#!/usr/bin/env bash
# Prepared in session 16, NOT RUN: the registered d=128 2-stage backward as a persistent walk (PERSISTENT: grid
# (min(items, SMs),), a host LPT table over (K/V block, batch*head_kv) items in sections of one wave's heads).
#   1. GPU exactness (TEST_TIMEOUT_S 110): `test_fa3_backward_persistent_gpu` (8 cases incl. GQA, causal bottom-right
#      seq_q < seq_kv and seq_q > seq_kv -- items with no Q block --, one block; 3 and 5 CTAs so every CTA walks many
#      items), beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 N 1024 / 4096 / 16384 causal and not: nofuse (the
#      registered three launches), persistent (the same launches, the pass as the walk), the default's (the fold at
#      non-causal N <= 4096), SDPA cuDNN, SDPA flash; a table printed last.
#   Adopt (a registry rule, memsim.algorithms_hopper: the pass's grid becomes (CTAs,)) where the same-call medians are
#   faster; the fold (DQ_FUSE) does not run with it yet: persistent vs default decides the non-causal N <= 4096 cells.
#   run(command="TOTAL_S=200 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run22.sh 2>&1 | tee $OUT/run.log", timeout_s=230)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-200}
. benchmarks/hopper_fa3_bwd_common.sh
SW=nofuse,persistent
K="persistent_gpu"
timeout "${TEST_TIMEOUT_S:-110}" python -m pytest -q -rf -p no:cacheprovider $T -k "$K" > "$OUT/pytest.log" 2>&1 &
tp=$!
wpids=()
for dt in bf16 fp16; do
  timeout "${TEST_TIMEOUT_S:-110}" python $D --warm-only --dtype $dt --cases "" --bwd-cases "$G128" \
    --bwd-switches $SW > "$OUT/warm-$dt.log" 2>&1 &
  wpids+=($!)
done
bad=0; wait $tp || bad=1
for w in "${wpids[@]}"; do wait "$w"; done
tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
grep -E '[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s; failed/hung: $bad"
if [ "$bad" -ne 0 ]; then echo "PERSISTENT failed or hung in the tests: no timing"; exit 1; fi
for dt in bf16 fp16; do
  timeout $(( $(left) / 2 - 2 )) python $D --out "$OUT" --dtype $dt --cases "" --bwd-cases "$G128" \
    --bwd-switches $SW --rounds "${ROUNDS:-5}" > "$OUT/diag-$dt.log" 2>&1
  echo "$dt rc=$? at $((SECONDS - T0)) s"
done
python - "$OUT"/diag-bf16.log "$OUT"/diag-fp16.log <<'PY'
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
print("\n| dtype | causal | N | nofuse | persistent | default | cuDNN | flash | persistent/nofuse | persistent/default"
      " | persistent/cuDNN |")
for dt, c, n in sorted({k[:3] for k in t}):
    g = lambda i: med.get((dt, c, n, i), float("nan"))  # noqa: E731
    a, b = g("bwd:hopper_fa3[nofuse]"), g("bwd:hopper_fa3[persistent]")
    dflt = [v for k, v in med.items() if k[:3] == (dt, c, n) and k[3].startswith("bwd:default")]
    d0 = dflt[0] if dflt else float("nan")
    cu, fl = g("bwd:sdpa_cudnn"), g("bwd:sdpa_flash")
    print(f"| {dt} | {c} | {n} | {a:.0f} | {b:.0f} | {d0:.0f} | {cu:.0f} | {fl:.0f} | {b / a:.3f} | {b / d0:.3f}"
          f" | {b / cu:.3f} |")
PY
