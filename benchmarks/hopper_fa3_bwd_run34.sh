#!/usr/bin/env bash
# Session 22, call C: the registry's EPI_TMA (FA3_BWD_EPI_TMA: d=128 s2, seq_kv <= 4096, not beside the late fold)
# confirmed on the default path.
#   1. GPU exactness (pytest -n 4): the exactness table `test_fa3_backward_gpu` (11 cases x 2 dtypes: the d=128 2-stage
#      ones now with EPI_TMA), beside one `--warm-only` per dtype;
#   2. timed (do_bench, ROUNDS rounds alternating), the 6 d=128 cells, both dtypes: no_epi_tma (the default before it),
#      epi_tma_early (EPI_TMA + the fold's early count-in at every N: the non-causal N=4096 cell), the default, SDPA
#      cuDNN, SDPA flash;
#   3. CUDA-graph replays beside do_bench, bf16 + fp16 causal N=1024: registered vs no_epi_tma.
#   run(command="TOTAL_S=150 ROUNDS=5 bash benchmarks/hopper_fa3_bwd_run34.sh 2>&1 | tee $OUT/run.log", timeout_s=170)
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-150}
. benchmarks/hopper_fa3_bwd_common.sh
SW=no_epi_tma,epi_tma_early
GRAPH_S=${GRAPH_S:-30}
TOTAL_S=$(( TOTAL_S - GRAPH_S ))
FA3_PYTEST_ARGS="-n 4" fa3_bwd_tests_and_timing "test_fa3_backward_gpu" "$G128" $SW bf16,fp16 "${TEST_TIMEOUT_S:-60}" \
  "${ROUNDS:-5}"
for dt in bf16 fp16; do
  timeout $(( GRAPH_S / 2 )) python benchmarks/hopper_fa3_bwd_graph.py --out "$OUT" --cases 128/1024/1 --dtype $dt \
    --variants registered,no_epi_tma --rounds 5 > "$OUT/graph-$dt.log" 2>&1
  echo "graph $dt rc=$? at $((SECONDS - T0)) s"
  grep -v '^{' "$OUT/graph-$dt.log" | tail -4
done
fa3_bwd_summary $SW default,cuDNN,flash default/no_epi_tma,epi_tma_early/default,default/cuDNN,no_epi_tma/cuDNN bf16,fp16
python benchmarks/hopper_fa3_bwd_summary.py paired default/no_epi_tma,epi_tma_early/default,default/cuDNN,no_epi_tma/cuDNN \
  "$OUT/diag-bf16.log" "$OUT/diag-fp16.log"
# at most 8 files come back from $OUT: everything but the tee'd run.log in one archive
(cd "$OUT" && tar czf run34-files.tgz --exclude=run.log --exclude=run34-files.tgz . && find . -type f ! -name run.log \
  ! -name run34-files.tgz -delete)
