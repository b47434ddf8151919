"""One calibration point (verification.calibrate.build_plan) -> a program on the GPU (torch + triton).

`prepare(point, device)` -> (fn, keep): fn() launches the point's kernel exactly once (the ncu facts:
one profiled launch per point).  `measure_timed(point, device, repeats)` -> {"times_s": [...],
"work": {...}, "extra": {...}} for the timed facts (CUDA events; the host clock for launch).
"""
from __future__ import annotations

import time

import torch
import triton

from . import kernels as K

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
#: Triton GEMM tiles per dtype/precision (fp32 ieee runs on the FMA pipes, smaller k step)
GEMM_CFG = {"fp16": dict(BM=128, BN=128, BK=64, num_warps=8, num_stages=3),
            "bf16": dict(BM=128, BN=128, BK=64, num_warps=8, num_stages=3),
            "fp32": dict(BM=128, BN=128, BK=32, num_warps=8, num_stages=3)}


def _num_sms(device) -> int:
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def _cuda_time(fn, repeats: int, *, target_s: float = 2e-3, max_iters: int = 200) -> list[float]:
    """Seconds per call of fn: `repeats` timed repeats of `iters` back-to-back calls between two
    CUDA events (iters so that a repeat lasts about target_s); two warm-up calls first."""
    fn()
    fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    fn()
    e.record()
    torch.cuda.synchronize()
    one = max(s.elapsed_time(e) * 1e-3, 1e-7)
    iters = max(1, min(max_iters, int(target_s / one)))
    out = []
    for _ in range(repeats):
        s.record()
        for _ in range(iters):
            fn()
        e.record()
        torch.cuda.synchronize()
        out.append(s.elapsed_time(e) * 1e-3 / iters)
    return out


def _cpu_time(fn, repeats: int) -> list[float]:  # the interpreter dry run (tests)
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def measure_timed(point: dict, device, repeats: int) -> dict:
    f, p = point["fact"], point["params"]
    cpu = device == "cpu"
    timer = _cpu_time if cpu else _cuda_time
    if f == "copy":
        n = p["size_bytes"] // 4 if not cpu else 1 << 12
        src = torch.rand(n, device=device, dtype=torch.float32)
        if p["op"] == "d2d_copy":
            dst = torch.empty_like(src)
            ts = timer(lambda: dst.copy_(src), repeats)
            return {"times_s": ts, "work": {"bytes": 2 * n * 4}, "extra": {"bytes_read": n * 4, "bytes_written": n * 4}}
        ts = timer(lambda: src.sum(), repeats)
        return {"times_s": ts, "work": {"bytes": n * 4}, "extra": {"bytes_read": n * 4}}
    if f == "matmul":
        n = p["n"] if not cpu else 64
        dt = TORCH_DTYPES[p["dtype"]]
        a = torch.randn(n, n, device=device, dtype=torch.float32).to(dt)
        b = torch.randn(n, n, device=device, dtype=torch.float32).to(dt)
        if p["impl"] == "torch":
            fn = lambda: torch.matmul(a, b)  # noqa: E731
            cfg = {}
        else:
            c = torch.empty(n, n, device=device, dtype=dt)
            cfg = dict(GEMM_CFG[p["dtype"]])
            if cpu:
                cfg.update(BM=32, BN=32, BK=16)
            grid = ((n // cfg["BM"]) * (n // cfg["BN"]),)

            def fn():
                K._mb_gemm[grid](a, b, c, n, n, n, cfg["BM"], cfg["BN"], cfg["BK"], p["prec"],
                                 num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
        ts = timer(fn, repeats)
        return {"times_s": ts, "work": {"flop": 2.0 * n ** 3}, "extra": {"triton_config": cfg} if cfg else {}}
    if f == "exp":
        block = p["block"]
        n = p["n_elements"] if not cpu else block * 2
        x = torch.rand(n, device=device, dtype=torch.float32)
        out = torch.empty_like(x)
        n_iter = p["n_iter"] if not cpu else 2

        def fn():
            K._mb_exp2[(n // block,)](x, out, n_iter, BLOCK=block, UNROLL=p["unroll"], num_warps=4)
        ts = timer(fn, repeats)
        return {"times_s": ts, "work": {"exp2": float(n) * n_iter * p["unroll"]}}
    if f == "launch":
        x = torch.zeros(1, device=device, dtype=torch.float32)
        n = p["n_launches"] if not cpu else 5
        if point["kernel"] == "_mb_empty":
            def one():
                K._mb_empty[(1,)](x, 0, num_warps=4)
        else:
            args = list(range(30))

            def one():
                K._mb_empty_args[(1,)](x, *args, 0, num_warps=4)
        one()
        one()
        issue, done = [], []
        for _ in range(repeats):
            if not cpu:
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(n):
                one()
            t1 = time.perf_counter()
            if not cpu:
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            issue.append((t1 - t) / n)
            done.append((t2 - t) / n)
        return {"times_s": issue, "work": {"launches": 1.0},
                "extra": {"time_s_meaning": "host seconds per launch until the last launch returned (issue)",
                          "synchronised_time_s_repeats": done}}
    if f == "host_pass":
        # our own entry point on the smallest problem: the GPU work is a few microseconds, so the measured
        # pass (do_bench, as verification measure times every case) is what the host path costs
        from verification.calibrate import host_pass_spec
        from verification.caserunner import prepare as _prepare
        fn, keep = _prepare(host_pass_spec(p), device)
        fn()
        if cpu:
            ts = _cpu_time(fn, repeats)
        else:
            import triton.testing
            ts = [triton.testing.do_bench(fn, warmup=25.0, rep=100.0, return_mode="median") * 1e-3
                  for _ in range(repeats)]
        del keep
        return {"times_s": ts, "work": {"passes": 1.0},
                "extra": {"time_s_meaning": f"do_bench median of one pass on a 1x1x{p['seq']}x{p['seq']} d={p['head_dim']} "
                                            "problem (host-bound)"}}
    if f == "dependent_loop":
        tile = p["tile_bytes"] // 4
        ctas = _num_sms(device) if not cpu else 2
        buf = torch.rand(ctas * tile, device=device, dtype=torch.float32)
        n_iter = p["n_iter"] if not cpu else 2

        def fn():
            K._mb_dependent_loop[(ctas,)](buf, n_iter, TILE=tile, ROUNDTRIP=p["mode"] == "roundtrip",
                                          num_warps=p["num_warps"])
        ts = timer(fn, repeats)
        moved = n_iter * ctas * tile * 4 * (2 if p["mode"] == "roundtrip" else 1)
        return {"times_s": ts, "work": {"iterations": float(n_iter), "bytes": float(moved)},
                "extra": {"ctas": ctas}}
    if f == "dram_stream":
        if point["params"].get("layout", "own") != "own":
            return _dram_stream_rows(point, device, repeats)
        return _dram_stream(point, device, repeats)
    raise ValueError(f"{f} is not a timed fact")


def prepare(point: dict, device):
    """(fn, keep): fn() launches this ncu point's one kernel."""
    f, p = point["fact"], point["params"]
    cpu = device == "cpu"
    if f == "launch_gpu":
        x = torch.zeros(1, device=device, dtype=torch.float32)
        ctas = (p.get("ctas", 1) if not cpu else 2) if p.get("variant") == "ctas" else 1
        warps = p.get("num_warps", 4)
        return (lambda: K._mb_empty[(ctas,)](x, 0, num_warps=warps)), (x,)
    if f == "l2_writeback":
        chunk = p["chunk_bytes"] // 4
        n_chunks = max(1, p["write_bytes"] // p["chunk_bytes"]) if not cpu else 4
        out = torch.empty(n_chunks * chunk, device=device, dtype=torch.float32)
        ctas = min(p["ctas_max"], n_chunks) if not cpu else 2
        spin_ns = int(p["spin_us"] * 1000) if not cpu else 0

        def fn():
            K._mb_write_spin[(ctas,)](out, n_chunks, spin_ns, CHUNK=chunk, SPIN=spin_ns > 0, num_warps=4)
        return fn, (out,)
    if f == "l2_merge":
        tile = p["tile_bytes"] // 4
        n_tiles = p["set_bytes"] // p["tile_bytes"] if not cpu else 4
        g = p["ctas"] if not cpu else 2
        src = torch.rand(n_tiles * tile, device=device, dtype=torch.float32)
        out = torch.empty(g * tile, device=device, dtype=torch.float32)
        step = max(1, n_tiles // g) if p["mode"] == "staggered" else 0
        delay_ns = int(round(p.get("delay_us", 0) * 1000)) if not cpu else 0

        def fn():
            K._mb_shared_read[(g,)](src, out, n_tiles, step, delay_ns, TILE=tile, DELAY=delay_ns > 0, num_warps=4)
        return fn, (src, out)
    if f == "row_alignment":
        dt = TORCH_DTYPES[p["dtype"]]
        rows_total = p["rows"] if not cpu else 32
        src = torch.rand(rows_total * p["pitch"], device=device, dtype=torch.float32).to(dt)
        dst = torch.empty_like(src)

        def fn():
            K._mb_pitched_copy[(rows_total // p["tile_rows"],)](src, dst, rows_total, p["pitch"],
                                                                 ROWS=p["tile_rows"], COLS=p["cols"], num_warps=4)
        return fn, (src, dst)
    if f == "spills":
        rows, cols = p["rows"], p["cols"]
        ctas = p["ctas"] if not cpu else 2
        src = torch.rand(ctas * rows * cols, device=device, dtype=torch.float32)
        out = torch.empty_like(src)
        n_iter = p["n_iter"] if not cpu else 2

        def fn():
            K._mb_spill[(ctas,)](src, out, n_iter, ROWS=rows, COLS=cols, num_warps=p["num_warps"])
        return fn, (src, out)
    if f == "l2_thrash_drift":
        tile = p["tile_bytes"] // 4
        n_tiles = p["set_bytes"] // p["tile_bytes"] if not cpu else 2
        groups, readers = (p["groups"], p["readers"]) if not cpu else (2, 2)
        src = torch.rand(groups * n_tiles * tile, device=device, dtype=torch.float32)
        out = torch.empty(groups * readers * tile, device=device, dtype=torch.float32)
        grid = (groups, readers) if p["groups_fastest"] else (readers, groups)

        def fn():
            K._mb_stream_groups[grid](src, out, n_tiles, groups, readers, GROUPS_FASTEST=p["groups_fastest"],
                                      TILE=tile, num_warps=4)
        return fn, (src, out)
    if f == "sm_groups":
        return _sm_groups(p, device)
    raise ValueError(f"{f} is not an ncu fact")


def parse_sms(text: str, num_sms: int) -> list[int]:
    """"0+2+4" -> [0, 2, 4]; "a-b" ranges inside ("0-3+8" -> [0, 1, 2, 3, 8]); "all" -> every SM."""
    if text == "all":
        return list(range(num_sms))
    out = set()
    for part in text.split("+"):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return sorted(out)


SM_MASK_WORDS = 6  # _mb_sm_group_read takes the set as 6 words of 32 bits: up to 192 SMs


def _sm_groups(p: dict, device):
    """(fn, keep) for one sm_groups point; keep["describe"]() says which SMs really read (self-describing)."""
    cpu = device == "cpu"
    num_sms = _num_sms(device)
    sms = parse_sms(p["sms"], num_sms)
    if cpu:  # the interpreter stands in 4 "SMs" (program ids)
        sms = sorted({s % num_sms for s in sms})
    if not sms or max(sms) >= 32 * SM_MASK_WORDS:
        raise ValueError(f"SM set {p['sms']!r} is empty on this card or beyond {32 * SM_MASK_WORDS} SMs")
    mask = sum(1 << s for s in sms)
    words = [(mask >> (32 * k)) & 0xFFFFFFFF for k in range(SM_MASK_WORDS)]
    # 32-bit words as Python ints: values >= 2**31 make Triton type the argument int64; the kernel widens all
    tile = p["tile_bytes"] // 4
    n_tiles = p["set_bytes"] // p["tile_bytes"] if not cpu else 2
    ctas = p["ctas_per_sm"] * num_sms
    src = torch.rand(n_tiles * tile, device=device, dtype=torch.float32)
    out = torch.empty(num_sms * tile, device=device, dtype=torch.float32)
    who = torch.empty(2 * ctas, device=device, dtype=torch.int32)
    start = torch.empty(ctas, device=device, dtype=torch.int64)
    count = torch.zeros(max(num_sms, 32 * SM_MASK_WORDS), device=device, dtype=torch.int32)

    def fn():
        count.zero_()
        start.zero_()
        K._mb_sm_group_read[(ctas,)](src, out, who, start, count, n_tiles, *words, TILE=tile, ON_GPU=not cpu,
                                     num_warps=4)

    def describe() -> dict:
        w = who.view(ctas, 2).cpu().tolist()
        readers = sorted(sm for sm, r in w if r)
        t = [int(x) for x, (_, r) in zip(start.cpu().tolist(), w) if r]
        per_sm = count.cpu().tolist()[:num_sms]
        return {"sms_requested": sms, "sms_read": readers, "readers": len(readers),
                "ctas": ctas, "sms_seen": sum(1 for c in per_sm if c > 0), "ctas_per_sm_max": max(per_sm),
                "start_spread_ns": (max(t) - min(t)) if t else None,
                "smid_of_cta": [sm for sm, _ in w]}  # the dispatch map (CTA id -> SM), for the engine's CTA placement
    return fn, {"buffers": (src, out, who, start, count), "describe": describe}


def stream_plan(p: dict, cpu: bool) -> dict:
    """Sizes of one dram_stream point: tile, tiles per CTA (each CTA streams its own bytes), rotating slices."""
    tile_bytes = p["block_n"] * p["head_dim"] * 2
    ctas = p["ctas"] if not cpu else 2
    if cpu:
        return {"ctas": ctas, "tile_bytes": tile_bytes, "n_tiles": 2, "slices": 1}
    per_cta = min(p["cta_bytes_max"], p["call_bytes_max"] // ctas)
    n_tiles = max(2 * p["num_stages"], per_cta // tile_bytes)
    total = ctas * n_tiles * tile_bytes
    slices = max(4, -(-p["pool_bytes_min"] // total))  # a slice is read again only after >= 3 others (> L2)
    return {"ctas": ctas, "tile_bytes": tile_bytes, "n_tiles": n_tiles, "slices": slices}


def _dram_stream_rows(point: dict, device, repeats: int) -> dict:
    """dram_stream with a KV-cache layout (heads interleaved, optionally paged): C CTAs = sequences x heads, each
    streaming one head's rows; every call reads another slice of the pool (> 4 x L2)."""
    p = point["params"]
    cpu = device == "cpu"
    heads, bn, d = p["heads"], p["block_n"], p["head_dim"]
    ctas = p["ctas"] if not cpu else heads
    seqs = max(1, ctas // heads)
    ctas = seqs * heads
    row_bytes = heads * d * 2
    if cpu:
        n_tiles = 2
    else:
        per_cta = min(p["cta_bytes_max"], p["call_bytes_max"] // ctas)
        n_tiles = max(2 * p["num_stages"], per_cta // (bn * d * 2))
    rows_per_seq = n_tiles * bn
    per_call = seqs * rows_per_seq * heads * d  # fp16 elements
    slices = 1 if cpu else max(4, -(-p["pool_bytes_min"] // (per_call * 2)))
    pool = torch.empty(slices * per_call, device=device, dtype=torch.float16)
    pool.uniform_(-1, 1)
    page_rows = p["page_rows"]
    gen = torch.Generator(device="cpu").manual_seed(1)
    if page_rows:
        n_pages = seqs * rows_per_seq // page_rows
        # scattered: a random permutation of the slice's pages (a shuffled block table); else pages in order (the
        # same loop and table loads, contiguous data: the difference is the DRAM's, not the kernel's)
        perm = torch.randperm(n_pages, generator=gen) if p.get("scatter") else torch.arange(n_pages)
        table = perm.to(torch.int32).to(device)
    else:
        table = torch.zeros(1, device=device, dtype=torch.int32)
    out = torch.empty(ctas * 16 * d, device=device, dtype=torch.float32)
    times = torch.zeros(3 * ctas, device=device, dtype=torch.int64)
    state = {"i": 0, "compiled": None}

    def fn():
        src = pool[(state["i"] % slices) * per_call:]
        state["i"] += 1
        ck = K._mb_stream_rows[(ctas,)](src, table, out, times, n_tiles, heads * d, HEADS=heads, BLOCK_N=bn, D=d,
                                        PAGE_ROWS=page_rows, ON_GPU=not cpu, num_warps=p["num_warps"],
                                        num_stages=p["num_stages"])
        if state["compiled"] is None:
            state["compiled"] = ck
    ts = (_cpu_time if cpu else _cuda_time)(fn, repeats)
    extra = {"tile_bytes": bn * d * 2, "tiles_per_cta": n_tiles, "slices": slices, "bytes_per_call": per_call * 2,
             "row_bytes_apart": row_bytes, "ctas_run": ctas}
    ck = state["compiled"]
    md = getattr(ck, "metadata", None)
    if md is not None:
        extra["shared_bytes"] = int(getattr(md, "shared", 0) or 0)
        extra["regs_per_thread"] = int(getattr(ck, "n_regs", 0) or 0)
    if not cpu:
        extra.update(stream_concurrency(times.view(ctas, 3).cpu().tolist()))
    table_bytes = (seqs * rows_per_seq // page_rows * 4) if page_rows else 0
    return {"times_s": ts, "work": {"bytes": float(per_call * 2)}, "extra": {**extra, "table_bytes": table_bytes}}


def _dram_stream(point: dict, device, repeats: int) -> dict:
    """C CTAs each stream their own n_tiles tiles (no sharing, no L2 reuse between calls: every call reads the
    next of `slices` slices of a pool larger than the L2); bytes/s, plus what the card ran: CTAs resident at
    once (from per-CTA %globaltimer stamps), shared memory and registers of the compiled kernel."""
    p = point["params"]
    cpu = device == "cpu"
    sp = stream_plan(p, cpu)
    ctas, n_tiles, slices = sp["ctas"], sp["n_tiles"], sp["slices"]
    per_call = ctas * n_tiles * p["block_n"] * p["head_dim"]  # fp16 elements
    pool = torch.empty(slices * per_call, device=device, dtype=torch.float16)
    pool.uniform_(-1, 1)
    out = torch.empty(ctas * 16 * p["head_dim"], device=device, dtype=torch.float32)
    times = torch.zeros(3 * ctas, device=device, dtype=torch.int64)
    state = {"i": 0, "compiled": None}

    def fn():
        src = pool[(state["i"] % slices) * per_call:]
        state["i"] += 1
        ck = K._mb_stream[(ctas,)](src, out, times, n_tiles, BLOCK_N=p["block_n"], D=p["head_dim"],
                                   ON_GPU=not cpu, num_warps=p["num_warps"], num_stages=p["num_stages"])
        if state["compiled"] is None:
            state["compiled"] = ck
    ts = (_cpu_time if cpu else _cuda_time)(fn, repeats)
    extra = {"tile_bytes": sp["tile_bytes"], "tiles_per_cta": n_tiles, "slices": slices,
             "bytes_per_call": per_call * 2}
    ck = state["compiled"]
    md = getattr(ck, "metadata", None)
    if md is not None:
        extra["shared_bytes"] = int(getattr(md, "shared", 0) or 0)
        extra["regs_per_thread"] = int(getattr(ck, "n_regs", 0) or 0)
        extra["spill_bytes_per_thread"] = 4 * int(getattr(ck, "n_spills", 0) or 0)
    if not cpu:
        extra.update(stream_concurrency(times.view(ctas, 3).cpu().tolist()))
    return {"times_s": ts, "work": {"bytes": float(per_call * 2)}, "extra": extra}


def stream_concurrency(rows: list) -> dict:
    """From per-CTA (start_ns, end_ns, smid) of one run: the span, CTAs resident on average (busy CTA time / span)
    and at most, the median CTA time and the CTAs per SM."""
    rows = [r for r in rows if r[1] > r[0]]
    if not rows:
        return {}
    t0, t1 = min(r[0] for r in rows), max(r[1] for r in rows)
    span = max(t1 - t0, 1)
    ev = sorted([(r[0], 1) for r in rows] + [(r[1], -1) for r in rows], key=lambda e: (e[0], e[1]))
    cur = peak = 0
    for _, d in ev:
        cur += d
        peak = max(peak, cur)
    per_sm: dict = {}
    for r in rows:
        per_sm[r[2]] = per_sm.get(r[2], 0) + 1
    durs = sorted(r[1] - r[0] for r in rows)
    return {"span_s": span * 1e-9, "ctas_resident_mean": sum(durs) / span, "ctas_resident_max": peak,
            "cta_time_s_median": durs[len(durs) // 2] * 1e-9, "sms_used": len(per_sm),
            "ctas_per_sm_max": max(per_sm.values())}


def device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device != "cpu" else "cpu"


__all__ = ["prepare", "measure_timed", "device_name", "triton"]
