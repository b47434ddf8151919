#!/bin/bash
# Issue 12, session 10, device call 1: the decode kernel with one address base per tile (contiguous, 64-row pages)
# and page-tiled reads of 16-row pages (kernels/decode_kv.py).
# (1) the benchmark (benchmarks/decode.py: every shape, split sweep, paged 16/64 with and without prefetch, SDPA
#     cuDNN and flash in the same run, tile/warp/stage tune rows on 2 shapes);
# (2) A/B against the session-9 kernel (benchmarks/_decode_kv_before.py = `git show e79306b:kernels/decode_kv.py`),
#     same inputs and splits, interleaved;
# (3) the `loop` microbenchmark (benchmarks/decode_mechanisms_gpu.py --sets loop): the new loops' compute per tile.
# Everything under $W, packed into $OUT/s10.tgz.  usage: OUT=... bash benchmarks/decode_session10_gpu.sh
set -u
SCRIPT=benchmarks/decode_session10_gpu.sh WORK=/tmp/s10; . benchmarks/decode_device_common.sh
timeout 110 python3 benchmarks/decode.py --out "$W/decode-bench.json" --budget-s 65 --flex-shapes= \
  --paged-flex-shapes= --eager-shapes= --tune-shapes=8x1024,64x8192 --sdpa=sdpa_cudnn,sdpa_flash \
  --paged-sweep-shapes= --rep-ms=20 > "$W/bench.log" 2>&1
echo "bench rc=$? ($(el))"; tail -16 "$W/bench.log"
timeout 45 python3 benchmarks/decode_ab.py --before benchmarks/_decode_kv_before.py --out "$W/ab.json" \
  --budget-s 25 > "$W/ab.log" 2>&1
echo "ab rc=$? ($(el))"; tail -26 "$W/ab.log"
timeout 75 python3 benchmarks/decode_mechanisms_gpu.py --sets loop --deadline-s 25 --out "$W/loop.json" \
  > "$W/loop.log" 2>&1
echo "loop rc=$? ($(el))"; tail -3 "$W/loop.log"
tar czf "$OUT/s10.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
