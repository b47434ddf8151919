#!/bin/bash
# Issue 12, session 19, device call 2 (~60-90 s of command): GPU exactness through the public default, which now loads
# the first tile beside the length at batch 48-64 x <= 1k (kernels.decode_kv.EARLY_TILE_DEFAULT: early_default_b64,
# ragged / empty / shorter-than-a-tile sequences) and the early cases again; then the new default against the same
# schedule without early_tile ("default-e", the old default), interleaved, at the goal shapes (64 x 1k, 64 x 512: 3 x 2)
# and at the moved picks call 1 did not time (56 x 1k, 64 x 768, 48 x 512; 48 x 1k again: 2 x 2), SDPA cuDNN
# (enable_gqa) in the same process; and 16 x 1k (call 1: the default bn64 S = 1, one CTA per SM, 0.970x cuDNN): the first
# tile's cost at ONE CTA per SM by tile (block_n 32 / 64 / 128, one split, with and without early_tile) and the other
# tiles there (split_d 2 at bn128 / bn64, bn64 S = 2 fused), twice each.  Rotated caches, CUDA-graph medians.
# Predictions committed before: reports/h100-sxm/decode/s19b-predictions.json
# (`python benchmarks/decode_ab_predict.py --check RUN/early2.json --pred reports/h100-sxm/decode/s19b-predictions.json`).
#   $OUT/s19b.tgz.   usage: OUT=... bash benchmarks/decode_session19b_gpu.sh
set -u
SCRIPT=benchmarks/decode_session19b_gpu.sh WORK=/tmp/s19b; . benchmarks/decode_device_common.sh
V3="default;default-e;default;default-e;default;default-e"
V2="default;default-e;default;default-e"
T="default;1/64/3/1/none+e;1/32/3/1/none;1/32/3/1/none+e;1/128/3/1/none;1/128/3/1/none+e;1/128/3/2/none;1/64/3/2/none;2/64/3/1/fused"
CV="64x1024=$V3,64x512=$V3,56x1024=$V2,64x768=$V2,48x512=$V2,48x1024=$V2,16x1024=$T;$T"
timeout 60 python3 -m kernels.decode_testing --name early_,big_default_short_b32 > "$W/exact.log" 2>&1
echo "exact rc=$? ($(el))"; cat "$W/exact.log"
timeout 120 python3 benchmarks/decode_splitd_ab.py --out "$W/early2.json" --budget-s 90 --sdpa cudnn \
  --shapes 64x1024,64x512,56x1024,64x768,48x512,48x1024,16x1024 --variants "$CV" --no-paged > "$W/early2.log" 2>&1
echo "early2 rc=$? ($(el))"; grep "^|\|NOTE\|Error" "$W/early2.log"
tar czf "$OUT/s19b.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
