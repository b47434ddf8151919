#!/usr/bin/env bash
# Session 16: the folded dQ conversion per (Q block, column half) in the loop (FUSE_STEP), and more rounds for the
# bf16 / causal widening of FA3_BWD_DQ_FUSE.
#   1. GPU exactness (TEST_TIMEOUT_S 170): s16_fuse_step_ws on the 8 d=128 cases x bf16/fp16, zero_ws_gpu with the
#      step form (3 passes in a row, workspace + counters left zero), fuse_step_gpu (GQA s2, causal bottom-right
#      seq_q < seq_kv s2, heads-fastest GQA causal; with / without the workspace), beside 2 `--warm-only`;
#   2. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 N 1024 / 4096 / 16384 causal and not: nofuse (three
#      launches), fuse_ws (the end-of-CTA conversion), fuse_step_ws, beside the default's, SDPA cuDNN and SDPA flash;
#      a table printed last.
#   run(command="TOTAL_S=250 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run19.sh 2>&1 | tee $OUT/run.log", timeout_s=280)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-250}
. benchmarks/hopper_fa3_bwd_common.sh
C6=128/1024/0,128/4096/0,128/1024/1,128/4096/1,128/16384/0,128/16384/1
SW=nofuse,fuse_ws,fuse_step_ws
K="(s16_fuse_step_ws and d128) or (zero_ws_gpu and step and not gqa_s3 and not d64 and not q_lt_kv) or fuse_step_gpu"
timeout "${TEST_TIMEOUT_S:-170}" python -m pytest -q -rf -p no:cacheprovider $T -k "$K" > "$OUT/pytest.log" 2>&1 &
tp=$!
wpids=()
for dt in bf16 fp16; do
  timeout "${TEST_TIMEOUT_S:-170}" python $D --warm-only --dtype $dt --cases "" --bwd-cases "$C6" \
    --bwd-switches $SW > "$OUT/warm-$dt.log" 2>&1 &
  wpids+=($!)
done
bad=0; wait $tp || bad=1
for w in "${wpids[@]}"; do wait "$w"; done
tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
grep -E '[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s; failed/hung: $bad"
for dt in bf16 fp16; do
  timeout $(( $(left) / 2 - 2 )) python $D --out "$OUT" --dtype $dt --cases "" --bwd-cases "$C6" \
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
names = ["nofuse", "fuse_ws", "fuse_step_ws"]
print("\n| dtype | causal | N | " + " | ".join(names) + " | default | cuDNN | flash | fuse_ws/nofuse | step/nofuse"
      " | step/cuDNN | best/cuDNN |")
for dt, c, n in sorted({k[:3] for k in t}):
    g = lambda i: med.get((dt, c, n, i), float("nan"))  # noqa: E731
    ours = [g(f"bwd:hopper_fa3[{x}]") for x in names]
    dflt = [v for k, v in med.items() if k[:3] == (dt, c, n) and k[3].startswith("bwd:default")]
    cu, fl = g("bwd:sdpa_cudnn"), g("bwd:sdpa_flash")
    print(f"| {dt} | {c} | {n} | " + " | ".join(f"{x:.0f}" for x in ours + [dflt[0] if dflt else float('nan'), cu, fl])
          + f" | {ours[1] / ours[0]:.3f} | {ours[2] / ours[0]:.3f} | {ours[2] / cu:.3f} | {max(ours) / cu:.3f} |")
PY
