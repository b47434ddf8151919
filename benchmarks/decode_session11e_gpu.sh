#!/bin/bash
# Issue 12, session 11, device call 5: DRAM rate vs the number of concurrent streams, all in one wave
# (benchmarks/decode_tail_gpu.py sweep mode: the real _decode_split, S = 1, 32k keys per CTA = 16.8 MB, 96 .. 392 CTAs:
# 1 per SM up to 132, then 2 and 3) -- the session-10 sweeps had 128 one-per-SM CTAs at 3.17-3.2 TB/s, more than the
# dram_stream curve's 3.05 the model caps at; traces at 128 / 264 CTAs.  $OUT/s11e.tgz.
# usage: OUT=... bash benchmarks/decode_session11e_gpu.sh
set -u
SCRIPT=benchmarks/decode_session11e_gpu.sh WORK=/tmp/s11e; . benchmarks/decode_device_common.sh
timeout 150 python3 benchmarks/decode_tail_gpu.py --out "$W/streams.json" --budget-s 60 --contexts 32768 \
  --batches 12,14,16,20,25,33,41,49 --traces 16:32768:1,33:32768:1 > "$W/streams.log" 2>&1
echo "streams rc=$? ($(el))"
tar czf "$OUT/s11e.tgz" -C "$W" . && ls -la "$OUT"
tail -12 "$W/streams.log"
echo "done ($(el))"
