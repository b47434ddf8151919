"""What SDPA's cuDNN backend launches on this card (issue 9, session 21): per cell (B*N = 16k, H*d = 2048) one
forward and one backward of SDPA cuDNN under torch.profiler -- every kernel's name, grid, block, registers per
thread, shared memory and duration -- and, with --ours, our default backward's kernels at the same cells.

Session 21's split probe found cuDNN's d=128 causal N=1024 backward as three launches like ours (dot(dO, O) 96 us,
the main kernel 422 us, the dQ conversion 76 us) with a PERSISTENT main kernel (grid 132 x 384 threads, 168
registers, 216 064 B of shared memory, "64x64x128" in its name) where our pass is 2048 CTAs of 468 us: the census says
which cells that holds for, and what cuDNN's forward runs (the d=64 causal N=1024 forward cell, 0.86-0.89x).

    PYTHONPATH=. python benchmarks/hopper_fa3_cudnn_census.py --out DIR [--cells 128/1024/1,...] [--ours 128/1024/1,...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

CELLS = "128/1024/1,128/1024/0,128/4096/1,128/4096/0,128/16384/1,128/16384/0,64/1024/1,64/1024/0,64/4096/1,64/16384/0"


def kernels_of(fn, path):
    """fn once under torch.profiler (after a warm call): [(name, grid, block, regs, smem, dur_us)] in start order."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    prof.export_chrome_trace(str(path))
    ev = sorted((e for e in json.loads(Path(path).read_text())["traceEvents"]
                 if e.get("cat") == "kernel" and e.get("ph") == "X"), key=lambda e: e["ts"])
    Path(path).unlink()
    return [dict(name=e["name"][:160], grid=e["args"].get("grid"), block=e["args"].get("block"),
                 regs=e["args"].get("registers per thread"), smem=e["args"].get("shared memory"),
                 us=round(e["dur"], 1)) for e in ev]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cells", default=CELLS)
    ap.add_argument("--ours", default="", help="cells where our default backward's kernels are listed too")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    ap.add_argument("--ncu-cell", default=None,
                    help="d/N/causal: only SDPA cuDNN's backward there, twice (for ncu: --launch-skip 1)")
    ap.add_argument("--ncu-fwd", default=None, metavar="IMPL",
                    help="with --ncu-cell: the forward of IMPL (sdpa_cudnn, or one of our algorithms with its "
                         "registry default schedule: flash2, hopper_fa3), twice")
    a = ap.parse_args(argv)
    if a.ncu_cell and a.ncu_fwd:
        import torch

        import kernels
        from benchmarks.hopper_fa3_bwd_diag import parse_case
        d, n, causal = parse_case(a.ncu_cell)
        dt = torch.bfloat16 if a.dtype == "bf16" else torch.float16
        q, k, v = (torch.randn(16384 // n, 2048 // d, n, d, dtype=dt, device="cuda") for _ in range(3))
        if a.ncu_fwd == "sdpa_cudnn":
            from torch.nn.attention import SDPBackend, sdpa_kernel
            for _ in range(2):
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:
            p = kernels.problem_for(q, k, v, causal=causal)
            s = kernels.default_schedule(p, a.ncu_fwd, "fwd", q.device)
            for _ in range(2):
                kernels.forward(p, s, q, k, v)
        torch.cuda.synchronize()
        return 0
    if a.ncu_cell:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        from benchmarks.hopper_fa3_bwd_diag import parse_case
        d, n, causal = parse_case(a.ncu_cell)
        dt = torch.bfloat16 if a.dtype == "bf16" else torch.float16
        q, k, v, do = (torch.randn(16384 // n, 2048 // d, n, d, dtype=dt, device="cuda") for _ in range(4))
        qq, kk, vv = (t.requires_grad_(True) for t in (q, k, v))
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            oo = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
        for _ in range(2):
            torch.autograd.grad(oo, (qq, kk, vv), do, retain_graph=True)
        torch.cuda.synchronize()
        return 0
    import torch
    import triton
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from benchmarks.hopper_fa3_bwd_diag import parse_case, setup
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rec = []
    for c in [x for x in a.cells.split(",") if x]:
        d, n, causal = parse_case(c)
        b, h = 16384 // n, 2048 // d
        dt = torch.bfloat16 if a.dtype == "bf16" else torch.float16
        g = torch.Generator(device="cuda").manual_seed(0)
        q, k, v, do = (torch.randn(b, h, n, d, dtype=dt, device="cuda", generator=g) for _ in range(4))
        qq, kk, vv = (t.requires_grad_(True) for t in (q, k, v))

        def fwd():
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
        oo = fwd()
        for phase, fn in (("fwd", fwd), ("bwd", lambda: torch.autograd.grad(oo, (qq, kk, vv), do,
                                                                            retain_graph=True))):
            try:
                ks = kernels_of(fn, out / "census-trace.json")
            except Exception as e:  # noqa: BLE001 -- recorded
                ks = [dict(error=f"{type(e).__name__}: {str(e)[:200]}")]
            r = dict(d=d, seq=n, causal=causal, batch=b, heads=h, dtype=a.dtype, impl="sdpa_cudnn", phase=phase,
                     kernels=ks)
            rec.append(r)
            print(json.dumps(r), flush=True)
        del oo, qq, kk, vv
        if c in a.ours.split(","):
            import kernels
            p, q2, k2, v2, do2, f = setup(d, n, causal, a.dtype)
            ch = kernels.default_choice(p, q2, k2, v2)
            ks = kernels_of(lambda: kernels.backward(p, ch.backward, q2, k2, v2, f.o, do2, f),
                            out / "census-trace.json")
            r = dict(d=d, seq=n, causal=causal, batch=b, heads=h, dtype=a.dtype,
                     impl=f"ours:{ch.backward.algorithm}", phase="bwd", kernels=ks)
            rec.append(r)
            print(json.dumps(r), flush=True)
    prov = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                cudnn=torch.backends.cudnn.version(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                command=" ".join(sys.argv))
    (out / f"cudnn_census_{a.dtype}.json").write_text(json.dumps(dict(provenance=prov, records=rec), indent=1))
    print("\n| d/N/causal | impl | phase | kernel | grid | block | regs | smem B | us |\n| --- | --- | --- | --- | --- | "
          "--- | --- | --- | --- |")
    for r in rec:
        for kx in r["kernels"]:
            if "error" in kx:
                print(f"| {r['d']}/{r['seq']}/{int(r['causal'])} | {r['impl']} | {r['phase']} | {kx['error'][:80]} |")
                continue
            print(f"| {r['d']}/{r['seq']}/{int(r['causal'])} | {r['impl']} | {r['phase']} | {kx['name'][:72]} | "
                  f"{kx['grid']} | {kx['block']} | {kx['regs']} | {kx['smem']} | {kx['us']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
