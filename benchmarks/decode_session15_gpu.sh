#!/bin/bash
# Issue 12, PREPARED in session 14 for the next decode session (not run yet): (1) split_d on paged caches, pages in
# order vs shuffled (is split_d's paged loss the page order -- twice the SMs translating each shuffled page -- or the
# loop?); (2) batch 64: the 128-key / 32-key tiles without split_d at the rule's split counts (64 x 1k bn128 ran at
# 0.986x cuDNN in session 14's attribution A/B).  `benchmarks/decode_splitd_ab.py`, rotated caches, SDPA cuDNN in the
# same process, every row gated.   $OUT/s15.tgz.   usage: OUT=... bash benchmarks/decode_session15_gpu.sh
# Session 15 (before the call): 64 x 1k "1/128/4/1/none" dropped (266 KB of shared memory: neither the preset nor the
# card admits it); predictions of every row committed first: reports/h100-sxm/decode/s15-predictions-{paged-order,
# b64-tiles}.json (benchmarks/decode_ab_predict.py --write, same arguments; --check after).
set -u
SCRIPT=benchmarks/decode_session15_gpu.sh WORK=/tmp/s15; . benchmarks/decode_device_common.sh
timeout 100 python3 benchmarks/decode_splitd_ab.py --out "$W/paged-order.json" --budget-s 80 --shapes 8x1024,8x32768 \
  --variants "8x1024=default,8x32768=default" --page-order shuffled,ordered \
  --paged-variants "8x1024=2/64/3/1/fused;1/64/3/1/none;1/128/3/2/none,8x32768=2/64/3/1/fused;1/128/3/2/none" \
  > "$W/paged-order.log" 2>&1
echo "paged order rc=$? ($(el))"
timeout 90 python3 benchmarks/decode_splitd_ab.py --out "$W/b64-tiles.json" --budget-s 70 --no-paged \
  --shapes 64x1024,64x8192 \
  --variants "64x1024=default;1/128/3/1/none;1/32/3/1/none,64x8192=default;1/128/3/1/none;2/128/3/1/fused;4/128/3/1/pdl;4/32/3/1/pdl" \
  > "$W/b64-tiles.log" 2>&1
echo "batch-64 tiles rc=$? ($(el))"
tar czf "$OUT/s15.tgz" -C "$W" . && ls -la "$OUT"
grep "^|\|^NOTE\|card read" "$W/paged-order.log" "$W/b64-tiles.log"
echo "done ($(el))"
