"""Compile, in parallel, every kernel variant benchmarks/hopper_bench.py will time, so the timed run finds them in
Triton's on-disk cache (ptxas of the 255-register backward kernels takes ~10-20 s each, one core each).

    PYTHONPATH=. python benchmarks/hopper_warm.py [--jobs 12] [--head-dims 128,64] [--dtype bf16,fp16]
        [--bwd-variants tma/tma,pointer/atomic] [--fwd-order both] [--candidates JSON] [--bwd-candidates JSON]

Each task runs one forward (and backward) on a small problem (batch 1, 2 heads, N = 1024) whose integer arguments
specialise like the benchmark's (multiples of 16), with the module switches of its variant set.  Prints one line per
task (seconds, or the error) and exits 0 even when some fail: the benchmark records those failures itself.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time


def _task(t):
    import torch

    import kernels
    import kernels.hopper as kh
    import kernels.hopper_bwd as hb
    from kernels.testing import make_inputs
    from memsim.schedule import Schedule
    d, causal, dtype, phase, tiles, sw = t
    t0 = time.time()
    try:
        kh.LONGEST_FIRST = sw.get("longest_first", True)
        hb.LOADS, hb.DQ_REDUCE = sw.get("loads", "tma"), sw.get("dq_reduce", "tma")
        hb.LOOP = sw.get("loop", "split")
        q, k, v, do = make_inputs(1, 2, 2, 1024, 1024, d, dtype, "cuda", 1)
        p = kernels.problem_for(q, k, v, causal=causal)
        if tiles.startswith("fa3:"):  # hopper_fa3's Gluon launch at one --fa3 variant (hopper_bench.fa3_variant)
            sys.path.insert(0, "benchmarks")
            import hopper_bench as hbench

            import kernels.hopper_gluon as kg
            var = hbench.fa3_variant(tiles[4:], p)
            if var is None:
                return f"{t}: skipped (no walk sections without a causal mask)"
            bn, st, walk, fence, sec, _, b0 = var
            kg.fa3_forward(p, Schedule("hopper_fa3", "fwd", 128, bn, 4, st), q, k, v, persistent=walk,
                           wait_fence=fence, section_heads=sec, block0_unmasked=b0)
            torch.cuda.synchronize()
            return f"{t}: {time.time() - t0:.1f} s"
        if tiles == "default":
            ch = kernels.default_choice(p, q, k, v)
            fs, bs = ch.forward, ch.backward
        elif tiles == "flash2":
            fs, bs = kernels.default_schedule(p, "flash2", "fwd", "cuda"), kernels.default_schedule(p, "flash2", "bwd", "cuda")
        else:
            alg, rest = tiles.split(":")
            s = Schedule(alg, phase, *(int(x) for x in rest.split(",")))
            fs, bs = (s, None) if phase == "fwd" else (kernels.default_schedule(p, "flash2", "fwd", "cuda"), s)
        f = kernels.forward(p, fs, q, k, v)
        if bs is not None:
            kernels.backward(p, bs, q, k, v, f.o, do, f)
        torch.cuda.synchronize()
        return f"{t}: {time.time() - t0:.1f} s"
    except Exception as e:  # recorded by the benchmark itself
        return f"{t}: FAILED {type(e).__name__}: {str(e)[:200]}"


def _tasks(a, dtype, fc, bc, hbench):
    """The warm-up tasks of one element type."""
    tasks = []
    for d in (int(x) for x in a.head_dims.split(",")):
        for causal in (False, True):
            tasks.append((d, causal, dtype, "fwd", "default", {}))
            tasks.append((d, causal, dtype, "fwd", "flash2", {}))
            orders = {"longest": (True,), "grid": (False,), "both": (True, False)}[a.fwd_order] if causal else (True,)
            for c in fc.get(d, []):
                for lf in orders:
                    tasks.append((d, causal, dtype, "fwd", "hopper:" + ",".join(map(str, c)), {"longest_first": lf}))
                if a.fwd_persistent and tuple(c[2:]) == (4, 2):  # the persistent forward (registry: hopper_ws)
                    tasks.append((d, causal, dtype, "fwd", "hopper_ws:" + ",".join(map(str, c)), {}))
            for cfg in (a.fa3.split(",") if a.fa3 else ()):
                if "@" not in cfg:  # section variants share their walk's compile
                    tasks.append((d, causal, dtype, "fwd", "fa3:" + cfg, {}))
            for c in bc.get(d, []):
                c, own = c[:4], c[4:]
                for var in (own or a.bwd_variants.split(",")):
                    if var == "hopper_ws":
                        tasks.append((d, causal, dtype, "bwd", "hopper_ws:" + ",".join(map(str, c)), {}))
                        continue
                    loads, red, loop = hbench.bwd_variant(var)
                    tasks.append((d, causal, dtype, "bwd", "hopper:" + ",".join(map(str, c)),
                                  {"loads": loads, "dq_reduce": red, "loop": loop}))
    return tasks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--head-dims", default="128,64")
    ap.add_argument("--dtype", default="bf16", help="comma-separated: bf16,fp16")
    ap.add_argument("--bwd-variants", default="tma/tma")
    ap.add_argument("--fwd-order", default="longest", choices=("longest", "grid", "both"))
    ap.add_argument("--fwd-persistent", action="store_true", help="also the persistent forward (algorithm hopper_ws)")
    ap.add_argument("--fa3", default=None, help="hopper_bench.py's --fa3 variants (hopper_fa3's Gluon launch)")
    ap.add_argument("--candidates", default=None)
    ap.add_argument("--bwd-candidates", default=None)
    a = ap.parse_args(argv)
    sys.path.insert(0, "benchmarks")
    import hopper_bench as hbench
    fc = hbench.CANDIDATES if a.candidates is None else {int(k): v for k, v in json.loads(a.candidates).items()}
    bc = hbench.BWD_CANDIDATES if a.bwd_candidates is None else {int(k): v for k, v in json.loads(a.bwd_candidates).items()}
    tasks = []
    for dtype in a.dtype.split(","):  # bf16,fp16: every task once per element type
        tasks += _tasks(a, dtype, fc, bc, hbench)
    t0 = time.time()
    with mp.get_context("spawn").Pool(min(a.jobs, len(tasks))) as pool:
        for line in pool.imap_unordered(_task, tasks):
            print(line, flush=True)
    print(f"warm: {len(tasks)} tasks in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
