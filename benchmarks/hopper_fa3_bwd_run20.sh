#!/usr/bin/env bash
# Session 16, after run19 (per-step FUSE_STEP exact but 0.76-0.91x; FA3_BWD_DQ_FUSE widened to bf16): the folded
# conversion per CHUNK of Q blocks (one full wait + GPU-scope atomic per chunk instead of per step).
#   1. GPU exactness (TEST_TIMEOUT_S 45): s16_fuse_chunk4_ws on 4 d=128 cases (bf16), fuse_step_gpu chunks of 3 (a
#      partial last chunk) with the workspace (bf16), the registered bf16 fold (
#      registry_path own_launch-full), beside a `--warm-only`;
#   2. timed, bf16, ROUNDS rounds alternating, d=128 N 1024 / 4096 causal and not: nofuse (three launches),
#      fuse_chunk4_ws, fuse_chunk16_ws, the default's (= fuse_ws at non-causal since run19), SDPA cuDNN, SDPA flash.
#   run(command="TOTAL_S=72 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run20.sh 2>&1 | tee $OUT/run.log", timeout_s=95)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-100}
. benchmarks/hopper_fa3_bwd_common.sh
C4=128/1024/0,128/4096/0,128/1024/1,128/4096/1
SW=nofuse,fuse_chunk4_ws,fuse_chunk16_ws
K="(s16_fuse_chunk4_ws and bf16 and (d128_full- or d128_causal_tl- or one_block or q_gt_kv)) or (fuse_step_gpu and bf16 and True and chunk3) or (registry_path and own_launch and full)"
timeout "${TEST_TIMEOUT_S:-45}" python -m pytest -q -rf -p no:cacheprovider $T -k "$K" > "$OUT/pytest.log" 2>&1 &
tp=$!
timeout "${TEST_TIMEOUT_S:-45}" python $D --warm-only --dtype bf16 --cases "" --bwd-cases "$C4" \
  --bwd-switches $SW > "$OUT/warm-bf16.log" 2>&1 &
wp=$!
bad=0; wait $tp || bad=1
wait $wp
tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
grep -E '[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s; failed/hung: $bad"
timeout $(( $(left) - 3 )) python $D --out "$OUT" --dtype bf16 --cases "" --bwd-cases "$C4" \
  --bwd-switches $SW --rounds "${ROUNDS:-3}" > "$OUT/diag-bf16.log" 2>&1
echo "bf16 rc=$? at $((SECONDS - T0)) s"
python - "$OUT"/diag-bf16.log <<'PY'
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
names = ["nofuse", "fuse_chunk4_ws", "fuse_chunk16_ws"]
print("\n| dtype | causal | N | " + " | ".join(names) + " | default | cuDNN | flash | c4/nofuse | c16/nofuse | best/cuDNN |")
for dt, c, n in sorted({k[:3] for k in t}):
    g = lambda i: med.get((dt, c, n, i), float("nan"))  # noqa: E731
    ours = [g(f"bwd:hopper_fa3[{x}]") for x in names]
    dflt = [v for k, v in med.items() if k[:3] == (dt, c, n) and k[3].startswith("bwd:default")]
    cu, fl = g("bwd:sdpa_cudnn"), g("bwd:sdpa_flash")
    d0 = dflt[0] if dflt else float("nan")
    print(f"| {dt} | {c} | {n} | " + " | ".join(f"{x:.0f}" for x in ours + [d0, cu, fl])
          + f" | {ours[1] / ours[0]:.3f} | {ours[2] / ours[0]:.3f} | {max(ours + [d0]) / cu:.3f} |")
PY
