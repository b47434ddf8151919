#!/usr/bin/env bash
# One device call that measures a held-out random set (notes/fidelity.md, "How set C was run"), with the
# kernels compiled first in parallel: random cases with kilobytes of spills per thread take ptxas minutes each
# (set E: 5-15 min on a loaded 2-core VM), and `measure` compiles case after case.  Steps:
#   1. every case's pass run once, all cases at once (python -m verification.caserunner, no profiler): Triton's
#      on-disk cache then holds every kernel, so the measuring processes below only load them;
#   2. this machine's host floor (calibrate --facts host_pass), which the report applies to the frozen predictions;
#   3. measure (timing pass, then ncu) into a bundle.
#   SEED=5126 SET=E MODEL=<frozen commit> SKIP='r5126_013' run(command="bash benchmarks/random_set_gpu.sh")
set -uo pipefail
: "${OUT:?set OUT}" "${SEED:?}" "${SET:?}" "${MODEL:?}"
N=${N:-16}; SKIP=${SKIP:-}
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
W=$(mktemp -d)
python3 - "$N" "$SEED" "$W" "$SKIP" > "$W/names.txt" <<'EOF'
import json, sys
from verification.sampling import draw
n, seed, w, skip = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], set(filter(None, sys.argv[4].split(",")))
for c in draw(n, seed).cases:
    if c.name in skip:
        continue
    json.dump([c.to_spec()], open(f"{w}/{c.name}.json", "w"))
    print(c.name)
EOF
t0=$(date +%s)
for c in $(cat "$W/names.txt"); do
  timeout "${WARM_TIMEOUT_S:-240}" python3 -m verification.caserunner --spec "$W/$c.json" --mode ncu --out "$W/$c.warm.jsonl" \
    > "$W/$c.warm.log" 2>&1 &
done
wait
echo "warm-up (parallel compile) $(( $(date +%s) - t0 )) s: $(cat "$W"/*.warm.jsonl 2>/dev/null | grep -c '"ok": true') of $(wc -l < "$W/names.txt") cases ran"
timeout "${HOST_PASS_TIMEOUT_S:-240}" python3 -m verification calibrate --hw h100-sxm --facts host_pass --out "$OUT/host_pass.calibration.json" 2>&1 | tail -2
timeout "${MEASURE_TIMEOUT_S:-330}" python3 -m verification measure --random "$N" --seed "$SEED" --set "$SET" --repeats 3 \
  --model-commit "$MODEL" --hw h100-sxm --ncu-timeout "${NCU_TIMEOUT_S:-170}" --time-timeout "${TIME_TIMEOUT_S:-120}" \
  --data-dir '/tmp/vdata/{gpu}/random/{set}' --bundle "$OUT/random_$SET.tar.gz" --cases $(cat "$W/names.txt") \
  2>&1 | tee "$OUT/measure.log" | tail -25
# a measure stopped by its time limit writes no records (they are written in its last ncu pass): carry its work
# folder back instead; `python -m verification.recover --workdir ...` builds the records of the passes that finished
if [ ! -f "$OUT/random_$SET.tar.gz" ] && ls -d /tmp/vmeasure-* > /dev/null 2>&1; then
  tar -czf "$OUT/vmeasure_$SET.tgz" /tmp/vmeasure-* && echo "measure stopped early: its work folder is $OUT/vmeasure_$SET.tgz (python -m verification.recover)"
fi
