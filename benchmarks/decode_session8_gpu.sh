#!/bin/bash
# Issue 12, session 8: ONE device call -- the held-out decode set seed 11260935 (predictions frozen in a clean
# worktree of the model commit, committed before the call) under ncu, nothing else.
# Everything is written under $W and packed into $OUT/s8.tgz (the device returns at most 8 files).
# usage: OUT=... bash benchmarks/decode_session8_gpu.sh
set -u
OUT=${OUT:-/tmp/s8_out}; W=/tmp/s8; rm -rf "$W"; mkdir -p "$W" "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm --format=csv
  python3 -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
  ncu --version | tail -1; git log --oneline -1 2>/dev/null
  echo "command: OUT=\$OUT bash benchmarks/decode_session8_gpu.sh"; } > "$W/env.txt" 2>&1
cat "$W/env.txt"
timeout 170 python3 -m verification.suite_decode measure \
  --cases-json reports/h100-sxm/decode/seed11260935/decode_cases.json --out "$W/dr11260935" --timeout 165 \
  > "$W/heldout.log" 2>&1
echo "heldout rc=$? ($(el))"; tail -3 "$W/heldout.log"
tar czf "$OUT/s8.tgz" -C "$W" . && ls -la "$OUT"
cp "$W/heldout.log" "$OUT/" 2>/dev/null
echo "done ($(el))"
