#!/bin/bash
# Issue 12, session 12, device call 2: where the time goes at 34 MB (1 x 8k S = 16, 8 x 1k S = 2): per-CTA SM / timer
# traces of the split kernel over a flushed L2 (benchmarks/decode_tail_gpu.py --flush-l2) and ncu's per-launch times
# (split, combine; caches flushed); then benchmark run 6 (benchmarks/decode.py --rotate-mb 400, every shape, SDPA in
# the same run) with the session-12 split rule and the combine as a programmatic dependent launch (kernels.decode's
# default now).   $OUT/s12b.tgz.   usage: OUT=... bash benchmarks/decode_session12b_gpu.sh
set -u
SCRIPT=benchmarks/decode_session12b_gpu.sh WORK=/tmp/s12b; . benchmarks/decode_device_common.sh
timeout 60 python3 benchmarks/decode_tail_gpu.py --out "$W/traces.json" --contexts "" --flush-l2 \
  --traces 1:8192:16,1:8192:32,8:1024:2,8:1024:4 > "$W/traces.log" 2>&1
echo "traces rc=$? ($(el))"; grep trace "$W/traces.log" | tail -4
timeout 60 ncu --clock-control none -k regex:_decode_ --csv --metrics \
  gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active \
  python3 benchmarks/decode_ncu_small.py 1:8192:16 1:8192:32 8:1024:2 > "$W/ncu.csv" 2> "$W/ncu.err"
echo "ncu rc=$? ($(el))"; grep -c gpu__time_duration "$W/ncu.csv"
timeout 150 python3 benchmarks/decode.py --out "$W/decode-bench.json" --budget-s 95 --flex-shapes= \
  --paged-flex-shapes= --eager-shapes= --tune-shapes= --sdpa=sdpa_cudnn,sdpa_flash --paged-sweep-shapes= \
  --paged-prefetch 1 --rep-ms=20 --rotate-mb=400 > "$W/bench.log" 2>&1
echo "bench rc=$? ($(el))"
tar czf "$OUT/s12b.tgz" -C "$W" . && ls -la "$OUT"
tail -18 "$W/bench.log"
echo "done ($(el))"
