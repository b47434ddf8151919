#!/bin/bash
# Issue 12, session 20, device call 3 (~45 s of command): which tile at one split on a contiguous cache of <= 2k keys
# (4 query rows per CTA) between the measured rules' edges -- call 2 found bn128 1.7-3.0 % faster than the default at
# 24 / 40 x 1k (bn64 picks) and 56 x 1k / 2k (SHORT_TILE's bn32 picks), where the form ranks bn128 slower; session 16
# found bn32 4.5 % faster than bn64 at 40 x 2k.  The 32- / 64- / 128-key tiles at num_stages 3 against the default
# (twice, interleaved), each gated by DESIGN.md's rule, SDPA cuDNN in the same process.  Predictions committed before:
#   python benchmarks/decode_ab_predict.py --check RUN/sweep3.json --pred reports/h100-sxm/decode/s20c-predictions.json
#   $OUT/s20c.tgz.   usage: OUT=... bash benchmarks/decode_session20c_gpu.sh
set -u
SCRIPT=benchmarks/decode_session20c_gpu.sh WORK=/tmp/s20c; . benchmarks/decode_device_common.sh
SH=20x1024,24x1024,28x1024,36x1024,40x1024,44x1024,52x1024,60x1024,24x2048,40x2048,48x2048
V=$(echo "$SH" | tr , '\n' | sed 's|$|=default;1/32/3/1/none;1/64/3/1/none;1/128/3/1/none;default|' | paste -sd,)
timeout 90 python3 benchmarks/decode_splitd_ab.py --out "$W/sweep3.json" --budget-s 70 --sdpa cudnn \
  --shapes "$SH" --variants "$V" --no-paged > "$W/sweep3.log" 2>&1
echo "sweep3 rc=$? ($(el))"; grep "^|\|NOTE\|Error" "$W/sweep3.log"
tar czf "$OUT/s20c.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
