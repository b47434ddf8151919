#!/bin/bash
# Issue 12, PREPARED in session 17 for the next decode session (not run; ~60-100 s of command): should the split rule
# rank with session 17's form (`memsim.inference.RULE_RATE_SPREAD`)?  With it 47 of 648 grid picks move; this times
# the 32 / 8-head ones that fit a call -- each shape's current pick ("default" and the same schedule by name) beside
# the pick of the rule with the spread -- contiguous 2 x 1k, 32 x 16k, 32 x 32k, 64 x 32k (a goal shape: S = 1 ran
# 1.004x cuDNN in session 15) and paged 32 x 8k, 64 x 16k at 16- / 64-row pages; SDPA cuDNN in the same process.
# Predictions committed before (session 17's form, which ranks them within 0.1-1 %):
# reports/h100-sxm/decode/s18-predictions-rulespread.json
# (`python benchmarks/decode_ab_predict.py --check RUN/rule.json --pred reports/h100-sxm/decode/s18-predictions-rulespread.json`).
# Adopt RULE_RATE_SPREAD = True only if the moved picks run no slower (within the run's spread) and 64 x 32k holds 1.0x.
#   $OUT/s18.tgz.   usage: OUT=... bash benchmarks/decode_session18_gpu.sh
set -u
SCRIPT=benchmarks/decode_session18_gpu.sh WORK=/tmp/s18; . benchmarks/decode_device_common.sh
V="2x1024=default;8/128/3/1/pdl;6/64/3/1/pdl,32x16384=default;1/128/3/1/none;8/64/3/1/pdl,32x32768=default;1/128/3/1/none;6/128/3/1/pdl,64x32768=default;1/128/3/1/none;3/128/3/1/pdl,32x8192=default,64x16384=default"
PV="32x8192=12/64/3/1/pdl;8/64/3/1/pdl,64x16384=8/64/3/1/pdl;4/64/3/1/pdl"
timeout 170 python3 benchmarks/decode_splitd_ab.py --out "$W/rule.json" --budget-s 130 \
  --shapes 2x1024,32x16384,32x32768,64x32768,32x8192,64x16384 --variants "$V" --paged-variants "$PV" --pages 16,64 \
  > "$W/rule.log" 2>&1
echo "rule rc=$? ($(el))"; grep "^|\|NOTE" "$W/rule.log"
tar czf "$OUT/s18.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
