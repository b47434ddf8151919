#!/bin/bash
# Issue 12, session 13, device call 2: benchmark run 7 (benchmarks/decode.py --rotate-mb 400, every shape, SDPA in the
# same run) with kernels.decode's new default: the combine folded into the split launch at S <= 2, the programmatic
# dependent launch above; tune rows at 64 x 1k (bn32: 4 CTAs per SM, one wave of 512 CTAs); then the fused launches
# against the predictions committed before the run (benchmarks/decode_fused_predict.py); then paged caches whose pages
# are in order (the contiguous cache read through the identity table) vs shuffled, at the rule's split and S = 4
# (benchmarks/decode_cold.py --page-order shuffled,ordered): is the paged gap the page order or the loop?
# $OUT/s13b.tgz.   usage: OUT=... bash benchmarks/decode_session13b_gpu.sh
set -u
SCRIPT=benchmarks/decode_session13b_gpu.sh WORK=/tmp/s13b; . benchmarks/decode_device_common.sh
timeout 160 python3 benchmarks/decode.py --out "$W/decode-bench.json" --budget-s 105 --flex-shapes= \
  --paged-flex-shapes= --eager-shapes= --tune-shapes=64x1024 --sdpa=sdpa_cudnn,sdpa_flash --paged-sweep-shapes= \
  --paged-prefetch 1 --rep-ms=20 --rotate-mb=400 > "$W/bench.log" 2>&1
echo "bench rc=$? ($(el))"
python3 benchmarks/decode_fused_predict.py --check "$W/decode-bench.json" \
  --pred reports/h100-sxm/decode/fused-predictions-s13.json > "$W/fused-check.txt" 2>&1
timeout 60 python3 benchmarks/decode_cold.py --out "$W/paged-order.json" --budget-s 40 --combine default --splits 2 \
  --pages 16,64 --page-order shuffled,ordered --paged-splits 4 --shapes 8x32768,1x8192,8x1024 > "$W/paged-order.log" 2>&1
echo "paged order rc=$? ($(el))"
tar czf "$OUT/s13b.tgz" -C "$W" . && ls -la "$OUT"
tail -3 "$W/fused-check.txt"
grep -i "error\|fail\|budget" "$W/bench.log" | head -5
grep paged "$W/paged-order.log" | sed 's/ .page_prefetch.: True,//' | cut -c1-150
tail -16 "$W/bench.log"
echo "done ($(el))"
