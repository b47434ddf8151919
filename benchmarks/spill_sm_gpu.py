"""Spilled registers by warps per SM and SMs used: the chip's spill-store rate, and where the reloads hit (issue 8).

The `spills` calibration points (memsim/presets/<hw>.calibration.json) ran `_mb_spill` with 1-16 warps per SM on
16 SMs and 1-4 warps per SM on every SM; on every SM the spill stores reached the L2 at <= 1.59 TB/s
(`Calibration.spill_store_l2_Bps`).  But attention kernels with 8 resident warps per SM stored 2.1-2.7 TB/s
(notes/fidelity.md, eighth session, item 7), and both 1.5-1.6 TB/s points had a GPU footprint past the L2's
dirty capacity (60 % of their stores written back to DRAM).  Is 1.59 TB/s a limit of the L2, of the warps each SM
has, or of the write-backs?

`_mb_spill_sm` is `_mb_spill` (a ROWS x 64 fp32 tile per CTA, all of it read and rewritten every iteration: the
compiler spills what does not fit, `maxnreg` sets how much) with one change: each CTA reads its SM id (%smid) and
exits at once unless it is below `n_sms_used` -- the grid is 132 x k CTAs (all resident at once: every SM gets k),
so the same k warps per SM run on 16 SMs (no chip-wide contention) or on all 132.  Each CTA also writes its SM id
so the point records how many working CTAs each SM really got.  Variants (compiled on the machine; frame = local
bytes per thread, loop = the loop's spill stores = reloads per thread per iteration, from ptxas / kernels.sass):

* ``f576``: 64 rows, 1 warp, maxnreg 64 (576 B frame, 324 B per iteration; up to 32 CTAs per SM);
* ``f1008``: 128 rows, 1 warp, maxnreg 128 (1008 B, 580 B; up to 16 per SM);
* ``f2976``: 256 rows, 1 warp, the compiler's registers (64; 2976 B, 1864 B: the calibration's 1-warp kernel);
* ``w4``: 1024 rows, 4 warps (3464 B; the calibration's 4-warp kernel, whose all-SM point gave the 1.59 TB/s).

ncu (default cache control: L1/L2 flushed before each launch; --clock-control none), 3 repeats per point in one
process: time, local-memory bytes and L1 lookups, L2 sectors from the SMs (read, write), DRAM bytes, warp stalls.

    run(command="python3 benchmarks/spill_sm_gpu.py --out $OUT", timeout_s=300)
    python benchmarks/spill_sm_gpu.py --analyse RUN.json     # here: the table and the derived rates
    python benchmarks/spill_sm_gpu.py --merge RUN.json       # here: add the `spill_sm` fact to the calibration
                                                             # (data only: no Calibration figure reads it yet)

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: name -> (rows, num_warps, maxnreg or None, n_iter)
VARIANTS = {
    "f576": (64, 1, 64, 64),
    "f1008": (128, 1, 128, 48),
    "f2976": (256, 1, None, 16),
    "w4": (1024, 4, None, 16),
}
#: (variant, CTAs per SM, SMs used; 0 = all)
POINTS = (
    [("f576", k, 0) for k in (1, 2, 4, 8, 16, 32)] + [("f576", k, 16) for k in (1, 4, 8, 16, 32)]
    + [("f1008", k, 0) for k in (1, 2, 4, 8, 16)] + [("f1008", k, 16) for k in (4, 8, 16)]
    + [("f2976", k, 0) for k in (1, 8)] + [("f2976", k, 16) for k in (2, 4, 8)]
    + [("w4", 1, 0), ("w4", 1, 16), ("w4", 2, 16)]
)
#: the `carveout` plan: (variant, CTAs per SM, dynamic shared memory per CTA in bytes).  The kernel uses no shared
#: memory; the launch asks for `smem` bytes exactly as Triton launches a kernel that allocates them (the compiled
#: kernel's metadata.shared: Triton's loader calls cuFuncSetCacheConfig(PREFER_SHARED) above 48 KB).  Does the L1
#: left beside the carve-out follow the CTAs' shared memory (memsim.local_memory.carveout_bytes) or the preference?
CARVEOUT_POINTS = (
    [("f2976", 1, s) for s in (0, 8 << 10, 40 << 10, 47 << 10, 49 << 10, 64 << 10, 100 << 10, 160 << 10)]
    + [("f2976", 2, s) for s in (0, 40 << 10, 49 << 10, 100 << 10)]
    + [("f1008", 4, s) for s in (0, 40 << 10, 49 << 10)]
)
#: the `reload` plan (session 10): how long a reload that misses L1 makes its warp wait, at intermediate miss fractions
#: and at 6-8 warps per SM, with the footprint resident in the L2 (no write-backs).  The L1 left beside the carve-out
#: is set by the launch's shared memory (8 KB: 25 CTAs fit -> 228 KB carve-out, 28 KB of L1; 47 KB: 4 CTAs ->
#: 196 KB, 60 KB of L1; none: 256 KB) and the footprint per SM by k CTAs of f576 (10 KB touched per iteration per
#: CTA) or f1008 (18.5 KB): reloads from all-L1 to all-L2.  The same k without shared memory is the L1-hit
#: reference on the same machine.  memsim.costs mixes the replay's L1-hit and L2 passes linearly in the miss
#: fraction; a warp that waits on a batch of reloads waits for the slowest of them.
RELOAD_POINTS = (
    [("f576", k, 8 << 10) for k in (1, 2, 3, 4, 6, 8)] + [("f576", k, 0) for k in (2, 4, 8)]
    + [("f1008", k, 8 << 10) for k in (1, 2)] + [("f1008", k, 47 << 10) for k in (2, 3, 4)]
    + [("f1008", k, 0) for k in (2, 3)] + [("f2976", 1, 47 << 10), ("f2976", 1, 0)]
)
#: the `writeback` plan (session 10): few warps per SM whose GPU footprint passes the L2's dirty capacity (~21 MB: the
#: stores are written back) but stays inside the L2 (50 MB: the reloads should still hit it) -- the regime of the live
#: launches the 1.59 TB/s cap keeps from being too fast (notes/spills.md).  f2976 touches 60 KB per one-warp CTA per
#: iteration (k = 1 / 2 / 3: 12.6 / 25 / 38 MB on the GPU), f1008 18.5 KB (k = 6 / 8: 25 / 34 MB); with 8 KB of
#: shared memory (28 KB of L1) the reloads miss L1, without it (256 KB) f2976 k <= 3 and f1008 keep them there.
WRITEBACK_POINTS = (
    [("f2976", k, s) for k in (1, 2, 3) for s in (0, 8 << 10)] + [("f1008", k, s) for k in (6, 8) for s in (0, 8 << 10)]
)
#: the `writeback2` plan (session 11): the write-back share at more footprints and more warps per SM, every reload
#: missing L1 (8 KB of shared memory: 28 KB of L1).  f2976 k = 4 (50 MB on the GPU: the whole L2), f1008 k = 10 / 12
#: (42 / 50 MB), f576 k = 12 / 16 / 24 (16 / 21 / 32 MB at 12-24 warps per SM: does the wait of a reload of a
#: written-back line depend on the warps?), and f2976 k = 4 without shared memory (256 KB of L1: part of the reloads
#: hit it) -- beside the writeback plan's k = 1-3 / 6-8 points (session 10, finding 5).
WRITEBACK2_POINTS = (
    [("f2976", 4, 8 << 10), ("f2976", 4, 0)] + [("f1008", k, 8 << 10) for k in (10, 12)]
    + [("f576", k, 8 << 10) for k in (12, 16, 24)]
)
#: the `wbsms` plan (session 11): the same per-SM configuration on fewer SMs, so that the GPU footprint -- and with it
#: the share of the stores written back -- changes while each SM's warps, L1 and reloads do not: at 4 one-warp f2976
#: CTAs per SM the 132-SM point (50 MB) ran 1.47x its 16-SM twin (no write-back); how does that grow between?
#: (variant, CTAs per SM, SMs used, dynamic shared memory per CTA)
WBSMS_POINTS = (
    [("f2976", 4, n, smem) for n in (33, 66, 99) for smem in (0, 8 << 10)]
    + [("f1008", 12, 66, 8 << 10), ("f576", 24, 66, 8 << 10)]
)
#: the `chain` plan (session 16): does a CTA left alone on its SM run its trips at its own warps' chain (the tile-loop
#: replay at ONE resident CTA) or at its turn among the k the launch made resident (memsim.engine books co-resident
#: CTAs' turns one after another, each at replay(k) / k)?  `_mb_spill_chain`: k one-warp CTAs per SM; the first CTA
#: to arrive on each SM (an atomic ticket per SM) makes `n_long` iterations, the others `n_short` (0: they exit at
#: once; = n_long: the uniform twin).  L1-resident (f576 without shared memory: 10 KB per CTA, 256 KB of L1) and
#: L2-resident (f2976 with 8 KB of shared memory: 60 KB per CTA, 28 KB of L1, every reload misses L1 even alone;
#: 33 SMs so that k = 4 stays under the L2's dirty capacity).
#: (variant, CTAs per SM, SMs used (0 = all), dynamic shared memory per CTA, n_long, n_short)
CHAIN_POINTS = (
    [("f576", 1, 0, 0, 64, 64)] + [("f576", k, 0, 0, 64, s) for k in (4, 8) for s in (64, 16, 0)]
    + [("f2976", 1, 33, 8 << 10, 16, 16)] + [("f2976", k, 33, 8 << 10, 16, s) for k in (2, 4) for s in (16, 4, 0)]
)
REPEATS = 3
METRICS = (
    "gpu__time_duration.sum", "sm__cycles_elapsed.avg.per_second",
    "dram__bytes_read.sum", "dram__bytes_write.sum",
    "lts__t_sectors_srcunit_tex_op_read.sum", "lts__t_sectors_srcunit_tex_op_write.sum",
    "lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum", "lts__t_sectors_srcunit_tex_op_write_lookup_hit.sum",
    "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum", "l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum", "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum",
    "l1tex__t_sectors_pipe_lsu_mem_local_op_ld_lookup_hit.sum", "l1tex__t_sectors_pipe_lsu_mem_local_op_ld_lookup_miss.sum",
    "l1tex__t_sectors_pipe_lsu_mem_local_op_st_lookup_hit.sum", "l1tex__t_sectors_pipe_lsu_mem_local_op_st_lookup_miss.sum",
    "l1tex__m_l1tex2xbar_write_bytes.sum", "l1tex__m_xbar2l1tex_read_bytes.sum",
    "smsp__inst_executed_op_local_ld.sum", "smsp__inst_executed_op_local_st.sum", "smsp__inst_executed.sum",
    "sm__warps_active.avg.per_cycle_active",
    "smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_drain_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_membar_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio",
    "launch__shared_mem_config_size", "launch__shared_mem_per_block_dynamic",
)
#: the chain plan's extra metrics: where the warps wait, and how long the SMs are busy (max over SMs: the long CTA)
CHAIN_METRICS = METRICS + (
    "sm__cycles_active.avg", "sm__cycles_active.max", "smsp__issue_active.avg.per_cycle_active",
    "smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_wait_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_not_selected_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_selected_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_branch_resolving_per_issue_active.ratio",
)


import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from verification.microbench.kernels import _mb_spill  # noqa: E402


@triton.jit
def _smid():
    return tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _mb_spill_sm(src_ptr, out_ptr, sm_ptr, n_iter, n_sms_used, ROWS: tl.constexpr, COLS: tl.constexpr):
    """`_mb_spill` on the SMs below n_sms_used only (the other CTAs exit at once); every CTA writes its SM."""
    pid = tl.program_id(0).to(tl.int64)
    sm = _smid()
    tl.store(sm_ptr + pid, sm)
    if sm < n_sms_used:
        offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        x = tl.load(src_ptr + pid * ROWS * COLS + offs)
        for _ in range(n_iter):
            s = tl.sum(x, axis=1)
            x = x * 0.5 + s[:, None] * 0.001
        tl.store(out_ptr + pid * ROWS * COLS + offs, x)


@triton.jit
def _mb_spill_chain(src_ptr, out_ptr, sm_ptr, cnt_ptr, n_long, n_short, n_sms_used, ROWS: tl.constexpr,
                    COLS: tl.constexpr):
    """`_mb_spill_sm` whose first CTA on each SM (an atomic ticket per SM) makes n_long iterations, the rest
    n_short: one CTA left alone on its SM once the others are done."""
    pid = tl.program_id(0).to(tl.int64)
    sm = _smid()
    tl.store(sm_ptr + pid, sm)
    if sm < n_sms_used:
        ticket = tl.atomic_add(cnt_ptr + sm, 1)
        _mb_spill(src_ptr, out_ptr, tl.where(ticket == 0, n_long, n_short), ROWS, COLS)  # calibration's body


def _with_shared(kern, smem: int, args, kw):
    """A fresh CompiledKernel of `kern` (compiled once, cached) that Triton launches with `smem` bytes of dynamic
    shared memory: set before its first launch loads it, so Triton's loader applies its > 48 KB rule (PREFER_SHARED
    + the opt-in limit) as for a kernel that allocates them.  Launch it as ``ck[grid](*args, *constexprs)``."""
    from triton.compiler import CompiledKernel, make_backend
    ck0 = kern.warmup(*args, grid=(1,), **kw)
    if hasattr(ck0, "result"):
        ck0 = ck0.result()
    ck = CompiledKernel(ck0.src, ck0.metadata_group, ck0.hash)
    ck.metadata = ck.metadata._replace(shared=int(smem))
    ck.packed_metadata = make_backend(ck.metadata.target).pack_metadata(ck.metadata)
    return ck


def point_id(v: str, k: int, sms: int, smem: int | None = None) -> str:
    if smem is not None and sms:
        return f"{v}_k{k}_sms{sms}_smem{smem >> 10}k"
    if smem is not None:
        return f"{v}_k{k}_smem{smem >> 10}k"
    return f"{v}_k{k}_sms{sms or 'all'}"


def _setup(torch, v: str, k: int, n_sms: int, sms: int):
    """(rows, warps, maxnreg, used SMs, CTAs, src, out, smid, Triton kwargs) of a point of variant v, k per SM."""
    rows, warps, maxnreg, _ = VARIANTS[v]
    used, ctas = sms or n_sms, n_sms * k
    src = torch.rand(ctas * rows * 64, device="cuda", dtype=torch.float32)
    out = torch.empty_like(src)
    smid = torch.full((ctas,), -1, device="cuda", dtype=torch.int32)
    kw = dict(ROWS=rows, COLS=64, num_warps=warps)
    if maxnreg:
        kw["maxnreg"] = maxnreg
    return rows, warps, maxnreg, used, ctas, src, out, smid, kw


def _compiled(ck) -> dict:
    return {"n_regs": int(ck.n_regs), "n_spills": int(ck.n_spills),
            "local_bytes_per_thread": int(ck.n_spills) * 4, "shared_bytes": int(ck.metadata.shared)}


def _observed(ids: list, used: int) -> dict:
    """How many working CTAs each SM below `used` got (the %smid each CTA wrote)."""
    per_sm = {}
    for s in ids:
        if 0 <= s < used:
            per_sm[s] = per_sm.get(s, 0) + 1
    counts = sorted(per_sm.values())
    return {"sms_working": len(per_sm), "ctas_working": sum(counts),
            "ctas_per_sm_min": counts[0] if counts else 0, "ctas_per_sm_max": counts[-1] if counts else 0}


def worker(manifest: str, repeats: int, only: list | None, plan: str = "sms") -> int:
    """Each point: compile + warm up outside the profiled range, then `repeats` launches inside it."""
    import torch
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    order = []
    by_smem = {"carveout": CARVEOUT_POINTS, "reload": RELOAD_POINTS, "writeback": WRITEBACK_POINTS,
               "writeback2": WRITEBACK2_POINTS}
    pts = [(v, k, sms, None) for v, k, sms in POINTS] if plan == "sms" else \
        list(WBSMS_POINTS) if plan == "wbsms" else [(v, k, 0, smem) for v, k, smem in by_smem[plan]]
    for v, k, sms, smem in pts:
        pid = point_id(v, k, sms, smem)
        if only and pid not in only:
            continue
        n_iter = VARIANTS[v][3]
        try:
            rows, warps, maxnreg, used, ctas, src, out, smid, kw = _setup(torch, v, k, n_sms, sms)
            if smem is None:
                def run():
                    return _mb_spill_sm[(ctas,)](src, out, smid, n_iter, used, **kw)
                ck = run()
            else:
                ck = _with_shared(_mb_spill_sm, smem, (src, out, smid, n_iter, used), kw)

                def run():
                    ck[(ctas, 1, 1)](src, out, smid, n_iter, used, rows, 64)
                run()
            torch.cuda.synchronize()
            compiled = _compiled(ck)
            try:
                from kernels.sass import disassemble, tile_loop
                lp = tile_loop(disassemble(ck.asm["cubin"]))
                if lp is not None:
                    compiled.update(loop_store_bytes=lp.local_store_bytes, loop_load_bytes=lp.local_load_bytes)
            except Exception as e:  # noqa: BLE001 -- the loop profile is extra
                compiled["loop_error"] = f"{type(e).__name__}: {e}"[:200]
            observed = _observed(smid.cpu().tolist(), used)
        except Exception as e:  # noqa: BLE001 -- a point that does not run is recorded, not fatal
            _failed(order, pid, e, manifest)
            continue
        for r in range(repeats):
            torch.cuda.profiler.start()
            run()
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
            order.append({"id": pid, "variant": v, "rows": rows, "cols": 64, "num_warps": warps, "maxnreg": maxnreg,
                          "n_iter": n_iter, "ctas_per_sm": k, "sms_used": used, "ctas": ctas, "repeat": r,
                          "compiled": compiled, "observed": observed, "dynamic_smem": smem})
        print(f"{pid}: ok {compiled} {observed}", flush=True)
        del src, out, smid
        _write(manifest, order)  # after every point: a run stopped at its limit keeps what it measured
    _write(manifest, order)
    return 0


def worker_chain(manifest: str, repeats: int, only: list | None) -> int:
    """The chain plan: each point compiled and warmed up outside the profiled range, then `repeats` launches
    inside it (the per-SM tickets zeroed before each, outside the kernel filter)."""
    import torch
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    order = []
    for v, k, sms, smem, n_long, n_short in CHAIN_POINTS:
        pid = f"{v}_k{k}_sms{sms or 'all'}_smem{smem >> 10}k_L{n_long}_S{n_short}"
        if only and pid not in only:
            continue
        try:
            rows, warps, maxnreg, used, ctas, src, out, smid, kw = _setup(torch, v, k, n_sms, sms)
            cnt = torch.zeros(n_sms, device="cuda", dtype=torch.int32)
            args = (src, out, smid, cnt, n_long, n_short, used)
            if smem:
                ck = _with_shared(_mb_spill_chain, smem, args, kw)

                def run():
                    cnt.zero_()
                    ck[(ctas, 1, 1)](*args, rows, 64)
            else:
                ck = None

                def run():
                    cnt.zero_()
                    return _mb_spill_chain[(ctas,)](*args, **kw)
            r0 = run()
            ck = ck if ck is not None else r0
            torch.cuda.synchronize()
            compiled = _compiled(ck)
            tickets = cnt.cpu().tolist()[:used]
            observed = {**_observed(smid.cpu().tolist(), used), "tickets_min": min(tickets),
                        "tickets_max": max(tickets)}
        except Exception as e:  # noqa: BLE001 -- a point that does not run is recorded, not fatal
            _failed(order, pid, e, manifest)
            continue
        for r in range(repeats):
            cnt.zero_()
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
            ck[(ctas, 1, 1)](*args, rows, 64) if smem else _mb_spill_chain[(ctas,)](*args, **kw)
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
            order.append({"id": pid, "variant": v, "rows": rows, "cols": 64, "num_warps": warps, "maxnreg": maxnreg,
                          "n_iter": n_long, "n_long": n_long, "n_short": n_short, "ctas_per_sm": k, "sms_used": used,
                          "ctas": ctas, "repeat": r, "compiled": compiled, "observed": observed,
                          "dynamic_smem": smem})
        print(f"{pid}: ok {compiled} {observed}", flush=True)
        del src, out, smid, cnt
        _write(manifest, order)
    _write(manifest, order)
    return 0


def _failed(order: list, pid: str, e: Exception, manifest: str) -> None:
    order.append({"id": pid, "error": f"{type(e).__name__}: {e}"[:300]})
    print(f"{pid}: {order[-1]['error']}", flush=True)
    _write(manifest, order)


def _write(path: str, doc) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)


def _metrics(wanted=METRICS) -> list:
    """`wanted` less those this ncu does not know for the H100 (base name = the part before the first dot)."""
    from verification.ncu import available_metrics
    known = available_metrics("gh100")
    if not known:
        return list(wanted)
    kept = [m for m in wanted if m.split(".")[0] in known]
    dropped = [m for m in wanted if m not in kept]
    if dropped:
        print(f"ncu does not know {dropped}: left out", flush=True)
    return kept


def drive(out: str, repeats: int, budget_s: float, plan: str = "sms") -> int:
    from verification.ncu import parse_csv
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    tag = "spill_sm" if plan == "sms" else f"spill_sm_{plan}"
    man = os.path.join(out, f"{tag}.manifest.json")
    log = os.path.join(out, f"{tag}.ncu.log")
    cmd = ["ncu", "--clock-control", "none", "--profile-from-start", "off", "--csv", "--print-units", "base",
           "-k", "regex:_mb_spill_(sm|chain)", "--metrics", ",".join(_metrics(CHAIN_METRICS if plan == "chain"
                                                                               else METRICS)),
           sys.executable, os.path.abspath(__file__), "--worker", "--manifest", man, "--repeats", str(repeats),
           "--plan", plan]
    sys.path.insert(0, HERE)
    from tile_loop_gpu import _ncu
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
    from run_file import write_run
    write_run(os.path.join(out, f"{tag}.json"), "spill_sm/1", points, script="spill_sm_gpu.py", argv=None, t0=t0,
              method=f"ncu (default cache control, --clock-control none), {repeats} launches per point in one "
                     "process; grid 132 x k one-warp (or 4-warp) CTAs, those on SMs >= sms_used exit at once")
    ok = [p for p in points if "error" not in p]
    print(f"{len(ok)} launches profiled, {len(points) - len(ok)} errors, {time.time() - t0:.0f} s", flush=True)
    table(points)
    return 0 if ok else 1


def summarise(points: list) -> list[dict]:
    """One row per point: medians over its repeats of the derived figures."""
    by = {}
    for p in points:
        if "error" in p or "metrics" not in p:
            continue
        by.setdefault(p["id"], []).append(p)
    out = []
    for pid, ps in by.items():
        p0 = ps[0]

        def med(f):
            vals = [f(p["metrics"]) for p in ps]
            vals = [x for x in vals if x is not None]
            return statistics.median(vals) if vals else None

        def g(name):
            return lambda m: m.get(name)
        t = med(g("gpu__time_duration.sum"))
        st = med(g("l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum")) or 0.0
        ld = med(g("l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum")) or 0.0
        l2r = (med(g("lts__t_sectors_srcunit_tex_op_read.sum")) or 0.0) * 32
        l2w = (med(g("lts__t_sectors_srcunit_tex_op_write.sum")) or 0.0) * 32
        gr = med(g("l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum")) or 0.0
        gw = med(g("l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum")) or 0.0
        hit = med(g("l1tex__t_sectors_pipe_lsu_mem_local_op_ld_lookup_hit.sum"))
        miss = med(g("l1tex__t_sectors_pipe_lsu_mem_local_op_ld_lookup_miss.sum"))
        obs = p0.get("observed") or {}
        warps_sm = p0["num_warps"] * (obs.get("ctas_working", 0) / max(1, obs.get("sms_working", 1)))
        out.append({
            "id": pid, "variant": p0["variant"], "ctas_per_sm": p0["ctas_per_sm"], "sms_used": p0["sms_used"],
            "num_warps": p0["num_warps"], "warps_per_sm": warps_sm, "observed": obs, "compiled": p0.get("compiled"),
            "n_iter": p0["n_iter"], "repeats": len(ps), "time_s": t, "local_st_bytes": st, "local_ld_bytes": ld,
            "l2_read_bytes": l2r, "l2_write_bytes": l2w, "global_read_bytes": gr, "global_write_bytes": gw,
            "dram_read_bytes": med(g("dram__bytes_read.sum")), "dram_write_bytes": med(g("dram__bytes_write.sum")),
            "reload_l2_fraction": (max(0.0, l2r - gr) / ld) if ld else None,
            "reload_l1_miss_fraction": (miss / (hit + miss)) if hit is not None and miss is not None and hit + miss else None,
            "store_Bps": st / t if t else None, "store_Bps_per_sm": st / t / p0["sms_used"] if t else None,
            "local_Bps_per_sm": (st + ld) / t / p0["sms_used"] if t else None,
            "sm_clock_Hz": med(g("sm__cycles_elapsed.avg.per_second")),
            "stall_lg_throttle": med(g("smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio")),
            "stall_long_scoreboard": med(g("smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio")),
            "stall_drain": med(g("smsp__average_warps_issue_stalled_drain_per_issue_active.ratio")),
            "dynamic_smem": p0.get("dynamic_smem"), "smem_config_bytes": med(g("launch__shared_mem_config_size")),
            "time_spread": (max(p["metrics"].get("gpu__time_duration.sum") or 0 for p in ps)
                            - min(p["metrics"].get("gpu__time_duration.sum") or 0 for p in ps)) / t if t else None,
        })
    return out


def spills_points(points: list, num_sms: int = 132) -> list[dict]:
    """The points that ran on every SM in the calibration's `spills` format (memsim.local_memory.curves_from,
    memsim.calibration.spills_from / spill_rates_from read them as they read `_mb_spill`'s): medians over the
    repeats, `ctas` = the CTAs that worked.  Points on fewer SMs are left out: those formulas take k CTAs per SM
    from ctas / num_sms."""
    out = []
    for r in summarise(points):
        if r["sms_used"] != num_sms or not r["time_s"]:
            continue
        c = r["compiled"] or {}
        rows, warps, maxnreg, n_iter = VARIANTS[r["variant"]]
        out.append({
            "id": f"spill_sm/{r['id']}", "kernel": "_mb_spill_sm", "rows": rows, "cols": 64, "num_warps": warps,
            "maxnreg": maxnreg, "n_iter": n_iter, "ctas": r["observed"]["ctas_working"], "time_s": r["time_s"],
            "time_s_spread": r["time_spread"], "local_read_bytes": r["local_ld_bytes"],
            "local_write_bytes": r["local_st_bytes"], "l2_read_bytes": r["l2_read_bytes"],
            "l2_write_bytes": r["l2_write_bytes"], "global_read_bytes": r["global_read_bytes"],
            "global_write_bytes": r["global_write_bytes"], "dram_read_bytes": r["dram_read_bytes"],
            "dram_write_bytes": r["dram_write_bytes"], "sm_clock_Hz": r["sm_clock_Hz"],
            "reload_l1_miss_fraction": r["reload_l1_miss_fraction"],
            "compiled": {"name": "_mb_spill_sm", "regs_per_thread": c.get("n_regs"),
                         "local_bytes_per_thread": c.get("local_bytes_per_thread"),
                         "shared_bytes": c.get("shared_bytes", 0), "num_warps": warps,
                         "loop_store_bytes": c.get("loop_store_bytes"), "loop_load_bytes": c.get("loop_load_bytes"),
                         "source": "triton CompiledKernel on the GPU (n_regs, n_spills, metadata.shared)"}})
    return out


def fact_points(points: list) -> list[dict]:
    """The `spill_sm` fact: one entry per point (medians over its repeats), on 16 SMs and on all.  The SM clock is
    kept as ``ncu_sm_clock_Hz`` (memsim.calibration takes the calibrate plan's clock from facts' ``sm_clock_Hz``)."""
    out = []
    for r in summarise(points):
        r = dict(r)
        r["ncu_sm_clock_Hz"] = r.pop("sm_clock_Hz")
        out.append(r)
    return out


def merge(run_paths: list, into: str, replace: bool = False) -> int:
    """The `spill_sm` fact from one or more run files (each point tagged with its run file: the plans share point
    ids, e.g. f2976_k1_smem0k is in the carveout and the reload plan)."""
    sys.path.insert(0, HERE)
    from run_file import merge_fact
    pts = []
    for rp in run_paths:
        for p in fact_points(json.load(open(rp))["points"]):
            pts.append({**p, "run": os.path.basename(rp)})
    run = json.load(open(run_paths[-1]))
    merge_fact(into, "spill_sm", pts, run=run, run_path=run_paths[-1], replace=replace,
               also=[os.path.relpath(r, ROOT) for r in run_paths[:-1]],
               note="spills by warps per SM, by the L1 beside the carve-out, by the reloads' L1 miss fraction and "
                    "past the L2's dirty capacity (benchmarks/spill_sm_gpu.py, plans sms / carveout / reload / "
                    "writeback / writeback2 / wbsms); data only: memsim.local_memory.spill_store_rate_from and "
                    "reload_batch_from (3.75) read it, no Calibration figure does yet (notes/spills.md, sessions "
                    "10-11)")
    print(f"spill_sm: {len(pts)} points from {len(run_paths)} runs merged into {into}")
    return 0


def table(points: list) -> None:
    rows = summarise(points)
    print("| point | warps/SM | SMs | frame B | time us | st GB | st TB/s | st GB/s/SM | ld+st GB/s/SM | "
          "reload->L2 | L1 miss | DRAM w / st | lg_thr | long_sb | carve-out KB |")
    print("| --- " * 15 + "|")
    for r in rows:
        c = r["compiled"] or {}
        dw = (r["dram_write_bytes"] or 0) / r["local_st_bytes"] if r["local_st_bytes"] else 0

        def f(x, fmt):
            return fmt % x if x is not None else "-"
        print(f"| {r['id']} | {r['warps_per_sm']:.1f} | {r['sms_used']} | {c.get('local_bytes_per_thread')} | "
              f"{f(r['time_s'] and r['time_s'] * 1e6, '%.0f')} | {r['local_st_bytes'] / 1e9:.2f} | "
              f"{f(r['store_Bps'] and r['store_Bps'] / 1e12, '%.2f')} | "
              f"{f(r['store_Bps_per_sm'] and r['store_Bps_per_sm'] / 1e9, '%.1f')} | "
              f"{f(r['local_Bps_per_sm'] and r['local_Bps_per_sm'] / 1e9, '%.1f')} | "
              f"{f(r['reload_l2_fraction'], '%.3f')} | {f(r['reload_l1_miss_fraction'], '%.3f')} | {dw:.2f} | "
              f"{f(r['stall_lg_throttle'], '%.2f')} | {f(r['stall_long_scoreboard'], '%.2f')} | "
              f"{f(r['smem_config_bytes'] and r['smem_config_bytes'] / 1024, '%.0f')} |")


def replay_table(run_paths: list) -> list[dict]:
    """(here) Each point's measured cycles per iteration against `kernels.sass.issue_profile` of its variant, compiled
    here for sm_90 (Triton's compiler without a GPU): the replay with the reloads at L1 (`tile_cycles`) and with the
    point's measured L1 miss fraction m mixed linearly between that and every reload at the L2 latency
    (`tile_cycles_local_l2`), as memsim.costs mixes them; and the batch mix 1 - (1 - m)^b with b =
    memsim.local_memory.reload_batch_from over the points."""
    import torch
    import memsim
    from kernels.compiled_facts import compile_launch
    from memsim.calibration import load_calibration
    from memsim.local_memory import batched_miss_fraction, reload_batch_from
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    lat = cal.issue
    hit, l2 = lat.cycles.get("LDL", lat.cycles.get("LDS", 0.0)), lat.load_l2_cycles
    facts = {}
    for v, (rows, warps, maxnreg, n_iter) in VARIANTS.items():
        src = torch.empty(16, dtype=torch.float32, device="meta")
        sm = torch.empty(16, dtype=torch.int32, device="meta")
        kw = dict(ROWS=rows, COLS=64, num_warps=warps, **({"maxnreg": maxnreg} if maxnreg else {}))
        facts[v] = compile_launch(_mb_spill_sm, (src, src, sm, n_iter, 132), kw)["issue"]
    pts = []
    for rp in run_paths:
        pts += fact_points(json.load(open(rp))["points"])
    b = reload_batch_from(pts, 132)
    out = []
    print(f"reload batch b = {b if b is None else round(b, 2)} (None: these runs have no point between all-hit and "
          f"all-miss; the batch column is then linear); replay latencies {lat.fingerprint()}")
    print("| point | warps/SM | SMs | m (ncu) | cycles/iter | replay L1 | replay linear m | measured / linear | "
          "replay batch | measured / batch | stores TB/s |")
    print("| --- " * 11 + "|")
    for p in pts:
        iss, k = facts[p["variant"]], p["ctas_per_sm"]

        def at(c):
            n = min(k, len(c))
            return c[n - 1] * k / n
        m = p["reload_l1_miss_fraction"] or 0.0
        cyc = p["time_s"] * p["ncu_sm_clock_Hz"] / p["n_iter"]
        t0, t1 = at(iss["tile_cycles"]), at(iss["tile_cycles_local_l2"])
        lin, bat = t0 + m * (t1 - t0), t0 + batched_miss_fraction(m, b) * (t1 - t0)
        row = {"id": p["id"], "run": p.get("run"), "m": m, "cycles": cyc, "replay_l1": t0, "replay_linear": lin,
               "replay_batch": bat}
        out.append(row)
        print(f"| {p['id']} | {p['warps_per_sm']:.0f} | {p['sms_used']} | {m:.2f} | {cyc:.0f} | {t0:.0f} | {lin:.0f} | "
              f"{cyc / lin:.2f} | {bat:.0f} | {cyc / bat:.2f} | {p['store_Bps'] / 1e12:.2f} |")
    del hit, l2
    return out


def chain_replay(variants=("f576", "f2976"), n_sms_used: int = 132) -> dict:
    """(here) `kernels.sass.issue_profile` of `_mb_spill_chain`'s variants compiled for sm_90: the trip's replayed
    cycles at 1..k resident CTAs with the reloads at L1 (`tile_cycles`) and at the L2 latency
    (`tile_cycles_local_l2`)."""
    import torch
    from kernels.compiled_facts import compile_launch
    out = {}
    for v in variants:
        rows, warps, maxnreg, n_iter = VARIANTS[v]
        src = torch.empty(16, dtype=torch.float32, device="meta")
        i32 = torch.empty(16, dtype=torch.int32, device="meta")
        kw = dict(ROWS=rows, COLS=64, num_warps=warps, **({"maxnreg": maxnreg} if maxnreg else {}))
        f = compile_launch(_mb_spill_chain, (src, src, i32, i32, n_iter, n_iter, n_sms_used), kw)
        out[v] = {"issue": f["issue"], "local_bytes_per_thread": f.get("local_bytes_per_thread"),
                  "loop": {k_: f["loop"].get(k_) for k_ in ("instructions", "local_store_bytes", "local_load_bytes")}
                  if f.get("loop") else None}
    return out


def chain_table(run_path: str, replay: dict | None = None) -> list[dict]:
    """(here) The chain plan against the two readings of the engine: TURNS (today: every CTA's trips booked as turns
    of replay(k) / k on its SM, so the SM's time is (n_long + (k - 1) n_short) x replay(k) / k) and CHAIN (a CTA's
    trips take at least replay(1) each: n_short trips with all k resident at replay(k), the rest alone at replay(1)).
    Replay cycles at L1 for the points without shared memory, at the L2 latency for the 8 KB ones (every reload
    misses L1: ncu's m is printed beside)."""
    pts = json.load(open(run_path))["points"]
    replay = replay or chain_replay()
    rows = []
    print("| point | k | n_long | n_short | m (ncu) | measured cycles / long iter | TURNS | CHAIN | "
          "meas / TURNS | meas / CHAIN | long_sb | issue active | sm cycles max / avg |")
    print("| --- " * 13 + "|")
    for r in summarise(pts):
        p0 = next(p for p in pts if p.get("id") == r["id"] and "metrics" in p)
        v, k, nl, ns = r["variant"], r["ctas_per_sm"], p0["n_long"], p0["n_short"]
        iss = replay[v]["issue"]
        key = "tile_cycles_local_l2" if p0.get("dynamic_smem") else "tile_cycles"
        cyc = iss[key]

        def at(c, n):
            j = min(n, len(c))
            return c[j - 1] * n / j
        m = p0["metrics"]

        def med(name):
            vals = [q["metrics"].get(name) for q in pts if q.get("id") == r["id"] and "metrics" in q]
            vals = [x for x in vals if x is not None]
            return statistics.median(vals) if vals else None
        clock = r["sm_clock_Hz"] or 1.755e9
        meas = r["time_s"] * clock / nl
        turns = (nl + (k - 1) * ns) * at(cyc, k) / k / nl
        chain = max(turns, (min(ns, nl) * at(cyc, k) + max(0, nl - ns) * at(cyc, 1)) / nl)
        cmax, cavg = med("sm__cycles_active.max"), med("sm__cycles_active.avg")
        row = {"id": r["id"], "k": k, "n_long": nl, "n_short": ns, "m": r["reload_l1_miss_fraction"],
               "cycles_per_long_iter": meas, "turns": turns, "chain": chain, "long_sb": r["stall_long_scoreboard"],
               "issue_active": med("smsp__issue_active.avg.per_cycle_active"), "sm_cycles_max": cmax,
               "sm_cycles_avg": cavg, "time_s": r["time_s"], "clock_Hz": clock}
        rows.append(row)
        mm = "-" if row["m"] is None else f"{row['m']:.2f}"
        print(f"| {r['id']} | {k} | {nl} | {ns} | {mm} | {meas:.0f} | {turns:.0f} | {chain:.0f} | "
              f"{meas / turns:.2f} | {meas / chain:.2f} | {row['long_sb'] or 0:.2f} | {row['issue_active'] or 0:.3f} | "
              f"{(cmax or 0) / max(1.0, cavg or 1.0):.2f} |")
        del m
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="(GPU) folder for spill_sm.json, the ncu log and the manifest")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--budget-s", type=float, default=240.0, help="(GPU) ncu's wall-clock limit")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--manifest", help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="*", help="(GPU) only these point ids")
    ap.add_argument("--plan", choices=("sms", "carveout", "reload", "writeback", "writeback2", "wbsms", "chain"),
                    default="sms",
                    help="(GPU) sms: warps per SM on 16 / 132 SMs; carveout: the same kernel launched with dynamic "
                         "shared memory (CARVEOUT_POINTS); reload: L1-missing reloads at 1-8 warps per SM, "
                         "L2-resident (RELOAD_POINTS); writeback: few warps, footprint past the dirty capacity inside "
                         "the L2 (WRITEBACK_POINTS); writeback2: more footprints and warps per SM in that regime "
                         "(WRITEBACK2_POINTS); wbsms: one per-SM configuration on 33-99 SMs (WBSMS_POINTS); chain: one "
                         "long-walking CTA per SM among short ones (CHAIN_POINTS)")
    ap.add_argument("--analyse", metavar="RUN", help="(here) print the table of a run file")
    ap.add_argument("--chain", metavar="RUN", help="(here) the chain plan's run against the TURNS and CHAIN readings")
    ap.add_argument("--replay", metavar="RUN", nargs="+", help="(here) each point against the replay of its variant "
                                                               "compiled here (linear and batched reload mix)")
    ap.add_argument("--merge", metavar="RUN", nargs="+", help="(here) the runs' points as the `spill_sm` fact of the "
                                                              "preset's calibration file")
    ap.add_argument("--replace", action="store_true", help="(here) with --merge: replace an existing spill_sm fact")
    ap.add_argument("--into", default=os.path.join(ROOT, "memsim", "presets", "h100-sxm.calibration.json"))
    a = ap.parse_args(argv)
    if a.worker:
        if a.plan == "chain":
            return worker_chain(a.manifest, a.repeats, a.only)
        return worker(a.manifest, a.repeats, a.only, a.plan)
    if a.analyse:
        table(json.load(open(a.analyse))["points"])
        return 0
    if a.replay:
        replay_table(a.replay)
        return 0
    if a.chain:
        chain_table(a.chain)
        return 0
    if a.merge:
        return merge(a.merge, a.into, a.replace)
    if not a.out:
        ap.error("give --out (on the GPU machine) or --analyse RUN")
    return drive(a.out, a.repeats, a.budget_s, a.plan)


if __name__ == "__main__":
    sys.exit(main())
