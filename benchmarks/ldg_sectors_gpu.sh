#!/usr/bin/env bash
# One device call: which global loads of a kernel make L1's tag stage count more sectors than the bytes they ask
# for (notes/fidelity.md, tenth session, "global bytes from the SASS").  Four real launches, small shapes, each
# under ncu with the SourceCounters section (its "uncoalesced global accesses" rule names the excessive sectors)
# and the per-instruction SASS source page; plus kernel-level sector / request counters.
#   run(command="bash benchmarks/ldg_sectors_gpu.sh", timeout_s=300)
#   RECORDS="verification/data/.../r1_014_....json ..." bash benchmarks/ldg_sectors_gpu.sh  (measured random cases,
#   each run at its own problem and schedule, instead of the four built-in ones)
set -uo pipefail
: "${OUT:?set OUT}"
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/env.txt"
date -u | tee -a "$OUT/env.txt"
python3 - "$OUT" <<'PY'
import json, sys
from memsim.schedule import AttentionProblem, Schedule, kernel_launches
out = sys.argv[1]
cases = [
    ("f1_fp16_d64_64x64_w4", AttentionProblem(1, 2, 2, 1024, 1024, 64, dtype="fp16"), Schedule("flash1", "fwd", 64, 64, 4, 2)),
    ("f1_fp32_d64_64x64_w4", AttentionProblem(1, 2, 2, 1024, 1024, 64, dtype="fp32"), Schedule("flash1", "fwd", 64, 64, 4, 2)),
    ("f2bwd_bf16_d64_128x64_w8_st1", AttentionProblem(1, 2, 2, 1024, 1024, 64, dtype="bf16"), Schedule("flash2", "bwd", 128, 64, 8, 1)),
    ("f2bwd_bf16_d64_128x64_w8_st2", AttentionProblem(1, 2, 2, 1024, 1024, 64, dtype="bf16"), Schedule("flash2", "bwd", 128, 64, 8, 2)),
]
import os
from memsim.schedule import problem_from_dict, schedule_from_dict
if os.environ.get("RECORDS"):
    cases = []
    for f in os.environ["RECORDS"].split():
        r = json.load(open(f))
        cases.append((r["case"], problem_from_dict(r["problem"]), schedule_from_dict(r["schedule"])))
for name, p, s in cases:
    json.dump([{"name": name, "problem": p.to_dict(), "schedule": s.to_dict(), "hardware": "h100-sxm",
                "launches": [L.name for L in kernel_launches(p, s)]}], open(f"{out}/{name}.spec.json", "w"))
    print(name)
PY
M=l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum,l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum,smsp__sass_inst_executed_op_global_ld.sum,lts__t_sectors_srcunit_tex_op_read.sum
for f in "$OUT"/*.spec.json; do
  n=$(basename "$f" .spec.json)
  timeout 120 ncu --clock-control none --metrics "$M" --section SourceCounters --print-details all \
    -k regex:'^_(flash1|flash2|naive|hopper)_' -o "$OUT/$n" python3 -m verification.caserunner --spec "$f" --mode ncu \
    --out "$OUT/$n.runner.jsonl" > "$OUT/$n.ncu.log" 2>&1
  echo "$n: rc $?"
  ncu --import "$OUT/$n.ncu-rep" --print-details all --csv > "$OUT/$n.details.csv" 2>&1
  ncu --import "$OUT/$n.ncu-rep" --page source --print-source sass --csv > "$OUT/$n.source.csv" 2>&1 || true
  grep -i "excessive\|uncoalesced" "$OUT/$n.ncu.log" | head -5
done
cd "$OUT" && tar -czf ldg_sectors.tar.gz *.log *.csv *.jsonl *.spec.json env.txt && rm -f *.csv *.log *.jsonl *.spec.json *.ncu-rep
ls -la "$OUT"
