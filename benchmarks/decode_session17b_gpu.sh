#!/bin/bash
# Issue 12, session 17, device call 2 (~90-120 s of command): the graph form with the launch's slowest SMs
# (`memsim.inference.CTA_RATE_SPREAD`, from call 1's one-wave traces) against batch-64-like launches it was NOT built
# on -- 48 / 80 / 128 x 1k, 64 x 512, 40 x 2k, and 64 x 1k again -- for the 128-key tile (one CTA per SM), the 32-key
# tile and the 64-key tile at num_stages 4 (the form's best at 64 x 1k: 90.9 us), with kernels.decode's default and
# SDPA cuDNN in the same process (rotated caches, CUDA-graph medians, every row gated by DESIGN.md's rule).
# Predictions committed before: reports/h100-sxm/decode/s17-predictions-b64.json
# (`python benchmarks/decode_ab_predict.py --check RUN/b64.json --pred reports/h100-sxm/decode/s17-predictions-b64.json`).
#   $OUT/s17b.tgz.   usage: OUT=... bash benchmarks/decode_session17b_gpu.sh
set -u
SCRIPT=benchmarks/decode_session17b_gpu.sh WORK=/tmp/s17b; . benchmarks/decode_device_common.sh
V="1/128/3/1/none;1/32/3/1/none;1/64/4/1/none;default"
timeout 170 python3 benchmarks/decode_splitd_ab.py --out "$W/b64.json" --budget-s 130 --no-paged \
  --shapes 64x1024,48x1024,80x1024,128x1024,64x512,40x2048 \
  --variants "64x1024=$V,48x1024=$V,80x1024=$V,128x1024=$V,64x512=$V,40x2048=$V" > "$W/b64.log" 2>&1
echo "b64 rc=$? ($(el))"; grep "^|\|NOTE" "$W/b64.log"
tar czf "$OUT/s17b.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
