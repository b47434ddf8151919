# Sourced by the hopper_fa3 backward device scripts (benchmarks/hopper_fa3_bwd_run*.sh) from the repository root,
# after they set OUT and TOTAL_S: the environment, the clock (T0; `left` = seconds of TOTAL_S left), the test file T
# and diag script D, the 12-cell grid (G128, G64: d/N/causal), and $OUT/env.txt (date, card, versions); the
# functions below (the tests + timing of one call, the summary table, the rounds' listing) that run13b-run24
# share.
export PYTHONPATH=. PYTHONUNBUFFERED=1
T0=$SECONDS
left() { echo $(( TOTAL_S - (SECONDS - T0) )); }
T=tests/test_kernels_hopper_gluon_bwd.py
D=benchmarks/hopper_fa3_bwd_diag.py
G128=128/1024/0,128/4096/0,128/16384/0,128/1024/1,128/4096/1,128/16384/1
G64=64/1024/0,64/4096/0,64/16384/0,64/1024/1,64/4096/1,64/16384/1
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv 2>&1
  python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# fa3_bwd_tests_and_timing K CASES SWITCHES DTYPES TEST_TIMEOUT_S ROUNDS [STOP_ON_FAIL]: the GPU tests of T selected by
# `-k K` (-> $OUT/pytest.log; FA3_PYTEST_ARGS, e.g. "-n 4", added to pytest's arguments) beside one `--warm-only` per dtype (compiles every kernel timed later), their summary,
# then the whole backward timed per dtype in order (D --bwd-cases CASES --bwd-switches SWITCHES, ROUNDS rounds
# alternating -> $OUT/diag-<dtype>.log and fa3_bwd_diag_<dtype>.json), each dtype given what is left of TOTAL_S over
# the dtypes left, less 2 s.  STOP_ON_FAIL=1: no timing when a test failed or the tests hit their timeout.
fa3_bwd_tests_and_timing() {
  local k=$1 cases=$2 sw=$3 dtypes=$4 tto=$5 rounds=$6 stop=${7:-0} dt w tp bad n
  timeout "$tto" python -m pytest -q -rf -p no:cacheprovider ${FA3_PYTEST_ARGS:-} $T -k "$k" > "$OUT/pytest.log" 2>&1 &
  tp=$!
  local wpids=()
  for dt in ${dtypes//,/ }; do
    timeout "$tto" python $D --warm-only --dtype $dt --cases "" --bwd-cases "$cases" \
      --bwd-switches $sw > "$OUT/warm-$dt.log" 2>&1 &
    wpids+=($!)
  done
  bad=0; wait $tp || bad=1
  for w in "${wpids[@]}"; do wait "$w"; done
  tail -q -n1 "$OUT"/warm-*.log; rm -f "$OUT"/warm-*.log
  grep -E '[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$OUT/pytest.log"
  echo "tests done at $((SECONDS - T0)) s; failed/hung: $bad"
  if [ "$stop" = 1 ] && [ "$bad" -ne 0 ]; then echo "failed or hung in the tests: no timing"; return 1; fi
  n=$(echo ${dtypes//,/ } | wc -w)
  for dt in ${dtypes//,/ }; do
    timeout $(( $(left) / n - 2 )) python $D --out "$OUT" --dtype $dt --cases "" --bwd-cases "$cases" \
      --bwd-switches $sw --rounds "$rounds" > "$OUT/diag-$dt.log" 2>&1
    echo "$dt rc=$? at $((SECONDS - T0)) s"
    n=$((n - 1))
  done
}

# fa3_bwd_summary NAMES COLUMNS RATIOS DTYPES: from $OUT/diag-<dtype>.log, every (dtype, causal, N, impl)'s median
# TFLOP/s and rounds, then a table: the switches NAMES, the COLUMNS of the same call (default, cuDNN, flash) and RATIOS
# of medians "a/b" (+ best) -- benchmarks/hopper_fa3_bwd_summary.py table.  Lists are comma-separated.
fa3_bwd_summary() {
  local logs=() dt
  for dt in ${4//,/ }; do logs+=("$OUT/diag-$dt.log"); done
  python benchmarks/hopper_fa3_bwd_summary.py table "$1" "$2" "$3" "${logs[@]}"
}

# fa3_bwd_rounds LOG...: per (d, causal, N, impl) the rounds' TFLOP/s (ms / GB/s for the --pieces rows).
fa3_bwd_rounds() {
  python benchmarks/hopper_fa3_bwd_summary.py rounds "$@"
}
