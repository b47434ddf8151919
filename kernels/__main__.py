"""python -m kernels: run one schedule on one problem, check it, time it.

  python -m kernels launches --shape 4,16,16,4096,4096,64 --alg flash2 --phase bwd
      the launches (name, grid, axes) the schedule makes -- what ncu will see as "_<name>"
  python -m kernels run --shape 4,16,16,4096,4096,64 --dtype bf16 --alg flash2 --causal [--json]
      run forward (and --phase bwd: forward then backward) on random inputs, check DESIGN.md's
      correctness rule against float64 (unless --no-check), time with do_bench on a GPU

--shape is B,Hq,Hkv,Nq,Nkv,d; memsim's flags say the same per size (--batch --heads --heads-kv --seq
--seq-kv --head-dim; unset kv sizes = the query's), and --algorithm/--causal-align are memsim's names
for --alg/--align (both spellings work in both).  Without --block-m/--block-n/... the default schedule for the device
is used.  Without a CUDA GPU, set TRITON_INTERPRET=1 and keep shapes small.
Bad input is one line on stderr ("kernels: error: ..."), exit status 2 (memsim/cli/errors.py).
"""
from __future__ import annotations

import argparse
import json


from memsim.schedule import ALGORITHMS
from memsim.cli.common import add_shape_args, causal_align, resolve_shape
from memsim.cli.errors import UsageError, make_parser, run_cli


def _args(argv):
    ap = make_parser("kernels", prog="python -m kernels", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("launches", "run"):
        p = sub.add_parser(name)
        add_shape_args(p)  # memsim's names (--batch --heads --heads-kv --seq --seq-kv --head-dim) or --shape
        p.add_argument("--dtype", default="bf16", choices=["fp16", "bf16", "fp32"])
        p.add_argument("--algorithm", "--alg", "-a", dest="alg", default="flash2", choices=ALGORITHMS,
                       help="(alias --alg)")
        p.add_argument("--phase", default="fwd", choices=["fwd", "bwd"])
        p.add_argument("--causal", action="store_true")
        p.add_argument("--causal-align", "--align", dest="causal_align", default=None,
                       choices=["top_left", "bottom_right"], help="with --causal (default top_left; alias --align)")
        p.add_argument("--scale", type=float, default=None)
        p.add_argument("--block-m", type=int)
        p.add_argument("--block-n", type=int)
        p.add_argument("--num-warps", type=int)
        p.add_argument("--num-stages", type=int)
        p.add_argument("--grid-order", choices=["q_fastest", "heads_fastest"])
        p.add_argument("--sp-dtype", choices=["fp16", "bf16", "fp32"])
        p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        if name == "run":
            p.add_argument("--no-check", action="store_true", help="skip the float64 check (large shapes)")
            p.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def _shape(a) -> tuple[int, ...]:
    """(B, Hq, Hkv, Nq, Nkv, d) from --shape or memsim's six flags (the same names in both command lines)."""
    resolve_shape(a, required=True)
    return (a.batch, a.heads, a.heads if a.heads_kv is None else a.heads_kv, a.seq,
            a.seq if a.seq_kv is None else a.seq_kv, a.head_dim)


def _schedule(a, problem, phase, device):
    from dataclasses import replace

    import kernels
    s = kernels.default_schedule(problem, a.alg, phase, device)
    over = {k: v for k, v in (("block_m", a.block_m), ("block_n", a.block_n), ("num_warps", a.num_warps),
                              ("num_stages", a.num_stages), ("grid_order", a.grid_order),
                              ("sp_dtype", a.sp_dtype)) if v is not None}
    return replace(s, **over)


def main(argv=None):
    a = _args(argv)
    from memsim.schedule import ScheduleError
    return run_cli("kernels", lambda: _main(a), errors=(ScheduleError, ValueError, TypeError, NotImplementedError))


def _main(a):
    import torch

    import kernels
    from memsim.schedule import AttentionProblem, kernel_launches
    B, Hq, Hkv, Nq, Nkv, d = _shape(a)
    if a.sp_dtype is not None and a.alg != "naive":
        raise UsageError(f"--sp-dtype sets naive's S and P element type; {a.alg} keeps S and P on chip "
                         f"(drop --sp-dtype or use --alg naive)")
    if a.alg == "flash1" and a.phase == "bwd":
        raise UsageError("flash1 has no backward pass (its 2022 loop order is forward-only here); "
                         "--phase bwd takes --alg naive or flash2")
    a.align = causal_align(a)  # refused without --causal (it would be ignored)
    problem = AttentionProblem(B, Hq, Hkv, Nq, Nkv, d, a.dtype, causal=a.causal, scale=a.scale,
                               causal_align=a.align)
    device = "cuda" if torch.cuda.is_available() and not kernels.interpreting() else "cpu"
    if a.cmd == "launches":
        s = _schedule(a, problem, a.phase, device)
        from kernels._common import check_schedule
        check_schedule(problem, s, torch.device(device), a.phase)  # what `run` would refuse, refused here too
        out = {"problem": problem.to_dict(), "schedule": s.to_dict(),
               "launches": [{"name": "_" + x.name, "grid": x.grid, "axes": x.axes, "smem_bytes": x.smem_bytes}
                            for x in kernel_launches(problem, s)]}
        if a.json:
            print(json.dumps(out))
        else:
            print(f"{s}")
            for x in out["launches"]:
                print(f"  {x['name']:24s} grid {x['grid']}  axes {x['axes']}  smem {x['smem_bytes']} B")
        return 0
    if device == "cpu" and not kernels.interpreting():
        raise UsageError("no CUDA GPU: set TRITON_INTERPRET=1 to run the kernels in Triton's interpreter "
                         "(small shapes)")
    try:
        return _run(a, problem, device)
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        if isinstance(e, RuntimeError) and not any(w in str(e).lower() for w in ("out of memory", "allocate")):
            raise
        gb = (2 * B * Hq * Nq + 2 * B * Hkv * Nkv) * d * 4 / 1e9
        raise UsageError(f"B,Hq,Hkv,Nq,Nkv,d = {B},{Hq},{Hkv},{Nq},{Nkv},{d} does not fit in {device} memory "
                         f"(q, k, v and do alone are {gb:.1f} GB in fp32 while they are made); use a smaller "
                         f"shape") from None


def _run(a, problem, device):
    """Random inputs, forward (and backward), the exactness check, GPU timings: the `run` command."""
    import torch

    import kernels
    from kernels.testing import check_rule, make_inputs, yardsticks
    B, Hq, Hkv, Nq, Nkv, d = _shape(a)
    q, k, v, do = make_inputs(B, Hq, Hkv, Nq, Nkv, d, a.dtype, device, a.seed)
    fs = _schedule(a, problem, "fwd", device)
    out = {"problem": problem.to_dict(), "fwd_schedule": fs.to_dict()}
    fwd = kernels.forward(problem, fs, q, k, v)
    grads = None
    if a.phase == "bwd":
        bs = _schedule(a, problem, "bwd", device)
        out["bwd_schedule"] = bs.to_dict()
        grads = kernels.backward(problem, bs, q, k, v, fwd.o, do, fwd)
    if not a.no_check:
        kw = dict(causal=a.causal, scale=a.scale, causal_align=a.align, do=do if grads else None)
        ref, ys = kernels.reference(q, k, v, **kw), yardsticks(q, k, v, **kw)
        errs = {}
        pairs = [("o", fwd.o, ref[0])]
        if grads:
            pairs += list(zip(("dq", "dk", "dv"), grads, ref[2:]))
        ok = True
        for name, got, r in pairs:
            try:
                kerr, nerr = check_rule(name, got, r, dtype=a.dtype, verbose=not a.json, **ys[name])
                errs[name] = {"max_err": kerr, "naive_max_err": nerr, "pass": True}
            except AssertionError as exc:
                ok = False
                errs[name] = {"pass": False, "message": str(exc)}
        out["check"] = errs
        out["pass"] = ok
    if device == "cuda":
        import triton
        t = triton.testing.do_bench(lambda: kernels.forward(problem, fs, q, k, v), return_mode="median")
        out["fwd_ms"] = t
        out["fwd_tflops"] = problem.nominal_flops("fwd") / (t * 1e-3) / 1e12
        if grads:
            t = triton.testing.do_bench(lambda: kernels.backward(problem, bs, q, k, v, fwd.o, do, fwd),
                                        return_mode="median")
            out["bwd_ms"] = t
            out["bwd_tflops"] = problem.nominal_flops("bwd") / (t * 1e-3) / 1e12
    if a.json:
        print(json.dumps(out))
    else:
        for key in ("pass", "fwd_ms", "fwd_tflops", "bwd_ms", "bwd_tflops"):
            if key in out:
                print(f"{key}: {out[key]:.4g}" if isinstance(out[key], float) else f"{key}: {out[key]}")
    return 0 if out.get("pass", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
