#!/usr/bin/env bash
# Session 22, call B: EPI_TMA -- the dK/dV epilogue by TMA stores through each warpgroup's dQ staging tile (run32's
# stamps: the plain-store epilogue takes ~2.5 us of an item at causal N=1024, ~3 us in the walk; a step ~2.2 us).
#   1. GPU exactness (pytest -n 4): `epi_tma_gpu` -- the three launches, the fold, the walk; both dtypes; dK, dV
#      bit-identical to the plain stores, dQ by the rule; beside one `--warm-only` per dtype;
#   2. timed (do_bench, ROUNDS rounds alternating), the 6 d=128 cells, both dtypes: epi_tma, persistent_epi_tma
#      (the walk + EPI_TMA), the default, SDPA cuDNN, SDPA flash;
#   3. CUDA-graph replays beside do_bench (benchmarks/hopper_fa3_bwd_graph.py), bf16 causal N 1024 / 4096;
#   4. the stamps probe at bf16 causal N=1024: plain, epi_tma, walk_epi_tma, walk_epi_tma_pf.
#   run(command="TOTAL_S=230 ROUNDS=3 bash benchmarks/hopper_fa3_bwd_run33.sh 2>&1 | tee $OUT/run.log", timeout_s=250)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-230}
. benchmarks/hopper_fa3_bwd_common.sh
SW=epi_tma,persistent_epi_tma
GRAPH_S=${GRAPH_S:-45}
STAMP_S=${STAMP_S:-35}
TOTAL_S=$(( TOTAL_S - GRAPH_S - STAMP_S ))
FA3_PYTEST_ARGS="-n 4" fa3_bwd_tests_and_timing "epi_tma_gpu" "$G128" $SW bf16,fp16 "${TEST_TIMEOUT_S:-100}" \
  "${ROUNDS:-3}"
timeout "$GRAPH_S" python benchmarks/hopper_fa3_bwd_graph.py --out "$OUT" --cases 128/1024/1,128/4096/1 \
  --variants registered,epi_tma,persistent_epi_tma --rounds 3 > "$OUT/graph.log" 2>&1
echo "graph rc=$? at $((SECONDS - T0)) s"
timeout "$STAMP_S" python benchmarks/hopper_fa3_bwd_stamps.py --out "$OUT" --cases 128/1024/1 \
  --variants plain,epi_tma,walk_epi_tma,walk_epi_tma_pf > "$OUT/stamps.log" 2>&1
echo "stamps rc=$? at $((SECONDS - T0)) s"
grep -v '^{' "$OUT/stamps.log" | tail -7
grep -v '^{' "$OUT/graph.log" | tail -10
fa3_bwd_summary $SW default,cuDNN,flash epi_tma/default,persistent_epi_tma/default,default/cuDNN,best/cuDNN bf16,fp16
python benchmarks/hopper_fa3_bwd_summary.py paired epi_tma/default,persistent_epi_tma/default,epi_tma/cuDNN,default/cuDNN \
  "$OUT/diag-bf16.log" "$OUT/diag-fp16.log"
