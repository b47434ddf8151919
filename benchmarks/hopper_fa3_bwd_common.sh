# Sourced by the hopper_fa3 backward device scripts (benchmarks/hopper_fa3_bwd_run*.sh) from the repository root,
# after they set OUT and TOTAL_S: the environment, the clock (T0; `left` = seconds of TOTAL_S left), the test file T
# and diag script D, the 12-cell grid (G128, G64: d/N/causal), and $OUT/env.txt (date, card, versions).
export PYTHONPATH=. PYTHONUNBUFFERED=1
T0=$SECONDS
left() { echo $(( TOTAL_S - (SECONDS - T0) )); }
T=tests/test_kernels_hopper_gluon_bwd.py
D=benchmarks/hopper_fa3_bwd_diag.py
G128=128/1024/0,128/4096/0,128/16384/0,128/1024/1,128/4096/1,128/16384/1
G64=64/1024/0,64/4096/0,64/16384/0,64/1024/1,64/4096/1,64/16384/1
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv 2>&1
  python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
