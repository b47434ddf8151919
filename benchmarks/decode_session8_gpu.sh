#!/bin/bash
# Issue 12, session 8: ONE device call -- the held-out decode set seed 11260935 (predictions frozen in a clean
# worktree of the model commit, committed before the call) under ncu, nothing else.
# Everything is written under $W and packed into $OUT/s8.tgz (the device returns at most 8 files).
# usage: OUT=... bash benchmarks/decode_session8_gpu.sh
set -u
SCRIPT=benchmarks/decode_session8_gpu.sh WORK=/tmp/s8; . benchmarks/decode_device_common.sh
measure_heldout 11260935 170
tar czf "$OUT/s8.tgz" -C "$W" . && ls -la "$OUT"
cp "$W/heldout.log" "$OUT/" 2>/dev/null
echo "done ($(el))"
