#!/bin/bash
# Issue 12, session 11, device call 6: decode benchmark run 5 -- benchmarks/decode.py as run 4 (every shape, split
# sweep, paged 16 / 64 with and without prefetch, SDPA cuDNN and flash in the same run) but each timed graph now runs
# n steps over n cache copies (>= 400 MB together), so the small caches are read from DRAM, not the L2.
# $OUT/s11f.tgz.   usage: OUT=... bash benchmarks/decode_session11f_gpu.sh
set -u
SCRIPT=benchmarks/decode_session11f_gpu.sh WORK=/tmp/s11f; . benchmarks/decode_device_common.sh
timeout 170 python3 benchmarks/decode.py --out "$W/decode-bench.json" --budget-s 90 --flex-shapes= \
  --paged-flex-shapes= --eager-shapes= --tune-shapes= --sdpa=sdpa_cudnn,sdpa_flash --paged-sweep-shapes= \
  --rep-ms=20 --rotate-mb=400 > "$W/bench.log" 2>&1
echo "bench rc=$? ($(el))"
tar czf "$OUT/s11f.tgz" -C "$W" . && ls -la "$OUT"
tail -16 "$W/bench.log"
echo "done ($(el))"
