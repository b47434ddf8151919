#!/bin/bash
# Issue 12, session 15, device call 2: kernels.decode's default now weighs the 128-key tile at the rule's own split
# count (`kernels.decode_kv.TILE_CANDIDATES`: picked at batch 64 and 8 x 1k paged) and loads a paged cache's table
# entries one tile ahead (`PAGED_PREFETCH_DEFAULT`).  (1) GPU exactness: `python -m kernels.decode_testing` (every
# kernel test case through the default, plus 128-key-tile cases at the benchmark's heads, paged with prefetch, one
# and three splits); (2) the new default against the session-14 default (s14pf: with page_prefetch on, as run 8's goal
# rows; s14: the old public default on paged caches, prefetch off) over rotated caches, SDPA cuDNN in the same
# process, every row gated (`benchmarks/decode_splitd_ab.py`).  Predictions of every row committed before the call:
# reports/h100-sxm/decode/s15b-predictions.json.   $OUT/s15b.tgz.   usage: OUT=... bash benchmarks/decode_session15b_gpu.sh
set -u
SCRIPT=benchmarks/decode_session15b_gpu.sh WORK=/tmp/s15b; . benchmarks/decode_device_common.sh
timeout 70 python3 -m kernels.decode_testing > "$W/exact.log" 2>&1
echo "exactness rc=$? ($(el))"; tail -1 "$W/exact.log"; grep FAIL "$W/exact.log" | head -5
timeout 120 python3 benchmarks/decode_splitd_ab.py --out "$W/ab.json" --budget-s 95 \
  --shapes 64x1024,64x8192,8x1024,64x32768,64x16384 \
  --variants "64x1024=default;s14,64x8192=default;s14,8x1024=default,64x32768=default;s14,64x16384=default;s14" \
  --paged-variants "64x1024=default;s14pf;s14,64x8192=default;s14pf,8x1024=default;s14pf;s14;1/128/3/2/none,64x32768=default;s14pf,64x16384=default;s14pf" \
  > "$W/ab.log" 2>&1
echo "A/B rc=$? ($(el))"
tar czf "$OUT/s15b.tgz" -C "$W" . && ls -la "$OUT"
grep "^|\|^NOTE\|card read" "$W/ab.log"
echo "done ($(el))"
