#!/bin/bash
# Issue 12, session 17, device call 1 (~60-90 s of command): where the 128-key tile's fixed ~3.3-4.3 us per launch at
# one CTA per SM goes (64 x 1k vs cuDNN, notes/decode.md session 16).  `benchmarks/decode_fixed_gpu.py`: per-CTA
# %globaltimer traces of back-to-back launches in one CUDA graph (rotated caches) -> the gap between launches, the
# span of a launch, its waves; zero-key launches (the launch with no stream); SDPA cuDNN at 64 x 1k in the same process.
# Predictions committed before: reports/h100-sxm/decode/s17-fixed-predictions.json
# (`python benchmarks/decode_fixed_gpu.py --check RUN/fixed.json --pred reports/h100-sxm/decode/s17-fixed-predictions.json`).
#   $OUT/s17.tgz.   usage: OUT=... bash benchmarks/decode_session17_gpu.sh
set -u
SCRIPT=benchmarks/decode_session17_gpu.sh WORK=/tmp/s17; . benchmarks/decode_device_common.sh
timeout 130 python3 benchmarks/decode_fixed_gpu.py --out "$W/fixed.json" --budget-s 75 > "$W/fixed.log" 2>&1
echo "fixed rc=$? ($(el))"; cat "$W/fixed.log"
tar czf "$OUT/s17.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
