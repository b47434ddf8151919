"""One forward (or, with --bwd, backward) launch of each implementation named on the command line, for ncu
(issue 9's "what limits speed"): bf16, B*N = 16k, H*d = 2048.

    ncu ... -k regex:'_hopper_bwd_dkdvdq|_flash2_bwd_dk|_flash2_bwd_dq' python benchmarks/hopper_ncu.py --bwd \
        --d 128 --n 16384 --impls hopper:64,128,8,2 flash2:64,64,4,2 hopper:64,128,4,2@ws

    ncu --section SpeedOfLight --section WarpStateStats --section ComputeWorkloadAnalysis \
        -k regex:'_hopper_fwd|_flash2_fwd' python benchmarks/hopper_ncu.py --d 128 --n 16384 \
        --impls hopper:128,128,4,2 flash2
"""
import argparse

import torch

import kernels
from kernels.testing import make_inputs
from memsim.schedule import Schedule


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--impls", nargs="+", default=["hopper:128,128,4,2", "flash2"])
    ap.add_argument("--bwd", action="store_true", help="backward launches (after one flash2 forward)")
    a = ap.parse_args()
    import kernels.hopper_bwd as hb
    B, H = 16384 // a.n, 2048 // a.d
    q, k, v, do = make_inputs(B, H, H, a.n, a.n, a.d, "bf16", "cuda", 1)
    p = kernels.problem_for(q, k, v, causal=a.causal)
    phase = "bwd" if a.bwd else "fwd"
    f = kernels.forward(p, kernels.default_schedule(p, "flash2", "fwd", "cuda"), q, k, v) if a.bwd else None
    for spec in a.impls:  # alg[:tiles][@loop], e.g. hopper:64,128,4,2@ws (kernels.hopper_bwd.LOOP)
        spec, _, loop = spec.partition("@")
        hb.LOOP = loop or "split"
        alg, _, tiles = spec.partition(":")
        s = (Schedule(alg, phase, *(int(x) for x in tiles.split(","))) if tiles
             else kernels.default_schedule(p, alg, phase, "cuda"))
        for _ in range(2):  # the first call compiles; ncu -k/-c pick the launches
            if a.bwd:
                kernels.backward(p, s, q, k, v, f.o, do, f)
            else:
                kernels.forward(p, s, q, k, v)
        torch.cuda.synchronize()
        print(spec, s)


if __name__ == "__main__":
    main()
