#!/usr/bin/env bash
# Prepared in session 18, NOT RUN: where d=128 causal N=1024's ~630 us go (the one d=128 cell at N <= 4096 still
# below SDPA cuDNN: 0.95-0.96x in run22/run23; the fold with no zeros at all only ties cuDNN there, so the dQ
# conversion is not the rest).  Nothing new to adopt: no GPU tests.
#   1. timed, bf16 then fp16, ROUNDS rounds alternating, d=128 causal N=1024 / 4096: the registered pass alone
#      (`pass:registered`: nofuse at causal, GRID_GROUP at N=4096), hopper bwd's preprocess (delta + dQacc zeroed) and
#      dQ conversion launches alone (`piece:*`, --pieces, as registered and with 128-row blocks / 8 warps), the whole
#      backward (nofuse, fuse_ws_early, fuse_ws_early_norezero; default, SDPA cuDNN, SDPA flash);
#   2. ncu of one launch of the registered pass at bf16 causal N=1024 (default cache control, --clock-control none):
#      LaunchStats, Occupancy, SpeedOfLight and the per-SM active cycles (sm__cycles_active.min/avg/max against
#      sm__cycles_elapsed.max: the tail of 2048 CTAs of 2-16 steps).
#   Reading: pass + pieces against the whole backward, and against memsim (CPU, session 18, bf16 causal N=1024:
#   preprocess 86.5 us, pass 386.2 us, conversion 63.6 us, 536 us in all -- against ~630 measured).
#   run(command="TOTAL_S=150 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run24.sh 2>&1 | tee $OUT/run.log", timeout_s=175)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-150}
. benchmarks/hopper_fa3_bwd_common.sh
CASES24=128/1024/1,128/4096/1  # (not CC: the image exports CC, the C compiler Triton builds its driver with)
SW=nofuse,fuse_ws_early,fuse_ws_early_norezero
n=2  # each dtype gets what is left of TOTAL_S (less 45 s for ncu) over the dtypes left (was half of it for both)
for dt in bf16 fp16; do
  timeout $(( ($(left) - 45) / n )) python $D --out "$OUT" --dtype $dt --cases "$CASES24" --variants registered --pieces \
    --bwd-switches $SW --rounds "${ROUNDS:-3}" > "$OUT/diag-$dt.log" 2>&1
  echo "$dt rc=$? at $((SECONDS - T0)) s"
  n=$((n - 1))
done
if command -v ncu > /dev/null && [ "$(left)" -gt 20 ]; then
  timeout $(( $(left) - 5 )) ncu --clock-control none --section LaunchStats --section Occupancy --section SpeedOfLight \
    --metrics sm__cycles_active.min,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_elapsed.max \
    -k regex:_hopper_fa3_bwd --launch-count 1 python $D --ncu-case 128/1024/1/registered --dtype bf16 \
    > "$OUT/ncu-causal1024.txt" 2>&1
  echo "ncu rc=$? at $((SECONDS - T0)) s"
  grep -E "Duration|Waves Per SM|Achieved Occupancy|Compute \(SM\) Throughput|sm__cycles_(active|elapsed)" \
    "$OUT/ncu-causal1024.txt" | head -12
fi
fa3_bwd_summary $SW default,cuDNN,flash fuse_ws_early/nofuse,fuse_ws_early_norezero/nofuse,default/cuDNN bf16,fp16
