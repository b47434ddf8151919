#!/bin/bash
# Issue 12, session 10, device call 3: the held-out decode set seed 11261455 (predictions frozen at 5eff7ad in a clean
# worktree, committed before this call) under ncu; then 4 development cases re-measured on the session-10 kernel
# (reports/h100-sxm/decode/remeasure-session10/decode_cases.json: the cases whose prediction moved most with the new
# kernel's compiled facts -- the replay says the new kernel is slower on two unpacked / bn16 contiguous ones).
# Everything under $W, packed into $OUT/s10c.tgz.  usage: OUT=... bash benchmarks/decode_session10c_gpu.sh
set -u
SCRIPT=benchmarks/decode_session10c_gpu.sh WORK=/tmp/s10c; . benchmarks/decode_device_common.sh
measure_heldout 11261455 80
measure_specs remeasure reports/h100-sxm/decode/remeasure-session10/decode_cases.json 30
tar czf "$OUT/s10c.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
