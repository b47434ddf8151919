#!/bin/bash
# Issue 12, session 20, device call 5 (~30 s of command): per-CTA %smid / %globaltimer traces (decode_fixed_gpu.py) for
# the next session's model work -- the form is 5-7 % fast on the one-wave 64-key tile at 1.45-3.2 CTAs per SM and
# ranks it over bn32 where bn32 ran faster (40 x 1k / 2k) -- and of 52 x 1k (0.963x cuDNN; 20 SMs hold 4 CTAs, 112
# hold 3): when do an SM's CTAs end, by how many share the SM.  Predictions committed before:
#   python benchmarks/decode_fixed_gpu.py --check RUN/fixed5.json --pred reports/h100-sxm/decode/s20e-fixed-predictions.json
#   $OUT/s20e.tgz.   usage: OUT=... bash benchmarks/decode_session20e_gpu.sh
set -u
SCRIPT=benchmarks/decode_session20e_gpu.sh WORK=/tmp/s20e; . benchmarks/decode_device_common.sh
TC=b40_1k_bn32,b40_1k_bn64,b40_2k_bn64,b20_1k_bn32,b20_1k_bn64,b52_1k_bn32_e
timeout 45 python3 benchmarks/decode_fixed_gpu.py --out "$W/fixed5.json" --cases "$TC" --budget-s 30 > "$W/fixed5.log" 2>&1
echo "fixed5 rc=$? ($(el))"; cat "$W/fixed5.log"
tar czf "$OUT/s20e.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
