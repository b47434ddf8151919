#!/bin/bash
# Issue 12, session 11, device call 4: decode over caches that do not stay in the L2 (benchmarks/decode_cold.py: each
# timed graph runs n steps over n cache copies, >= 400 MB together; ours contiguous auto + split sweep, paged 16 / 64,
# SDPA cuDNN / flash in the same run) on the small shapes, where benchmarks/decode.py's one replayed cache stays in
# the L2.  $OUT/s11d.tgz.   usage: OUT=... bash benchmarks/decode_session11d_gpu.sh
set -u
SCRIPT=benchmarks/decode_session11d_gpu.sh WORK=/tmp/s11d; . benchmarks/decode_device_common.sh
timeout 200 python3 benchmarks/decode_cold.py --out "$W/cold.json" --budget-s 120 > "$W/cold.log" 2>&1
echo "cold rc=$? ($(el))"
tar czf "$OUT/s11d.tgz" -C "$W" . && ls -la "$OUT"
tail -12 "$W/cold.log"
echo "done ($(el))"
