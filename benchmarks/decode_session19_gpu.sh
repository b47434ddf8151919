#!/bin/bash
# Issue 12, session 19, device call 1 (~90-130 s of command): GPU exactness of the first tile loaded beside the
# sequence length (DecodeSchedule.early_tile: kernels.decode_testing's early_* cases -- ragged, empty and
# shorter-than-a-tile sequences, split_d 2, two query tokens, packed queries), then the A/B: kernels.decode's default
# pick against the same schedule with early_tile ("default+e"), interleaved (3 x 2 at the batch-64 short shapes where
# the goal is >= 1.0x cuDNN, 2 x 2 elsewhere), rotated caches, CUDA-graph medians, SDPA cuDNN (enable_gqa) in the same
# process.  Predictions committed before: reports/h100-sxm/decode/s19-predictions-early.json
# (`python benchmarks/decode_ab_predict.py --check RUN/early.json --pred reports/h100-sxm/decode/s19-predictions-early.json`).
#   $OUT/s19.tgz.   usage: OUT=... bash benchmarks/decode_session19_gpu.sh
set -u
SCRIPT=benchmarks/decode_session19_gpu.sh WORK=/tmp/s19; . benchmarks/decode_device_common.sh
V3="default;default+e;default;default+e;default;default+e"
V2="default;default+e;default;default+e"
S3=64x1024,64x2048,64x512
S2=8x1024,32x1024,48x1024,8x8192,128x1024,80x1024,16x1024,64x8192
CV=$( (echo "$S3" | tr , '\n' | sed "s|\$|=$V3|"; echo "$S2" | tr , '\n' | sed "s|\$|=$V2|") | paste -sd,)
timeout 60 python3 -m kernels.decode_testing --name early_ > "$W/exact.log" 2>&1
echo "exact rc=$? ($(el))"; cat "$W/exact.log"
timeout 150 python3 benchmarks/decode_splitd_ab.py --out "$W/early.json" --budget-s 120 --sdpa cudnn \
  --shapes "$S3,$S2" --variants "$CV" --no-paged > "$W/early.log" 2>&1
echo "early rc=$? ($(el))"; grep "^|\|NOTE\|Error" "$W/early.log"
tar czf "$OUT/s19.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
