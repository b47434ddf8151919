#!/bin/bash
# Issue 12, session 10, device call 2: the decode kernel after call 1 (benchmarks/decode_session10_gpu.sh showed the
# page-tiled read of 16-row pages 40-70 % slower: replaced by the per-key walk with loop-invariant page / row terms).
# (1) the benchmark (benchmarks/decode.py: every shape, split sweep, paged 16/64 with and without prefetch, SDPA
#     cuDNN and flash in the same run);
# (2) A/B against the session-9 kernel (benchmarks/_decode_kv_before.py = `git show e79306b:kernels/decode_kv.py`);
# (3) the `loop` and `occupancy` microbenchmarks (the compute per tile of the loops as they are now, for the
#     model's measured_loop; ncu's occupancy limits of the recompiled kernels).
# Everything under $W, packed into $OUT/s10b.tgz.  usage: OUT=... bash benchmarks/decode_session10b_gpu.sh
set -u
SCRIPT=benchmarks/decode_session10b_gpu.sh WORK=/tmp/s10b; . benchmarks/decode_device_common.sh
timeout 100 python3 benchmarks/decode.py --out "$W/decode-bench.json" --budget-s 60 --flex-shapes= \
  --paged-flex-shapes= --eager-shapes= --tune-shapes= --sdpa=sdpa_cudnn,sdpa_flash --paged-sweep-shapes= \
  --rep-ms=20 > "$W/bench.log" 2>&1
echo "bench rc=$? ($(el))"; tail -15 "$W/bench.log"
timeout 45 python3 benchmarks/decode_ab.py --before benchmarks/_decode_kv_before.py --out "$W/ab.json" \
  --shapes 1x1024,1x8192,8x1024,8x8192,64x1024,8x32768 --layouts contiguous,paged16 --budget-s 20 > "$W/ab.log" 2>&1
echo "ab rc=$? ($(el))"; tail -14 "$W/ab.log"
timeout 95 python3 benchmarks/decode_mechanisms_gpu.py --sets loop,occupancy --deadline-s 25 --out "$W/loop.json" \
  > "$W/loop.log" 2>&1
echo "loop rc=$? ($(el))"; tail -3 "$W/loop.log"
tar czf "$OUT/s10b.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
