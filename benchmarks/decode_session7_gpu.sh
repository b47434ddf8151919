#!/bin/bash
# Issue 12, session 7: ONE device call.  (1) the held-out decode set seed 11260807 (predictions frozen at d4e0544,
# committed in c1e1e63 before the call) under ncu; (2) the loop2 microbenchmarks (benchmarks/decode_mechanisms_gpu.py
# --sets loop2); (3) the packed-query (cu_seqlens_q) cases on the GPU; (4) the launch floor of this machine.
# Everything is written under $W and packed into $OUT/s7.tgz (the device returns at most 8 files).
# usage: OUT=... bash benchmarks/decode_session7_gpu.sh
set -u
SCRIPT=benchmarks/decode_session7_gpu.sh WORK=/tmp/s7; . benchmarks/decode_device_common.sh
measure_heldout 11260807 105
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
