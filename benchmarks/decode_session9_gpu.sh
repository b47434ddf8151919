#!/bin/bash
# Issue 12, session 9, device call 1: the probe cases of benchmarks/decode_probes.py (combine launches at 32-8448
# CTAs; multi-wave split launches: S = 1 controls, S = 3 / 4, pages, ragged) under ncu, as every decode case.
# Everything is written under $W and packed into $OUT/s9.tgz.
# usage: OUT=... bash benchmarks/decode_session9_gpu.sh
# (after the call the measure line became measure_specs of decode_device_common.sh: the same command)
set -u
SCRIPT=benchmarks/decode_session9_gpu.sh WORK=/tmp/s9; . benchmarks/decode_device_common.sh
measure_specs probes reports/h100-sxm/decode/probes-session9/decode_cases.json 200
tar czf "$OUT/s9.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
