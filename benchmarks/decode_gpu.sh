#!/bin/bash
# Issue 12, one device call: (1) decode exactness on the GPU, (2) ncu on the decode suite, (3) the benchmark.
# Everything under $OUT.  usage: OUT=... [TESTS_S=75 NCU_S=100 BENCH_S=120 BENCH_ARGS=...] bash benchmarks/decode_gpu.sh
set -u
OUT=${OUT:-/tmp/decode_out}; mkdir -p "$OUT/ncu"
export PYTHONPATH=. PYTHONUNBUFFERED=1
T0=$(date +%s)
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
  ncu --version | tail -1
  echo "command: OUT=\$OUT TESTS_S=${TESTS_S:-75} NCU_S=${NCU_S:-100} BENCH_S=${BENCH_S:-120} BENCH_ARGS='${BENCH_ARGS:-}' bash benchmarks/decode_gpu.sh"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout ${TESTS_S:-75} python3 -m kernels.decode_testing > "$OUT/gpu_tests.log" 2>&1; echo "tests rc=$? ($(( $(date +%s) - T0 )) s)"
grep -E "^(FAIL|[0-9]+ passed)" "$OUT/gpu_tests.log" | head -20
timeout ${NCU_S:-100} python3 -m verification.suite_decode measure --out "$OUT/ncu" --timeout $(( ${NCU_S:-100} - 10 )) > "$OUT/ncu_run.log" 2>&1
echo "ncu rc=$? ($(( $(date +%s) - T0 )) s)"; tail -2 "$OUT/ncu_run.log"
timeout $(( ${BENCH_S:-120} + 40 )) python3 benchmarks/decode.py --out "$OUT/decode-bench.json" --budget-s ${BENCH_S:-120} ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
echo "bench rc=$? ($(( $(date +%s) - T0 )) s)"; grep -E "TB/s|budget|wrote|Error" "$OUT/bench.log" | tail -22
rm -f "$OUT/ncu/decode_ncu.log"  # the .all file keeps ncu's whole output
