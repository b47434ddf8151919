#!/bin/bash
# Issue 12, session 9, device call 1: the probe cases of benchmarks/decode_probes.py (combine launches at 32-8448
# CTAs; multi-wave split launches: S = 1 controls, S = 3 / 4, pages, ragged) under ncu, as every decode case.
# Everything is written under $W and packed into $OUT/s9.tgz.
# usage: OUT=... bash benchmarks/decode_session9_gpu.sh
set -u
SCRIPT=benchmarks/decode_session9_gpu.sh WORK=/tmp/s9; . benchmarks/decode_device_common.sh
timeout 200 python3 -m verification.suite_decode measure \
  --cases-json reports/h100-sxm/decode/probes-session9/decode_cases.json --out "$W/probes" --timeout 195 \
  > "$W/probes.log" 2>&1
echo "probes rc=$? ($(el))"; tail -3 "$W/probes.log"
tar czf "$OUT/s9.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
