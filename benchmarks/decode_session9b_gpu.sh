#!/bin/bash
# Issue 12, session 9, device call 2: the held-out decode set seed 11261138 (predictions frozen at c79ddb4 in a clean
# worktree, committed in 2f52d91 before this call) under ncu, then the 8-warp multi-wave probes
# (benchmarks/decode_probes.py --w8: reports/h100-sxm/decode/probes-session9/decode_cases_w8.json).
# Everything is written under $W and packed into $OUT/s9b.tgz.
# usage: OUT=... bash benchmarks/decode_session9b_gpu.sh
# (after the call the probe line became measure_specs of decode_device_common.sh: the same command)
set -u
SCRIPT=benchmarks/decode_session9b_gpu.sh WORK=/tmp/s9b; . benchmarks/decode_device_common.sh
measure_heldout 11261138 150
measure_specs probes_w8 reports/h100-sxm/decode/probes-session9/decode_cases_w8.json 90
tar czf "$OUT/s9b.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
