#!/usr/bin/env bash
# Session 21, after run27 (STREAM_SPLIT exact, 0.12-0.41x at causal N=1024, slower by ~0.6 ms a group whatever its
# size): host or GPU?  benchmarks/hopper_fa3_bwd_split_probe.py -- per case and variant (default, split2, split4)
# the host's issue time of one backward, do_bench's median, and the median of a CUDA-graph replay of the same
# backward (the GPU's time without the host); the host's pieces of one default call (the pass's args, its launch);
# SDPA cuDNN beside; a kernel trace (torch.profiler) of three calls of each variant at causal N=1024.
#   run(command="bash benchmarks/hopper_fa3_bwd_run28.sh 2>&1 | tee $OUT/run.log", timeout_s=120)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-110}
. benchmarks/hopper_fa3_bwd_common.sh
timeout $(( $(left) - 5 )) python benchmarks/hopper_fa3_bwd_split_probe.py --out "$OUT" --cases 128/1024/1,128/4096/1 \
  --splits 2,4 --trace > "$OUT/probe.log" 2>&1
echo "probe rc=$? at $((SECONDS - T0)) s"
grep -v '^{' "$OUT/probe.log" | grep -v '^  ' | tail -20
grep -A 40 'trace default' "$OUT/probe.log" | head -16
grep -A 40 'trace split2' "$OUT/probe.log" | head -30
