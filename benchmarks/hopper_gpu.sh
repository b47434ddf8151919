#!/usr/bin/env bash
# One device call for issue 9 (hopper forward/backward), in stages that share one time budget (TOTAL_S):
#   1. nothing timed yet: the GPU exactness tests (TESTS, PYTEST_K -- or TEST_SPLITS, ';'-separated -k expressions run
#      as parallel pytest processes; their own processes under TEST_TIMEOUT_S, so a
#      variant that hangs costs only that) beside benchmarks/hopper_warm.py (WARM_ARGS: compiles what is timed later);
#   2. benchmarks/hopper_bench.py BENCH_ARGS (skipped when SKIP_BENCH_ON_HANG=1 and the tests ran into their timeout) (exactness gate, then TFLOP/s beside SDPA flash and cuDNN); its case
#      budget is what is left after the reserves of the later stages (BENCH2_RESERVE_S, NCU_RESERVE_S);
#   3. BENCH2_ARGS (optional): a second hopper_bench.py process for a risky variant (e.g. --ws-on-gpu), under its own
#      timeout, skipped when the tests of stage 1 ran into their timeout (a hang);
#   4. ncu (NCU_RANGE_ARGS: benchmarks/hopper_ncu.py --range ...): default cache control, --clock-control none, the
#      sections below plus hopper_ncu.EXTRA_METRICS that this ncu lists (--query-metrics); report, raw csv, summary.
# Everything lands in $OUT/bundle.tgz (env, logs, JSON, ncu report/csv/summary, compiled facts); $OUT/summary.txt
# holds the tables, printed last.
#
#   run(command="TOTAL_S=400 BENCH_ARGS='...' bash benchmarks/hopper_gpu.sh", timeout_s=420)   ($OUT: the device tool)
set -uo pipefail
set -f  # the ARGS may hold JSON with brackets: no globbing
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
T0=$SECONDS
TOTAL_S=${TOTAL_S:-400}
left() { echo $(( TOTAL_S - (SECONDS - T0) )); }
R=$OUT/run; mkdir -p "$R"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo 'no git history on this machine')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv 2>&1 || true
  python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
  ncu --version 2>&1 | tail -1
} > "$R/env.txt" 2>&1
cat "$R/env.txt"
# --- 1. exactness tests beside the warm-up (nothing timed)
tests_rc=none
test_pids=()
if [ -n "${TESTS:-}" ] && [ -n "${TEST_SPLITS:-}" ]; then  # ';'-separated -k expressions, one pytest process each
  IFS=';' read -ra splits <<< "$TEST_SPLITS"
  for i in "${!splits[@]}"; do
    timeout "${TEST_TIMEOUT_S:-150}" python -m pytest -q -rxXf -p no:cacheprovider ${TESTS} -k "${splits[$i]}" \
      > "$R/pytest-$i.log" 2>&1 &
    test_pids+=($!)
  done
elif [ -n "${TESTS:-}" ]; then
  timeout "${TEST_TIMEOUT_S:-150}" python -m pytest -q -rxXf -p no:cacheprovider ${TESTS} ${PYTEST_K:+-k "$PYTEST_K"} \
    > "$R/pytest.log" 2>&1 &
  test_pids+=($!)
fi
if [ -n "${WARM_ARGS:-}" ]; then
  timeout "${WARM_TIMEOUT_S:-120}" python benchmarks/hopper_warm.py ${WARM_ARGS} > "$R/warm.log" 2>&1
  echo "warm rc=$? $(tail -1 "$R/warm.log"); failed: $(grep -c FAILED "$R/warm.log") at $((SECONDS - T0)) s"
fi
if [ "${#test_pids[@]}" -gt 0 ]; then
  tests_rc=0
  for pid in "${test_pids[@]}"; do
    wait "$pid"; rc=$?
    if [ "$rc" = 124 ] || { [ "$rc" != 0 ] && [ "$tests_rc" != 124 ]; }; then tests_rc=$rc; fi
  done
  if [ -n "${TEST_SPLITS:-}" ]; then  # (set -f: no globbing -- the split logs by index)
    for i in "${!splits[@]}"; do echo "=== pytest -k '${splits[$i]}'"; cat "$R/pytest-$i.log"; done > "$R/pytest.log"
    for i in "${!splits[@]}"; do grep -h -E '[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$R/pytest-$i.log"; done
    for i in "${!splits[@]}"; do rm -f "$R/pytest-$i.log"; done
  fi
  echo "tests rc=$tests_rc at $((SECONDS - T0)) s: $(tail -1 "$R/pytest.log")"
fi
# --- 2. the benchmark
reserve=$(( ${NCU_RESERVE_S:-0} + ${BENCH2_RESERVE_S:-0} ))
budget=$(( $(left) - reserve - 30 ))
if [ "$tests_rc" = 124 ] && [ "${SKIP_BENCH_ON_HANG:-0}" = 1 ]; then
  echo "bench skipped: the tests ran into their timeout (a hang?)"
elif [ -n "${BENCH_ARGS:-}" ] && [ "$budget" -gt 10 ]; then
  timeout $(( budget + 30 )) python benchmarks/hopper_bench.py --out "$R" --budget-s "$budget" ${BENCH_ARGS} \
    > "$R/hopper_bench.log" 2>&1
  echo "bench rc=$? (budget $budget s) at $((SECONDS - T0)) s"
fi
# --- 3. the risky variant's benchmark, its own process
if [ -n "${BENCH2_ARGS:-}" ]; then
  b2=$(( $(left) - ${NCU_RESERVE_S:-0} - 15 ))
  if [ "$tests_rc" = 124 ]; then echo "bench2 skipped: the tests ran into their timeout (a hang?)"
  elif [ "$b2" -gt 10 ]; then
    timeout $(( b2 + 15 )) python benchmarks/hopper_bench.py --out "$R" --budget-s "$b2" --json-name hopper_bench2.json \
      ${BENCH2_ARGS} > "$R/hopper_bench2.log" 2>&1
    echo "bench2 rc=$? (budget $b2 s) at $((SECONDS - T0)) s"
  fi
fi
# --- 4. ncu
if [ -n "${NCU_RANGE_ARGS:-}" ] && [ "$(left)" -gt 20 ]; then
  ncu --query-metrics > "$R/ncu_query_metrics.txt" 2>&1
  metrics=""
  for m in $(python -c "import sys; sys.path.insert(0, 'benchmarks'); import hopper_ncu; print(' '.join(hopper_ncu.EXTRA_METRICS))"); do
    if awk '{print $1}' "$R/ncu_query_metrics.txt" | grep -qx "${m%%.*}"; then metrics="${metrics:+$metrics,}$m"; fi
  done
  if [ "${NCU_EXTRA:-1}" = 0 ]; then metrics=""; fi  # run4: the try with them left no report (sections only)
  echo "ncu extra metrics: $metrics" | tee "$R/ncu_extra_metrics.txt"
  sections="--section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis"
  profile() {  # $1: extra metrics (may be empty)
    timeout $(( $(left) - 10 )) ncu --profile-from-start off --clock-control none $sections ${1:+--metrics $1} \
      -f -o "$R/ncu_prof" python benchmarks/hopper_ncu.py --range --facts "$R/compiled_facts.json" ${NCU_RANGE_ARGS} \
      > "$R/ncu_stdout.txt" 2> "$R/ncu.err"
  }
  profile "$metrics"; rc=$?
  if [ ! -s "$R/ncu_prof.ncu-rep" ] && [ -n "$metrics" ] && [ "$(left)" -gt 40 ]; then
    echo "ncu rc=$rc without a report: again without the extra metrics"; tail -3 "$R/ncu.err"
    cp "$R/ncu.err" "$R/ncu_try1.err"; cp "$R/ncu_stdout.txt" "$R/ncu_try1_stdout.txt"  # why the first try failed
    profile ""; rc=$?
  fi
  echo "ncu rc=$rc at $((SECONDS - T0)) s"; tail -2 "$R/ncu.err"
  if [ -s "$R/ncu_prof.ncu-rep" ]; then
    ncu -i "$R/ncu_prof.ncu-rep" --csv --page raw > "$R/ncu_raw.csv" 2>> "$R/ncu.err"
    python benchmarks/hopper_ncu.py --summarize "$R/ncu_raw.csv" --label-file "$R/ncu_stdout.txt" \
      > "$R/ncu_summary.txt" 2>&1
  fi
fi
# --- bundle and tables
{
  echo "--- pytest"; tail -25 "$R/pytest.log" 2>/dev/null
  for f in hopper_bench.log hopper_bench2.log; do
    [ -f "$R/$f" ] && { echo "--- $f"; sed -n '/^| pass/,$p' "$R/$f"; }
  done
  echo "--- ncu ranges"; grep '^range ' "$R/ncu_stdout.txt" 2>/dev/null
  echo "--- ncu"; sed -n '/^| kernel/,$p' "$R/ncu_summary.txt" 2>/dev/null
  echo "--- total $((SECONDS - T0)) s"
} > "$OUT/summary.txt"
tar -czf "$OUT/bundle.tgz" -C "$OUT" run && rm -rf "$R"  # at most 8 files come back
cat "$OUT/summary.txt"
