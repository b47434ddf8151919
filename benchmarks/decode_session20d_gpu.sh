#!/bin/bash
# Issue 12, session 20, device call 4 (~40 s of command): the HELD-OUT test of SHORT_TILE_ONE_WAVE_MIN_PER_SM (the
# 32-key tile in place of the form's one-wave bn64 pick at >= 1.45 CTAs per SM, contiguous; adopted from call 3) on
# moved picks no call has timed -- 26 x 512, 34 / 38 / 42 x 1k, 36 x 768, 25 / 41 x 1536, 38 x 2k: the new default,
# the old pick (bn64 S = 1), and at the early-tile picks (34-42 x <= 1k: 2.06-2.55 CTAs per SM, early_tile untimed
# there) the new pick without early_tile ("default-e"); the default twice, interleaved, each row gated by DESIGN.md's
# rule; SDPA cuDNN in the same process.  The rule predicts the new default faster than the old pick at all 8 (call
# 3: 3-6 % at 2.2-2.4 CTAs per SM, 3 % at 1.45); the graph form (below) ranks them within +-1 % and bn64 faster at
# 1.5k / 2k (its named miss); early_tile at 2.06-2.55 per SM: the form -1.6..-2.2 %, call 1's 32 x 1k a tie.  Then the GPU exactness cases of the early / default picks (ragged, empty,
# 31 / 32 / 33 keys, NaN past each length).  Predictions committed before the call:
#   python benchmarks/decode_ab_predict.py --check RUN/sweep4.json --pred reports/h100-sxm/decode/s20d-predictions.json
#   $OUT/s20d.tgz.   usage: OUT=... bash benchmarks/decode_session20d_gpu.sh
set -u
SCRIPT=benchmarks/decode_session20d_gpu.sh WORK=/tmp/s20d; . benchmarks/decode_device_common.sh
SH=34x1024,38x1024,42x1024,36x768,26x512,25x1536,41x1536,38x2048
V="34x1024=default;1/64/3/1/none;default-e;default,38x1024=default;1/64/3/1/none;default-e;default"
V="$V,42x1024=default;1/64/3/1/none;default-e;default,36x768=default;1/64/3/1/none;default-e;default"
V="$V,26x512=default;1/64/3/1/none;default,25x1536=default;1/64/3/1/none;default"
V="$V,41x1536=default;1/64/3/1/none;default,38x2048=default;1/64/3/1/none;default"
timeout 70 python3 benchmarks/decode_splitd_ab.py --out "$W/sweep4.json" --budget-s 55 --sdpa cudnn \
  --shapes "$SH" --variants "$V" --no-paged > "$W/sweep4.log" 2>&1
echo "sweep4 rc=$? ($(el))"
timeout 30 python3 -m kernels.decode_testing --name early_default_b64,short_one_wave,varlen_early_bn32 > "$W/exact.log" 2>&1
echo "exact rc=$? ($(el))"; tail -4 "$W/exact.log"
grep "^|\|NOTE\|Error" "$W/sweep4.log"
tar czf "$OUT/s20d.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
