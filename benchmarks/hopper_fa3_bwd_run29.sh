#!/usr/bin/env bash
# Session 21: ncu of SDPA cuDNN's backward main kernel (persistent: grid 132 x 384 threads, 216 064 B of shared
# memory -- hopper_fa3_cudnn_census) beside one launch of our registered pass, d=128 causal N=1024 bf16, the same
# call: per-SM active cycles (min / avg / max of elapsed: how long SMs idle), SpeedOfLight, occupancy, the compute
# pipes (ComputeWorkloadAnalysis).  run24 had ours alone (7.2 % idle on average).
#   run(command="bash benchmarks/hopper_fa3_bwd_run29.sh 2>&1 | tee $OUT/run.log", timeout_s=100)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-95}
. benchmarks/hopper_fa3_bwd_common.sh
M=sm__cycles_active.min,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_elapsed.max
S="--section LaunchStats --section Occupancy --section SpeedOfLight --section ComputeWorkloadAnalysis"
timeout $(( $(left) / 2 )) ncu --clock-control none $S --metrics $M -k regex:flash_bprop --launch-skip 1 --launch-count 1 \
  python benchmarks/hopper_fa3_cudnn_census.py --out "$OUT" --ncu-cell 128/1024/1 > "$OUT/ncu-cudnn.txt" 2>&1
echo "ncu cudnn rc=$? at $((SECONDS - T0)) s"
timeout $(( $(left) - 3 )) ncu --clock-control none $S --metrics $M -k regex:_hopper_fa3_bwd --launch-count 1 \
  python $D --ncu-case 128/1024/1/registered --dtype bf16 > "$OUT/ncu-ours.txt" 2>&1
echo "ncu ours rc=$? at $((SECONDS - T0)) s"
for f in cudnn ours; do
  echo "== $f"; grep -E "^  [^ ].*\(|Duration|Waves Per SM|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|DRAM Throughput|Executed Ipc A|Issue Slots Busy|SM Busy|sm__cycles_(active|elapsed)|Registers Per|Shared Memory Config|Grid Size|Block Size" "$OUT/ncu-$f.txt" | head -30
done
