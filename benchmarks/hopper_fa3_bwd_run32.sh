#!/usr/bin/env bash
# Session 22, call A: where the pass's fixed cost per item goes, and the cheap ways at it.  d=128 bf16, causal N 1024
# / 4096 (2048 items of 2-16 / 2-64 steps).
#   1. GPU exactness (pytest -n 4): EPI_EARLY (dK/dV stored before the last dQ; dK, dV bit-identical), WALK_PF
#      (PERSISTENT + the next item's K/V prefetched into the L2; LPT item cost 1 / 5; bit-identical to the walk),
#      STAMPS (the milestones in order), beside one `--warm-only` of the timed switches;
#   2. timed, ROUNDS rounds alternating: epi_early, persistent (item cost 1 / 3 / 5), persistent_pf (1 / 3 / 5), the
#      default, SDPA cuDNN, SDPA flash;
#   3. the stamps probe (benchmarks/hopper_fa3_bwd_stamps.py): the plain grid, epi_early, the walk (cost 1 / 3),
#      the walk + WALK_PF (cost 3): per item the cost on its SM, the fit fixed + per step, the segments.
#   run(command="TOTAL_S=170 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run32.sh 2>&1 | tee $OUT/run.log", timeout_s=190)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-170}
. benchmarks/hopper_fa3_bwd_common.sh
CASES32=128/1024/1,128/4096/1
SW=epi_early,persistent,persistent_f3,persistent_f5,persistent_pf,persistent_pf_f3,persistent_pf_f5
STAMP_S=${STAMP_S:-60}
TOTAL_S=$(( TOTAL_S - STAMP_S ))
FA3_PYTEST_ARGS="-n 4" fa3_bwd_tests_and_timing "epi_early_gpu or walk_pf_gpu or stamps_gpu" "$CASES32" $SW bf16 \
  "${TEST_TIMEOUT_S:-90}" "${ROUNDS:-3}"
timeout "$STAMP_S" python benchmarks/hopper_fa3_bwd_stamps.py --out "$OUT" --cases "$CASES32" \
  --variants plain,epi_early,walk,walk_f3,walk_pf_f3 > "$OUT/stamps.log" 2>&1
echo "stamps rc=$? at $((SECONDS - T0)) s"
grep -v '^{' "$OUT/stamps.log" | tail -14
fa3_bwd_summary $SW default,cuDNN,flash \
  epi_early/default,persistent/default,persistent_f3/default,persistent_f5/default,persistent_pf/default,persistent_pf_f3/default,persistent_pf_f5/default,default/cuDNN bf16
python benchmarks/hopper_fa3_bwd_summary.py paired epi_early/default,persistent/default,persistent_f3/default,persistent_f5/default,persistent_pf_f3/default,persistent_pf_f5/default,default/cuDNN "$OUT/diag-bf16.log"
