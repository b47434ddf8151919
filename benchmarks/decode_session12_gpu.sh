#!/bin/bash
# Issue 12, session 12, device call 1: (1) GPU exactness of the combine as a programmatic dependent launch
# (`python -m kernels.decode_testing --pdl`: every kernel test case, combine_pdl on); (2) decode over caches not in the
# L2 (`benchmarks/decode_cold.py`, n cache copies per graph) with the session-12 split rule (estimate_time_graph_s),
# combine_pdl off and on, a split sweep, paged 16, SDPA cuDNN / flash in the same run.
# $OUT/s12.tgz.   usage: OUT=... bash benchmarks/decode_session12_gpu.sh
set -u
SCRIPT=benchmarks/decode_session12_gpu.sh WORK=/tmp/s12; . benchmarks/decode_device_common.sh
timeout 110 python3 -m kernels.decode_testing --pdl > "$W/exact-pdl.log" 2>&1
echo "exactness (pdl) rc=$? ($(el))"; tail -2 "$W/exact-pdl.log"; grep -c PASS "$W/exact-pdl.log"; grep FAIL "$W/exact-pdl.log" | head -5
timeout 150 python3 benchmarks/decode_cold.py --out "$W/cold.json" --budget-s 110 --pdl 0,1 --splits 2,4,16,32 \
  --pages 16 --shapes 1x1024,1x8192,1x16384,1x32768,8x1024,8x8192,64x1024,64x8192 > "$W/cold.log" 2>&1
echo "cold rc=$? ($(el))"
tar czf "$OUT/s12.tgz" -C "$W" . && ls -la "$OUT"
tail -12 "$W/cold.log"
echo "done ($(el))"
