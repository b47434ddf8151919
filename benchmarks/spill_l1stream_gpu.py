"""Do global loads through L1 push spilled registers out of it?  (issue 8; notes/spills.md session 13, Next 3)

The model gives a spilling launch's reloads the L1 left beside the shared-memory carve-out, minus nothing: the local
slots of the CTAs on the SM are the only tenants (`memsim.local_memory`).  On the live records 13 spilling launches
miss L1 more than that allows (ncu's lower bound on the reload L1-miss fraction above the model's), most of them with
large global loads in the loop (r26112_001 naive dV: 1.4 GB of LDG beside 149 MB of reloads, ncu m >= 0.55, model
0.01; r7261126_000 dQ: 3.8 GB, >= 0.48 vs 0.03), and counting a small grid's own CTAs per SM (MEMSIM_SPILL_SPREAD=1)
puts 17 more below ncu's bound.  Does an L1-allocating load stream evict spill lines, and how many bytes of it count
as much as a byte of local memory?

`_mb_spill_stream` is `spill_sm_gpu._mb_spill_sm` (a ROWS x 64 fp32 tile per CTA re-read and rewritten every
iteration: the compiler spills what does not fit) plus, every iteration, `n_chunks` loads of a fresh 512-byte chunk per
warp (32 lanes x 16 B) from a stream no iteration reads twice, summed into the tile so they stay live -- through L1
(the default caching) or around it (``.cg``).  `n_chunks` is a runtime argument: every point of a variant runs the
same SASS (the same frame, the same spill code), only the stream's bytes change.  The L1 beside the carve-out is set as
in the `reload` plan: 8 KB of dynamic shared memory -> the 228 KB carve-out, 28 KB of L1; none -> 256 KB.  The
frame's footprint per SM (f1008 at one CTA per SM: 18.5 KB touched per iteration) fits 28 KB without the stream.

Points (variant, CTAs per SM, dynamic smem, chunks per iteration, .cg): f1008 and f576 at 1 / 2 CTAs per SM on every
SM, 0-128 chunks (0-64 KB per CTA per iteration), each with and without .cg.  ncu as `spill_sm_gpu.py` (default cache
control, --clock-control none, 3 launches per point): the reload L1-miss fraction from the local-load lookup sectors,
the stream's bytes at L1 and L2.

    run(command="python3 benchmarks/spill_l1stream_gpu.py --out $OUT", timeout_s=300)    # ~1-2 min on an H100
    python benchmarks/spill_l1stream_gpu.py --analyse RUN.json                           # here: the table
    python benchmarks/spill_l1stream_gpu.py --check                                      # here: compile for sm_90

What would settle it: with .cg the reload L1-miss fraction stays at the no-stream point's; through L1 it rises with the
stream's bytes per iteration as the frame's footprint plus some share of them passing the 28 KB (the share is the
model's figure).  Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from spill_sm_gpu import METRICS, VARIANTS, _smid, _with_shared, _write, summarise  # noqa: E402

#: bytes of one chunk of the stream per warp and iteration (32 lanes x 4 fp32)
CHUNK_BYTES = 512
#: (variant, CTAs per SM, dynamic shared memory per CTA, chunks per iteration, .cg)
POINTS = tuple(
    (v, k, smem, c, cg)
    for v, k in (("f1008", 1), ("f576", 2))
    for smem in (8 << 10,)
    for c in (0, 8, 16, 32, 64, 128)
    for cg in (False, True)
) + tuple(("f1008", 1, 0, c, False) for c in (0, 32, 128))
REPEATS = 3


@triton.jit
def _mb_spill_stream(src_ptr, out_ptr, sm_ptr, stream_ptr, n_iter, n_sms_used, n_chunks,
                     ROWS: tl.constexpr, COLS: tl.constexpr, CG: tl.constexpr):
    """`_mb_spill_sm` plus `n_chunks` fresh 512-byte loads per iteration (through L1, or around it with CG)."""
    pid = tl.program_id(0).to(tl.int64)
    sm = _smid()
    tl.store(sm_ptr + pid, sm)
    if sm < n_sms_used:
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        x = tl.load(src_ptr + pid * ROWS * COLS + offs)
        lane = tl.arange(0, 128)
        base = stream_ptr + pid * n_iter * n_chunks * 128
        for i in range(n_iter):
            acc = tl.zeros([128], dtype=tl.float32)
            for j in range(n_chunks):
                p = base + (i * n_chunks + j) * 128 + lane
                if CG:
                    acc += tl.load(p, cache_modifier=".cg")
                else:
                    acc += tl.load(p)
            s = tl.sum(x, axis=1) + tl.sum(acc, axis=0) * 1e-9
            x = x * 0.5 + s[:, None] * 0.001
        tl.store(out_ptr + pid * ROWS * COLS + offs, x)


def point_id(v: str, k: int, smem: int, c: int, cg: bool) -> str:
    return f"{v}_k{k}_smem{smem >> 10}k_c{c}{'_cg' if cg else ''}"


def worker(manifest: str, repeats: int, only: list | None) -> int:
    """Each point: compile + warm up outside the profiled range, then `repeats` launches inside it."""
    import torch
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    order = []
    for v, k, smem, c, cg in POINTS:
        pid = point_id(v, k, smem, c, cg)
        if only and pid not in only:
            continue
        rows, warps, maxnreg, n_iter = VARIANTS[v]
        ctas = n_sms * k
        try:
            src = torch.rand(ctas * rows * 64, device="cuda", dtype=torch.float32)
            out = torch.empty_like(src)
            smid = torch.full((ctas,), -1, device="cuda", dtype=torch.int32)
            stream = torch.rand(max(1, ctas * n_iter * c * 128), device="cuda", dtype=torch.float32)
            kw = dict(ROWS=rows, COLS=64, CG=cg, num_warps=warps)
            if maxnreg:
                kw["maxnreg"] = maxnreg
            args = (src, out, smid, stream, n_iter, n_sms, c)
            if smem:
                ck = _with_shared(_mb_spill_stream, smem, args, kw)

                def run():
                    ck[(ctas, 1, 1)](*args, rows, 64, cg)
                run()
            else:
                def run():
                    return _mb_spill_stream[(ctas,)](*args, **kw)
                ck = run()
            torch.cuda.synchronize()
            compiled = {"n_regs": int(ck.n_regs), "n_spills": int(ck.n_spills),
                        "local_bytes_per_thread": int(ck.n_spills) * 4, "shared_bytes": int(ck.metadata.shared)}
            ids = smid.cpu().tolist()
            per_sm = {}
            for s in ids:
                if 0 <= s < n_sms:
                    per_sm[s] = per_sm.get(s, 0) + 1
            counts = sorted(per_sm.values())
            observed = {"sms_working": len(per_sm), "ctas_working": sum(counts),
                        "ctas_per_sm_min": counts[0] if counts else 0, "ctas_per_sm_max": counts[-1] if counts else 0}
        except Exception as e:  # noqa: BLE001 -- a point that does not run is recorded, not fatal
            order.append({"id": pid, "error": f"{type(e).__name__}: {e}"[:300]})
            print(f"{pid}: {order[-1]['error']}", flush=True)
            _write(manifest, order)
            continue
        for r in range(repeats):
            torch.cuda.profiler.start()
            run()
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
            order.append({"id": pid, "variant": v, "rows": rows, "cols": 64, "num_warps": warps, "maxnreg": maxnreg,
                          "n_iter": n_iter, "ctas_per_sm": k, "sms_used": n_sms, "ctas": ctas, "repeat": r,
                          "compiled": compiled, "observed": observed, "dynamic_smem": smem, "chunks": c, "cg": cg,
                          "stream_bytes_per_cta_iter": c * CHUNK_BYTES * warps})
        print(f"{pid}: ok {compiled} {observed}", flush=True)
        del src, out, smid, stream
        _write(manifest, order)
    _write(manifest, order)
    return 0


def drive(out: str, repeats: int, budget_s: float) -> int:
    from verification.ncu import available_metrics, parse_csv
    from tile_loop_gpu import _ncu
    from run_file import write_run
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    man = os.path.join(out, "spill_l1stream.manifest.json")
    log = os.path.join(out, "spill_l1stream.ncu.log")
    known = available_metrics("gh100")
    metrics = [m for m in METRICS if not known or m.split(".")[0] in known]
    cmd = ["ncu", "--clock-control", "none", "--profile-from-start", "off", "--csv", "--print-units", "base",
           "-k", "regex:_mb_spill_stream", "--metrics", ",".join(metrics),
           sys.executable, os.path.abspath(__file__), "--worker", "--manifest", man, "--repeats", str(repeats)]
    rows = parse_csv(_ncu(cmd, log, budget_s))
    order = json.load(open(man)) if os.path.exists(man) else []
    points, i = [], 0
    for o in order:
        if "error" in o:
            points.append(o)
            continue
        if i >= len(rows):
            points.append({**o, "error": "ncu profiled fewer launches than ran"})
            continue
        row = rows[i]
        i += 1
        points.append({**o, "kernel": row.name, "grid": row.grid, "block": row.block, "metrics": row.metrics})
    write_run(os.path.join(out, "spill_l1stream.json"), "spill_l1stream/1", points, script="spill_l1stream_gpu.py",
              argv=None, t0=t0, method=f"ncu (default cache control, --clock-control none), {repeats} launches per "
                                       "point in one process; grid 132 x k one-warp CTAs, all SMs")
    ok = [p for p in points if "error" not in p]
    print(f"{len(ok)} launches profiled, {len(points) - len(ok)} errors, {time.time() - t0:.0f} s", flush=True)
    table(points)
    return 0 if ok else 1


def table(points: list) -> None:
    by = {p["id"]: p for p in points if "error" not in p}
    print("| point | frame B | stream B per CTA-iter | reload L1-miss | L2 reads MB | global ld MB | us |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in summarise(points):
        p0 = by[r["id"]]
        m = r["reload_l1_miss_fraction"]
        print(f"| {r['id']} | {(r['compiled'] or {}).get('local_bytes_per_thread')} | "
              f"{p0.get('stream_bytes_per_cta_iter')} | {'-' if m is None else f'{m:.3f}'} | "
              f"{r['l2_read_bytes'] / 1e6:.1f} | {r['global_read_bytes'] / 1e6:.1f} | "
              f"{(r['time_s'] or 0) * 1e6:.1f} |")


def check() -> int:
    """Compile each variant for sm_90 here (no GPU): the frame must not depend on CG or the stream, the tile loop must
    hold the spill code and the stream's loads (LDG; .cg as LDG ... .STRONG.GPU or similar), and the chunk loop must
    be the only loop inside it."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from types import SimpleNamespace
    from kernels.compiled_facts import ptxas_report
    from kernels.sass import disassemble, parse
    target = GPUTarget("cuda", 90, 32)
    sig = {"src_ptr": "*fp32", "out_ptr": "*fp32", "sm_ptr": "*i32", "stream_ptr": "*fp32", "n_iter": "i32",
           "n_sms_used": "i32", "n_chunks": "i32", "ROWS": "constexpr", "COLS": "constexpr", "CG": "constexpr"}
    ok = True
    for v in ("f1008", "f576"):
        rows, warps, maxnreg, _ = VARIANTS[v]
        frames = {}
        for cg in (False, True):
            src = ASTSource(fn=_mb_spill_stream, signature=sig, constexprs={"ROWS": rows, "COLS": 64, "CG": cg})
            opts = {"num_warps": warps}
            if maxnreg:
                opts["maxnreg"] = maxnreg
            ck = triton.compile(src, target=target, options=opts)
            rep = ptxas_report(ck.asm["ptx"], "sm90", SimpleNamespace(enable_fp_fusion=True, ptx_options=None))
            n_spills = rep["local_bytes_per_thread"] // 4
            sass = disassemble(ck.asm["cubin"])
            loops = parse(sass)
            ldg = [ln.strip() for ln in sass.splitlines() if " LDG" in ln]
            stl = sum(1 for lb, body in loops for op in body if op.startswith("STL"))
            frames[cg] = ck.metadata.shared, n_spills
            print(f"  own shared memory {ck.metadata.shared} B (the 8 KB points ask for more)")
            print(f"{v} cg={cg}: regs {rep['regs_per_thread']}, frame {rep['local_bytes_per_thread']} B, loops "
                  f"{[(lb, len(b)) for lb, b in loops]}, STL in loops {stl}, LDG {len(ldg)}: "
                  f"{sorted({' '.join(x.split()[1:2]) for x in ldg})}")
            ok &= n_spills > 0 and bool(ldg)
        if frames[False][1] != frames[True][1]:
            print(f"{v}: the frame differs with .cg ({frames[False][1]} vs {frames[True][1]} spills)")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="(GPU) folder for spill_l1stream.json, the ncu log and the manifest")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--budget-s", type=float, default=240.0, help="(GPU) ncu's wall-clock limit")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--manifest", help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="*", help="(GPU) only these point ids")
    ap.add_argument("--analyse", metavar="RUN", help="(here) print the table of a run file")
    ap.add_argument("--check", action="store_true", help="(here) compile the variants for sm_90 and show the SASS")
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.manifest, a.repeats, a.only)
    if a.analyse:
        table(json.load(open(a.analyse))["points"])
        return 0
    if a.check:
        return check()
    if not a.out:
        ap.error("give --out (on the GPU machine), --analyse RUN or --check")
    return drive(a.out, a.repeats, a.budget_s)


if __name__ == "__main__":
    sys.exit(main())
