#!/bin/bash
# Issue 12, session 11, device call 2: the held-out check of the per-GPC DRAM share -- a seeded draw of 16 multi-wave
# decode launches (reports/h100-sxm/decode/tail-session11/heldout-seed11261735/cases.json, predicted by the model
# with and without the share and committed before this call), timed with CUDA graphs (benchmarks/decode_tail_gpu.py
# --cases); then the 8 x 128k S = 4 trace twice more (call 1's ran 1654 us where the benchmark's graph said 1397) and
# the 64 x 16k S = 1 trace again.  Everything under $W, packed into $OUT/s11b.tgz.
# usage: OUT=... bash benchmarks/decode_session11b_gpu.sh
set -u
SCRIPT=benchmarks/decode_session11b_gpu.sh WORK=/tmp/s11b; . benchmarks/decode_device_common.sh
timeout 200 python3 benchmarks/decode_tail_gpu.py --out "$W/heldout.json" --budget-s 100 \
  --cases reports/h100-sxm/decode/tail-session11/heldout-seed11261735/cases.json \
  --traces 8:131072:4,8:131072:4,64:16384:1,8:131072:2 > "$W/heldout.log" 2>&1
echo "heldout rc=$? ($(el))"
tar czf "$OUT/s11b.tgz" -C "$W" . && ls -la "$OUT"
tail -24 "$W/heldout.log"
echo "done ($(el))"
