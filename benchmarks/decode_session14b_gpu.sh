#!/bin/bash
# Issue 12, session 14, device call 2: (1) GPU exactness of kernels.decode's new tile (SPLIT_D_TILE: split_d 2,
# 128-key tiles) on every kernel test case (`python -m kernels.decode_testing --split-d 2 --block-n 128`); (2) benchmark
# run 8 (benchmarks/decode.py --rotate-mb 400, every shape, SDPA cuDNN / flash in the same run) with kernels.decode's
# new default (its tile or SPLIT_D_TILE by the rule's form, `choose_schedule`) AND the session-13 default's pick beside
# it (rows s13_default), paged 16 / 64 likewise; (3) the 128-key tile with and without split_d at 8 x 1k and 64 x 1k (attribution); (4) the run against the predictions committed before it
# (benchmarks/decode_splitd_predict.py --check).   $OUT/s14b.tgz.   usage: OUT=... bash benchmarks/decode_session14b_gpu.sh
set -u
SCRIPT=benchmarks/decode_session14b_gpu.sh WORK=/tmp/s14b; . benchmarks/decode_device_common.sh
timeout 75 python3 -m kernels.decode_testing --split-d 2 --block-n 128 > "$W/exact-sd2-bn128.log" 2>&1
echo "exactness (split_d 2, bn128) rc=$? ($(el))"; tail -1 "$W/exact-sd2-bn128.log"; grep FAIL "$W/exact-sd2-bn128.log" | head -5
timeout 130 python3 benchmarks/decode.py --out "$W/decode-bench.json" --budget-s 80 --flex-shapes= \
  --paged-flex-shapes= --eager-shapes= --tune-shapes= --sdpa=sdpa_cudnn,sdpa_flash --paged-sweep-shapes= \
  --paged-prefetch 1 --rep-ms=20 --rotate-mb=400 > "$W/bench.log" 2>&1
echo "bench rc=$? ($(el))"
# attribution: is the gain split_d's or the 128-key tile's? (the same tiles without split_d, at S = 1 and fused S = 2)
timeout 45 python3 benchmarks/decode_splitd_ab.py --out "$W/sd-ab2.json" --budget-s 25 --no-paged \
  --shapes 8x1024,64x1024 --variants "8x1024=default;1/128/3/1/none;2/128/3/1/fused;1/128/3/2/none,64x1024=default;1/128/3/2/none;1/128/3/1/none;1/64/3/2/none" \
  > "$W/sd-ab2.log" 2>&1
echo "attribution A/B rc=$? ($(el))"
python3 benchmarks/decode_splitd_predict.py --check "$W/decode-bench.json" \
  --pred reports/h100-sxm/decode/splitd-predictions-s14.json > "$W/pred-check.txt" 2>&1
tar czf "$OUT/s14b.tgz" -C "$W" . && ls -la "$OUT"
grep -i "error\|fail\|budget" "$W/bench.log" | head -5
grep "new\|median" "$W/pred-check.txt" | cut -c1-120
grep "^|" "$W/sd-ab2.log"
grep "TB/s$" "$W/bench.log" | grep ":" | cut -c1-160 | tail -14
echo "done ($(el))"
