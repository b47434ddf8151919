"""What a decode launch costs inside a CUDA graph (issue 12, session 11): the data for the model's graph context.

The model predicts each kernel as ncu measures it (alone, L2 flushed, its launch front-end included: 2.18 us for an
empty kernel); the benchmark's split sweeps are CUDA-graph replays, where 1 x 8k S = 16 runs 12.0 us against ncu's
16.7 + 4.8 us for its two kernels.  This measures, in graphs (`triton.testing.do_bench_cudagraph` medians, twice):

  * empty Triton kernels, 1 / 2 / 4 / 8 / 32 back to back in one graph (per-kernel cost = the slope);
  * the real decode launches of small shapes (1 x 1k, 1 x 8k, 8 x 1k, 8 x 8k; bf16, 32 / 8 heads, d128) at S = 1, 2, 4,
    8, 16, 32: the split kernel alone, the combine alone (on the partials the split wrote), and both (= kernels.decode);
    and the split kernel of one 64-key tile on ONE CTA (B = 1, 4 / 1 heads: the fixed costs alone).

    PYTHONPATH=. python3 benchmarks/decode_graph_gpu.py --out /tmp/graph.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def _empty(X):
    pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default="1x1024,1x8192,8x1024,8x8192")
    ap.add_argument("--splits", default="1,2,4,8,16,32")
    ap.add_argument("--rep-ms", type=int, default=20)
    a = ap.parse_args(argv)
    import torch
    from triton.testing import do_bench_cudagraph

    from decode_tail_gpu import capture_all
    from kernels.decode_kv import decode
    from kernels.decode_testing import make_problem_inputs
    from kernels.reference import naive_same_dtype, reference
    from kernels.testing import check_rule
    from memsim.inference import DecodeProblem, DecodeSchedule
    from memsim.io import base_provenance, write_json

    t0 = time.time()
    rows, notes = [], []

    def bench(fn):
        fn()
        torch.cuda.synchronize()
        return [do_bench_cudagraph(fn, rep=a.rep_ms, return_mode="median") * 1e-3 for _ in range(2)]

    x = torch.empty(1, device="cuda")
    for n in (1, 2, 4, 8, 32):
        def fn(n=n):
            for _ in range(n):
                _empty[(1,)](x)
        t = bench(fn)
        rows.append(dict(kind="empty", kernels=n, time_s=t))
        print(f"empty x{n}: {t[0] * 1e6:.2f} / {t[1] * 1e6:.2f} us", flush=True)

    def launch(c):
        jf, args, kwargs, grid = c
        jf[grid](*args, **kwargs)

    # one CTA, one tile: the split kernel's fixed costs alone
    cases = [("one_cta", DecodeProblem.uniform(1, 4, 1, 128, 64, dtype="bf16"), 1)]
    for shape in a.shapes.split(","):
        B, N = (int(v) for v in shape.split("x"))
        for S in (int(v) for v in a.splits.split(",")):
            if S <= -(-N // 64):
                cases.append((f"{B}x{N}", DecodeProblem.uniform(B, 32, 8, 128, N, dtype="bf16"), S))
    for name, p, S in cases:
        s = DecodeSchedule(num_splits=S)
        q, kc, vc, lens, _ = make_problem_inputs(p, "cuda", seed=p.batch * 1000003 + p.capacity_kv)
        o = decode(q, kc, vc, lens, schedule=s)
        qs = q[:1].transpose(1, 2).contiguous()
        ks, vs = kc[:1].transpose(1, 2).contiguous(), vc[:1].transpose(1, 2).contiguous()
        ref, _ = reference(qs, ks, vs)
        naive, _ = naive_same_dtype(qs, ks, vs)
        check_rule("decode", o[:1].transpose(1, 2), ref, naive, "bf16", verbose=False)
        calls = capture_all(p, s, q, kc, vc, lens)
        r = dict(kind="decode", shape=name, batch=p.batch, context=p.capacity_kv, heads_q=p.heads_q,
                 heads_kv=p.heads_kv, num_splits=S, ctas_split=calls[0][3][0] * calls[0][3][1],
                 both_s=bench(lambda: decode(q, kc, vc, lens, schedule=s)), split_s=bench(lambda: launch(calls[0])))
        if len(calls) > 1:
            launch(calls[0])
            r["combine_s"] = bench(lambda: launch(calls[1]))
            r["ctas_combine"] = calls[1][3][0] * calls[1][3][1]
        rows.append(r)
        print(f"{name} S={S}: both {r['both_s'][0] * 1e6:.2f} split {r['split_s'][0] * 1e6:.2f} combine "
              f"{r.get('combine_s', [0])[0] * 1e6:.2f} us", flush=True)
        del q, kc, vc, o
    res = dict(provenance=base_provenance("python3 benchmarks/decode_graph_gpu.py " + " ".join(argv or sys.argv[1:])),
               rows=rows, notes=notes, seconds=time.time() - t0)
    res["provenance"].update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                             cuda=torch.version.cuda)
    write_json(a.out, res)
    print("\n| case | S | both us | split us | combine us |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        if r["kind"] == "decode":
            print(f"| {r['shape']} | {r['num_splits']} | {r['both_s'][0] * 1e6:.2f} | {r['split_s'][0] * 1e6:.2f} | "
                  f"{r.get('combine_s', [0])[0] * 1e6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
