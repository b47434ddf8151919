#!/usr/bin/env bash
# Third device call of session 13 (run13c): the adoption on the card -- d=64's default tiles 128 x 128 and
# HOPPER_FA3_BWD_FASTEST over every d=64 cell.  1. GPU tests: the registry / default paths, repeatability, the
# 128-row blocks (2 pytest processes) beside `--warm-only`; 2. timed, bf16: d=64 -- hopper_fa3 with 64-row blocks
# (the old default tiles) and 128-row blocks, hopper_ws, flash2, the default's backward, SDPA cuDNN, SDPA flash, 3
# rounds; d=128 -- the default's backward (unchanged), SDPA cuDNN, SDPA flash, 2 rounds; 3. fp16: 3 d=64 cells, 1 round.
#   run(command="TOTAL_S=150 bash benchmarks/hopper_fa3_bwd_run13c.sh", timeout_s=170)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-150}
. benchmarks/hopper_fa3_bwd_common.sh
F16=64/1024/0,64/16384/0,64/16384/1
KX=("registry_path or default_path or repeatable" "bm128")
pids=()
for i in 0 1; do
  timeout "${TEST_TIMEOUT_S:-80}" python -m pytest -q -rf -p no:cacheprovider $T -k "${KX[$i]}" > "$OUT/pt-$i.log" 2>&1 &
  pids+=($!)
done
wpids=()
for half in 0 1; do
  c64=$(echo "$G64" | cut -d, -f$((half * 3 + 1))-$((half * 3 + 3)))
  timeout "${TEST_TIMEOUT_S:-80}" python $D --warm-only --cases "" --bwd-cases "$c64" --bwd-switches registered,bm128 \
    --also hopper_ws,flash2 > "$OUT/warm-64-$half.log" 2>&1 &
  wpids+=($!)
done
timeout "${TEST_TIMEOUT_S:-80}" python $D --warm-only --cases "" --bwd-cases "$G128" --bwd-switches "" \
  > "$OUT/warm-128.log" 2>&1 &
wpids+=($!)
timeout "${TEST_TIMEOUT_S:-80}" python $D --warm-only --cases "" --bwd-cases "$F16" --bwd-switches registered,bm128 \
  --dtype fp16 > "$OUT/warm-f16.log" 2>&1 &
wpids+=($!)
for i in 0 1; do wait "${pids[$i]}"; done
for w in "${wpids[@]}"; do wait "$w"; done
tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
{ for i in 0 1; do echo "=== pytest $T -k '${KX[$i]}'"; cat "$OUT/pt-$i.log"; rm -f "$OUT/pt-$i.log"; done; } > "$OUT/pytest.log"
grep -E '^=== |[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
echo "tests done at $((SECONDS - T0)) s"
timeout $(( $(left) * 6 / 10 )) python $D --out "$OUT" --cases "" --bwd-cases "$G64" --bwd-switches registered,bm128 \
  --also hopper_ws,flash2 --rounds 3 --dtype bf16 > "$OUT/diag-64.log" 2>&1
echo "d64 rc=$? at $((SECONDS - T0)) s"
timeout $(( $(left) * 6 / 10 )) python $D --cases "" --bwd-cases "$G128" --bwd-switches "" --rounds 2 --dtype bf16 \
  > "$OUT/diag-128.log" 2>&1
echo "d128 rc=$? at $((SECONDS - T0)) s"
timeout $(( $(left) - 3 )) python $D --out "$OUT" --cases "" --bwd-cases "$F16" --bwd-switches registered,bm128 \
  --rounds 1 --dtype fp16 > "$OUT/diag-f16.log" 2>&1
echo "fp16 rc=$? at $((SECONDS - T0)) s"
grep -h error "$OUT"/diag-*.log | head -5
fa3_bwd_rounds --with-dtype "$OUT"/diag-64.log "$OUT"/diag-128.log "$OUT"/diag-f16.log
