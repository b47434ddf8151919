#!/bin/bash
# Issue 12, session 13, device call 1: (1) GPU exactness of the combine folded into the split launch
# (`python -m kernels.decode_testing --fused`: every kernel test case, DecodeSchedule.combine_fused on); (2) decode over
# caches not in the L2 (`benchmarks/decode_cold.py`, n cache copies per graph): the combine as a programmatic dependent
# launch (session 12's default) vs fused, a split sweep of each, paged 16 / 64 at num_stages 3 and 4 with each, SDPA
# cuDNN / flash in the same run.   $OUT/s13.tgz.   usage: OUT=... bash benchmarks/decode_session13_gpu.sh
set -u
SCRIPT=benchmarks/decode_session13_gpu.sh WORK=/tmp/s13; . benchmarks/decode_device_common.sh
timeout 100 python3 -m kernels.decode_testing --fused > "$W/exact-fused.log" 2>&1
echo "exactness (fused) rc=$? ($(el))"; tail -1 "$W/exact-fused.log"; grep FAIL "$W/exact-fused.log" | head -5
timeout 120 python3 benchmarks/decode_cold.py --out "$W/cold.json" --budget-s 80 --combine pdl,fused \
  --splits 2,4,8,16,32 --pages 16,64 --paged-stages 3,4 \
  --shapes 1x8192,8x1024,1x1024,1x32768,8x8192,64x1024 > "$W/cold.log" 2>&1
echo "cold rc=$? ($(el))"
tar czf "$OUT/s13.tgz" -C "$W" . && ls -la "$OUT"
grep -v "^|" "$W/cold.log" | grep -i "fail\|error\|budget" | head -5
tail -9 "$W/cold.log"
echo "done ($(el))"
