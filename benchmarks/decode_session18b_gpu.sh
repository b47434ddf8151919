#!/bin/bash
# Issue 12, session 18, device call 2 (~80-110 s of command): GPU exactness of the new default's tile (kernels.
# decode_testing, ragged and empty sequences), then paged within 5 % of contiguous at batch 32-64 short
# contexts, where session 18's measured rule now runs the 32-key tile on contiguous caches (kernels.decode_kv.SHORT_TILE).
# Contiguous: the default (bn32 S = 1 there) and the old pick (bn128 S = 1), the default twice; paged 16- and 64-row
# pages (page_prefetch on): the default paged pick, the 32-key tile at S = 1 (the same one-wave launch, not weighed on
# paged caches) and the 128-key tile at S = 1 (TILE_CANDIDATES_PAGED off), default and bn32 twice, interleaved; SDPA
# cuDNN and SDPA flash (enable_gqa) in the same process.  Predictions committed before:
# reports/h100-sxm/decode/s18b-predictions-paged.json
# (`python benchmarks/decode_ab_predict.py --check RUN/paged.json --pred reports/h100-sxm/decode/s18b-predictions-paged.json`).
#   $OUT/s18b.tgz.   usage: OUT=... bash benchmarks/decode_session18b_gpu.sh
set -u
SCRIPT=benchmarks/decode_session18b_gpu.sh WORK=/tmp/s18b; . benchmarks/decode_device_common.sh
S=64x1024,32x1024,64x2048,48x1024
C="default;1/128/3/1/none;default"
P="default;1/32/3/1/none;1/128/3/1/none;default;1/32/3/1/none"
CV=$(echo "$S" | tr , '\n' | sed "s|\$|=$C|" | paste -sd,)
PV=$(echo "$S" | tr , '\n' | sed "s|\$|=$P|" | paste -sd,)
timeout 40 python3 -m kernels.decode_testing --name bn32_s1,default_short_b32 > "$W/exact.log" 2>&1
echo "exact rc=$? ($(el))"; cat "$W/exact.log"
timeout 120 python3 benchmarks/decode_splitd_ab.py --out "$W/paged.json" --budget-s 85 --sdpa cudnn,flash \
  --shapes "$S" --variants "$CV" --paged-variants "$PV" --pages 16,64 > "$W/paged.log" 2>&1
echo "paged rc=$? ($(el))"; grep "^|\|NOTE" "$W/paged.log"
tar czf "$OUT/s18b.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
