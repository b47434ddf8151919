#!/bin/bash
# Issue 12, PREPARED in session 19 for session 20 (~110-160 s of command; not run): (1) per-CTA %smid / %globaltimer
# traces (benchmarks/decode_fixed_gpu.py) of the first tile beside the length (early_tile) and without, where it gained
# (64 x 1k), tied (32 x 1k: 2 CTAs per SM), lost (64 x 2k; 16 x 1k: one CTA per SM), and 56 x 1k (0.981x cuDNN):
# when do an SM's CTAs start streaming and end, which SMs end the launch.  NB the traced wrapper holds more registers
# (bn32: 100 / 128 vs 96 / 102): 4 CTAs per SM either way, so one wave at <= 528 CTAs.  (2) The >= 1.0x cuDNN goal at
# batch sizes the benchmark never ran (24 / 40 / 56 / 72 / 96 / 12 x 1k, 16 / 56 x 2k: session 19 found 56 x 1k at
# 0.981x and 16 x 1k at 0.968x), the default twice, SDPA cuDNN in the same process; at 56 x 1k also split_d 2 at bn64
# (the form's fastest there: 80.5 vs 81.5 us) and bn128 S = 1.  Predictions committed before (session 19):
#   python benchmarks/decode_fixed_gpu.py --check RUN/fixed.json --pred reports/h100-sxm/decode/s20-fixed-predictions.json
#   python benchmarks/decode_ab_predict.py --check RUN/sweep.json --pred reports/h100-sxm/decode/s20-predictions-sweep.json
# and with memsim.inference.EARLY_BUBBLE_ONE_PER_SM on (the switch's held-out test: its one-CTA-per-SM early rows,
# 16 x 2k, 12 x 1k, 8 x 2k and the b16 trace): the same commands with the "-bubble" files.
#   $OUT/s20.tgz.   usage: OUT=... bash benchmarks/decode_session20_gpu.sh
set -u
SCRIPT=benchmarks/decode_session20_gpu.sh WORK=/tmp/s20; . benchmarks/decode_device_common.sh
TC=b64_1k_bn32,b64_1k_bn32_e,b32_1k_bn32,b32_1k_bn32_e,b64_2k_bn32,b64_2k_bn32_e,b16_1k_bn64,b16_1k_bn64_e,b56_1k_bn32_e
SH=56x1024,16x1024,24x1024,40x1024,72x1024,96x1024,12x1024,16x2048,56x2048
V="56x1024=default;default-e;1/64/3/2/none;1/128/3/1/none;default;1/64/3/2/none"
# early_tile at ONE CTA per SM on shapes no call has timed it on (held out for EARLY_BUBBLE_ONE_PER_SM's predictions)
E="16x2048=default;default+e;default;default+e,12x1024=default;default+e;default;default+e,8x2048=default;default+e;default;default+e"
timeout 70 python3 benchmarks/decode_fixed_gpu.py --out "$W/fixed.json" --cases "$TC" --budget-s 50 > "$W/fixed.log" 2>&1
echo "fixed rc=$? ($(el))"; cat "$W/fixed.log"
timeout 95 python3 benchmarks/decode_splitd_ab.py --out "$W/sweep.json" --budget-s 75 --sdpa cudnn \
  --shapes "$SH,8x2048" --variants "$V,$E,$(echo "$SH" | tr , '\n' | grep -v '56x1024\|16x2048\|12x1024' | sed 's|$|=default;default|' | paste -sd,)" \
  --no-paged > "$W/sweep.log" 2>&1
echo "sweep rc=$? ($(el))"; grep "^|\|NOTE\|Error" "$W/sweep.log"
tar czf "$OUT/s20.tgz" -C "$W" . && ls -la "$OUT"
echo "done ($(el))"
