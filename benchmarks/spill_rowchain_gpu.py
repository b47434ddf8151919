"""One device call: what a warp waits for when it loads a row in narrow pieces, each waited on before the next.

naive's row kernels with 255 registers (set A's r1_019 softmax: bf16 S, seq_kv 5055, NPOW2 8192, one warp) load a
row as 256 `LDG.E.U16` from one base register at +0, +64, +128, ... B, and ptxas waits on each before the next (the
value goes through the same register; `memsim.warp_issue` replays 251 such waits per trip).  The replay gives every
wait one latency -- the pointer chase's L2 hit (287 cycles) or DRAM miss (683), mixed by the step's share of bytes
that miss the L2 -- and for r1_019 that is too slow: its lone 128-row CTAs' chain alone is 1.09x the card's whole
launch (notes/spills.md session 16).  Two things the replay does not know, each measured here:

* **line sharing**: a warp load of 32 lanes x 2 B covers 64 B, half an L2 line; if the L2 fills a whole 128-B line
  from DRAM, the next load (the line's other half) is an L2 hit, so only every other wait is a DRAM miss;
* **masked loads**: columns past seq_kv are predicated off (r1_019: loads 158-255 of 256 touch nothing); what does
  a fully predicated-off load cost a chain?

`_mb_row_chain`: one warp per CTA walks its own region in `n_dep` dependent warp loads, lane l at element l +
i x step of load i (contiguous lanes, `elem` bytes each), each load's address depending on the value the previous
one returned (`(v & zero)`, zero read from memory: ptxas cannot drop the wait); loads i >= n_real are predicated
off (mask false, other = 0).  Cycles with %clock64 around the loop, per load (median over CTAs).  Variants:
where (DRAM: the L2 emptied by a 256 MB memset before each launch; L2: warmed by the previous launch), elem 2 / 4,
step contiguous (32 x elem bytes: the row kernels) or spaced (256 B: every load fresh lines, the pointer chase's
pattern), the region's misalignment (0 or 2 B), 1 or 8 CTAs per SM, all loads real or the second half masked.

Then the real kernel: `_naive_softmax` as r1_019 compiles it (bf16, BLOCK_M 128, one warp, NPOW2 8192, causal
bottom-right, heads fastest) on 128 rows of S per CTA, one CTA per SM (132 heads) and eight (1056), seq_kv 5055
(r1_019's: 158 real loads per row) and 8189 (256 real), S from DRAM (the L2 emptied first) -- microseconds per row.

    run(command="python3 benchmarks/spill_rowchain_gpu.py --out $OUT/spill_rowchain.json", timeout_s=240)
    python benchmarks/spill_rowchain_gpu.py --show RUN.json     # here, no GPU: the table
    python benchmarks/spill_rowchain_gpu.py --fit RUN.json      # here: a masked load's release for the replay
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MB = 1 << 20

# (where, elem bytes, step: "contig" | "spaced", misalign bytes, ctas per SM, masked half)
POINTS = [
    ("dram", 2, "contig", 0, 1, False),
    ("dram", 2, "contig", 2, 1, False),
    ("dram", 2, "spaced", 0, 1, False),
    ("dram", 2, "contig", 2, 8, False),
    ("dram", 2, "contig", 2, 1, True),
    ("dram", 4, "contig", 0, 1, False),
    ("dram", 4, "contig", 4, 1, False),
    ("l2", 2, "contig", 2, 1, False),
    ("l2", 2, "contig", 2, 1, True),
    ("l2", 2, "spaced", 0, 1, False),
]
N_DEP = 512
SOFTMAX = [(132, 5055), (132, 8189), (1056, 5055), (1056, 8189)]  # (heads = CTAs, seq_kv)


def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def _clock():
        return tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)

    @triton.jit
    def _mb_row_chain(buf_ptr, start_ptr, zero_ptr, out_ptr, cyc_ptr, n_dep, n_real, step):
        """One warp per CTA.  In registers: each lane's element offset and a checksum.  Each iteration loads one
        element per lane (a warp load of 32 contiguous elements), predicated off from iteration n_real on."""
        pid = tl.program_id(0)
        lanes = tl.arange(0, 32)
        off = tl.load(start_ptr + pid) + lanes
        zero = tl.load(zero_ptr)
        acc = tl.zeros([32], dtype=tl.int32)
        t0 = _clock()
        for i in range(n_dep):
            v = tl.load(buf_ptr + off, mask=(lanes * 0 + i) < n_real, other=0).to(tl.int32)
            acc += v
            off = off + step + (v & zero).to(tl.int64)
        t1 = _clock()
        tl.store(out_ptr + pid * 32 + lanes, acc)
        tl.store(cyc_ptr + pid + lanes * 0, t1 - t0, mask=lanes == 0)

    return _mb_row_chain


def _chain_point(kern, where, elem, step_kind, misalign, cps, masked, *, n_sms, scratch, repeats, dev):
    import torch
    n_ctas = cps * n_sms
    step_b = 32 * elem if step_kind == "contig" else 256
    region = ((N_DEP + 2) * step_b + 4096 + 4095) // 4096 * 4096
    dt = torch.int16 if elem == 2 else torch.int32
    buf = torch.randint(0, 1000, (n_ctas * region // elem,), dtype=dt, device=dev)
    starts = (torch.arange(n_ctas, dtype=torch.int64, device=dev) * region + misalign) // elem
    zero = torch.zeros(1, dtype=torch.int32, device=dev)
    out = torch.empty(n_ctas * 32, dtype=torch.int32, device=dev)
    cyc = torch.empty(n_ctas, dtype=torch.int64, device=dev)
    n_real = N_DEP // 2 if masked else N_DEP
    times, cycles = [], []
    for r in range(repeats + 1):
        if where == "dram":
            scratch.fill_(float(r))  # evicts the regions' lines from the L2
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        kern[(n_ctas,)](buf, starts, zero, out, cyc, N_DEP, n_real, step_b // elem, num_warps=1, num_stages=1)
        e1.record()
        torch.cuda.synchronize()
        if r == 0:
            continue  # compile / warm the L2 (where == "l2")
        times.append(e0.elapsed_time(e1) * 1e-3)
        cycles.append(statistics.median(cyc.cpu().tolist()))
    ref = None
    if not masked:  # correctness gate: the checksum of the walk (every lane, every load)
        b = buf.view(n_ctas, region // elem)
        idx = (misalign // elem) + torch.arange(32, device=dev)[None, :] + (step_b // elem) * torch.arange(
            N_DEP, device=dev)[:, None]
        ref = b[:, idx.flatten()].view(n_ctas, N_DEP, 32).to(torch.int64).sum(1).to(torch.int32)
        assert torch.equal(ref.flatten(), out), "row chain: wrong checksum"
    c = statistics.median(cycles)
    return {"kind": "row_chain", "where": where, "elem_bytes": elem, "step": step_kind, "step_bytes": step_b,
            "misalign_bytes": misalign, "ctas_per_sm": cps, "ctas": n_ctas, "n_dep": N_DEP, "n_real": n_real,
            "time_s_repeats": times, "cycles_repeats": cycles, "cycles_median": c,
            "cycles_per_load_median": c / N_DEP, "checked": ref is not None}


def _softmax_point(heads, seq_kv, *, scratch, repeats, dev):
    import torch
    sys.path.insert(0, ROOT)
    from kernels.naive import _naive_softmax
    from memsim.schedule import naive_rows_per_step
    seq_q, block_m = 152, 128  # r1_019's rows; one CTA per head makes the first 128 (pid_m = 0)
    rows, npow2 = naive_rows_per_step(seq_kv, block_m)
    S = torch.randn(heads, seq_q, seq_kv, device=dev).to(torch.bfloat16)
    P = torch.full_like(S, float("nan"))
    off = seq_kv - seq_q  # bottom-right causal, as r1_019

    def launch():
        _naive_softmax[(heads, 1)](S, P, seq_q, seq_kv, off, BLOCK_M=block_m, ROWS=rows, NPOW2=npow2, CAUSAL=True,
                                   Q_FASTEST=False, PREC="ieee", num_warps=1)
    launch()
    torch.cuda.synchronize()
    # correctness gate: the first 128 rows against a float32 softmax of the same S
    s = S[:, :block_m].float()
    vis = torch.arange(seq_kv, device=dev)[None, :] <= torch.arange(block_m, device=dev)[:, None] + off
    ref = torch.softmax(s.masked_fill(~vis, float("-inf")), -1)
    err = ((P[:, :block_m].float() - ref).norm() / ref.norm()).item()
    assert err < 1e-2, f"naive_softmax check: relative error {err}"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import event_times_s
    ts = event_times_s(launch, repeats, before=lambda: scratch.fill_(1.0))
    t = statistics.median(ts)
    return {"kind": "naive_softmax", "heads": heads, "ctas_per_sm": heads // 132, "seq_q": seq_q, "seq_kv": seq_kv,
            "rows_per_cta": block_m, "rows_per_trip": rows, "npow2": npow2, "time_s_repeats": ts, "time_s_median": t,
            "us_per_row": t * 1e6 / (block_m // rows), "rel_err": err}


def show(path: str) -> int:
    import json
    run = json.load(open(path))
    pv = run["provenance"]
    print(f"{pv['gpu']}, {pv['date']}, torch {pv['torch']}, triton {pv['triton']}")
    print("where elem step    misalign cps masked | cycles/load (median over repeats; min..max)")
    for p in run["points"]:
        if p["kind"] == "row_chain":
            cs = [c / p["n_dep"] for c in p["cycles_repeats"]]
            print(f"{p['where']:5s} {p['elem_bytes']:4d} {p['step']:7s} {p['misalign_bytes']:8d} {p['ctas_per_sm']:3d} "
                  f"{str(p['n_real'] < p['n_dep']):6s} | {p['cycles_per_load_median']:7.1f} ({min(cs):.1f}..{max(cs):.1f})")
    for p in run["points"]:
        if p["kind"] == "naive_softmax":
            print(f"naive_softmax heads {p['heads']:5d} seq_kv {p['seq_kv']:5d}: {p['time_s_median'] * 1e6:9.1f} us, "
                  f"{p['us_per_row']:.3f} us per row trip (rel err {p['rel_err']:.1e})")
    return 0


def chain_body(run: dict) -> list:
    """The chain loop of a run's SASS (the loop with most register loads), decoded for memsim.warp_issue.replay."""
    sys.path.insert(0, ROOT)
    from kernels.sass import instructions
    text = next(p["sass"] for p in run["points"] if p["kind"] == "row_chain_sass")
    ins, loops = instructions(text)
    a, b = max(((a, b) for _, a, b in loops), key=lambda ab: sum(x.op == "LDG" for x in ins[ab[0]:ab[1] + 1]))
    return ins[a:b + 1]


def replay_per_load(body: list, lat, load_cycles: float) -> float:
    """Cycles a load of the chain loop with every register load released after `load_cycles` (one warp)."""
    from dataclasses import replace

    from memsim.warp_issue import replay
    n = sum(x.op == "LDG" for x in body)
    return replay(body, warps_per_cta=1, ctas=1, lat=replace(lat, load_cycles=load_cycles), trips=5) / n


def masked_cost(run: dict, where: str = "dram") -> float:
    """Measured cycles of a predicated-off load in the chain: the half-masked point's per-load cycles x 2 less the
    all-real point's (elem 2, contiguous, misaligned 2 B, one CTA per SM)."""
    def pt(masked):
        return next(p for p in run["points"] if p["kind"] == "row_chain" and p["where"] == where
                    and p["elem_bytes"] == 2 and p["step"] == "contig" and p["misalign_bytes"] == 2
                    and p["ctas_per_sm"] == 1 and (p["n_real"] < p["n_dep"]) == masked)
    return 2 * pt(True)["cycles_per_load_median"] - pt(False)["cycles_per_load_median"]


def fit(path: str) -> float:
    """The release latency of a predicated-off load: the load latency at which the replay of the chain loop gives
    the measured masked cost (bisection; the replay is monotone in it)."""
    import json
    sys.path.insert(0, ROOT)
    import memsim
    from memsim.calibration import calibration_for
    run = json.load(open(path))
    lat = calibration_for(memsim.load_hardware("h100-sxm")).issue
    body = chain_body(run)
    target = statistics.mean([masked_cost(run, "dram"), masked_cost(run, "l2")])
    lo, hi = 0.0, lat.load_l2_cycles
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if replay_per_load(body, lat, mid) < target else (lo, mid)
    for where, c in (("l2", lat.load_l2_cycles), ("dram", lat.load_dram_cycles)):
        print(f"replay at the {where} latency ({c:.0f}): {replay_per_load(body, lat, c):.1f} cycles a load")
    print(f"masked load measured {target:.1f} cycles of the chain (dram {masked_cost(run, 'dram'):.1f}, l2 "
          f"{masked_cost(run, 'l2'):.1f}); replay at 0: {replay_per_load(body, lat, 0.0):.1f}; release that fits: "
          f"{lo:.1f} cycles")
    return lo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="run file to write (on the GPU machine)")
    g.add_argument("--show", metavar="RUN", help="print a run's table (no GPU needed)")
    g.add_argument("--fit", metavar="RUN", help="the release latency of a predicated-off load that the replay of the "
                                                 "run's chain loop needs (memsim.spill_rowmask.MASKED_RELEASE_CYCLES)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=150)
    a = ap.parse_args(argv)
    if a.show:
        return show(a.show)
    if a.fit:
        fit(a.fit)
        return 0
    import torch
    dev = torch.device("cuda")
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    scratch = torch.empty(256 * MB // 4, dtype=torch.float32, device=dev)
    kern = _kernels()
    t0 = time.time()
    rows = []
    for pt in POINTS:
        if time.time() - t0 > a.budget_s:
            print("budget reached: stopping", flush=True)
            break
        r = _chain_point(kern, *pt, n_sms=n_sms, scratch=scratch, repeats=a.repeats, dev=dev)
        rows.append(r)
        print(f"{pt}: {r['cycles_per_load_median']:7.1f} cycles/load, {statistics.median(r['time_s_repeats']) * 1e6:8.1f} us",
              flush=True)
    for heads, seq_kv in SOFTMAX:
        if time.time() - t0 > a.budget_s:
            break
        r = _softmax_point(heads, seq_kv, scratch=scratch, repeats=a.repeats, dev=dev)
        rows.append(r)
        print(f"naive_softmax heads {heads} seq_kv {seq_kv}: {r['time_s_median'] * 1e6:.1f} us, "
              f"{r['us_per_row']:.3f} us/row", flush=True)
    # the chain loop's SASS (a record: which loads, which waits)
    sass = ""
    try:
        sys.path.insert(0, ROOT)
        from kernels.sass import disassemble
        ck = kern.warmup(torch.empty(1, dtype=torch.int16, device=dev), torch.zeros(1, dtype=torch.int64, device=dev),
                         torch.zeros(1, dtype=torch.int32, device=dev), torch.empty(32, dtype=torch.int32, device=dev),
                         torch.empty(1, dtype=torch.int64, device=dev), 16, 16, 32, num_warps=1, num_stages=1,
                         grid=(1,))
        sass = disassemble(ck.asm["cubin"])
    except Exception as e:  # noqa: BLE001 -- the SASS is a record, not needed for the figures
        sass = f"unavailable: {type(e).__name__}: {e}"[:200]
    rows.append({"kind": "row_chain_sass", "sass": sass})
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import write_run
    write_run(a.out, "spill_rowchain/1", rows, script="spill_rowchain_gpu.py", argv=argv, t0=t0,
              method="%clock64 around the dependent-load loop in the kernel (median over CTAs), CUDA events around "
                     "each launch; median over repeats after one dropped launch; the L2 emptied by a 256 MB memset "
                     "before each DRAM launch; clocks not locked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
