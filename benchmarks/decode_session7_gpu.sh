#!/bin/bash
# Issue 12, session 7: ONE device call.  (1) the held-out decode set seed 11260807 (predictions frozen at d4e0544,
# committed in c1e1e63 before the call) under ncu; (2) the loop2 microbenchmarks (benchmarks/decode_mechanisms_gpu.py
# --sets loop2); (3) the packed-query (cu_seqlens_q) cases on the GPU; (4) the launch floor of this machine.
# Everything is written under $W and packed into $OUT/s7.tgz (the device returns at most 8 files).
# usage: OUT=... bash benchmarks/decode_session7_gpu.sh
set -u
OUT=${OUT:-/tmp/s7_out}; W=/tmp/s7; rm -rf "$W"; mkdir -p "$W" "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm --format=csv
  python3 -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
  ncu --version | tail -1; git log --oneline -1 2>/dev/null
  echo "command: OUT=\$OUT bash benchmarks/decode_session7_gpu.sh"; } > "$W/env.txt" 2>&1
cat "$W/env.txt"
timeout 105 python3 -m verification.suite_decode measure \
  --cases-json reports/h100-sxm/decode/seed11260807/decode_cases.json --out "$W/dr11260807" --timeout 100 \
  > "$W/heldout.log" 2>&1
echo "heldout rc=$? ($(el))"; tail -2 "$W/heldout.log"
timeout 95 python3 benchmarks/decode_mechanisms_gpu.py --sets loop2 --deadline-s 45 --out "$W/loop2.json" \
  > "$W/loop2.log" 2>&1
echo "loop2 rc=$? ($(el))"; tail -3 "$W/loop2.log"
timeout 40 python3 -m kernels.decode_testing --only varlen > "$W/gpu_varlen.log" 2>&1
echo "varlen rc=$? ($(el))"; cat "$W/gpu_varlen.log" | tail -10
timeout 25 python3 -m verification calibrate --hw h100-sxm --facts launch_gpu --out "$W/launch_gpu.calibration.json" \
  > "$W/launch.log" 2>&1
echo "launch rc=$? ($(el))"
tar czf "$OUT/s7.tgz" -C "$W" . && ls -la "$OUT"
cp "$W/heldout.log" "$W/loop2.log" "$OUT/" 2>/dev/null
echo "done ($(el))"
