#!/usr/bin/env bash
# One device call (issue 9 item 5): time EVERY candidate of the plan on the GPU, exhaustively, each behind the
# exactness gate.  The model's ranking is already frozen in the plan (made on the CPU: simpy is not needed here).
#   device run:  bash benchmarks/tune_gpu.sh [PLAN] [BUDGET_S]
# Writes under $OUT: measured.json (tune_rank.measured/1), measure.log, warm.log, env.txt.
set -o pipefail
PLAN=${1:-benchmarks/results/tune-rank-h100-plan.json}
BUDGET=${2:-270}
OUT=${OUT:-/tmp/tune_out}; mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv;
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
# 1. compile every candidate once, 12 processes in parallel (Triton's disk cache serves the timing process)
t0=$(date +%s)
pids=()
for i in $(seq 0 11); do python3 benchmarks/tune_rank.py warm --plan "$PLAN" --shard "$i/12" >> "$OUT/warm.log" 2>&1 & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
echo "warm: $(( $(date +%s) - t0 )) s"; tail -12 "$OUT/warm.log"
# 2. time every candidate, one process, problem after problem (each written as it finishes)
python3 benchmarks/tune_rank.py measure --plan "$PLAN" --out "$OUT/measured.json" --budget-s "$BUDGET" 2>&1 | tee "$OUT/measure.log"
