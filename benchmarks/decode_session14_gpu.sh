#!/bin/bash
# Issue 12, session 14, device call 1: (1) GPU exactness of split_d (the head dim of V and O divided between the CTAs
# of a unit: `python -m kernels.decode_testing --split-d 2`, every kernel test case); (2) the split_d A/B over caches
# not in the L2 (`benchmarks/decode_splitd_ab.py`: kernels.decode's default vs split_d schedules, SDPA cuDNN in the
# same process, every row gated by the rule first).   $OUT/s14.tgz.   usage: OUT=... bash benchmarks/decode_session14_gpu.sh
set -u
SCRIPT=benchmarks/decode_session14_gpu.sh WORK=/tmp/s14; . benchmarks/decode_device_common.sh
timeout 75 python3 -m kernels.decode_testing --split-d 2 > "$W/exact-sd2.log" 2>&1
echo "exactness (split_d 2) rc=$? ($(el))"; tail -1 "$W/exact-sd2.log"; grep FAIL "$W/exact-sd2.log" | head -5
timeout 130 python3 benchmarks/decode_splitd_ab.py --out "$W/sd-ab.json" --budget-s 95 > "$W/sd-ab.log" 2>&1
echo "split_d A/B rc=$? ($(el))"
tar czf "$OUT/s14.tgz" -C "$W" . && ls -la "$OUT"
grep "^NOTE\|Error" "$W/sd-ab.log" | head -8
grep "^|\|card read" "$W/sd-ab.log"
echo "done ($(el))"
