"""The last partial wave of a decode split launch (issue 12, session 11): where its CTAs run and what it costs.

A launch of more CTAs than the SMs hold at once (132 SMs x 3 CTAs of the default bn64/st3/d128 loop = 396 slots)
ends with a partial wave.  The SimPy model spreads the running CTAs over all SMs (`running / num_sms` CTAs share an
SM's compute), so 116 tail CTAs of a 512-CTA launch each get a whole SM.  This measures the real `_decode_split`
(S = 1, one query token, 32 / 8 heads, d = 128, bf16, contiguous) at batches whose CTA counts (batch x 8) put
0 .. 264 CTAs into the last wave, with the same bytes per CTA:

  * sweep: CUDA-graph replay medians (do_bench_cudagraph), no L2 flush (the caches are >= 100 MB), at each
    context of --contexts; SDPA cuDNN at batch 64 in the same run for reference;
  * trace: the same kernel inlined into `_traced_split`, which records per CTA its SM (%smid) and the global timer at
    its start and end (the kernel body and its loop are `_decode_split`'s; registers / shared memory are printed);
    what comes back is per CTA (smid, start, end) in ns, so the placement of the tail CTAs and their rates show.

Every configuration passes the correctness gate (DESIGN.md's rule on sequence 0, float64 reference) first.

    PYTHONPATH=. python3 benchmarks/decode_tail_gpu.py --out /tmp/tail.json

Writes JSON (provenance, sweep rows, traces).  Compile check without a GPU: `--compile-only` prints the traced and
the plain kernel's registers and shared memory for sm_90.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from kernels.decode_kv import _decode_split  # noqa: E402

HQ, HKV, D = 32, 8, 128


@triton.jit
def _now():
    return tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)


@triton.jit
def _smid():
    return tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _traced_split(TR, Q, K, V, O, OP, LSEP, SEQLENS, BT, CU_Q,
                  stride_qb, stride_qn, stride_qh,
                  stride_kb, stride_kn, stride_kh,
                  stride_vb, stride_vn, stride_vh,
                  stride_ob, stride_on, stride_oh,
                  stride_btb,
                  UNITS, NQ, qk_scale2, NUM_SPLITS,
                  GROUP: tl.constexpr, G_TOTAL: tl.constexpr, HEAD_DIM: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PAGE_SIZE: tl.constexpr,
                  SPLIT: tl.constexpr, PAGE_PREFETCH: tl.constexpr, PREC: tl.constexpr,
                  VARLEN: tl.constexpr, PDL: tl.constexpr = False, EARLY: tl.constexpr = False):
    """`_decode_split` (inlined) between two reads of the global timer; per CTA TR holds (smid, t0, t1) as int64.
    EARLY: the first tile loaded beside the length (DecodeSchedule.early_tile, session 19)."""
    t0 = _now()
    sm = _smid()
    _decode_split(Q, K, V, O, OP, LSEP, SEQLENS, BT, CU_Q,
                  stride_qb, stride_qn, stride_qh, stride_kb, stride_kn, stride_kh,
                  stride_vb, stride_vn, stride_vh, stride_ob, stride_on, stride_oh, stride_btb,
                  UNITS, NQ, qk_scale2, NUM_SPLITS,
                  GROUP, G_TOTAL, HEAD_DIM, BLOCK_M, BLOCK_N, PAGE_SIZE, SPLIT, PAGE_PREFETCH, PREC, VARLEN, PDL,
                  EARLY=EARLY)
    t1 = _now()
    cta = tl.program_id(1) * tl.num_programs(0) + tl.program_id(0)
    base = TR + cta.to(tl.int64) * 3
    tl.store(base, sm.to(tl.int64))
    tl.store(base + 1, t0)
    tl.store(base + 2, t1)


def capture_all(p, s, q, k, v, lens, block_table=None):
    """[(JITFunction, args, kwargs, grid)] of the launches kernels.decode makes for (p, s) on these tensors, in order
    (nothing runs; workspaces are allocated and stay referenced by the args)."""
    from triton.runtime.jit import JITFunction

    from kernels.decode_kv import decode_launch
    calls = []
    orig = JITFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        calls.append((self, args, kwargs, grid))

    JITFunction.run = run
    try:
        decode_launch(p, s, q, k, v, lens, block_table)
    finally:
        JITFunction.run = orig
    return calls


def _capture(p, s, q, k, v, lens):
    """(args, kwargs, grid) of the `_decode_split` launch kernels.decode makes for (p, s)."""
    _, args, kwargs, grid = next(c for c in capture_all(p, s, q, k, v, lens)
                                 if getattr(getattr(c[0], "fn", c[0]), "__name__", "") == "_decode_split")
    return args, kwargs, grid


def compile_only() -> int:
    import torch

    from kernels.compiled_facts import compile_launch
    from memsim.inference import DecodeProblem, DecodeSchedule
    p = DecodeProblem.uniform(64, HQ, HKV, D, 16384, dtype="bf16")
    s = DecodeSchedule(num_splits=1)
    meta = dict(device="meta", dtype=torch.bfloat16)
    q = torch.empty(p.batch, 1, HQ, D, **meta)
    k = torch.empty(p.batch, 16384, HKV, D, **meta)
    lens = torch.empty(p.batch, device="meta", dtype=torch.int32)
    args, kwargs, _ = _capture(p, s, q, k, k, lens)
    tr = torch.empty(1, device="meta", dtype=torch.int64)
    for name, jf, a in (("plain", _decode_split, args), ("traced", _traced_split, (tr,) + tuple(args))):
        f = compile_launch(jf, a, dict(kwargs))
        print(name, {k_: f.get(k_) for k_ in ("regs_per_thread", "spills", "shared_bytes", "num_warps")},
              "loop instructions", (f.get("loop") or {}).get("instructions"))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="JSON result")
    ap.add_argument("--contexts", default="16384,4096")
    ap.add_argument("--batches", default="33,49,50,52,56,60,64,66,72,82,99")
    ap.add_argument("--traces", default="49:16384:1,50:16384:1,56:16384:1,64:16384:1,82:16384:1,8:131072:2,8:131072:4,"
                                        "8:131072:8",
                    help="B:context:num_splits of the traced launches")
    ap.add_argument("--rep-ms", type=int, default=30)
    ap.add_argument("--budget-s", type=float, default=120)
    ap.add_argument("--cases", help="a JSON file of held-out cases ({'cases': [{batch, context, heads_q, heads_kv, "
                                    "head_dim, dtype, page_size, num_splits, block_n, num_stages, num_warps, "
                                    "page_prefetch}]}): timed instead of the sweep")
    ap.add_argument("--compile-only", action="store_true")
    ap.add_argument("--flush-l2", action="store_true",
                    help="write a 256 MB buffer before each recorded trace launch (a cache that fits the L2 is then "
                         "read from DRAM, session 12)")
    a = ap.parse_args(argv)
    if a.compile_only:
        return compile_only()
    import torch
    from triton.testing import do_bench_cudagraph

    from kernels.decode_kv import decode
    from kernels.decode_testing import make_problem_inputs
    from kernels.reference import naive_same_dtype, reference
    from kernels.testing import check_rule
    from memsim.inference import DecodeProblem, DecodeSchedule
    from memsim.io import base_provenance, write_json

    t_start = time.time()
    rows, traces, notes = [], [], []
    def log(msg):
        print(f"[{time.time() - t_start:6.1f}s] {msg}", flush=True)

    def inputs(B, N):
        p = DecodeProblem.uniform(B, HQ, HKV, D, N, dtype="bf16")
        q, kc, vc, lens, _ = make_problem_inputs(p, "cuda", seed=B * 1000003 + N)
        return p, q, kc, vc, lens

    def gate(q, kc, vc, out):
        qs = q[:1].transpose(1, 2).contiguous()
        ks, vs = kc[:1].transpose(1, 2).contiguous(), vc[:1].transpose(1, 2).contiguous()
        ref, _ = reference(qs, ks, vs)
        naive, _ = naive_same_dtype(qs, ks, vs)
        check_rule("decode", out[:1].transpose(1, 2), ref, naive, "bf16", verbose=False)

    if a.cases:
        with open(a.cases) as f:
            cases = json.load(f)["cases"]
        for c in cases:
            if time.time() - t_start > a.budget_s:
                notes.append(f"budget reached before {c['name']}")
                break
            p = DecodeProblem.uniform(c["batch"], c["heads_q"], c["heads_kv"], c["head_dim"], c["context"],
                                      dtype=c["dtype"], page_size=c["page_size"])
            s = DecodeSchedule(num_splits=c["num_splits"], block_n=c["block_n"], num_stages=c["num_stages"],
                               num_warps=c["num_warps"], page_prefetch=c["page_prefetch"])
            q, kc, vc, lens, bt = make_problem_inputs(p, "cuda", seed=c["batch"] * 1000003 + c["context"])
            fn = lambda: decode(q, kc, vc, lens, block_table=bt, schedule=s)  # noqa: E731
            o = fn()
            if bt is None:
                k0, v0 = kc[:1], vc[:1]
            else:  # sequence 0's rows gathered from its pages
                need = -(-c["context"] // c["page_size"])
                k0 = kc[bt[0, :need].long()].reshape(1, -1, c["heads_kv"], c["head_dim"])[:, :c["context"]]
                v0 = vc[bt[0, :need].long()].reshape(1, -1, c["heads_kv"], c["head_dim"])[:, :c["context"]]
            gate(q, k0, v0, o)
            ms = do_bench_cudagraph(fn, rep=a.rep_ms, return_mode="median")
            ms2 = do_bench_cudagraph(fn, rep=a.rep_ms, return_mode="median")
            rows.append(dict(c, ms=ms, ms_repeat=ms2))
            log(f"{c['name']}: {ms * 1e3:.1f} / {ms2 * 1e3:.1f} us")
            del q, kc, vc, o, bt
            torch.cuda.empty_cache()
    for N in ([] if a.cases else [int(x) for x in a.contexts.split(",") if x]):
        for B in [int(x) for x in a.batches.split(",")]:
            if time.time() - t_start > a.budget_s:
                notes.append(f"budget reached before {B}x{N}")
                break
            p, q, kc, vc, lens = inputs(B, N)
            fn = lambda: decode(q, kc, vc, lens, num_splits=1)  # noqa: E731
            o = fn()
            gate(q, kc, vc, o)
            ms = do_bench_cudagraph(fn, rep=a.rep_ms, return_mode="median")
            ms2 = do_bench_cudagraph(fn, rep=a.rep_ms, return_mode="median")
            kv = 2 * B * N * HKV * D * 2
            row = dict(batch=B, context=N, ctas=B * HKV, num_splits=1, ms=ms, ms_repeat=ms2,
                       kv_read_TBps=kv / (ms * 1e-3) / 1e12)
            if B == 64:
                ks, vs = kc.transpose(1, 2).contiguous(), vc.transpose(1, 2).contiguous()
                qs = q.transpose(1, 2).contiguous()
                from torch.nn.attention import SDPBackend, sdpa_kernel
                try:
                    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                        f2 = lambda: torch.nn.functional.scaled_dot_product_attention(  # noqa: E731
                            qs, ks, vs, enable_gqa=True)
                        f2()
                        row["sdpa_cudnn_ms"] = do_bench_cudagraph(f2, rep=a.rep_ms, return_mode="median")
                except Exception as exc:
                    notes.append(f"sdpa cudnn {B}x{N}: {exc!r}"[:200])
                del ks, vs, qs
            rows.append(row)
            log(f"{B}x{N}: {B * HKV} CTAs {ms * 1e3:.1f} / {ms2 * 1e3:.1f} us, {row['kv_read_TBps']:.2f} TB/s")
            del q, kc, vc, o
            torch.cuda.empty_cache()

    for spec in a.traces.split(","):
        B, N, S = (int(x) for x in spec.split(":"))
        if time.time() - t_start > a.budget_s * 1.3:
            notes.append(f"budget reached before trace {spec}")
            break
        try:
            p, q, kc, vc, lens = inputs(B, N)
            args, kwargs, grid = _capture(p, DecodeSchedule(num_splits=S), q, kc, vc, lens)
            n = grid[0] * grid[1]
            tr = torch.full((n * 3,), -1, dtype=torch.int64, device="cuda")
            kw = dict(kwargs)
            scratch = torch.empty(256 << 20, dtype=torch.uint8, device="cuda") if a.flush_l2 else None
            for _ in range(3):  # warm-up + 2 recorded launches; keep the last
                if scratch is not None:
                    scratch.fill_(1)
                _traced_split[grid](tr, *args, **kw)
            torch.cuda.synchronize()
            if S == 1:
                gate(q, kc, vc, args[3])
            t = tr.view(n, 3).cpu()
            t0 = int(t[:, 1].min())
            traces.append(dict(batch=B, context=N, num_splits=S, ctas=n, smid=t[:, 0].tolist(),
                               start_ns=(t[:, 1] - t0).tolist(), end_ns=(t[:, 2] - t0).tolist()))
            e = (t[:, 2] - t0).float()
            log(f"trace {B}x{N} S={S}: {n} CTAs, span {float(e.max()) / 1e3:.1f} us, SMs used {len(set(t[:, 0].tolist()))}")
            del q, kc, vc
            torch.cuda.empty_cache()
        except Exception as exc:
            notes.append(f"trace {spec}: {exc!r}"[:300])
            log(notes[-1])
    res = dict(provenance=base_provenance("python3 benchmarks/decode_tail_gpu.py " + " ".join(argv or sys.argv[1:])),
               rows=rows, traces=traces, notes=notes)
    res["provenance"].update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                             cuda=torch.version.cuda)
    if a.out:
        write_json(a.out, res)
    if a.cases:
        print("\n| case | us | repeat |\n| --- | --- | --- |")
        for r in rows:
            print(f"| {r['name']} | {r['ms'] * 1e3:.1f} | {r['ms_repeat'] * 1e3:.1f} |")
        return 0
    print("\n| B | CTAs | us | repeat | TB/s | SDPA cuDNN us |\n| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['batch']} x {r['context']} | {r['ctas']} | {r['ms'] * 1e3:.1f} | {r['ms_repeat'] * 1e3:.1f} | "
              f"{r['kv_read_TBps']:.2f} | {r.get('sdpa_cudnn_ms', 0) * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
