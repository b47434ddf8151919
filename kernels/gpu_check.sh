#!/bin/bash
# One device call, several stages: bash kernels/gpu_check.sh env tests tune bench
# Results go to $OUT (logs, JSON); the last lines printed are a short summary.
set -u
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=.:${PYTHONPATH:-} PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  if python3 -c "import pytest" 2>/dev/null; then W=".whl/pytest_xdist-*.whl .whl/execnet-*.whl"; else
    W=".whl/pytest-*.whl .whl/pytest_xdist-*.whl .whl/execnet-*.whl .whl/pluggy-*.whl .whl/iniconfig-*.whl .whl/packaging-*.whl"; fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $W \
    && export PYTHONPATH=.:/tmp/site
fi
for stage in "$@"; do
  case $stage in
  env)
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/env.txt"
    python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/env.txt" ;;
  tests)
    timeout ${TESTS_TIMEOUT:-240} python3 -m pytest tests/test_kernels_forward.py tests/test_kernels_backward.py \
      tests/test_kernels_api.py tests/test_kernels_gpu.py -q -n ${NPROC:-8} -p no:warnings -p no:cacheprovider -rfE \
      --durations=5 > "$OUT/pytest.log" 2>&1
    echo "pytest rc=$?"; grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -30; tail -3 "$OUT/pytest.log" ;;
  tune)
    timeout ${TUNE_TIMEOUT:-240} python3 benchmarks/attention.py --tune --seqs 4096 --dtypes bf16 --head-dims 64,128 \
      --causal both --warmup-ms 5 --rep-ms 25 --log "$OUT/tune.jsonl" --out "$OUT/tune.json" --force > "$OUT/tune.log" 2>&1
    echo "tune rc=$?"
    python3 - "$OUT/tune.jsonl" <<'PY'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if not r.get("tflops"):
        continue
    key = (r["pass"], r["head_dim"], r["causal"])
    if key not in best or r["tflops"] > best[key]["tflops"]:
        best[key] = r
for key, r in sorted(best.items()):
    s = r["schedule"]
    print(f"best {key}: {s['block_m']}x{s['block_n']} w{s['num_warps']} s{s['num_stages']} "
          f"{r['tflops']:.1f} TFLOP/s vs sdpa_flash {r['sdpa_flash_tflops']:.1f}")
PY
    ;;
  bench)
    timeout ${BENCH_TIMEOUT:-500} python3 benchmarks/attention.py --time-budget-s ${BENCH_BUDGET:-420} \
      --log "$OUT/bench.jsonl" --out "$OUT/bench.json" --force ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
    echo "bench rc=$?"; grep -E "GPT-2|budget|wrote" "$OUT/bench.log"; tail -5 "$OUT/bench.log" ;;
  esac
done
