"""hopper_fa3 bwd on the card: the whole backward's GPU time without the host (issue 9, session 22).

At causal N=1024 the host issues our backward in about as long as the GPU runs it (session 21: 645 vs 626 us), so
do_bench's figure can be the host's.  Per case (d=128, B*N = 16k, H*d = 2048) and variant (the diag's BWD_SWITCHES
names; "registered" = the registry's path) this times, ROUNDS rounds alternating, in one process:
  * bench: do_bench's median (L2 flushed before each call: the diag's and the goal table's figure), us;
  * graph: the backward captured once in a CUDA graph and replayed (do_bench's median of the replay): the GPU's time,
    us;
and SDPA cuDNN's backward by do_bench (its host is short).  Prints per-round lines, then per variant the medians
and the paired ratios against "registered" and cuDNN; writes DIR/fa3_bwd_graph_<dtype>.json.

    PYTHONPATH=. python benchmarks/hopper_fa3_bwd_graph.py --out DIR [--cases 128/1024/1] [--variants registered,epi_tma]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", default="128/1024/1")
    ap.add_argument("--variants", default="registered,epi_tma")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    a = ap.parse_args(argv)
    import torch
    import triton
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import kernels
    import kernels.hopper_gluon_bwd as hb
    from benchmarks.hopper_fa3_bwd_diag import BWD_SWITCHES, parse_case, setup

    def bench(fn):
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3

    def switched(sw, fn):
        sw = {k: v for k, v in sw.items() if not k.startswith("_")}

        def g():
            old = {k: getattr(hb, k) for k in sw}
            try:
                for k, v in sw.items():
                    setattr(hb, k, v)
                return fn()
            finally:
                for k, v in old.items():
                    setattr(hb, k, v)
        return g

    def graphed(fn):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        torch.cuda.synchronize()
        return g

    rec = []
    for c in [x for x in a.cases.split(",") if x]:
        d, n, causal = parse_case(c)
        p, q, k, v, do, f = setup(d, n, causal, a.dtype)
        s = kernels.default_schedule(p, "hopper_fa3", "bwd", q.device)
        fl = p.nominal_flops("bwd")
        fns, graphs = {}, {}
        for name in [x for x in a.variants.split(",") if x]:
            fns[name] = switched(BWD_SWITCHES[name], lambda: kernels.backward(p, s, q, k, v, f.o, do, f))
            fns[name]()
            graphs[name] = graphed(fns[name])
        qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            oo = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
        cud = lambda: torch.autograd.grad(oo, (qq, kk, vv), do, retain_graph=True)  # noqa: E731
        names = list(fns)
        for rnd in range(a.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            r = dict(d=d, seq=n, causal=causal, dtype=a.dtype, round=rnd, flops=fl, cudnn_us=bench(cud))
            for name in order:
                r[f"{name}_bench_us"] = bench(fns[name])
                r[f"{name}_graph_us"] = bench(graphs[name].replay)
            rec.append(r)
            print(json.dumps(r), flush=True)
        del graphs
    prov = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                cudnn=torch.backends.cudnn.version(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                command=" ".join(sys.argv))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    Path(a.out, f"fa3_bwd_graph_{a.dtype}.json").write_text(json.dumps(dict(provenance=prov, records=rec), indent=1))
    print("\n| dtype | case | variant | bench us (median) | graph us (median) | speed vs registered, bench (paired) | "
          "speed vs registered, graph (paired) | speed vs cuDNN, bench (paired) | TFLOP/s bench |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in sorted({(r["d"], r["seq"], r["causal"]) for r in rec}):
        rs = [r for r in rec if (r["d"], r["seq"], r["causal"]) == c]
        flops = rs[0]["flops"]
        for name in [x for x in a.variants.split(",") if x]:
            med = lambda key: statistics.median(r[key] for r in rs)  # noqa: E731
            pr = lambda a_, b_: statistics.median(r[a_] / r[b_] for r in rs)  # noqa: E731
            print(f"| {a.dtype} | {c[0]}/{c[1]}/{int(c[2])} | {name} | {med(name + '_bench_us'):.0f} | "
                  f"{med(name + '_graph_us'):.0f} | {pr('registered_bench_us', name + '_bench_us'):.3f} | "
                  f"{pr('registered_graph_us', name + '_graph_us'):.3f} | {pr('cudnn_us', name + '_bench_us'):.3f} | "
                  f"{flops / med(name + '_bench_us') * 1e-6:.0f} |")
        print(f"| {a.dtype} | {c[0]}/{c[1]}/{int(c[2])} | SDPA cuDNN | "
              f"{statistics.median(r['cudnn_us'] for r in rs):.0f} | | | | | "
              f"{flops / statistics.median(r['cudnn_us'] for r in rs) * 1e-6:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
