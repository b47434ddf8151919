"""One device call: microbenchmarks (not decode kernels) for the three places the decode model misses (issue 12).

Each point is timed by ncu (`gpu__time_duration`, default cache control = L1/L2 flushed before every kernel,
`--clock-control none`), as the decode cases are, 3 launches per point (median):

* ``chain``  -- the fixed cost of a short kernel: ONE warp follows a chain of ``n_dep`` dependent 8-byte loads
  (pointer chase, each load's address is the previous load's value), then stores one value.  ``near``: the chain
  stays inside one 4 KB span (one DRAM page, one TLB entry); ``far``: consecutive loads are 64 MB apart (a
  different 2 MB translation each, as a decode CTA's seqlen -> table -> K -> V -> O allocations are).  The slope
  over n_dep is the cold dependent-load latency ncu sees; far - near is what a new translation costs; n_dep=0 with
  and without the store is the kernel floor and the end-of-kernel store.
* ``rounds`` -- a loop of ``R`` rounds per CTA, each loading a 32 x D fp32 tile and 32 fp32 weights (rows
  ``stride_rows`` x D apart) and folding them into a D accumulator (``weighted``: rescaled by exp2 of a running max,
  as a split-KV combine does; ``plain``: a sum), 4 warps, not pipelined (num_stages 1).  Time vs R at 1 CTA and
  at one CTA per SM: what each round costs beyond one memory latency.
* ``gather`` -- a pipelined stream (num_stages 3, tl.dot consumer, one head of 8 interleaved, 64-row tiles of d=128
  fp16) whose rows come through a page table loaded one tile ahead (loop-carried, as decode's page_prefetch):
  pages of 0 (contiguous), 16 or 64 rows scattered over a 256 MB pool, the table read per key or per page, at
  8-132 CTAs.  Per-key 64-row pages vs per-page 64-row pages separates the per-key gather from DRAM locality.

    run(command="python3 benchmarks/decode_mechanisms_gpu.py --out $OUT/decode_mech.json", timeout_s=300)

Here (no GPU): ``python benchmarks/decode_mechanisms_gpu.py --plan`` lists the points.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

REPEATS = 3
MB = 1 << 20


def plan() -> list[dict]:
    P = []
    for variant in ("near", "far"):
        for n in (0, 1, 2, 4, 8):
            P.append(dict(kind="chain", variant=variant, n_dep=n, store=True,
                          step_bytes=512 if variant == "near" else 64 * MB))
    P.append(dict(kind="chain", variant="near", n_dep=0, store=False, step_bytes=512))
    for d in (64, 128, 256):
        for R in (1, 2, 4):
            for ctas in (1, 132):
                P.append(dict(kind="rounds", head_dim=d, rounds=R, ctas=ctas, weighted=True, stride_rows=16))
    for R in (1, 2, 4):
        P.append(dict(kind="rounds", head_dim=128, rounds=R, ctas=1, weighted=False, stride_rows=16))
        P.append(dict(kind="rounds", head_dim=128, rounds=R, ctas=1, weighted=True, stride_rows=1))
    for ctas in (8, 32, 132):
        for page_rows, per_key in ((0, False), (16, True), (64, True), (64, False)):
            P.append(dict(kind="gather", ctas=ctas, page_rows=page_rows, per_key=per_key, block_n=64, head_dim=128,
                          heads=8, num_stages=3, num_warps=4, tiles=64, pool_bytes=256 * MB))
    for i, p in enumerate(P):
        p["id"] = i
    return P


def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def _mbd_chain(ptr, out_ptr, n_dep, STORE: tl.constexpr):
        # one warp: i_{k+1} = buf[i_k]; every load waits for the last (no overlap)
        i = tl.program_id(0).to(tl.int64) * 0  # 0, no load
        for _ in range(n_dep):
            i = tl.load(ptr + i)
        if STORE:
            tl.store(out_ptr, i)

    @triton.jit
    def _mbd_rounds(lse_ptr, o_ptr, out_ptr, R, STRIDE_ROWS: tl.constexpr, D: tl.constexpr, BLOCK_S: tl.constexpr,
                    WEIGHTED: tl.constexpr):
        pid = tl.program_id(0)
        offs_s = tl.arange(0, BLOCK_S)
        offs_d = tl.arange(0, D)
        m_i = tl.max(tl.full([BLOCK_S], float("-inf"), dtype=tl.float32), 0)
        l_i = tl.sum(tl.zeros([BLOCK_S], dtype=tl.float32), 0)
        acc = tl.zeros([D], dtype=tl.float32)
        for s0 in range(0, R * BLOCK_S, BLOCK_S):
            row = (pid.to(tl.int64) * R * BLOCK_S + s0 + offs_s) * STRIDE_ROWS
            w_raw = tl.load(lse_ptr + row)
            o_s = tl.load(o_ptr + row[:, None] * D + offs_d[None, :])
            if WEIGHTED:
                m_new = tl.maximum(m_i, tl.max(w_raw, 0))
                alpha = tl.math.exp2(m_i - m_new)
                w = tl.math.exp2(w_raw - m_new)
                l_i = l_i * alpha + tl.sum(w, 0)
                acc = acc * alpha + tl.sum(w[:, None] * o_s, 0)
                m_i = m_new
            else:
                acc += tl.sum(o_s, 0)
        if WEIGHTED:
            acc = acc / l_i
        tl.store(out_ptr + pid.to(tl.int64) * D + offs_d, acc)

    @triton.jit
    def _mbd_gather(src_ptr, table_ptr, out_ptr, n_tiles, pages_per_seq, row_stride, HEADS: tl.constexpr, BLOCK_N: tl.constexpr,
                    D: tl.constexpr, PAGE_ROWS: tl.constexpr, PER_KEY: tl.constexpr):
        pid = tl.program_id(0)
        seq = pid // HEADS
        head = pid % HEADS
        rows = tl.arange(0, BLOCK_N)
        cols = tl.arange(0, D)
        bt = table_ptr + seq.to(tl.int64) * pages_per_seq
        p = tl.full([16, BLOCK_N], 1.0, dtype=tl.float16)
        acc = tl.zeros([16, D], dtype=tl.float32)
        if PAGE_ROWS > 0:  # the next tile's entries, one iteration ahead (decode's page_prefetch)
            if PER_KEY:
                page_next = tl.load(bt + rows // PAGE_ROWS).to(tl.int64)
            else:
                page_next = tl.load(bt + 0 * pid).to(tl.int64)
        for t in range(n_tiles):
            k = t * BLOCK_N + rows
            if PAGE_ROWS > 0:
                page = page_next
                nk = (t + 1) * BLOCK_N
                if PER_KEY:
                    page_next = tl.load(bt + (nk + rows) // PAGE_ROWS, mask=(nk + rows) < n_tiles * BLOCK_N,
                                        other=0).to(tl.int64)
                    row = page * PAGE_ROWS + k % PAGE_ROWS
                else:
                    page_next = tl.load(bt + nk // PAGE_ROWS, mask=nk < n_tiles * BLOCK_N, other=0).to(tl.int64)
                    row = page * PAGE_ROWS + k % PAGE_ROWS
            else:
                row = seq.to(tl.int64) * n_tiles * BLOCK_N + k
            x = tl.load(src_ptr + row[:, None] * row_stride + head * D + cols[None, :])
            acc = tl.dot(p, x, acc)
        tl.store(out_ptr + pid.to(tl.int64) * 16 * D + tl.arange(0, 16)[:, None] * D + cols[None, :], acc)

    return _mbd_chain, _mbd_rounds, _mbd_gather


def _launcher(p: dict, K, dev):
    """A zero-argument launch of point p (inputs built once, fresh data, never zeros)."""
    import torch
    chain, rounds, gather = K
    g = torch.Generator(device="cpu").manual_seed(p["id"] + 1)
    if p["kind"] == "chain":
        step = p["step_bytes"] // 8   # elements between consecutive links
        n = max(p["n_dep"], 1)
        buf = torch.randint(0, 1 << 20, ((n + 1) * step,), generator=g, dtype=torch.int64)
        for k in range(n):
            buf[k * step] = (k + 1) * step
        buf = buf.to(dev)
        out = torch.empty(1, dtype=torch.int64, device=dev)
        return lambda: chain[(1,)](buf, out, p["n_dep"], STORE=p["store"], num_warps=1, num_stages=1)
    if p["kind"] == "rounds":
        d, R, c, sr = p["head_dim"], p["rounds"], p["ctas"], p["stride_rows"]
        rows = c * R * 32 * sr
        lse = (torch.rand(rows, generator=g) * 8).to(dev)
        o = torch.randn(rows * d, generator=g).to(dev)
        out = torch.empty(c * d, device=dev)
        return lambda: rounds[(c,)](lse, o, out, R, STRIDE_ROWS=sr, D=d, BLOCK_S=32, WEIGHTED=p["weighted"],
                                    num_warps=4, num_stages=1)
    # gather
    c, bn, d, H, T, pr = p["ctas"], p["block_n"], p["head_dim"], p["heads"], p["tiles"], p["page_rows"]
    seqs = -(-c // H)
    rows_per_seq = T * bn
    pool_rows = max(seqs * rows_per_seq, p["pool_bytes"] // (H * d * 2))
    src = (torch.rand(pool_rows * H * d, generator=g) * 2 - 1).to(torch.float16).to(dev)
    if pr:
        n_pages_pool = pool_rows // pr
        table = torch.randperm(n_pages_pool, generator=g)[: seqs * rows_per_seq // pr].to(torch.int32).to(dev)
    else:
        table = torch.zeros(1, dtype=torch.int32, device=dev)
    out = torch.empty(c * 16 * d, device=dev)
    pps = rows_per_seq // max(pr, 1)
    return lambda: gather[(c,)](src, table, out, T, pps, H * d, HEADS=H, BLOCK_N=bn, D=d, PAGE_ROWS=pr,
                                PER_KEY=p["per_key"], num_warps=p["num_warps"], num_stages=p["num_stages"])


def run_points() -> int:
    """(inside ncu) warm every point up, then launch each REPEATS times between profiler start/stop."""
    import torch
    dev = "cuda"
    K = _kernels()
    P = plan()
    fns = []
    for p in P:
        fn = _launcher(p, K, dev)
        fn()
        fns.append(fn)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for p, fn in zip(P, fns):
        for _ in range(REPEATS):
            fn()
            torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    print(json.dumps({"launched": len(P) * REPEATS}))
    return 0


def measure(out: str) -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from memsim.io import base_provenance, write_json
    from verification import ncu
    P = plan()
    log = out + ".ncu.log"
    metrics = ["gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum",
               "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum", "sm__cycles_elapsed.avg.per_second"]
    rows, text = ncu.run_ncu([sys.executable, os.path.abspath(__file__), "--run-points"], log_file=log,
                             metrics=metrics, kernel_regex="^_mbd_", timeout_s=400)
    if len(rows) != len(P) * REPEATS:
        print(f"ncu returned {len(rows)} launches, expected {len(P) * REPEATS}; tail:\n{text[-3000:]}")
    pts = []
    for i, p in enumerate(P):
        rs = rows[i * REPEATS:(i + 1) * REPEATS]
        names = {r.name for r in rs}
        if not rs or names != {f"_mbd_{p['kind']}"}:
            pts.append(dict(p, error=f"rows {sorted(names)}"))
            continue
        t = [r.metrics.get("gpu__time_duration.sum") for r in rs]
        q = dict(p, time_s_repeats=t, time_s=statistics.median(t),
                 dram_read_bytes=statistics.median(r.metrics.get("dram__bytes_read.sum") or 0 for r in rs),
                 dram_write_bytes=statistics.median(r.metrics.get("dram__bytes_write.sum") or 0 for r in rs),
                 global_read_bytes=statistics.median(
                     r.metrics.get("l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum") or 0 for r in rs),
                 sm_clock_Hz=statistics.median(r.metrics.get("sm__cycles_elapsed.avg.per_second") or 0 for r in rs))
        pts.append(q)
    prov = base_provenance(" ".join(sys.argv))
    prov["ncu"] = ncu.ncu_version()
    try:
        import torch
        import triton
        prov.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                    cuda=torch.version.cuda)
    except Exception as exc:  # best effort
        prov["provenance_error"] = repr(exc)
    write_json(out, {"provenance": prov, "method": __doc__, "repeats": REPEATS, "points": pts}, overwrite=True)
    for q in pts:
        if "error" in q:
            print(q["id"], q["kind"], q["error"])
            continue
        key = {k: v for k, v in q.items() if k in ("variant", "n_dep", "store", "head_dim", "rounds", "ctas",
                                                     "weighted", "stride_rows", "page_rows", "per_key")}
        print(f"{q['kind']:7s} {json.dumps(key):90s} {q['time_s'] * 1e6:9.2f} us")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="JSON file for the points (GPU + ncu)")
    ap.add_argument("--plan", action="store_true", help="list the points and exit (no GPU)")
    ap.add_argument("--run-points", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.plan:
        for p in plan():
            print(json.dumps(p))
        return 0
    if a.run_points:
        return run_points()
    if not a.out:
        ap.error("--out is required (or --plan)")
    return measure(a.out)


if __name__ == "__main__":
    sys.exit(main())
