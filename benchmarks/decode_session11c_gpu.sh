#!/bin/bash
# Issue 12, session 11, device call 3: what decode launches cost inside a CUDA graph (benchmarks/decode_graph_gpu.py:
# empty kernels 1-32 per graph; the split / combine / both of 1 x 1k, 1 x 8k, 8 x 1k, 8 x 8k at S = 1..32; one CTA of
# one tile) -- the data for a graph context of the model (its per-kernel figures are ncu's).  $OUT/s11c.tgz.
# usage: OUT=... bash benchmarks/decode_session11c_gpu.sh
set -u
SCRIPT=benchmarks/decode_session11c_gpu.sh WORK=/tmp/s11c; . benchmarks/decode_device_common.sh
timeout 150 python3 benchmarks/decode_graph_gpu.py --out "$W/graph.json" > "$W/graph.log" 2>&1
echo "graph rc=$? ($(el))"
tar czf "$OUT/s11c.tgz" -C "$W" . && ls -la "$OUT"
tail -30 "$W/graph.log"
echo "done ($(el))"
