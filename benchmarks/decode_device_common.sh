# Sourced by the decode device scripts (benchmarks/decode_session*_gpu.sh): the work folder, the environment record.
# usage: SCRIPT=benchmarks/x.sh WORK=/tmp/x; . benchmarks/decode_device_common.sh
# sets OUT (default /tmp/<basename of WORK>_out), W (=WORK, emptied), T0, el (seconds since T0); writes $W/env.txt
OUT=${OUT:-${WORK}_out}; W=$WORK; rm -rf "$W"; mkdir -p "$W" "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm --format=csv
  python3 -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
  ncu --version | tail -1; git log --oneline -1 2>/dev/null
  echo "command: OUT=\$OUT bash $SCRIPT"; } > "$W/env.txt" 2>&1
cat "$W/env.txt"
# measure_heldout SEED SECONDS: the frozen held-out draw reports/h100-sxm/decode/seed$SEED/decode_cases.json under ncu
# into $W/dr$SEED (log $W/heldout.log), cut at SECONDS
measure_heldout() {
  timeout "$2" python3 -m verification.suite_decode measure \
    --cases-json "reports/h100-sxm/decode/seed$1/decode_cases.json" --out "$W/dr$1" --timeout $(( $2 - 5 )) \
    > "$W/heldout.log" 2>&1
  echo "heldout rc=$? ($(el))"; tail -3 "$W/heldout.log"
}
# measure_specs NAME SPECS SECONDS: the decode case specs SPECS (a decode_cases.json) under ncu into $W/NAME (log
# $W/NAME.log), cut at SECONDS
measure_specs() {
  timeout "$3" python3 -m verification.suite_decode measure --cases-json "$2" --out "$W/$1" --timeout $(( $3 - 5 )) \
    > "$W/$1.log" 2>&1
  echo "$1 rc=$? ($(el))"; tail -3 "$W/$1.log"
}
