"""Where the time goes in a small decode step (issue 12, session 12): kernels.decode at the given shapes, eagerly, a
few times each, for ncu to time each launch (split and combine) with its caches flushed (ncu's default cache control:
the K/V come from DRAM, as over rotated caches in a CUDA graph).  bf16, d = 128, 32 / 8 heads, one query token.

    ncu --clock-control none -k regex:_decode_ --metrics gpu__time_duration.sum,dram__bytes_read.sum \\
        python3 benchmarks/decode_ncu_small.py 1:8192:16 8:1024:2
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import torch

    from kernels.decode_kv import decode
    from kernels.decode_testing import make_problem_inputs
    from memsim.inference import DecodeProblem
    for spec in (argv if argv is not None else sys.argv[1:]):
        B, N, S = (int(x) for x in spec.split(":"))
        p = DecodeProblem.uniform(B, 32, 8, 128, N, dtype="bf16")
        q, kc, vc, lens, _ = make_problem_inputs(p, "cuda", seed=B * 7 + N)
        for _ in range(3):
            decode(q, kc, vc, lens, num_splits=S, check_values=False)
        torch.cuda.synchronize()
        print(f"ran {spec} x3", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
