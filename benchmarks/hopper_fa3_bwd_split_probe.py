"""hopper_fa3 bwd on the card: host time or GPU time? (issue 9, session 21)

(Session 22 removed STREAM_SPLIT, the switch this probe was written for -- commit 0ba58c3 has the split variants;
what is left times the default's host issue, do_bench and CUDA-graph replay, and `--profile` / `--trace`.)

run27 timed the split three-launch backward 0.12-0.41x the default at causal N=1024 and the slowdown grew ~0.6 ms a
batch group whatever the group's size -- the signature of a host-bound call (do_bench's events then time the host's
issue, not the GPU).  Per case (d=128, B*N = 16k, H*d = 2048) and variant (default; split n: STREAM_SPLIT = n, the
fold off) this measures, in one process:
  * host: the wall time of issuing one backward (n calls back to back, no synchronisation between them), us;
  * bench: do_bench's median (L2 flushed before each call: the diag's figure), us;
  * graph: the same backward captured once in a CUDA graph (side stream and events included) and replayed --
    do_bench's median of the replay: the GPU's time with the host's issue taken out, us;
  * host pieces (default only): `fa3_bwd_args` and the pass's `_hopper_fa3_bwd[grid](...)` launch alone, us;
and, with --trace, a CUDA kernel trace (torch.profiler) of three calls of each variant of the first case:
$OUT/trace-<variant>.json (chrome format) and per kernel (stream, start, duration) relative to the call's first.

    PYTHONPATH=. python benchmarks/hopper_fa3_bwd_split_probe.py --out DIR [--cases 128/1024/1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", default="128/1024/1,128/4096/1")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="only: cProfile of 30 calls of each variant of the first case (host time by function), and "
                         "a kernel trace of three SDPA cuDNN backward calls there")
    a = ap.parse_args(argv)
    import torch
    import triton

    import kernels
    import kernels.hopper_gluon_bwd as hb
    from benchmarks.hopper_fa3_bwd_diag import parse_case, setup
    from memsim.schedule import Schedule, kernel_launches
    out, rec = Path(a.out), []
    out.mkdir(parents=True, exist_ok=True)

    def bench(fn):
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3

    def host_us(fn, n=20):
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        return (t1 - t0) / n * 1e6

    for ci, c in enumerate(x for x in a.cases.split(",") if x):
        d, n, causal = parse_case(c)
        p, q, k, v, do, f = setup(d, n, causal, a.dtype)
        s = kernels.default_schedule(p, "hopper_fa3", "bwd", q.device)
        fl = p.nominal_flops("bwd")
        variants = [("default", 0)]
        from torch.nn.attention import SDPBackend, sdpa_kernel
        qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            oo = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
        cud = bench(lambda: torch.autograd.grad(oo, (qq, kk, vv), do, retain_graph=True))
        r = dict(d=d, seq=n, causal=causal, batch=p.batch, dtype=a.dtype, variant="sdpa_cudnn", bench_us=cud,
                 bench_tflops=fl / cud * 1e-6)
        print(json.dumps(r), flush=True)
        rec.append(r)
        if a.profile:
            import cProfile
            import io
            import pstats
            for name, g in variants:
                def fn(g=g):
                    return kernels.backward(p, s, q, k, v, f.o, do, f)
                fn()
                torch.cuda.synchronize()
                pr = cProfile.Profile()
                pr.enable()
                for _ in range(30):
                    fn()
                pr.disable()
                torch.cuda.synchronize()
                for key in ("tottime", "cumulative"):
                    buf = io.StringIO()
                    pstats.Stats(pr, stream=buf).sort_stats(key).print_stats(28)
                    print(f"profile {name} by {key} (30 calls):\n" + buf.getvalue().split("\n\n", 2)[-1], flush=True)
            from torch.profiler import ProfilerActivity, profile
            cfn = lambda: torch.autograd.grad(oo, (qq, kk, vv), do, retain_graph=True)  # noqa: E731
            cfn()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    cfn()
                torch.cuda.synchronize()
            path = out / "trace-sdpa_cudnn.json"
            prof.export_chrome_trace(str(path))
            ev = sorted((e for e in json.loads(path.read_text())["traceEvents"]
                         if e.get("cat") == "kernel" and e.get("ph") == "X"), key=lambda e: e["ts"])
            print("trace sdpa_cudnn: kernel, stream, start us, duration us (3 calls)")
            for e in ev:
                print(f"  {e['name'][:60]:60s} s{e.get('args', {}).get('stream', '?')} {e['ts'] - ev[0]['ts']:9.1f} "
                      f"{e['dur']:8.1f}")
            return 0
        for name, g in variants:
            def fn(g=g):
                return kernels.backward(p, s, q, k, v, f.o, do, f)
            r = dict(d=d, seq=n, causal=causal, batch=p.batch, dtype=a.dtype, variant=name, groups=1)
            try:
                r["host_us"] = statistics.median(host_us(fn) for _ in range(3))
                r["bench_us"] = bench(fn)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):  # warm on the capture's stream kind (allocator pools)
                    fn()
                torch.cuda.current_stream().wait_stream(side)
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    fn()
                torch.cuda.synchronize()
                r["graph_us"] = bench(graph.replay)
                r["graph_tflops"] = fl / r["graph_us"] * 1e-6
                r["bench_tflops"] = fl / r["bench_us"] * 1e-6
                del graph
            except Exception as e:  # noqa: BLE001 -- recorded
                r["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            if name == "default":  # where the host's time of one call goes
                from kernels.hopper_bwd import dqacc_buffers
                delta, dqacc, dq, dk, dv = dqacc_buffers(p, q, k, v)
                grid = kernel_launches(p, s)[1].grid
                args, kw = hb.fa3_bwd_args(p, s, q, k, v, do, f.lse, delta, dqacc, dk, dv, dq_fuse=False)
                r["host_args_us"] = host_us(lambda: hb.fa3_bwd_args(p, s, q, k, v, do, f.lse, delta, dqacc, dk, dv,
                                                                    dq_fuse=False))
                r["host_pass_launch_us"] = host_us(lambda: hb._hopper_fa3_bwd[grid](*args, **kw))
            print(json.dumps(r), flush=True)
            rec.append(r)
            if a.trace and ci == 0:
                from torch.profiler import ProfilerActivity, profile
                fn()
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(3):
                        fn()
                    torch.cuda.synchronize()
                path = out / f"trace-{name}.json"
                prof.export_chrome_trace(str(path))
                ev = [e for e in json.loads(path.read_text())["traceEvents"]
                      if e.get("cat") == "kernel" and e.get("ph") == "X"]
                ev.sort(key=lambda e: e["ts"])
                t0 = ev[0]["ts"] if ev else 0
                print(f"trace {name}: kernel, stream, start us, duration us (3 calls)")
                for e in ev:
                    print(f"  {e['name'][:40]:40s} s{e.get('args', {}).get('stream', '?')} {e['ts'] - t0:9.1f} "
                          f"{e['dur']:8.1f}")
    prov = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                cudnn=torch.backends.cudnn.version(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                command=" ".join(sys.argv))
    (out / f"split_probe_{a.dtype}.json").write_text(json.dumps(dict(provenance=prov, records=rec), indent=1))
    print("\n| case | variant | groups | host us | bench us (TFLOP/s) | graph us (TFLOP/s) |\n| --- | --- | --- | --- | "
          "--- | --- |")
    for r in rec:
        if r["variant"] == "sdpa_cudnn":
            print(f"| {r['d']}/{r['seq']}/{int(r['causal'])} | SDPA cuDNN | | | {r['bench_us']:.0f} "
                  f"({r['bench_tflops']:.0f}) | |")
            continue
        if "error" in r:
            print(f"| {r['d']}/{r['seq']}/{int(r['causal'])} | {r['variant']} | error: {r['error'][:80]} |")
            continue
        print(f"| {r['d']}/{r['seq']}/{int(r['causal'])} | {r['variant']} | {r['groups']} | {r['host_us']:.0f} | "
              f"{r['bench_us']:.0f} ({r['bench_tflops']:.0f}) | {r['graph_us']:.0f} ({r['graph_tflops']:.0f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
