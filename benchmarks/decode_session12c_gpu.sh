#!/bin/bash
# Issue 12, session 12, device call 3: pipeline depth at one CTA per SM (benchmarks/decode_stages_ab.py: num_stages
# 3 / 4 / 5, contiguous and paged 16 / 64, the rule's split per depth, rotated caches, SDPA cuDNN in the same run).
# $OUT/s12c.tgz.   usage: OUT=... bash benchmarks/decode_session12c_gpu.sh
set -u
SCRIPT=benchmarks/decode_session12c_gpu.sh WORK=/tmp/s12c; . benchmarks/decode_device_common.sh
timeout 140 python3 benchmarks/decode_stages_ab.py --out "$W/stages.json" --budget-s 75 > "$W/stages.log" 2>&1
echo "stages rc=$? ($(el))"
tar czf "$OUT/s12c.tgz" -C "$W" . && ls -la "$OUT"
grep -v "^\[" "$W/stages.log" | tail -45
echo "done ($(el))"
