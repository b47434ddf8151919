#!/usr/bin/env bash
# H100 speed check for issue 7 (registry + flash2 loop bodies as @triton.jit helpers): the flash2 rows of
# the committed benchmarks/results/nvidia-h100-80gb-hbm3.json -- bf16, d = 64 and 128, N = 4096 and 16384,
# causal and not, forward and backward -- re-measured with SDPA flash and cuDNN in the same run (the
# control: if the card or software differ from the committed run, SDPA moves too).  Data only, no
# pass/fail: $OUT/registry_speed_check.json (the benchmark's records + provenance), its .md table, the
# per-record JSON lines, env.txt (card, versions, date, command), and compare.json / compare.md: each row
# beside the committed one (ratio now / then) and our flash2 / SDPA cuDNN now and then.
#
# Run on the GPU machine from the repository root:   OUT=/some/folder bash benchmarks/registry_speed_check.sh
# (the device tool sets $OUT; PYTHONPATH=. is set here).
set -euo pipefail
: "${OUT:?set OUT to the folder for the results}"
cd "$(dirname "$0")/.."
export PYTHONPATH=.
mkdir -p "$OUT"
CMD=(python benchmarks/attention.py --impls flash2,sdpa_flash,sdpa_cudnn --passes fwd,bwd --dtypes bf16
     --head-dims 64,128 --causal both --seqs 4096,16384 --no-gpt2 --time-budget-s "${BUDGET_S:-420}"
     --out "$OUT/registry_speed_check.json" --log "$OUT/registry_speed_check.jsonl")
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command: ${CMD[*]}"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo 'no git history on this machine')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
} > "$OUT/env.txt" 2>&1
"${CMD[@]}" 2>&1 | tee "$OUT/registry_speed_check.log"

python - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
then = json.loads(Path("benchmarks/results/nvidia-h100-80gb-hbm3.json").read_text())
now = json.loads((out / "registry_speed_check.json").read_text())
key = lambda r: (r["impl"], r["pass"], r["dtype"], r["head_dim"], r["causal"], r["seq"])  # noqa: E731
old = {key(r): r for r in then["records"] if r.get("tflops")}
rows = []
for r in now["records"]:
    if not r.get("tflops"):
        continue
    o = old.get(key(r))
    rows.append(dict(zip(("impl", "pass", "dtype", "head_dim", "causal", "seq"), key(r)),
                     tflops_now=r["tflops"], tflops_then=o["tflops"] if o else None,
                     ratio=r["tflops"] / o["tflops"] if o else None))
by = {(x["impl"], x["pass"], x["head_dim"], x["causal"], x["seq"]): x for x in rows}
lines = ["| pass | d | causal | N | flash2 now | then | now/then | cuDNN now | then | flash2/cuDNN now | then |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for (impl, ps, d, c, n), x in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3], kv[0][4])):
    if impl != "flash2":
        continue
    cu = by.get(("sdpa_cudnn", ps, d, c, n), {})
    f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    rel = lambda a, b: None if a is None or b is None else a / b  # noqa: E731
    lines.append(f"| {ps} | {d} | {c} | {n} | {f(x['tflops_now'], 0)} | {f(x['tflops_then'], 0)} | {f(x['ratio'])} | "
                 f"{f(cu.get('tflops_now'), 0)} | {f(cu.get('tflops_then'), 0)} | "
                 f"{f(rel(x['tflops_now'], cu.get('tflops_now')))} | {f(rel(x['tflops_then'], cu.get('tflops_then')))} |")
(out / "compare.json").write_text(json.dumps({"committed": "benchmarks/results/nvidia-h100-80gb-hbm3.json",
                                              "committed_provenance": then["provenance"], "rows": rows}, indent=1))
(out / "compare.md").write_text("TFLOP/s, bf16, B*N = 16384, H*d = 2048 (now = this run; then = the committed file)\n\n"
                                + "\n".join(lines) + "\n")
print((out / "compare.md").read_text())
EOF
