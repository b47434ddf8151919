"""`python -m verification calibrate --hw <preset>`: hardware facts from microbenchmarks, never from
attention cases (issue 8 item 1).

Each fact is a small non-attention program (verification/microbench/kernels.py) run at several
sizes, with every repeat kept, so the calibration file holds RAW CURVES; memsim derives its model
constants from them (memsim/MODEL.md says how).  Stdlib only here: the plan, the dry run, the ncu
passes and the assembly of the file; torch and triton run in the subprocesses
(``python -m verification.microbench.runner``).

Facts (FACTS below; "timed" ones use CUDA events, "ncu" ones Nsight Compute counters):
  copy            timed  device-to-device copy and a pure read (sum), 64 MB .. 2 GB: bytes/s
  matmul          timed  torch.matmul fp16/bf16 (tensor cores) and Triton tl.dot fp16/bf16 and fp32
                         with input_precision "ieee" (FMA pipes, what our fp32 kernels use) and
                         "tf32", 2048 .. 8192 cubed: FLOP/s
  exp             timed  many dependent tl.exp2 per loaded element (SFU-bound): exp2/s on the card
  launch          timed  back-to-back launches of an empty Triton kernel (1 and 32 arguments) timed
                         from the host: seconds per launch (the host issue rate)
  launch_gpu      ncu    gpu__time_duration of the empty kernel
  l2_writeback    ncu    write W bytes of fresh output (0.5 .. 128 MB), then keep running T us
                         (0, 10, 100, 1000): dram__bytes_write vs lts__t_sectors_op_write: how much
                         of what the kernel dirtied reaches DRAM inside the kernel
  l2_merge        ncu    G CTAs (1 .. 132) read the SAME tiles (8/16/32 KB) in lockstep or
                         staggered: L2 sectors and requests per global byte
  spills          ncu    a Triton kernel keeping 32 .. 256 fp32 values live per thread (0 .. ~3.5 KB
                         of spills, registers and spills from the compiled kernel): local-memory
                         bytes through L1/L2 and time vs spilled bytes
  l2_thrash_drift ncu    H groups each streaming its own working set (groups interleaved, like
                         heads_fastest attention, and not), total 0.5x .. 8x L2: DRAM reads

Every ncu fact is measured in `ncu_repeats` (>= 3) separate ncu processes; every timed point has
`repeats` (>= 5) timed repeats.  The file keeps each repeat, the median and the spread
(max - min) / median.  ncu runs with the default cache control (L1/L2 flushed and invalidated
before each kernel), --clock-control none (clocks as the card runs them), --profile-from-start
off (warm-up launches, compilation and buffer set-up are not profiled).
"""
from __future__ import annotations

import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import measure as M
from . import ncu as N

FORMAT = "memsim.calibration/1"
PRESETS_DIR = Path(__file__).resolve().parent.parent / "memsim" / "presets"
KERNEL_REGEX = r"^_mb_"
MB = 1 << 20

#: ncu metrics of the calibration passes (unknown ones are dropped with a warning on the card)
CAL_METRICS = (
    "gpu__time_duration.sum",
    "dram__bytes_read.sum",
    "dram__bytes_write.sum",
    "lts__t_sectors_op_read.sum",
    "lts__t_sectors_op_write.sum",
    "lts__t_sectors_srcunit_tex_op_read.sum",
    "lts__t_sectors_srcunit_tex_op_write.sum",
    "lts__t_requests_srcunit_tex_op_read.sum",
    "l1tex__t_bytes.sum",
    "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum",
    "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum",
    "sm__cycles_elapsed.avg.per_second",
)

FACTS = {
    "copy": ("timed", "device-to-device copy (dst.copy_(src): size read + size written) and a pure read "
                      "(torch.sum of fp32: size read), CUDA events; bytes_per_s counts read + written bytes"),
    "matmul": ("timed", "C = A @ B, n x n x n, 2 n^3 FLOP: torch.matmul (cuBLAS, tensor cores) fp16/bf16 and "
                        "the Triton tl.dot GEMM of verification/microbench/kernels.py (_mb_gemm) in fp16/bf16 "
                        "and fp32 with input_precision ieee (FMA pipes) and tf32, CUDA events"),
    "exp": ("timed", "_mb_exp2: x -> exp2(-x), n_iter x unroll dependent exp2 per element, many elements in "
                     "flight: exp2 per second on the whole card, CUDA events"),
    "launch": ("timed", "host issue rate: n back-to-back launches of an empty Triton kernel (_mb_empty, 2 "
                        "arguments; _mb_empty_args, 32 arguments) timed with time.perf_counter until the last "
                        "is issued (issue) and until the GPU finished (synchronised), seconds per launch"),
    "host_pass": ("timed", "kernels.forward / kernels.backward on a 1x1x16x16 fp16 problem (16x16 tiles, 1 warp; "
                           "the Hopper algorithms: 1x1x128x128, d=64, their default tiles), timed exactly as "
                           "verification measure times a case (triton.testing.do_bench median): the host-bound "
                           "floor of a pass, per algorithm and phase"),
    "dependent_loop": ("timed", "_mb_dependent_loop: one CTA per SM, n_iter iterations on its own tile of an "
                                "L2-resident buffer: roundtrip = load (.cg) + store + barrier, each iteration "
                                "reading what the last wrote (seconds per iteration = L2 round trip + tile "
                                "transfer); read = independent loads (the SM's L2 read bandwidth)"),
    "launch_gpu": ("ncu", "gpu__time_duration of one empty kernel launch (one CTA of 128 threads); variant ctas: "
                          "many empty CTAs (the block scheduler's dispatch rate: duration vs CTA count)"),
    "l2_writeback": ("ncu", "_mb_write_spin: one wave of persistent CTAs writes write_bytes of fresh fp32 "
                            "output (each byte once), then keeps running spin_us; ncu flushes L2 before the "
                            "kernel, so dram__bytes_write is what the card wrote back of it inside the kernel"),
    "l2_merge": ("ncu", "_mb_shared_read: ctas CTAs each read the same set_bytes in tiles of tile_bytes, "
                        "in lockstep (all start at tile 0) or staggered (CTA c starts at tile c*step mod "
                        "n_tiles, step = n_tiles // ctas) or delayed (lockstep order, CTA c starts c x delay_us "
                        "later: delay_s between consecutive CTAs); L2 sectors (x32 B) and requests per global "
                        "byte"),
    "row_alignment": ("ncu", "_mb_pitched_copy: tiles of rows x cols elements of a matrix whose row pitch is or "
                             "is not a multiple of 16 bytes (naive attention's S/P rows at odd seq_kv): global bytes "
                             "(l1tex, counted in 32-byte sectors) and L2 sectors per byte of the contract"),
    "sm_groups": ("ncu", "_mb_sm_group_read: 4 CTAs per SM are launched; each reads its SM id (%smid) and takes a "
                         "ticket (an atomic per SM); the first CTA on each SM of the chosen set reads the SAME "
                         "set_bytes in tiles of tile_bytes from tile 0 (lockstep), every other CTA exits; L2 sectors "
                         "per global byte x readers = the distinct requesters the L2 saw.  Each pass records which "
                         "SMs really read (observed.sms_read), so a point describes itself"),
    "dram_stream": ("timed", "_mb_stream: ctas CTAs each stream their OWN tiles of block_n x head_dim fp16 into a "
                             "tl.dot (as decode's K/V loop), (num_stages - 1) tiles in flight per CTA through "
                             "Triton's pipeliner; every call reads another slice of a pool > 4x L2 (no L2 reuse); "
                             "CUDA events; bytes/s vs bytes in flight; per-CTA %globaltimer stamps give the CTAs "
                             "resident at once (ctas_resident_mean), the compiled kernel its shared memory"),
    "spills": ("ncu", "_mb_spill: a rows x cols fp32 tile kept live across n_iter passes that each need all "
                      "of it; values_per_thread = rows*cols/(32*num_warps); registers and local bytes from "
                      "the compiled kernel (n_regs, n_spills*4), local-memory traffic and time from ncu"),
    "l2_thrash_drift": ("ncu", "_mb_stream_groups: groups working sets of set_bytes each, every one streamed "
                               "in full by readers CTAs; groups_fastest (grid axis 0 = group, like "
                               "heads_fastest attention) or not; total working set / L2 from 0.5 to 8"),
}
TIMED_FACTS = tuple(f for f, (k, _) in FACTS.items() if k == "timed")
NCU_FACTS = tuple(f for f, (k, _) in FACTS.items() if k == "ncu")


class CalibrationError(RuntimeError):
    """The calibration could not run; the message says why."""


def _pid(fact, **params) -> str:
    return fact + "/" + ",".join(f"{k}={v}" for k, v in params.items())


#: host_pass on a 1x1x16x16 problem with 16x16 tiles and one warp: the algorithms whose kernels take such tiles
HOST_PASS_TINY = (("naive", "fwd"), ("naive", "bwd"), ("flash1", "fwd"), ("flash2", "fwd"), ("flash2", "bwd"))
#: every other registered attention algorithm-phase (the Hopper kernels need wgmma / TMA-sized tiles): a
#: 1x1x128x128 d=64 fp16 problem at its default GPU tiles -- a few us of GPU work, so the pass is host-bound
HOST_PASS_SEQ, HOST_PASS_HEAD_DIM = 128, 64


def host_pass_default_points() -> list[tuple[str, str, dict]]:
    """(algorithm, phase, default GPU tiles) of every registered attention algorithm-phase not in HOST_PASS_TINY:
    the model's host floor (`memsim.calibration.host_time_s`) is measured for every entry point a case can use."""
    from memsim.algorithms import registered, spec_for
    from memsim.schedule import AttentionProblem
    p = AttentionProblem(1, 1, 1, HOST_PASS_SEQ, HOST_PASS_SEQ, HOST_PASS_HEAD_DIM, dtype="fp16")
    out = []
    for alg, phase in registered():
        spec = spec_for(alg, phase)
        if (alg, phase) in HOST_PASS_TINY or spec.problem_type is not AttentionProblem:
            continue
        out.append((alg, phase, spec.default_tiles(p, "gpu")))
    return out


def host_pass_spec(params: dict) -> dict:
    """The case-runner spec (problem + schedule) of a host_pass point's problem: `params` of a `build_plan` point
    (`memsim.calibration.host_pass_case`)."""
    from memsim.calibration import host_pass_case
    p, s = host_pass_case(params)
    return {"problem": p.to_dict(), "schedule": s.to_dict()}


def host_pass_point(algorithm: str, phase: str, launches=None) -> dict | None:
    """The host_pass plan point ({"fact", "id", "params"}) whose floor applies to a pass of (algorithm, phase)
    making the launches `launches` (names; None: not known) -- the launch path's point
    (`memsim.calibration.host_floor_for`); None: no such entry point."""
    from memsim.calibration import host_floor_for, host_pass_paths
    pts = {(p["params"]["algorithm"], p["params"]["phase"]): p for p in build_plan(facts=["host_pass"])}
    paths = host_pass_paths([dict(p["params"], id=p["id"]) for p in pts.values()])
    # the selection rule picks among floors: here the "floor" of each point is the point itself
    chosen = host_floor_for({k: k for k in pts}, paths, algorithm, phase, launches)
    return pts.get(chosen) if chosen is not None else None


def _pt(fact, kernel=None, **params) -> dict:
    return {"fact": fact, "id": _pid(fact, **params), "kernel": kernel, "params": params}


def build_plan(*, quick: bool = False, facts=None, num_sms: int = 132, l2_bytes: int = 50 * MB) -> list[dict]:
    """The points to measure, in run order: [{"fact", "id", "kernel", "params"}, ...]."""
    facts = list(facts or FACTS)
    bad = [f for f in facts if f not in FACTS]
    if bad:
        raise CalibrationError(f"unknown fact(s) {bad}; facts: {', '.join(FACTS)}")
    P = []
    if "copy" in facts:
        for mb in ((64, 256, 1024) if quick else (64, 128, 256, 512, 1024, 2048)):
            P.append(_pt("copy", op="d2d_copy", size_bytes=mb * MB))
            P.append(_pt("copy", op="read_sum", size_bytes=mb * MB))
    if "matmul" in facts:
        sizes = (4096, 8192) if quick else (2048, 4096, 8192)
        for n in sizes:
            for dt in ("fp16", "bf16"):
                P.append(_pt("matmul", impl="torch", dtype=dt, prec="tensor", n=n))
            for dt, prec in (("fp16", "tf32"), ("bf16", "tf32"), ("fp32", "ieee"), ("fp32", "tf32")):
                P.append(_pt("matmul", impl="triton", dtype=dt, prec=prec, n=n))
    if "exp" in facts:
        for n_iter in ((64,) if quick else (16, 64, 256)):
            P.append(_pt("exp", kernel="_mb_exp2", n_elements=num_sms * 64 * 1024, n_iter=n_iter, unroll=4,
                         block=1024))
    if "launch" in facts:
        for kern, nargs in (("_mb_empty", 2), ("_mb_empty_args", 32)):
            P.append(_pt("launch", kernel=kern, kernel_args=nargs, n_launches=2000))
    if "host_pass" in facts:
        for alg, phase in HOST_PASS_TINY:
            P.append(_pt("host_pass", algorithm=alg, phase=phase, seq=16, head_dim=16))
        for alg, phase, tiles in host_pass_default_points():
            P.append(_pt("host_pass", algorithm=alg, phase=phase, seq=HOST_PASS_SEQ, head_dim=HOST_PASS_HEAD_DIM,
                         **tiles))
    if "dependent_loop" in facts:
        for mode in ("roundtrip", "read"):
            for warps in ((4,) if quick else (4, 8)):
                for kb in ((4, 32) if quick else (2, 4, 8, 16, 32, 64)):
                    P.append(_pt("dependent_loop", kernel="_mb_dependent_loop", mode=mode, num_warps=warps,
                                 tile_bytes=kb * 1024, n_iter=2000))
    if "launch_gpu" in facts:
        P.append(_pt("launch_gpu", kernel="_mb_empty", variant="empty"))
        # the block scheduler's rate: empty CTAs of 4 and 8 warps, one to many waves
        for warps in (4, 8):
            for waves in ((1, 64) if quick else (1, 4, 16, 64)):
                P.append(_pt("launch_gpu", kernel="_mb_empty", variant="ctas", ctas=waves * num_sms * 8,
                             num_warps=warps))
    if "l2_writeback" in facts:
        ws = (1, 4, 16, 64) if quick else (0.5, 1, 2, 4, 8, 16, 32, 64, 128)
        ts = (0, 100) if quick else (0, 10, 100, 1000)
        for w in ws:
            for t in ts:
                P.append(_pt("l2_writeback", kernel="_mb_write_spin", write_bytes=int(w * MB), spin_us=t,
                             chunk_bytes=4096, ctas_max=num_sms))
    if "l2_merge" in facts:
        gs = (1, 8, 132) if quick else (1, 2, 4, 8, 16, 32, num_sms)
        for tile_kb in ((16,) if quick else (8, 16, 32)):
            for mode in ("lockstep", "staggered"):
                for g in gs:
                    if mode == "staggered" and g == 1:
                        continue  # one CTA: nothing to stagger
                    P.append(_pt("l2_merge", kernel="_mb_shared_read", ctas=g, tile_bytes=tile_kb * 1024,
                                 set_bytes=2 * MB, mode=mode))
        # the merge window: lockstep readers, CTA c starting c x delay later
        for g in ((8,) if quick else (8, num_sms)):
            for d_us in ((0.3, 3) if quick else (0.1, 0.3, 1, 3, 10, 30)):
                P.append(_pt("l2_merge", kernel="_mb_shared_read", ctas=g, tile_bytes=16384, set_bytes=2 * MB,
                             mode="delayed", delay_us=d_us))
    if "row_alignment" in facts:
        for dtype in ("fp16", "fp32"):
            for pitch in ((4096, 4097) if quick else (4096, 4097, 4098, 4100, 4104)):  # elements
                P.append(_pt("row_alignment", kernel="_mb_pitched_copy", dtype=dtype, pitch=pitch, cols=64,
                             tile_rows=64, rows=8192))
    if "spills" in facts:
        for rows in ((128, 512) if quick else (64, 128, 256, 512)):
            P.append(_pt("spills", kernel="_mb_spill", rows=rows, cols=64, num_warps=4, n_iter=64,
                         ctas=num_sms * 4))
        if not quick:
            # kilobytes spilled per thread (1-2 warps holding big tiles, as random cases draw them): does the
            # local footprint of the resident CTAs overflow L1 (loads reach L2) and the L2 (DRAM traffic)?
            # One wave of `per_sm` resident CTAs per SM (2 KB per thread; 4+ KB takes ptxas minutes): the
            # footprint per SM (per_sm x threads x 2 KB) crosses the L1 left beside shared memory and the
            # footprint on the GPU (x SMs) crosses the L2's dirty capacity (~22 MB) and its size (50 MB).
            for rows, warps, per_sm in ((256, 1, 2), (256, 1, 4), (256, 1, 6), (256, 1, 8), (512, 2, 1),
                                        (512, 2, 2), (512, 2, 4)):
                P.append(_pt("spills", kernel="_mb_spill", rows=rows, cols=64, num_warps=warps, n_iter=16,
                             ctas=num_sms * per_sm))
            # 8 warps x 2 KB per thread = 512 KB per CTA, more than any L1: every reload reaches the L2, and the
            # GPU footprint (1 CTA on 1/8 .. all SMs) sweeps the L2 from a sixth of its size to 1.3x: the L2
            # miss of reloads at small footprints, which the points above (L1 partly hit) do not reach
            for ctas in (num_sms // 8, num_sms // 4, num_sms // 2, num_sms):
                P.append(_pt("spills", kernel="_mb_spill", rows=2048, cols=64, num_warps=8, n_iter=16, ctas=ctas))
            # spill latency: the per-warp rate by warps per SM (memsim.calibration.spill_rates_from)
            have = {p["id"] for p in P}
            P.extend(p for p in spill_rate_points(num_sms) if p["id"] not in have)
    if "sm_groups" in facts:
        for sms in sm_group_sets(num_sms, quick=quick):
            P.append(_pt("sm_groups", kernel="_mb_sm_group_read", sms=sms, tile_bytes=16384, set_bytes=2 * MB,
                         ctas_per_sm=4))
    if "dram_stream" in facts:
        # in flight per CTA = (num_stages - 1) x block_n x 128 x 2 B: 16, 32, 64 (two ways), 128 KiB
        cfgs = ((64, 3), (128, 3)) if quick else ((64, 2), (64, 3), (128, 3), (64, 5), (128, 5))
        cs = (1, 8, num_sms, 4 * num_sms) if quick else (1, 2, 4, 8, 16, num_sms // 4, num_sms // 2, num_sms,
                                                          2 * num_sms, 3 * num_sms, 4 * num_sms)
        for bn, st in cfgs:
            for c in sorted(set(cs)):
                P.append(_pt("dram_stream", kernel="_mb_stream", ctas=c, block_n=bn, num_stages=st, head_dim=128,
                             num_warps=4, inflight_bytes=(st - 1) * bn * 128 * 2, cta_bytes_max=4 * MB,
                             call_bytes_max=1024 * MB, pool_bytes_min=256 * MB))
        # the decode cache layout: 8 heads interleaved (a CTA's rows 2 KB apart), contiguous or in 16/64-row pages
        # scattered over the pool (why are 16-token pages 15 % slower at batch 8 in decode?)
        lays = (("kv", 0, False), ("paged", 16, False), ("paged", 16, True), ("paged", 64, True))
        for layout, page_rows, scatter in (lays if not quick else (("paged", 16, True),)):
            for c in ((8, 64, 128, 256) if not quick else (64,)):
                P.append(_pt("dram_stream", kernel="_mb_stream_rows", ctas=c, layout=layout, page_rows=page_rows,
                             scatter=scatter, heads=8, block_n=64, num_stages=3, head_dim=128, num_warps=4,
                             inflight_bytes=2 * 64 * 128 * 2, cta_bytes_max=4 * MB, call_bytes_max=1024 * MB,
                             pool_bytes_min=256 * MB))
    if "l2_thrash_drift" in facts:
        set_bytes = 4 * MB
        for ratio in ((1, 4) if quick else (0.5, 1, 2, 4, 8)):
            groups = max(1, round(ratio * l2_bytes / set_bytes))
            for gf in (True, False):
                P.append(_pt("l2_thrash_drift", kernel="_mb_stream_groups", groups=groups, readers=8,
                             set_bytes=set_bytes, tile_bytes=16384, groups_fastest=gf))
    ids = [p["id"] for p in P]
    assert len(ids) == len(set(ids)), "duplicate calibration point ids"
    return P


def spill_rate_points(num_sms: int = 132) -> list[dict]:
    """`_mb_spill` with 512 fp32 values per thread (2-3.5 KB spilled) and 1, 2, 4, 8, 16 warps per CTA, one CTA
    per SM on num_sms/8 SMs (the rest idle: each warp's own local-memory round trips), and with 1 and 4 warps on
    every SM (the chip's spill-store rate beside it)."""
    pts = []
    for warps, ctas in ((1, num_sms // 8), (2, num_sms // 8), (4, num_sms // 8), (8, num_sms // 8),
                        (16, num_sms // 8), (1, num_sms), (4, num_sms)):
        pts.append(_pt("spills", kernel="_mb_spill", rows=512 * 32 * warps // 64, cols=64, num_warps=warps,
                       n_iter=16, ctas=ctas))
    return pts


def sm_group_sets(num_sms: int, *, quick: bool = False) -> list[str]:
    """The SM sets of the sm_groups fact ("+"-joined ids, "a-b" ranges, "all"): SM 0 with one other SM at
    distances 1 .. 9, 12, 16-18, 32, 33, 64, half and last (who merges with SM 0?), pairs elsewhere (is the
    rule the same everywhere?), and larger sets (how many distinct requesters do 4, 8, 16, 18, 32, all SMs
    make?)."""
    last = num_sms - 1
    if quick:
        ks = (1, 2, 4, 8)
        others, groups = ((2, 3),), ("0-3", "0-7", "all")
    else:
        ks = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 18, 32, 33, 64, num_sms // 2, last)
        others = ((1, 2), (2, 3), (4, 5), (5, 7), (16, 17), (64, 65), (last - 1, last))
        groups = ("0-3", "0-7", "0+2+4+6", "1+3+5+7", "0-15", "0-17", "0-31",
                  "+".join(str(i) for i in range(0, num_sms, 2)), "+".join(str(i) for i in range(0, num_sms, 16)),
                  "+".join(str(i) for i in range(0, num_sms, 18)), "all")
    sets = ["0", str(last)] + [f"0+{k}" for k in ks if 0 < k < num_sms]
    sets += [f"{a}+{b}" for a, b in others if b < num_sms] + list(groups)
    return list(dict.fromkeys(sets))


def estimate_seconds(plan, repeats: int, ncu_repeats: int) -> float:
    """A rough device-time estimate (s): timed points, compilation, and ncu replays."""
    timed = [p for p in plan if FACTS[p["fact"]][0] == "timed"]
    ncu = [p for p in plan if FACTS[p["fact"]][0] == "ncu"]
    t = 20.0 + 0.15 * repeats * len(timed) + 2.5 * len({p["kernel"] for p in plan if p["kernel"]})
    if ncu:
        t += ncu_repeats * (15.0 + 0.4 * len(ncu))
    return t


# --- statistics ----------------------------------------------------------------------------
def summarise(values) -> dict:
    """median, min, max, spread = (max - min) / median (None where undefined), n."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "spread": None, "n": 0}
    med = statistics.median(vals)
    spread = (max(vals) - min(vals)) / med if med else (0.0 if max(vals) == min(vals) else None)
    return {"median": med, "min": min(vals), "max": max(vals), "spread": spread, "n": len(vals)}


def timed_result(point: dict, line: dict) -> dict:
    """One timed point's entry: params, every repeat (seconds), summary and the derived rate."""
    p = point["params"]
    out = {"id": point["id"], **p}
    if not line.get("ok"):
        out["error"] = line.get("error", "not measured")
        return out
    ts = line["times_s"]
    s = summarise(ts)
    out.update({"time_s_repeats": ts, "time_s_median": s["median"], "time_s_spread": s["spread"]})
    work = line.get("work") or {}
    for key, amount in work.items():  # e.g. {"bytes": ..., "flop": ..., "exp2": ..., "launches": ...}
        out[f"{key}_per_repeat"] = amount
        if s["median"]:
            out[f"{key}_per_s_median"] = amount / s["median"]
            rates = [amount / t for t in ts if t]
            out[f"{key}_per_s_spread"] = summarise(rates)["spread"]
    for k, v in (line.get("extra") or {}).items():
        out[k] = v
    # plain names for the model's derivation (memsim/calibration.py): medians over the repeats
    f = point["fact"]
    if f == "copy":
        out["kind"] = "copy" if p["op"] == "d2d_copy" else "read"
        out["bytes_per_s"] = out.get("bytes_per_s_median")
    elif f == "matmul":
        out["path"] = f"{p['impl']}_{p['dtype']}" + (f"_{p['prec']}" if p["dtype"] == "fp32" else "")
        out["flops_per_s"] = out.get("flop_per_s_median")
    elif f == "exp":
        out["exp_per_s"] = out.get("exp2_per_s_median")
    elif f == "launch":
        out["host_launch_s"] = s["median"]
    return out


#: ncu metric -> (plain name, factor): the plain names each ncu point carries (medians; bytes, s, counts)
NAMED = {
    "gpu__time_duration.sum": ("time_s", 1.0),
    "dram__bytes_read.sum": ("dram_read_bytes", 1.0),
    "dram__bytes_write.sum": ("dram_write_bytes", 1.0),
    "lts__t_sectors_srcunit_tex_op_read.sum": ("l2_read_bytes", N.SECTOR_BYTES),
    "lts__t_sectors_srcunit_tex_op_write.sum": ("l2_write_bytes", N.SECTOR_BYTES),
    "lts__t_sectors_op_read.sum": ("l2_all_read_bytes", N.SECTOR_BYTES),
    "lts__t_sectors_op_write.sum": ("l2_all_write_bytes", N.SECTOR_BYTES),
    "lts__t_requests_srcunit_tex_op_read.sum": ("l2_read_requests", 1.0),
    "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum": ("global_read_bytes", 1.0),
    "l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum": ("global_write_bytes", 1.0),
    "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum": ("global_read_requests", 1.0),
    "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum": ("local_read_bytes", 1.0),
    "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum": ("local_write_bytes", 1.0),
    "l1tex__t_bytes.sum": ("l1tex_t_bytes", 1.0),
    "sm__cycles_elapsed.avg.per_second": ("sm_clock_Hz", 1.0),
}


def ncu_result(point: dict, repeats: list[dict | None], units: dict) -> dict:
    """One ncu point's entry: params, every repeat's metrics, per-metric median and spread."""
    out = {"id": point["id"], "kernel": point["kernel"], **point["params"]}
    got = [r for r in repeats if r is not None]
    out["repeats"] = [r["metrics"] if r is not None else None for r in repeats]
    names = sorted({m for r in got for m in r["metrics"]})
    out["median"] = {m: summarise([r["metrics"].get(m) for r in got])["median"] for m in names}
    out["spread"] = {m: summarise([r["metrics"].get(m) for r in got])["spread"] for m in names}
    out["units"] = {m: units.get(m) for m in names}
    for m, (name, k) in NAMED.items():
        if out["median"].get(m) is not None:
            out[name] = out["median"][m] * k
            out[name + "_spread"] = out["spread"].get(m)
    prm = point["params"]
    if point["fact"] == "l2_writeback":
        out["dirty_bytes"] = prm["write_bytes"]
        out["spin_s"] = prm["spin_us"] * 1e-6
    if point["fact"] == "l2_merge":
        out["delay_s"] = prm.get("delay_us", 0) * 1e-6 if prm["mode"] in ("lockstep", "delayed") else None
    if point["fact"] == "launch_gpu":
        out["empty_kernel_s"] = out.get("time_s")
    if point["fact"] == "sm_groups":
        # what each pass's launch really did (which SMs read: a CTA's SM is decided at dispatch)
        out["observed"] = [r.get("observed") if r is not None else None for r in repeats]
        obs = [o for o in out["observed"] if o]
        out["sms_read"] = obs[0]["sms_read"] if obs and all(o["sms_read"] == obs[0]["sms_read"] for o in obs) \
            else None
        out["readers"] = summarise([o["readers"] for o in obs])["median"]
        if out.get("global_read_bytes") and out.get("readers"):
            # L2 sectors per global byte, and the distinct requesters the L2 saw (1.0 per reader unmerged)
            out["l2_per_global"] = out["l2_read_bytes"] / out["global_read_bytes"]
            out["distinct_readers"] = out["l2_per_global"] * out["readers"]
    comp = next((r.get("compiled") for r in got if r.get("compiled")), None)
    if comp:
        out["compiled"] = comp
    if not got:
        out["error"] = "no ncu pass measured this point"
    return out


# --- running on the GPU ---------------------------------------------------------------------
def _runner_cmd(plan_file, mode, out_file, *, repeats=5, python=None) -> list[str]:
    return [python or sys.executable, "-m", "verification.microbench.runner", "--plan", str(plan_file),
            "--mode", mode, "--out", str(out_file), "--repeats", str(repeats), *RUNNER_EXTRA]


#: extra arguments for the runner (tests: ["--allow-cpu"])
RUNNER_EXTRA: list[str] = []


def run_timed(points, wd, *, repeats, env, timeout_s, echo) -> dict[str, dict]:
    plan_file = Path(wd) / "plan_timed.json"
    plan_file.write_text(json.dumps(points))
    out = Path(wd) / "timed.jsonl"
    lines = M.run_runner(_runner_cmd(plan_file, "time", out, repeats=repeats), out, env=env, timeout_s=timeout_s,
                         echo=echo, what="the timed facts", kept="what finished")
    return {r["id"]: r for r in lines}


def run_ncu_pass(points, wd, rep, *, metrics, env, timeout_s, echo, options):
    """One ncu process over all ncu points: ({id: {"metrics", "compiled"}}, {id: runner line}, log)."""
    plan_file = Path(wd) / f"plan_ncu{rep}.json"
    plan_file.write_text(json.dumps(points))
    done_file = Path(wd) / f"ncu{rep}.jsonl"
    log_file = str(Path(wd) / f"ncu{rep}.log")
    rows, text = N.run_ncu(_runner_cmd(plan_file, "ncu", done_file), log_file=log_file, metrics=metrics,
                           kernel_regex=KERNEL_REGEX, timeout_s=timeout_s, env=env, echo=echo, options=options)
    done = M.read_jsonl(done_file)
    expected = []
    for d in done:
        if d.get("ok"):
            names = d.get("launched") or [d["kernel"]]
            expected.append((d["id"], [n for n in names if n.startswith("_mb_")]))
    mapped = N.assign_rows_to_cases(rows, expected)
    res = {}
    for d in done:
        if d["id"] in mapped:
            rs = mapped[d["id"]]
            if len(rs) != 1:
                d["ok"], d["error"] = False, f"expected one profiled launch, got {len(rs)}"
                continue
            res[d["id"]] = {"metrics": dict(rs[0].metrics), "units": dict(rs[0].units),
                            "compiled": d.get("compiled"), "grid": rs[0].grid, "block": rs[0].block,
                            "observed": d.get("observed")}
    return res, {d["id"]: d for d in done}, text


def default_out(hw: str) -> Path:
    return PRESETS_DIR / f"{hw}.calibration.json"


def calibrate(hw: str, *, out_path, command: str, quick=False, facts=None, repeats=5, ncu_repeats=3,
              num_sms=None, l2_bytes=None, force=False, timed_timeout_s=300, ncu_timeout_s=150,
              echo=None, check_gpu=True, log_dir=None) -> dict:
    """Measure the plan on this machine's GPU and write the calibration file; returns it."""
    from memsim.io import OutputExistsError, write_atomic, write_json
    from . import records as R
    echo = echo or (lambda m: print(m, file=sys.stderr, flush=True))
    if repeats < 5:
        raise CalibrationError(f"--repeats must be >= 5 (got {repeats}): the file keeps a median and a spread")
    if ncu_repeats < 3:
        raise CalibrationError(f"--ncu-repeats must be >= 3 (got {ncu_repeats}): separate ncu passes")
    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise OutputExistsError(f"{out_path} already exists; pass --force to replace it (the old file is kept "
                                f"in git), or --out elsewhere")
    hwobj = _hardware(hw)
    plan = build_plan(quick=quick, facts=facts, num_sms=num_sms or hwobj.get("num_sms", 132),
                      l2_bytes=l2_bytes or hwobj.get("l2_bytes", 50 * MB))
    timed = [p for p in plan if FACTS[p["fact"]][0] == "timed"]
    ncu_pts = [p for p in plan if FACTS[p["fact"]][0] == "ncu"]
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    ver, metrics, options = None, list(CAL_METRICS), None
    if ncu_pts:
        exe = N.ncu_path()
        ver = N.ncu_version(exe)
        options = N.supported_options(exe)
        if check_gpu:
            metrics = M.gpu_metrics(metrics, echo)
    prov = R.gpu_provenance(command, ver)
    prov["ncu_metrics"] = metrics if ncu_pts else None
    prov["ncu_command"] = (" ".join(N.build_command(["<program>"], metrics=metrics, kernel_regex=KERNEL_REGEX,
                                                     exe="ncu", options=options)) if ncu_pts else None)
    t0 = time.time()
    result = {"format": FORMAT, "hardware": hw, "complete": False, "provenance": prov,
              "plan": {"quick": quick, "repeats": repeats, "ncu_repeats": ncu_repeats, "points": len(plan)},
              "methods": {f: {"kind": FACTS[f][0], "method": FACTS[f][1]} for f in dict.fromkeys(p["fact"] for p in plan)},
              "facts": {f: [] for f in dict.fromkeys(p["fact"] for p in plan)}}

    def save():
        write_json(out_path, result, overwrite=True)

    logs = []
    with tempfile.TemporaryDirectory(prefix="vcal-") as wd:
        if timed:
            echo(f"timed facts: {len(timed)} point(s), {repeats} repeats each")
            lines = run_timed(timed, wd, repeats=repeats, env=env, timeout_s=timed_timeout_s, echo=echo)
            for p in timed:
                result["facts"][p["fact"]].append(
                    timed_result(p, lines.get(p["id"], {"ok": False, "error": "not reached"})))
            save()
        per_rep: list[dict] = []
        units: dict = {}
        errors: dict = {}

        def assemble_ncu():
            for f in dict.fromkeys(p["fact"] for p in ncu_pts):
                result["facts"][f] = []
            for p in ncu_pts:
                entry = ncu_result(p, [r.get(p["id"]) for r in per_rep], units)
                if "error" in entry and p["id"] in errors:
                    entry["error"] += f" ({errors[p['id']]})"
                result["facts"][p["fact"]].append(entry)
        for rep in range(ncu_repeats if ncu_pts else 0):
            echo(f"ncu pass {rep + 1}/{ncu_repeats}: {len(ncu_pts)} point(s)")
            try:
                res, done, text = run_ncu_pass(ncu_pts, wd, rep, metrics=metrics, env=env, timeout_s=ncu_timeout_s,
                                               echo=echo, options=options)
                logs.append(text)
            except N.NcuError as e:
                echo(f"ncu pass {rep + 1} failed: {e}")
                logf = Path(wd) / f"ncu{rep}.log.all"
                logs.append((logf.read_text(errors="replace") if logf.exists() else "") + f"\nNcuError: {e}")
                res, done = {}, {}
            per_rep.append(res)
            for r in res.values():
                units.update(r["units"])
            for i, d in done.items():
                if not d.get("ok"):
                    errors.setdefault(i, d.get("error", "?"))
            assemble_ncu()
            result["ncu_passes_done"] = rep + 1
            save()  # after every pass: a run cut short keeps the passes it finished
        if log_dir and logs:
            write_atomic(Path(log_dir) / "calibrate_ncu.log", "\n".join(logs), overwrite=True)
    missing = [pt["id"] for f in result["facts"].values() for pt in f if "error" in pt]
    result["complete"] = not missing
    result["missing"] = missing
    result["seconds"] = round(time.time() - t0, 1)
    save()
    echo(f"calibration: {len(plan) - len(missing)}/{len(plan)} point(s) measured in {result['seconds']} s "
         f"-> {out_path}")
    return result


def _hardware(hw: str) -> dict:
    try:
        from memsim.hardware import load_hardware
        h = load_hardware(hw)
        return {"num_sms": h.num_sms, "l2_bytes": h.l2_bytes}
    except Exception as e:
        raise CalibrationError(f"unknown hardware preset {hw!r} ({e})") from None


def dry_run(hw: str, *, quick=False, facts=None, repeats=5, ncu_repeats=3, out_path=None) -> str:
    """The plan as text: every point, the commands, and a device-time estimate (no GPU needed)."""
    h = _hardware(hw)
    plan = build_plan(quick=quick, facts=facts, num_sms=h["num_sms"], l2_bytes=h["l2_bytes"])
    lines = [f"calibration plan for {hw} ({'quick' if quick else 'full'}): {len(plan)} point(s)"]
    for f in dict.fromkeys(p["fact"] for p in plan):
        pts = [p for p in plan if p["fact"] == f]
        kind = FACTS[f][0]
        reps = f"{repeats} timed repeats" if kind == "timed" else f"{ncu_repeats} ncu passes"
        lines.append(f"  {f} ({kind}, {reps}): {len(pts)} point(s)")
        for p in pts:
            lines.append(f"    {p['id']}")
    lines.append("timed facts: " + " ".join(_runner_cmd("plan.json", "time", "timed.jsonl", repeats=repeats)))
    lines.append("ncu facts:   " + " ".join(N.build_command(
        _runner_cmd("plan.json", "ncu", "ncu.jsonl"), metrics=list(CAL_METRICS), kernel_regex=KERNEL_REGEX,
        exe="ncu", options=set(N.OPTIONAL_OPTIONS))))
    lines.append(f"output: {out_path or default_out(hw)}")
    lines.append(f"estimated device time: about {math.ceil(estimate_seconds(plan, repeats, ncu_repeats))} s")
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------
def add_arguments(ap) -> None:
    ap.add_argument("--hw", required=True, help="hardware preset the file belongs to (memsim/presets/<hw>.toml)")
    ap.add_argument("--out", help="calibration file (default memsim/presets/<hw>.calibration.json)")
    ap.add_argument("--quick", action="store_true", help="fewer sizes per fact (about a third of the time)")
    ap.add_argument("--facts", help=f"comma-separated subset of: {', '.join(FACTS)}")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per timed point (>= 5)")
    ap.add_argument("--ncu-repeats", type=int, default=3, help="separate ncu passes for the ncu facts (>= 3)")
    ap.add_argument("--log-dir", help="keep the raw ncu output here (calibrate_ncu.log)")
    ap.add_argument("--force", action="store_true", help="replace an existing calibration file")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, the commands and a time estimate; "
                                                          "no GPU needed")


def command(a, argv) -> int:
    """Run `calibrate` from parsed arguments; 0 ok, 1 some points missing, 2 bad input."""
    from memsim.io import OutputExistsError
    facts = [f for f in (a.facts or "").split(",") if f] or None
    try:
        if a.dry_run:
            print(dry_run(a.hw, quick=a.quick, facts=facts, repeats=a.repeats, ncu_repeats=a.ncu_repeats,
                          out_path=a.out))
            return 0
        cmdline = "python -m verification calibrate " + " ".join(shlex.quote(x) for x in argv)
        res = calibrate(a.hw, out_path=a.out or default_out(a.hw), command=cmdline, quick=a.quick, facts=facts,
                        repeats=a.repeats, ncu_repeats=a.ncu_repeats, force=a.force, log_dir=a.log_dir)
    except (CalibrationError, OutputExistsError, N.NcuError) as e:
        from memsim.cli.errors import fail, one_line
        return fail("verification", one_line(e))  # the one error style of the command lines
    return 0 if res["complete"] else 1


def main(argv=None) -> int:
    import argparse
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m verification calibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return command(ap.parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
