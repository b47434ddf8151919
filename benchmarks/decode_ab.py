"""A/B of two versions of the decode split kernel on the benchmark's shapes (issue 12, session 10): the kernel as it is
(kernels.decode_kv) against an earlier kernels/decode_kv.py given as a file, same inputs, same split count, times
interleaved (CUDA-graph replay medians, as benchmarks/decode.py), SDPA cuDNN beside them.

    PYTHONPATH=. python benchmarks/decode_ab.py --before OLD_decode_kv.py --out ab.json [--shapes 8x1024,...]

OLD_decode_kv.py is an earlier kernels/decode_kv.py (e.g. `git show e79306b:kernels/decode_kv.py`); it is loaded as a
module of its own (relative imports made absolute, its registry decorator dropped).  Every version passes the
correctness gate of benchmarks/decode.py (DESIGN.md's rule on sequence 0) before it is timed.  Writes JSON with
provenance (never overwritten); no timed assertions.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HQ, HKV, D = 32, 8, 128


def load_before(path: str):
    """The earlier kernel file as a module (`decode_launch`, `decode_plan`): relative imports made absolute, the
    registry decorator dropped (the registry already has the current launcher)."""
    src = Path(path).read_text()
    if "_decode_split" not in src or "def decode_launch" not in src:
        raise SystemExit(f"{path} is not a kernels/decode_kv.py (no _decode_split / decode_launch)")
    src = re.sub(r"^from \.(\w+)", r"from kernels.\1", src, flags=re.M)
    src = re.sub(r'^@launcher\("decode", "fwd"\)\n', "", src, flags=re.M)
    d = tempfile.mkdtemp(prefix="decode_before_")
    f = os.path.join(d, "decode_kv_before.py")  # a real file: triton.jit reads the kernels' source
    Path(f).write_text(src)
    spec = importlib.util.spec_from_file_location("decode_kv_before", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="an earlier kernels/decode_kv.py")
    ap.add_argument("--shapes", default="1x1024,1x8192,8x1024,8x8192,64x1024,64x8192,1x131072,8x32768")
    ap.add_argument("--layouts", default="contiguous,paged16,paged64")
    ap.add_argument("--rep-ms", type=float, default=20.0)
    ap.add_argument("--budget-s", type=float, default=60.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if os.path.exists(a.out):
        raise SystemExit(f"{a.out} exists (results are never overwritten)")
    import torch
    import triton
    from triton.testing import do_bench_cudagraph

    from kernels import decode_kv as after
    from kernels.decode_testing import make_problem_inputs
    from kernels.reference import naive_same_dtype, reference
    from kernels.testing import check_rule
    from memsim.inference import DecodeProblem, DecodeSchedule
    from memsim.io import base_provenance, write_json
    before = load_before(a.before)
    t0 = time.time()
    recs, notes = [], []
    for shape in [s for s in a.shapes.split(",") if s]:
        B, N = (int(x) for x in shape.split("x"))
        if time.time() - t0 > a.budget_s:
            notes.append(f"budget reached before {shape}")
            break
        kv = 2 * B * N * HKV * D * 2
        prob = DecodeProblem.uniform(B, HQ, HKV, D, N, dtype="bf16")
        q, kc, vc, lens, _ = make_problem_inputs(prob, "cuda", seed=B * 1000003 + N)
        qs = q.transpose(1, 2).contiguous()
        ks, vs = kc.transpose(1, 2).contiguous(), vc.transpose(1, 2).contiguous()
        ref, _ = reference(qs[:1], ks[:1], vs[:1])
        naive, _ = naive_same_dtype(qs[:1], ks[:1], vs[:1])
        for layout in [x for x in a.layouts.split(",") if x]:
            if layout == "contiguous":
                kk, vv, bt, sch = kc, vc, None, DecodeSchedule()
            else:
                ps = int(layout[len("paged"):])
                pp = replace(prob, page_size=ps)
                _, kk, vv, _, bt = make_problem_inputs(pp, "cuda", seed=B * 1000003 + N)
                npg = N // ps
                flat = bt[:, :npg].reshape(-1).long()
                kk[flat] = kc.reshape(B * npg, ps, HKV, D)
                vv[flat] = vc.reshape(B * npg, ps, HKV, D)
                sch = DecodeSchedule(page_prefetch=True)
            p, s, _ = after.decode_plan(q, kk, vv, lens, block_table=bt, schedule=sch, num_splits="auto")
            fns = {"after": lambda: after.decode_launch(p, s, q, kk, vv, lens, bt),
                   "before": lambda: before.decode_launch(p, s, q, kk, vv, lens, bt)}
            t = {}
            for rnd in range(2):  # interleaved: after, before, after, before
                for name, fn in fns.items():
                    if rnd == 0:
                        try:
                            check_rule(f"{name} {layout}", fn().transpose(1, 2)[:1], ref, naive, "bf16", verbose=False)
                        except AssertionError as exc:
                            notes.append(f"{shape} {layout} {name}: gate failed: {str(exc)[:200]}")
                            t[name] = None
                            continue
                    if t.get(name, 0) is None:
                        continue
                    t.setdefault(name + "_ms", []).append(do_bench_cudagraph(fn, rep=a.rep_ms, return_mode="median"))
            for name in fns:
                ms = t.get(name + "_ms")
                recs.append(dict(batch=B, context=N, layout=layout, version=name, num_splits=s.num_splits,
                                 page_prefetch=s.page_prefetch, ms_runs=ms, ms=min(ms) if ms else None,
                                 kv_read_TBps=kv / (min(ms) * 1e-3) / 1e12 if ms else None))
            r = {x["version"]: x["ms"] for x in recs[-2:]}
            print(f"{shape} {layout} S={s.num_splits}: after {r['after'] and r['after'] * 1e3:.2f} us, before "
                  f"{r['before'] and r['before'] * 1e3:.2f} us", flush=True)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def cudnn():
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, enable_gqa=True)
        try:
            ms = do_bench_cudagraph(cudnn, rep=a.rep_ms, return_mode="median")
            recs.append(dict(batch=B, context=N, layout="contiguous", version="sdpa_cudnn", ms=ms,
                             kv_read_TBps=kv / (ms * 1e-3) / 1e12))
        except Exception as exc:
            notes.append(f"{shape} sdpa_cudnn: {type(exc).__name__}: {str(exc)[:200]}")
        del q, kc, vc, qs, ks, vs
        torch.cuda.empty_cache()
    prov = base_provenance(" ".join(["benchmarks/decode_ab.py", *(argv if argv is not None else sys.argv[1:])]))
    prov.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                cuda=torch.version.cuda, before=a.before)
    write_json(a.out, {"provenance": prov, "records": recs, "notes": notes}, overwrite=False)
    print(f"wrote {a.out} ({len(recs)} records, {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
