#!/usr/bin/env bash
# Session 21: the other unmet cell, d=64 causal N=1024 forward (0.86-0.89x cuDNN): ncu of one launch each of SDPA
# cuDNN's forward (persistent, 207 us, 134 144 B shared -- the census), our hopper_fa3 forward (the persistent walk)
# (flash2, the default there, left out for time), bf16, the same call: per-SM active cycles, SpeedOfLight,
# occupancy, the pipes.
#   run(command="bash benchmarks/hopper_fa3_bwd_run30.sh 2>&1 | tee $OUT/run.log", timeout_s=65)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-60}
. benchmarks/hopper_fa3_bwd_common.sh
M=sm__cycles_active.min,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_elapsed.max
S="--section LaunchStats --section Occupancy --section SpeedOfLight --section ComputeWorkloadAnalysis"
for impl in sdpa_cudnn:flash_fprop hopper_fa3:_hopper_fa3_fwd; do
  timeout $(( $(left) - 3 )) ncu --clock-control none $S --metrics $M -k regex:${impl#*:} --launch-skip 1 --launch-count 1 \
    python benchmarks/hopper_fa3_cudnn_census.py --out "$OUT" --ncu-cell 64/1024/1 --ncu-fwd ${impl%%:*} \
    > "$OUT/ncu-fwd-${impl%%:*}.txt" 2>&1
  echo "ncu ${impl%%:*} rc=$? at $((SECONDS - T0)) s"
done
for f in sdpa_cudnn hopper_fa3; do
  echo "== $f"; grep -E "^  [^ ].*\(|Duration|Achieved Occupancy|Compute \(SM\) Throughput|L2 Cache Throughput|DRAM Throughput|Executed Ipc A|Issue Slots Busy|sm__cycles_(active|elapsed)|Registers Per|Grid Size|highest-utilized" "$OUT/ncu-fwd-$f.txt" | head -16
done
