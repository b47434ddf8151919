#!/usr/bin/env bash
# One device call: the SM clock the card runs measured attention launches at (notes/fidelity.md, eleventh session,
# "the clock under load").  The live report's launches are 10-15 % too fast in the model at every size (signed
# median), 75 % of them too fast; the model turns cycles into seconds at the calibration's clocks (1.97 GHz, MMA
# tile loops 1.80 GHz), measured on microbenchmarks.  This call re-runs measured random cases (their records'
# problem and schedule) under ncu with the SM clock counters beside the kernel time:
#   pass "full":  the metrics `verification measure` collects + the clock counters (what a record would hold)
#   pass "clock": the clock counters and the kernel time alone (one replay pass)
# Cases: CASES_PER_LAUNCH (default 3) records per launch kind, kernel time < MAX_CASE_MS, no local memory,
# drawn with a fixed seed from every random set in the tree (benchmarks/sm_clock_cases.py).
#   run(command="bash benchmarks/sm_clock_gpu.sh", timeout_s=420)
set -uo pipefail
: "${OUT:?set OUT}"
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.sm,power.limit,temperature.gpu --format=csv \
  | tee "$OUT/env.txt"
date -u | tee -a "$OUT/env.txt"
W=$(mktemp -d)
python3 benchmarks/sm_clock_cases.py --out "$W/specs.json" --per-launch "${CASES_PER_LAUNCH:-3}" \
  --max-case-ms "${MAX_CASE_MS:-20}" | tee "$OUT/cases.txt"
# every case's kernels compiled first, in parallel (Triton's on-disk cache), so the ncu passes only load them
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
for i, spec in enumerate(json.load(open(f"{w}/specs.json"))):
    json.dump([spec], open(f"{w}/one_{i:03d}.json", "w"))
PY
t0=$(date +%s)
for f in "$W"/one_*.json; do
  timeout 200 python3 -m verification.caserunner --spec "$f" --mode ncu --out "$f.warm.jsonl" > "$f.warm.log" 2>&1 &
done
wait
echo "warm-up $(( $(date +%s) - t0 )) s: $(cat "$W"/*.warm.jsonl 2>/dev/null | grep -c '"ok": true') cases ran"
CLK=sm__cycles_elapsed.avg.per_second,sm__cycles_elapsed.max,sm__cycles_active.avg,gpc__cycles_elapsed.avg.per_second,dram__cycles_elapsed.avg.per_second
FULL=$(python3 -c "from verification.ncu import METRICS; print(','.join(METRICS))")
KRE='regex:^_(flash1|flash2|naive|hopper|hopper_fa3|hopper_ws)_'
t0=$(date +%s)
timeout 150 ncu --csv --print-units base --clock-control none --metrics "$FULL,$CLK" -k "$KRE" --profile-from-start off \
  python3 -m verification.caserunner --spec "$W/specs.json" --mode ncu --out "$OUT/full.runner.jsonl" \
  > "$OUT/full.csv" 2> "$OUT/full.err"
echo "pass full rc $? $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
timeout 120 ncu --csv --print-units base --clock-control none --metrics "gpu__time_duration.sum,$CLK" -k "$KRE" \
  --profile-from-start off python3 -m verification.caserunner --spec "$W/specs.json" --mode ncu \
  --out "$OUT/clock.runner.jsonl" > "$OUT/clock.csv" 2> "$OUT/clock.err"
echo "pass clock rc $? $(( $(date +%s) - t0 )) s"
cp "$W/specs.json" "$OUT/specs.json"
nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv | tee -a "$OUT/env.txt"
python3 benchmarks/sm_clock_cases.py --summarise "$OUT" | tee "$OUT/summary.txt"
cd "$OUT" && tar -czf sm_clock.tar.gz *.csv *.jsonl *.txt *.err specs.json && rm -f *.csv *.jsonl *.err specs.json
ls -la "$OUT"
