#!/bin/bash
# Issue 12, PREPARED in session 15 for the next decode session (not run yet; ~90-120 s of command): (1) the ``loop3`` set of
# `benchmarks/decode_mechanisms_gpu.py` under ncu -- the compute per K/V tile of the loops whose c the model takes from
# a class ratio measured on 64-key tiles: the 128-key paged loops (16- / 64-row pages, prefetch; kernels.decode does not
# weigh the 128-key tile on paged caches until they are measured, `kernels.decode_kv._own_loop_measured`) and the
# split_d loops (bn128 contiguous / paged16 / paged64, bn64 contiguous).  Hidden (c), stream and in-order modes at one
# CTA per SM.  Predictions committed before: reports/h100-sxm/decode/s16-loop3-predictions.json
# (`benchmarks/decode_loop_predict.py --check RUN`).  After: `python benchmarks/decode_mechanisms_gpu.py
# --merge-loop-add RUN` (own ratios only; class ratios unchanged), then re-rank the paged picks against
# reports/h100-sxm/decode/s15-call2/ab.json (it timed the 128-key pick and the 64-key one at 10 paged shapes).
#   $OUT/s16.tgz.   usage: OUT=... bash benchmarks/decode_session16_gpu.sh
set -u
SCRIPT=benchmarks/decode_session16_gpu.sh WORK=/tmp/s16; . benchmarks/decode_device_common.sh
timeout 150 python3 benchmarks/decode_mechanisms_gpu.py --sets loop3 --deadline-s 70 --out "$W/loop3.json" \
  > "$W/loop3.log" 2>&1
echo "loop3 rc=$? ($(el))"
# (2) 64 x 1k's named miss (the form -4.4 % on the 128-key tile: 512 CTAs, one per SM, 3.9 waves): the same tile at
# 33 / 66 / 99 / 64 sequences of 1k keys (2 / 4 / 6 / 3.9 waves) beside bn32 (5 CTAs per SM); the slope over waves is
# what a wave of one-CTA-per-SM launches costs (predicted before: reports/h100-sxm/decode/s16-waves-predictions.json)
timeout 60 python3 benchmarks/decode_splitd_ab.py --out "$W/waves.json" --budget-s 45 --no-paged \
  --shapes 33x1024,66x1024,99x1024,64x1024 \
  --variants "33x1024=1/128/3/1/none;1/32/3/1/none,66x1024=1/128/3/1/none;1/32/3/1/none,99x1024=1/128/3/1/none;1/32/3/1/none,64x1024=1/128/3/1/none;1/32/3/1/none" \
  > "$W/waves.log" 2>&1
echo "waves rc=$? ($(el))"; grep "^|" "$W/waves.log"
gzip -f "$W"/*.ncu.log 2>/dev/null
tar czf "$OUT/s16.tgz" -C "$W" . && ls -la "$OUT"
tail -25 "$W/loop3.log"
echo "done ($(el))"
