#!/bin/bash
# Issue 12, session 11, device call 1: the last partial wave of a decode split launch
# (benchmarks/decode_tail_gpu.py: the real _decode_split at S = 1 over batches that put 0 .. 264 CTAs into the last
# wave of 396 slots, 16k and 4k contexts, CUDA-graph medians twice, SDPA cuDNN at batch 64; then per-CTA SM / start /
# end traces of the same kernel inlined into a traced wrapper).  Everything under $W, packed into $OUT/s11.tgz.
# usage: OUT=... bash benchmarks/decode_session11_gpu.sh
set -u
SCRIPT=benchmarks/decode_session11_gpu.sh WORK=/tmp/s11; . benchmarks/decode_device_common.sh
timeout 200 python3 benchmarks/decode_tail_gpu.py --out "$W/tail.json" --budget-s 110 > "$W/tail.log" 2>&1
echo "tail rc=$? ($(el))"
tar czf "$OUT/s11.tgz" -C "$W" . && ls -la "$OUT"
tail -32 "$W/tail.log"
echo "done ($(el))"
