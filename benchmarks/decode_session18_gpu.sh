#!/bin/bash
# Issue 12, session 18, device call 1 (~100-150 s of command; prepared in session 17, extended in 18 with repeats and
# the tile block).
# (1) rule block: should the split rule rank with session 17's form (`memsim.inference.RULE_RATE_SPREAD`)?  With it 47
# of 648 grid picks move; this times the 32 / 8-head ones that fit a call -- each shape's current pick (by name and as
# "default") interleaved with the pick of the rule with the spread, twice each -- contiguous 2 x 1k, 32 x 16k,
# 32 x 32k, 64 x 32k (a goal shape: S = 1 ran 1.004x cuDNN in session 15) and paged 32 x 8k, 64 x 16k at 16- / 64-row
# pages; SDPA cuDNN in the same process.  Predictions committed before (session 17's form, which ranks them within
# 0.1-1 %): reports/h100-sxm/decode/s18-predictions-rulespread.json.
# (2) tile block: the default's 128-key tile (bn128 S = 1 at all of these) against the 32-key tile at S = 1 at batch
# >= 32 short contexts, interleaved default / bn32 three times each, SDPA cuDNN after.  Predictions committed before:
# reports/h100-sxm/decode/s18-predictions-tile.json.
# Check: `python benchmarks/decode_ab_predict.py --check RUN/rule.json --pred ...rulespread.json` (and tile.json).
# Adopt a moved pick only where it ran faster than the old one beyond the run's spread (every repeat of the new below
# every repeat of the old).
#   $OUT/s18.tgz.   usage: OUT=... bash benchmarks/decode_session18_gpu.sh
set -u
SCRIPT=benchmarks/decode_session18_gpu.sh WORK=/tmp/s18; . benchmarks/decode_device_common.sh
V="2x1024=8/128/3/1/pdl;6/64/3/1/pdl;default;6/64/3/1/pdl"
V="$V,32x16384=1/128/3/1/none;8/64/3/1/pdl;default;8/64/3/1/pdl"
V="$V,32x32768=1/128/3/1/none;6/128/3/1/pdl;default;6/128/3/1/pdl"
V="$V,64x32768=1/128/3/1/none;3/128/3/1/pdl;default;3/128/3/1/pdl,32x8192=default,64x16384=default"
PV="32x8192=12/64/3/1/pdl;8/64/3/1/pdl;12/64/3/1/pdl;8/64/3/1/pdl"
PV="$PV,64x16384=8/64/3/1/pdl;4/64/3/1/pdl;8/64/3/1/pdl;4/64/3/1/pdl"
timeout 120 python3 benchmarks/decode_splitd_ab.py --out "$W/rule.json" --budget-s 85 \
  --shapes 2x1024,32x16384,32x32768,64x32768,32x8192,64x16384 --variants "$V" --paged-variants "$PV" --pages 16,64 \
  > "$W/rule.log" 2>&1
echo "rule rc=$? ($(el))"; grep "^|\|NOTE" "$W/rule.log"
T="default;1/32/3/1/none;default;1/32/3/1/none;default;1/32/3/1/none"
S=64x1024,48x1024,80x1024,64x512,32x1024,128x1024,64x2048,32x2048
TV=$(echo "$S" | tr , '\n' | sed "s|\$|=$T|" | paste -sd,)
timeout 80 python3 benchmarks/decode_splitd_ab.py --out "$W/tile.json" --budget-s 55 --no-paged \
  --shapes "$S" --variants "$TV" > "$W/tile.log" 2>&1
echo "tile rc=$? ($(el))"; grep "^|\|NOTE" "$W/tile.log"
tar czf "$OUT/s18.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
