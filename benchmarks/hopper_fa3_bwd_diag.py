"""hopper_fa3 bwd on the card: where the time of the Gluon dK/dV/dQ pass goes (issue 9, session 11).

Per case (bf16, B*N = 16k, H*d = 2048): the pass `_hopper_fa3_bwd` alone (do_bench medians, events) in variants --
the kernel as registered (2 and 3 stages), K_w/V_w as register operands (`kv_regs`, d=64), and two timing
diagnostics that compute a WRONG dQ (diag 1: dQ's atomic adds predicated off; diag 2: no dQ at all: the dK/dV work
alone) -- beside the whole backward (kernels.backward with the hopper_fa3 schedule, the default's backward) and SDPA
cuDNN's backward, in the same process.  Writes DIR/fa3_bwd_diag.json (+ provenance) and prints a table.

    PYTHONPATH=. python benchmarks/hopper_fa3_bwd_diag.py --out DIR [--cases 128/16384/0,64/4096/1]
    ncu ... python benchmarks/hopper_fa3_bwd_diag.py --ncu-case 128/16384/0[/variant]   (one launch of the pass)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: name: (stages, kv_regs, diag, dq_tma[, stat_smem, dq_async]) -- None: the module's switch
VARIANTS = {"s2": (2, None, 0, False), "s3": (3, None, 0, False), "kv_regs": (2, True, 0, False),
            "diag1_no_dq_adds": (2, None, 1, False), "diag2_no_dq": (2, None, 2, False), "dq_tma": (2, None, 0, True),
            "dq_tma_s3": (3, None, 0, True), "dq_tma_kv_regs": (2, True, 0, True),
            "dq_tma_stat_smem": (2, None, 0, True, True, False), "dq_tma_async": (2, None, 0, True, False, True),
            "dq_tma_stat_smem_async": (2, None, 0, True, True, True),
            "diag2_stat_smem": (2, None, 2, True, True, False)}


def setup(d: int, n: int, causal: bool):
    import torch

    import kernels
    from kernels.testing import make_inputs, seed_of
    b, h = 16384 // n, 2048 // d
    q, k, v, do = make_inputs(b, h, h, n, n, d, "bf16", "cuda", seed_of("fa3_bwd_diag", d, n, causal))
    p = kernels.problem_for(q, k, v, causal=causal)
    f = kernels.forward(p, kernels.default_schedule(p, "flash2", "fwd", q.device), q, k, v)
    return p, q, k, v, do, f


def pass_fn(p, q, k, v, do, f, variant: str):
    """A closure launching the dK/dV/dQ pass alone (its delta and dQacc from hopper bwd's preprocess, once)."""
    import torch

    from kernels.hopper_bwd import _hopper_bwd_preprocess
    from kernels._common import strides3
    from kernels.hopper_gluon_bwd import fa3_bwd_dkdvdq
    from memsim.schedule import Schedule, kernel_launches
    st, kv_regs, diag, dq_tma, stat_smem, dq_async = (VARIANTS[variant] + (None, None))[:6]
    s = Schedule("hopper_fa3", "bwd", 64, 128, 4, st)
    pre, main, _ = kernel_launches(p, s)
    delta = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    dqacc = torch.empty((p.batch, p.heads_q, p.seq_q, p.head_dim), dtype=torch.float32, device=q.device)
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    _hopper_bwd_preprocess[pre.grid](f.o, do, delta, dqacc, *strides3(f.o), *strides3(do), p.heads_q, p.seq_q,
                                     HEAD_DIM=p.head_dim, BLOCK_M=64, Q_FASTEST=True, num_warps=4, num_stages=2)
    return lambda: fa3_bwd_dkdvdq(p, s, main.grid, q, k, v, do, f.lse, delta, dqacc, dk, dv, kv_regs, diag,
                                          dq_tma, stat_smem, dq_async)


def parse_case(c: str):
    d, n, causal = c.split("/")[:3]
    return int(d), int(n), causal in ("1", "True", "causal")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--cases", default="128/16384/0,128/4096/1,64/16384/0,64/4096/1")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--ncu-case", default=None, help="d/N/causal[/variant]: launch the pass once (for ncu)")
    a = ap.parse_args(argv)
    import torch
    import triton

    import kernels
    if a.ncu_case:
        d, n, causal = parse_case(a.ncu_case)
        var = a.ncu_case.split("/")[3] if a.ncu_case.count("/") == 3 else "s2"
        p, q, k, v, do, f = setup(d, n, causal)
        fn = pass_fn(p, q, k, v, do, f, var)
        fn()
        torch.cuda.synchronize()
        return 0
    from memsim.schedule import Schedule
    out, rows = [], []
    for c in a.cases.split(","):
        d, n, causal = parse_case(c)
        p, q, k, v, do, f = setup(d, n, causal)
        fl = p.nominal_flops("bwd")
        base = dict(d=d, seq=n, causal=causal, batch=p.batch, heads=p.heads_q)
        for var in a.variants.split(","):
            if "kv_regs" in var and d != 64:
                continue
            try:
                fn = pass_fn(p, q, k, v, do, f, var)
                ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
                out.append(dict(base, impl="pass:" + var, ms=ms, tflops=fl / ms * 1e-9))
            except Exception as e:  # noqa: BLE001 -- recorded
                out.append(dict(base, impl="pass:" + var, error=f"{type(e).__name__}: {str(e)[:300]}"))
        s = Schedule("hopper_fa3", "bwd", 64, 128, 4, 2)
        ch = kernels.default_choice(p, q, k, v)
        import kernels.hopper_gluon_bwd as hb

        def fa3_tma():
            old, hb.DQ_TMA = hb.DQ_TMA, True
            try:
                return kernels.backward(p, s, q, k, v, f.o, do, f)
            finally:
                hb.DQ_TMA = old
        for name, fn in (("bwd:hopper_fa3", lambda: kernels.backward(p, s, q, k, v, f.o, do, f)),
                         ("bwd:hopper_fa3[dq_tma]", fa3_tma),
                         (f"bwd:default({ch.backward.algorithm})",
                          lambda: kernels.backward(p, ch.backward, q, k, v, f.o, do, f))):
            ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
            out.append(dict(base, impl=name, ms=ms, tflops=fl / ms * 1e-9))
        qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            oo = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
        ms = triton.testing.do_bench(lambda: torch.autograd.grad(oo, (qq, kk, vv), do, retain_graph=True),
                                     warmup=25, rep=100, return_mode="median")
        out.append(dict(base, impl="bwd:sdpa_cudnn", ms=ms, tflops=fl / ms * 1e-9))
        for r in out[len(rows):]:
            print(json.dumps(r), flush=True)
        rows = list(out)
    print("\n| d | causal | N | impl | ms | TFLOP/s (bwd FLOPs) |\n| --- | --- | --- | --- | --- | --- |")
    for r in out:
        print(f"| {r['d']} | {r['causal']} | {r['seq']} | {r['impl']} | {r.get('ms', float('nan')):.3f} | "
              f"{r.get('tflops', float('nan')):.0f} |" if "ms" in r else f"| {r['d']} | {r['causal']} | {r['seq']} | "
              f"{r['impl']} | error | {r['error'][:80]} |")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        prov = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                    cudnn=torch.backends.cudnn.version(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    command=" ".join(sys.argv))
        Path(a.out, "fa3_bwd_diag.json").write_text(json.dumps(dict(provenance=prov, records=out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
