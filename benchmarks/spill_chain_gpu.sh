#!/usr/bin/env bash
# Session 16 (issue 8, spills): ONE device call.
#   1. held-out W's two spilling hopper backwards (r26112704_003 bf16 d=32 one-warp CTAs, r26112704_002 fp32 d=128
#      8 warps) compiled and run once (caserunner --mode ncu without a profiler: Triton's cache then holds them);
#   2. meanwhile `benchmarks/spill_sm_gpu.py --plan chain` (CHAIN_POINTS: one long-walking CTA per SM among short
#      ones, L1- and L2-resident spills) under ncu;
#   3. ncu's warp-state (stall reasons), scheduler, occupancy and source-counter sections of those two launches
#      (_hopper_bwd_dkdvdq only; default cache control, --clock-control none), the report exported and its
#      details / per-instruction pages printed as CSV.
#   run(command="OUT=$OUT bash benchmarks/spill_chain_gpu.sh", timeout_s=230)
# Other cases / kernels, no microbenchmark (the second call: set A's r1_019 naive softmax):
#   run(command="OUT=$OUT PLAN=0 CASES=r1_019 KREGEX=_naive_softmax bash benchmarks/spill_chain_gpu.sh")
# Here: python benchmarks/spill_sm_gpu.py --chain <files>/chain/spill_sm_chain.json; the W pages in <files>/w/.
set -uo pipefail
: "${OUT:?set OUT}"
PLAN=${PLAN:-1}; CASES=${CASES:-r26112704_003 r26112704_002}; KREGEX=${KREGEX:-_hopper_bwd_dkdvdq}
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
W=$(mktemp -d)
mkdir -p "$OUT/w"
python3 - "$W" $CASES <<'EOF'
import glob, json, sys
from verification.suite import case_from_record
w = sys.argv[1]
for pat in sys.argv[2:]:
    p = glob.glob(f"verification/data/nvidia-h100-80gb-hbm3/random/*/{pat}_*.json")[0]
    json.dump([case_from_record(json.load(open(p))).to_spec()], open(f"{w}/{pat}.json", "w"))
    print(pat, "spec written")
EOF
t0=$(date +%s)
for c in $CASES; do
  timeout 120 python3 -m verification.caserunner --spec "$W/$c.json" --mode ncu --out "$W/$c.warm.jsonl" \
    > "$OUT/w/$c.warm.log" 2>&1 &
done
if [ "$PLAN" = 1 ]; then
  timeout 115 python3 benchmarks/spill_sm_gpu.py --out "$OUT/chain" --plan chain --budget-s 105 > "$OUT/chain.log" 2>&1
  echo "chain plan: $(( $(date +%s) - t0 )) s, rc=$?"
fi
wait
echo "warm-ups done: $(( $(date +%s) - t0 )) s"; grep -h "ok\|FAIL\|rror" "$OUT"/w/*.warm.log | tail -4
MET=sm__cycles_active.max,sm__cycles_active.min,sm__cycles_active.avg,sm__warps_active.avg.per_cycle_active,\
smsp__inst_executed_op_local_ld.sum,smsp__inst_executed_op_local_st.sum,smsp__inst_executed.sum,\
l1tex__t_sectors_pipe_lsu_mem_local_op_ld_lookup_hit.sum,l1tex__t_sectors_pipe_lsu_mem_local_op_ld_lookup_miss.sum,\
l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum,l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum,\
lts__t_sectors_srcunit_tex_op_read.sum,dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,\
sm__cycles_elapsed.avg.per_second
for c in $CASES; do
  timeout 60 ncu --clock-control none --profile-from-start off -k "regex:$KREGEX" \
    --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    --section SourceCounters --metrics "$MET" -f -o "$OUT/w/$c" \
    python3 -m verification.caserunner --spec "$W/$c.json" --mode ncu --out "$W/$c.ncu.jsonl" > "$OUT/w/$c.ncu.log" 2>&1
  echo "$c ncu rc=$? $(( $(date +%s) - t0 )) s"
  ncu --import "$OUT/w/$c.ncu-rep" --csv --page details --print-units base > "$OUT/w/$c.details.csv" 2>&1
  ncu --import "$OUT/w/$c.ncu-rep" --csv --page source --print-source sass > "$OUT/w/$c.source.csv" 2>&1 \
    || echo "source page failed: $(head -c 300 "$OUT/w/$c.source.csv")"
  grep -E '"(Duration|Warp Cycles Per Issued Instruction|Issued Warp Per Scheduler|Achieved Active Warps Per SM|Stall [A-Za-z ]+)"' \
    "$OUT/w/$c.details.csv" | cut -d, -f13- | head -30
  grep -oE 'smsp__pcsamp_warps_issue_stalled_[a-z_]+' "$OUT/w/$c.details.csv" | sort -u | head -3
done
gzip -f "$OUT"/w/*.source.csv 2>/dev/null
cd "$OUT" && tar czf w.tar.gz w && rm -rf w
if [ "$PLAN" = 1 ]; then tar czf chain.tar.gz chain && rm -rf chain; ls -la "$OUT"; tail -22 "$OUT/chain.log"; fi
