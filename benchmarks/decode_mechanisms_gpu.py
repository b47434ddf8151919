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

* ``pipeline`` (added 2026-11-26, second decode session) -- the tile loop's pipelining: a contiguous stream of 64 x
  128 fp16 tiles (one head of 8 interleaved, 128 tiles per CTA) consumed by a chain of ``dots`` dependent
  16 x 64 x 128 tl.dot per tile (the compute per tile), at num_stages 2 / 3 / 4 (tiles in flight 1 / 2 / 3: the
  compiled SASS's ``DEPBAR.LE SB0, N`` over its commit groups, `kernels.decode_compiled.tiles_in_flight`), 1 CTA
  and one CTA per SM; ``load=False`` runs the same dots on a register tile (the compute alone).  Per-tile period
  vs tiles in flight B separates "one tile per latency" (period = max(compute, latency) for any B >= 2) from the
  SASS order (tile i + B issued after tile i is computed: period = max(compute, (latency + compute) / B)).
* ``occupancy`` (same session) -- not timed: ncu's launch statistics (``launch__occupancy_limit_shared_mem``,
  ``_registers``, ``_warps``, ``launch__shared_mem_per_block_dynamic``, ``launch__registers_per_thread``) of real
  `_decode_split` launches of a few variants, i.e. how many CTAs of each the SM admits, against the model's
  (compiled shared memory, `memsim.inference.split_shared_bytes`) and the schedule's nominal shared memory.
* ``loop`` (added 2026-11-26, third decode session) -- the decode kernel's OWN tile loop, the real `_decode_split`
  launched by `kernels.decode_kv.decode_launch` (S = 1; 16 query / 4 KV heads: 4 CTAs per sequence, the same Triton
  specialisation as the 32 / 8 decode cases), in three memory modes:
  ``hidden``: K and V are views with stride 0 along the keys (and pages): every tile's copies read the same row of
  each (sequence, head), from L2, far inside the two tiles in flight -- the loop's compute per tile c (its dots,
  softmax, copy and table instructions, waits) with the SASS unchanged (a stride of 0 specialises as any multiple
  of 16); a paged cache keeps its real shuffled block table, so the loop still walks its table entries from memory
  (the page_prefetch loop's table round trip before each tile's copies, block-table entry then K/V address);
  ``stream``: the real cache (paged: pages shuffled over the pool); ``inorder`` (paged): pages in sequence order,
  contiguous in memory (the table round trip without the pages' scatter).  Two cache lengths (32 and 160 tiles of
  64 keys): the slope is the period per tile, free of the launch and the CTA's fixed costs (the intercept).  At 4
  CTAs (one per SM, the memory system unloaded), 132 and 396 CTAs (1 and 3 per SM).

    run(command="python3 benchmarks/decode_mechanisms_gpu.py --out $OUT/decode_mech.json", timeout_s=300)
    run(command="python3 benchmarks/decode_mechanisms_gpu.py --sets pipeline,occupancy --out $OUT/m.json")
    run(command="python3 benchmarks/decode_mechanisms_gpu.py --sets loop --deadline-s 150 --out $OUT/loop.json")

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


SETS = ("chain", "rounds", "gather", "pipeline", "occupancy", "loop", "loop2", "loop3")
#: the first run's sets (2026-11-26 03:23): its points keep their ids
FIRST_SETS = ("chain", "rounds", "gather")
#: decode_split variants whose occupancy ncu reports (problem, schedule fields): default tile, paged without prefetch
#: (Triton buffers one tile), num_stages 4 at d = 64 (the seed-112602 cases 001 / 015)
OCCUPANCY_VARIANTS = (
    (dict(batch=2, heads_q=32, heads_kv=8, head_dim=128, seq_kv=2048, dtype="bf16"), dict()),
    (dict(batch=2, heads_q=32, heads_kv=8, head_dim=128, seq_kv=2048, dtype="bf16", page_size=16), dict()),
    (dict(batch=2, heads_q=32, heads_kv=8, head_dim=128, seq_kv=2048, dtype="bf16", page_size=16),
     dict(page_prefetch=True)),
    (dict(batch=2, heads_q=32, heads_kv=4, head_dim=64, seq_kv=2048, dtype="bf16", page_size=16),
     dict(block_n=128, num_stages=4, num_warps=8)),
    (dict(batch=2, heads_q=32, heads_kv=8, head_dim=64, seq_kv=2048, dtype="bf16", page_size=16),
     dict(block_n=128, num_stages=4, num_warps=4, page_prefetch=True, pack_gqa=False)),
    (dict(batch=2, heads_q=32, heads_kv=8, head_dim=256, seq_kv=2048, dtype="fp16"), dict(num_warps=8)),
)
#: the ``loop`` set: (name, DecodeProblem.uniform fields, DecodeSchedule fields), 16 query / 4 KV heads
LOOP_VARIANTS = (
    ("default", dict(head_dim=128, dtype="bf16"), dict()),
    ("p16pf1", dict(head_dim=128, dtype="bf16", page_size=16), dict(page_prefetch=True)),
    ("p64pf1", dict(head_dim=128, dtype="bf16", page_size=64), dict(page_prefetch=True)),
    ("d256", dict(head_dim=256, dtype="bf16"), dict()),
    ("d64", dict(head_dim=64, dtype="bf16"), dict()),
    ("st4", dict(head_dim=128, dtype="bf16"), dict(num_stages=4)),
    ("bn128", dict(head_dim=128, dtype="bf16"), dict(block_n=128)),
    ("bn32", dict(head_dim=128, dtype="bf16"), dict(block_n=32)),
    ("w8", dict(head_dim=128, dtype="bf16"), dict(num_warps=8)),
    ("p16pf0", dict(head_dim=128, dtype="bf16", page_size=16), dict()),
)
#: cache lengths of the ``loop`` points (32 and 160 tiles of 64 keys): the period per tile is the slope between them
LOOP_LENGTHS = (2048, 10240)
#: the ``loop2`` set's variants (names of LOOP_VARIANTS, plus one-buffer contiguous: num_stages 2)
LOOP2_VARIANTS = LOOP_VARIANTS + (("st2", dict(head_dim=128, dtype="bf16"), dict(num_stages=2)),)
#: the ``loop3`` set's variants (session 15, prepared for session 16): the loops kernels.decode weighs or may weigh
#: whose compute per tile the model takes from a class ratio measured on 64-key tiles -- the 128-key paged loops
#: (TILE_CANDIDATES is not weighed on paged caches until they are measured: `kernels.decode_kv._own_loop_measured`)
#: and the split_d loops (session 15 call 1: split_d over 16-row pages IN ORDER ran 1.58 us per 128-key tile at 8 x 32k,
#: the same as shuffled, vs the model's c of 1.22 us -- the loop, not the page order)
LOOP3_VARIANTS = (
    ("p16bn128", dict(head_dim=128, dtype="bf16", page_size=16), dict(block_n=128, page_prefetch=True)),
    ("p64bn128", dict(head_dim=128, dtype="bf16", page_size=64), dict(block_n=128, page_prefetch=True)),
    ("sd2bn128", dict(head_dim=128, dtype="bf16"), dict(block_n=128, split_d=2)),
    ("p16sd2bn128", dict(head_dim=128, dtype="bf16", page_size=16), dict(block_n=128, split_d=2, page_prefetch=True)),
    ("p64sd2bn128", dict(head_dim=128, dtype="bf16", page_size=64), dict(block_n=128, split_d=2, page_prefetch=True)),
    ("sd2bn64", dict(head_dim=128, dtype="bf16"), dict(split_d=2)),
)
#: ``loop2`` short kernels: one and three tiles of 64 keys per CTA, 33 / 99 / 990 sequences x 4 KV heads
SHORT_LENGTHS = (64, 192)
SHORT_BATCHES = (33, 99, 990)
LOOP_HEADS = (16, 4)
OCCUPANCY_METRICS = ("launch__occupancy_limit_shared_mem", "launch__occupancy_limit_registers",
                     "launch__occupancy_limit_warps", "launch__occupancy_limit_blocks",
                     "launch__shared_mem_per_block_dynamic", "launch__registers_per_thread")


def plan(sets=FIRST_SETS) -> list[dict]:
    unknown = set(sets) - set(SETS)
    if unknown:
        raise ValueError(f"unknown point sets {sorted(unknown)}; known: {', '.join(SETS)}")
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
    P = [p for p in P if p["kind"] in sets]
    n = 1000  # ids of the later sets start at 1000 (the first run's stay 0..)
    Q = []
    if "pipeline" in sets:
        for ctas in (1, 132):
            for st in (2, 3, 4):
                for dots in (1, 4, 8):
                    Q.append(dict(kind="pipeline", ctas=ctas, num_stages=st, dots=dots, load=True, block_n=64,
                                  head_dim=128, heads=8, num_warps=4, tiles=128))
            for dots in (1, 4, 8):
                Q.append(dict(kind="pipeline", ctas=ctas, num_stages=3, dots=dots, load=False, block_n=64,
                              head_dim=128, heads=8, num_warps=4, tiles=128))
    if "occupancy" in sets:
        for j, (prob, sch) in enumerate(OCCUPANCY_VARIANTS):
            Q.append(dict(kind="occupancy", variant=j, problem=prob, schedule=sch))
    Q += _loop_points() if "loop" in sets else []
    Q += _loop2_points() if "loop2" in sets else []
    Q += _loop3_points() if "loop3" in sets else []
    for i, q in enumerate(Q):
        q["id"] = n + i
    return P + Q


def _loop_points() -> list:
    """The ``loop`` set in the order it is measured (the most needed first: a run cut by its deadline keeps them):
    hidden and stream at 4 CTAs for every variant, then 396 (hidden) and 132 (stream, in-order pages) CTAs, then
    hidden at 132 CTAs for the first two variants."""
    tiers = []
    for name, prob, sch in LOOP_VARIANTS:
        paged = "page_size" in prob
        tiers.append((0, name, prob, sch, "hidden", 1))
        tiers.append((0, name, prob, sch, "stream", 1))
        tiers.append((1, name, prob, sch, "hidden", 99))
        tiers.append((1, name, prob, sch, "stream", 33))
        if paged and sch.get("page_prefetch"):
            tiers.append((2, name, prob, sch, "inorder", 1))
            tiers.append((2, name, prob, sch, "inorder", 33))
        if name in ("default", "p16pf1"):
            tiers.append((2, name, prob, sch, "hidden", 33))
    out = []
    for tier, name, prob, sch, mode, batch in sorted(tiers, key=lambda t: t[0]):
        for L in LOOP_LENGTHS:
            out.append(dict(kind="loop", variant=name, mode=mode, batch=batch, ctas=batch * LOOP_HEADS[1],
                            seq_kv=L, tier=tier, problem=dict(prob), schedule=dict(sch)))
    return out


def _loop2_points() -> list:
    """The ``loop2`` set (2026-11-26, fourth decode session), most needed first:
    tier 0 -- ``shared`` mode (every CTA streams ONE real cache: batch and head strides 0, the key stride real, so a
    tile's rows are 64 distinct lines, L2-resident after the first touch; the footprint (2.6 MB per K or V at
    10240 keys) is spread over L2 lines, unlike ``hidden``'s one row): the compute per tile c at 1, 2 and 3 CTAs
    per SM (132 / 264 / 396 CTAs) for the default, d64 and bn32 loops, plus 4 CTAs; the lts throughput says whether
    the L2 bound it;
    tier 1 -- one-buffer loops at 4 CTAs: ``st2`` (contiguous, num_stages 2) hidden / shared / stream, ``p16pf0``
    hidden / stream, and the default loop hidden / stream again (same machine as the rest);
    tier 2 -- short kernels: real decode launches (``stream``), 1 and 3 tiles per CTA (64 / 192 keys), 132, 396 and
    3960 CTAs (3 CTAs per SM fit: 1 wave, 1 wave, 10 waves), d 64 / 128 / 256."""
    var = {n: (pr, sc) for n, pr, sc in LOOP2_VARIANTS}
    pts = []

    def add(tier, name, mode, batch, lengths):
        prob, sch = var[name]
        for L in lengths:
            pts.append(dict(kind="loop", set="loop2", variant=name, mode=mode, batch=batch,
                            ctas=batch * LOOP_HEADS[1], seq_kv=L, tier=tier, problem=dict(prob), schedule=dict(sch)))
    for name in ("default", "d64", "bn32"):
        for batch in (33, 66, 99):
            add(0, name, "shared", batch, LOOP_LENGTHS)
    add(0, "default", "shared", 1, LOOP_LENGTHS)
    for name, modes in (("st2", ("hidden", "shared", "stream")), ("p16pf0", ("hidden", "stream")),
                        ("default", ("hidden", "stream"))):
        for mode in modes:
            add(1, name, mode, 1, LOOP_LENGTHS)
    for d, name in ((64, "d64"), (128, "default"), (256, "d256")):
        for batch in SHORT_BATCHES:
            add(2, name, "stream", batch, SHORT_LENGTHS)
    return pts


def _loop3_points() -> list:
    """The ``loop3`` set (prepared in session 15), most needed first: tier 0 -- ``hidden`` at 4 CTAs per variant (the
    loop's compute per tile c, what `loop_compute_of` takes; 8 CTAs with split_d, still one per SM); tier 1 --
    ``stream`` at 4 CTAs (the real cache, pages shuffled); tier 2 -- ``inorder`` at 4 CTAs for the paged variants."""
    pts = []
    for tier, modes in ((0, ("hidden",)), (1, ("stream",)), (2, ("inorder",))):
        for name, prob, sch in LOOP3_VARIANTS:
            for mode in modes:
                if mode == "inorder" and "page_size" not in prob:
                    continue
                for L in LOOP_LENGTHS:
                    pts.append(dict(kind="loop", set="loop3", variant=name, mode=mode, batch=1,
                                    ctas=LOOP_HEADS[1] * sch.get("split_d", 1), seq_kv=L, tier=tier,
                                    problem=dict(prob), schedule=dict(sch)))
    return pts


def _loop_case(p: dict):
    from memsim.inference import DecodeProblem, DecodeSchedule
    prob = DecodeProblem.uniform(p["batch"], LOOP_HEADS[0], LOOP_HEADS[1], seq_kv=p["seq_kv"], **p["problem"])
    return prob, DecodeSchedule(num_splits=1, **p["schedule"])


def _loop_inputs(p: dict, dev: str):
    """(problem, schedule, q, k, v, lens, block_table) of a ``loop`` point (fresh random data, never zeros)."""
    import torch
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from kernels.decode_testing import make_problem_inputs
    prob, sch = _loop_case(p)
    q, k, v, lens, bt = make_problem_inputs(prob, dev, seed=p["id"] + 1)
    if p["mode"] == "hidden":  # one row per (sequence or page, head): stride 0 along the keys (and the pages)
        if bt is None:
            k, v = (x[:, :1].expand(x.shape) for x in (k, v))
        else:
            k, v = (x[:1, :1].expand(x.shape) for x in (k, v))
    elif p["mode"] == "shared":  # every CTA streams sequence 0 / head 0's real rows: strides 0 over batch and heads
        if bt is not None:
            raise ValueError("shared mode is for contiguous caches")
        k, v = (x[:1, :, :1].expand(x.shape) for x in (k, v))
    elif p["mode"] == "inorder":  # each sequence's pages in order, one after the other in the pool
        n = bt.shape[1]
        bt = torch.arange(bt.shape[0] * n, dtype=torch.int32, device=dev).view(bt.shape[0], n)
    return prob, sch, q, k, v, lens, bt


def run_loop(sets, deadline_s: float, launch_log: str) -> int:
    """(inside ncu) every ``loop`` point REPEATS times in plan order, each launch synchronised; the ids launched go
    to `launch_log` (one per line, in order) so that the parent maps ncu's rows; no new point after deadline_s."""
    import time

    import torch
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from kernels.decode_kv import decode_launch
    t0 = time.time()
    done = []
    torch.cuda.profiler.start()  # ncu profiles `_decode_split` launches only (its kernel filter)
    try:
        for p in plan(sets):
            if p["kind"] != "loop":
                continue
            if time.time() - t0 > deadline_s:
                print(f"deadline: stopped before point {p['id']}")
                break
            prob, sch, q, k, v, lens, bt = _loop_inputs(p, "cuda")
            torch.cuda.synchronize()
            for _ in range(REPEATS):
                decode_launch(prob, sch, q, k, v, lens, bt)
                torch.cuda.synchronize()
                done.append(p["id"])
            del q, k, v, lens, bt
    finally:
        torch.cuda.profiler.stop()
        with open(launch_log, "w") as f:
            f.write("".join(f"{i}\n" for i in done))
    return 0


def loop_table(points: list, hw_name: str = "h100-sxm") -> list[dict]:
    """What the ``loop`` points say, per (variant, mode, CTAs): the period per tile of one CTA (slope of time over
    the two cache lengths, divided by the waves the CTAs run in), the intercept (fixed costs), the achieved DRAM
    rate at the longer length; beside it the model's compute per tile (copy + issue, `cta_tile_costs`) and the warp
    issue replay of the compiled loop (`tile_cycles` / clock) at the same CTAs per SM."""
    import memsim
    from memsim.inference import (DeviceFacts, _compiled_entry, cta_tile_costs, split_regs_per_thread,
                                  split_shared_bytes)
    hw = memsim.load_hardware(hw_name)
    f = DeviceFacts.from_hardware(hw)
    by: dict = {}
    for p in points:
        if p.get("kind") == "loop" and p.get("time_s"):
            by.setdefault((p["variant"], p["mode"], p["ctas"]), {})[p["seq_kv"]] = p
    rows = []
    for (var, mode, ctas), pl in by.items():
        if len(pl) < 2:
            continue
        (l1, a), (l2, b) = sorted(pl.items())[:2]
        prob, sch = _loop_case(b)
        tiles = (l2 - l1) / sch.block_n
        per_sm = f.ctas_per_sm(split_shared_bytes(prob, sch), sch.num_warps, split_regs_per_thread(prob, sch))
        on_sm = max(1, min(per_sm, -(-ctas // hw.num_sms)))
        waves = -(-ctas // (hw.num_sms * per_sm))
        slope = (b["time_s"] - a["time_s"]) / tiles
        period = slope / waves
        pb, issue = cta_tile_costs(prob, sch, f, ctas_on_sm=on_sm) or (0.0, 0.0)
        tile = 2 * sch.block_n * prob.head_dim * prob.element_bytes
        e = _compiled_entry(prob, sch) or {}
        cyc = e.get("tile_cycles") or []
        replay = cyc[min(on_sm, len(cyc)) - 1] / f.clock_Hz if cyc else None
        rows.append(dict(variant=var, mode=mode, ctas=ctas, ctas_on_sm=on_sm, waves=waves, period_s=period,
                         intercept_s=a["time_s"] - slope * l1 / sch.block_n,
                         dram_Bps=b.get("dram_read_bytes", 0) / b["time_s"] if b.get("dram_read_bytes") else None,
                         model_compute_s=tile * pb + issue, replay_s=replay, tiles_in_flight=e.get("tiles_in_flight"),
                         sm_clock_Hz=b.get("sm_clock_Hz")))
    order = {n: i for i, (n, _, _) in enumerate(LOOP_VARIANTS)}
    return sorted(rows, key=lambda r: (order.get(r["variant"], 99), r["mode"], r["ctas"]))


def loop_compute_of(points: list, run: str, hw_name: str = "h100-sxm") -> dict:
    """The decode model's "measured_loop" entry of a run: the period per tile of the ``hidden`` points at 4 CTAs (one
    per SM, K/V copies hidden: the loop's compute c) and the warp-issue replay of the same compiled loop at one CTA
    per SM, per loop key; the median measured / replayed ratio per layout class.  One-buffer loops (paged without
    page_prefetch) are left out: their hidden period is the L2 latency of a tile + c, not c."""
    from memsim.inference import decode_loop_key, loop_layout_class, pipeline_buffers
    variants, ratios = {}, {}
    for r in loop_table(points, hw_name):
        if r["mode"] != "hidden" or not r["replay_s"]:
            continue
        prob, sch = _loop_case(next(p for p in points if p.get("kind") == "loop" and p["variant"] == r["variant"]))
        if r["ctas"] != LOOP_HEADS[1] * sch.split_d:  # one per SM: 4 CTAs, 8 with split_d 2 (``loop3``)
            continue
        if pipeline_buffers(prob, sch) <= 1:
            continue
        cls = loop_layout_class(prob, sch)
        variants[decode_loop_key(prob, sch)] = {"variant": r["variant"], "class": cls, "period_s": r["period_s"],
                                                "replay_s": r["replay_s"], "ratio": r["period_s"] / r["replay_s"]}
        ratios.setdefault(cls, []).append(r["period_s"] / r["replay_s"])
    if not variants:
        raise ValueError(f"{run}: no hidden loop points at 4 CTAs (a `--sets loop` run file has them)")
    return {"run": run, "variants": variants, "class_ratio": {c: statistics.median(v) for c, v in ratios.items()},
            "method": "benchmarks/decode_mechanisms_gpu.py loop set: hidden mode, 4 CTAs (one per SM), slope over "
                      "cache lengths 2048 and 10240 (ncu gpu__time_duration, median of 3); replay = the compiled "
                      "table's tile_cycles[0] / SM clock"}


def merge_loop(run: str, table: str | None = None) -> dict:
    """Write `loop_compute_of(run)` into the compiled table's "measured_loop" (h100-sxm), atomically; returns it."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from memsim.inference import COMPILED_FILE
    from memsim.io import write_json
    with open(run) as f:
        doc = json.load(f)
    gpu = (doc.get("provenance") or {}).get("gpu", "")
    if "H100" not in gpu:
        raise ValueError(f"{run}: measured on {gpu!r}; the h100-sxm preset takes H100 runs only")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rel = os.path.relpath(os.path.abspath(run), root)
    entry = loop_compute_of(doc.get("points") or [], rel)
    entry.update(date=doc["provenance"].get("date"), gpu=gpu)
    path = table or str(COMPILED_FILE)
    with open(path) as f:
        tab = json.load(f)
    # the epilogue (`merge_epilogue`) and the combine (benchmarks/decode_probes.py --merge-combine) are measurements
    # of their own: kept
    keep = {k: v for k, v in (tab.get("measured_loop", {}).get("h100-sxm") or {}).items()
            if k.startswith("epilogue") or k == "combine"}
    entry.update(keep)
    tab.setdefault("measured_loop", {})["h100-sxm"] = entry
    write_json(path, tab, overwrite=True)
    return entry


def merge_loop_add(run: str, table: str | None = None) -> dict:
    """Add a loop run's variants (`loop_compute_of(run)`'s "variants": each loop's own measured / replayed ratio) to
    the compiled table's "measured_loop" (h100-sxm), keeping the variants already there (the run's win on the same
    key) and the class ratios, the epilogue and the combine as they are (a run of a few extra loops, e.g. ``loop3``,
    prices those loops without moving the class ratio every other loop takes); atomically; returns the entry."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from memsim.inference import COMPILED_FILE
    from memsim.io import write_json
    with open(run) as f:
        doc = json.load(f)
    gpu = (doc.get("provenance") or {}).get("gpu", "")
    if "H100" not in gpu:
        raise ValueError(f"{run}: measured on {gpu!r}; the h100-sxm preset takes H100 runs only")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rel = os.path.relpath(os.path.abspath(run), root)
    new = loop_compute_of(doc.get("points") or [], rel)
    path = table or str(COMPILED_FILE)
    with open(path) as f:
        tab = json.load(f)
    entry = tab.get("measured_loop", {}).get("h100-sxm")
    if not entry:
        raise ValueError(f"{path}: no measured_loop for h100-sxm to add to (use --merge-loop)")
    for v in new["variants"].values():
        v.update(run=rel, date=doc["provenance"].get("date"))
    entry["variants"].update(new["variants"])
    entry.setdefault("added_runs", []).append({"run": rel, "date": doc["provenance"].get("date"),
                                               "variants": sorted(new["variants"])})
    write_json(path, tab, overwrite=True)
    return entry


def loop_epilogue_of(runs: dict, hw_name: str = "h100-sxm") -> dict:
    """A split CTA's epilogue (after its loop and last tile's dots) from the ``loop`` points' intercepts: for each
    contiguous pipelined variant streaming at 4 CTAs (one per SM) in each run, the measured intercept of time over
    the two cache lengths minus the model's intercept without the epilogue; their median.  `runs`: {run path:
    points}.  (The model's intercept holds the launch, the dependent load before the stream, the first tiles'
    latency, their compute and the last tile's dots: a difference of two lengths of one CTA, one per SM.)"""
    from memsim.inference import loop_layout_class, pipeline_buffers
    from memsim.workloads_decode import simulate_decode
    rows = []
    for run, points in runs.items():
        by: dict = {}
        for p in points:
            if (p.get("kind") == "loop" and p.get("time_s") and p["mode"] == "stream" and p["ctas"] == 4
                    and p.get("tier") != 2):
                by.setdefault(p["variant"], {})[p["seq_kv"]] = p
        for var, pl in sorted(by.items()):
            if len(pl) < 2:
                continue
            (l1, a), (l2, b) = sorted(pl.items())[:2]
            prob, sch = _loop_case(a)
            if loop_layout_class(prob, sch) != "contiguous" or pipeline_buffers(prob, sch) <= 1:
                continue
            ka = simulate_decode(prob, sch, hw_name)["kernels"][0]
            kb = simulate_decode(*_loop_case(b), hw_name)["kernels"][0]
            n = (l2 - l1) / sch.block_n
            meas = a["time_s"] - (b["time_s"] - a["time_s"]) / n * l1 / sch.block_n
            # without the epilogue: one CTA per SM, one wave -- each CTA's epilogue is once in the kernel time
            pa, pb = ka["time_s"] - ka["epilogue_s"], kb["time_s"] - kb["epilogue_s"]
            model = pa - (pb - pa) / n * l1 / sch.block_n
            rows.append({"run": run, "variant": var, "measured_s": meas, "model_s": model, "diff_s": meas - model})
    if not rows:
        raise ValueError("no contiguous pipelined loop points streaming at 4 CTAs in the runs given")
    return {"epilogue_s": statistics.median(r["diff_s"] for r in rows), "epilogue_points": rows,
            "epilogue_method": "benchmarks/decode_mechanisms_gpu.py loop_epilogue_of: median over the contiguous "
                               "pipelined loop variants streaming at 4 CTAs of (measured - model without it) "
                               "intercept of ncu time over cache lengths 2048 and 10240"}


def merge_epilogue(runs: list, table: str | None = None) -> dict:
    """Write `loop_epilogue_of(runs)` into the compiled table's "measured_loop" (h100-sxm), atomically; returns it."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from memsim.inference import COMPILED_FILE
    from memsim.io import write_json
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    docs = {}
    for run in runs:
        with open(run) as f:
            doc = json.load(f)
        if "H100" not in (doc.get("provenance") or {}).get("gpu", ""):
            raise ValueError(f"{run}: not an H100 run; the h100-sxm preset takes H100 runs only")
        docs[os.path.relpath(os.path.abspath(run), root)] = doc.get("points") or []
    out = loop_epilogue_of(docs)  # (the model's intercepts are taken without the epilogue it has now)
    path = table or str(COMPILED_FILE)
    with open(path) as f:
        tab = json.load(f)
    ent = tab.setdefault("measured_loop", {}).setdefault("h100-sxm", {})
    ent.update(out)
    write_json(path, tab, overwrite=True)
    from memsim import inference
    inference._COMPILED.clear()  # the next lookup reads the new table
    return out


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

    @triton.jit
    def _mbd_pipe(src_ptr, out_ptr, n_tiles, row_stride, HEADS: tl.constexpr, BLOCK_N: tl.constexpr,
                  D: tl.constexpr, DOTS: tl.constexpr, LOAD: tl.constexpr):
        # one CTA streams n_tiles (BLOCK_N x D) tiles of its own rows; each tile feeds DOTS dependent dots
        pid = tl.program_id(0)
        seq = pid // HEADS
        head = pid % HEADS
        rows = tl.arange(0, BLOCK_N)
        cols = tl.arange(0, D)
        p = tl.full([16, BLOCK_N], 1.0 / 1024, dtype=tl.float16)
        acc = tl.zeros([16, D], dtype=tl.float32)
        base = seq.to(tl.int64) * n_tiles * BLOCK_N
        x0 = tl.load(src_ptr + (base + rows)[:, None] * row_stride + head * D + cols[None, :])
        for t in range(n_tiles):
            if LOAD:
                x = tl.load(src_ptr + (base + t * BLOCK_N + rows)[:, None] * row_stride + head * D + cols[None, :])
            else:
                x = x0
            for _ in tl.static_range(DOTS):
                acc = tl.dot(p, x, acc)
        tl.store(out_ptr + pid.to(tl.int64) * 16 * D + tl.arange(0, 16)[:, None] * D + cols[None, :], acc)

    return _mbd_chain, _mbd_rounds, _mbd_gather, _mbd_pipe


def _launcher(p: dict, K, dev):
    """A zero-argument launch of point p (inputs built once, fresh data, never zeros)."""
    import torch
    chain, rounds, gather, pipe = K
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
    if p["kind"] == "pipeline":
        c, bn, d, H, T = p["ctas"], p["block_n"], p["head_dim"], p["heads"], p["tiles"]
        seqs = -(-c // H)
        src = (torch.rand(seqs * T * bn * H * d, generator=g) * 2 - 1).to(torch.float16).to(dev)
        out = torch.empty(c * 16 * d, device=dev)
        return lambda: pipe[(c,)](src, out, T, H * d, HEADS=H, BLOCK_N=bn, D=d, DOTS=p["dots"], LOAD=p["load"],
                                  num_warps=p["num_warps"], num_stages=p["num_stages"])
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


def run_points(sets) -> int:
    """(inside ncu) warm every timed point up, then launch each REPEATS times between profiler start/stop."""
    import torch
    dev = "cuda"
    K = _kernels()
    P = [p for p in plan(sets) if p["kind"] not in ("occupancy", "loop")]
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


def _occupancy_case(prob: dict, sch: dict):
    from memsim.inference import DecodeProblem, DecodeSchedule
    return DecodeProblem.uniform(**prob), DecodeSchedule(num_splits=1, **sch)


def run_occupancy() -> int:
    """(inside ncu) one `_decode_split` launch per OCCUPANCY_VARIANTS entry, in order (fresh random inputs)."""
    import torch
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from kernels.decode_kv import decode
    from kernels.decode_testing import make_problem_inputs
    args = []
    for prob, sch in OCCUPANCY_VARIANTS:  # compile and warm up outside the profiled range
        p, s = _occupancy_case(prob, sch)
        args.append((make_problem_inputs(p, "cuda", seed=1), s))
        (q, k, v, lens, bt), s = args[-1]
        decode(q, k, v, lens, block_table=bt, schedule=s, num_splits=1)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()  # ncu profiles from here only (verification.ncu: --profile-from-start off)
    for (q, k, v, lens, bt), s in args:
        decode(q, k, v, lens, block_table=bt, schedule=s, num_splits=1)
        torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    return 0


def _model_occupancy(prob: dict, sch: dict) -> dict:
    """CTAs per SM the decode model admits for this variant: by the compiled shared memory (what it uses) and by
    the schedule's nominal shared memory (what it used before), with the compiled registers."""
    import memsim
    from memsim.inference import (DeviceFacts, decode_sram_bytes_per_cta, split_regs_per_thread,
                                  split_shared_bytes)
    p, s = _occupancy_case(prob, sch)
    f = DeviceFacts.from_hardware(memsim.load_hardware("h100-sxm"))
    regs = split_regs_per_thread(p, s)
    return {"model_compiled_shared_bytes": split_shared_bytes(p, s), "model_regs_per_thread": regs,
            "model_ctas_per_sm": f.ctas_per_sm(split_shared_bytes(p, s), s.num_warps, regs),
            "nominal_ctas_per_sm": f.ctas_per_sm(decode_sram_bytes_per_cta(p, s), s.num_warps, regs)}


def measure(out: str, sets, deadline_s: float = 150.0) -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from memsim.io import base_provenance, write_json
    from verification import ncu
    if os.path.exists(out):
        raise SystemExit(f"{out} exists; give a new --out (run files are never overwritten)")
    P = plan(sets)
    timed = [p for p in P if p["kind"] not in ("occupancy", "loop")]
    pts = []
    if timed:
        log = out + ".ncu.log"
        metrics = ["gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum",
                   "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum", "sm__cycles_elapsed.avg.per_second"]
        rows, text = ncu.run_ncu([sys.executable, os.path.abspath(__file__), "--run-points", "--sets", ",".join(sets)],
                                 log_file=log, metrics=metrics, kernel_regex="^_mbd_", timeout_s=400)
        if len(rows) != len(timed) * REPEATS:
            print(f"ncu returned {len(rows)} launches, expected {len(timed) * REPEATS}; tail:\n{text[-3000:]}")
        for i, p in enumerate(timed):
            rs = rows[i * REPEATS:(i + 1) * REPEATS]
            names = {r.name for r in rs}
            kname = "_mbd_pipe" if p["kind"] == "pipeline" else f"_mbd_{p['kind']}"
            if not rs or names != {kname}:
                pts.append(dict(p, error=f"rows {sorted(names)}"))
                continue
            tt = [r.metrics.get("gpu__time_duration.sum") for r in rs]
            pts.append(dict(p, time_s_repeats=tt, time_s=statistics.median(tt),
                            dram_read_bytes=statistics.median(r.metrics.get("dram__bytes_read.sum") or 0 for r in rs),
                            dram_write_bytes=statistics.median(r.metrics.get("dram__bytes_write.sum") or 0 for r in rs),
                            global_read_bytes=statistics.median(
                                r.metrics.get("l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum") or 0 for r in rs),
                            sm_clock_Hz=statistics.median(r.metrics.get("sm__cycles_elapsed.avg.per_second") or 0
                                                          for r in rs)))
    loop = [p for p in P if p["kind"] == "loop"]
    if loop:
        pts += _measure_loop(out, sets, loop, deadline_s)
    occ = [p for p in P if p["kind"] == "occupancy"]
    if occ and pts:  # keep the timed points whatever happens to the occupancy pass
        write_json(out + ".timed.json", {"repeats": REPEATS, "sets": list(sets), "points": pts})
    if occ:
        try:
            rows, text = ncu.run_ncu([sys.executable, os.path.abspath(__file__), "--run-occupancy"],
                                     log_file=out + ".occupancy.ncu.log", metrics=list(OCCUPANCY_METRICS),
                                     kernel_regex="^_decode_split", timeout_s=300)
        except ncu.NcuError as exc:
            rows, text = [], f"NcuError: {exc}"
        for i, p in enumerate(occ):
            try:  # the model's figures (recomputed on the CPU side too); never lose the measurement for them
                q = dict(p, **_model_occupancy(p["problem"], p["schedule"]))
            except Exception as exc:
                q = dict(p, model_error=f"{type(exc).__name__}: {exc}"[:200])
            if i < len(rows) and rows[i].name == "_decode_split":
                q["ncu"] = {m: rows[i].metrics.get(m) for m in OCCUPANCY_METRICS}
                q["ctas_per_sm"] = min(v for m, v in q["ncu"].items() if m.startswith("launch__occupancy_limit")
                                       and v is not None)
            else:
                q["error"] = f"no _decode_split row {i} ({len(rows)} rows); tail: {text[-500:]}"
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
    write_json(out, {"provenance": prov, "method": __doc__, "repeats": REPEATS, "sets": list(sets), "points": pts})
    if any(q["kind"] == "loop" for q in pts):
        try:  # the run file is written; the table is a convenience
            print_loop_table(pts)
        except Exception as exc:
            print(f"loop table failed ({type(exc).__name__}: {exc}); `--loop-table {out}` prints it here")
    for q in pts:
        if "error" in q:
            print(q["id"], q["kind"], q["error"][:300])
            continue
        if q["kind"] == "loop":
            continue
        if q["kind"] == "occupancy":
            print(f"occupancy {q['variant']} ncu {q['ctas_per_sm']} CTAs/SM (smem "
                  f"{q['ncu'].get('launch__occupancy_limit_shared_mem')}, regs "
                  f"{q['ncu'].get('launch__occupancy_limit_registers')}); model {q.get('model_ctas_per_sm')}, "
                  f"nominal {q.get('nominal_ctas_per_sm')}")
            continue
        key = {k: v for k, v in q.items() if k in ("variant", "n_dep", "store", "head_dim", "rounds", "ctas",
                                                     "weighted", "stride_rows", "page_rows", "per_key",
                                                     "num_stages", "dots", "load")}
        print(f"{q['kind']:8s} {json.dumps(key):90s} {q['time_s'] * 1e6:9.2f} us")
    return 0


LOOP_METRICS = ("gpu__time_duration.sum", "dram__bytes_read.sum", "lts__t_bytes.sum",
                "sm__cycles_elapsed.avg.per_second", "lts__t_sectors.avg.pct_of_peak_sustained_elapsed")


def _measure_loop(out: str, sets, loop: list, deadline_s: float) -> list:
    """ncu over the ``loop`` points (one process, `run_loop`); rows mapped through its launch log."""
    from verification import ncu
    launch_log = out + ".loop.launches"
    try:
        rows, text = ncu.run_ncu([sys.executable, os.path.abspath(__file__), "--run-loop", "--sets", ",".join(sets),
                                  "--deadline-s", str(deadline_s), "--launch-log", launch_log],
                                 log_file=out + ".loop.ncu.log", metrics=list(LOOP_METRICS),
                                 kernel_regex="^_decode_split", timeout_s=deadline_s + 120)
    except ncu.NcuError as exc:
        rows, text = [], f"NcuError: {exc}"
    try:
        with open(launch_log) as f:
            ids = [int(x) for x in f.read().split()]
    except OSError:
        ids = []
    if len(rows) != len(ids):
        print(f"loop: ncu returned {len(rows)} launches, the log names {len(ids)}; tail:\n{text[-2000:]}")
    got: dict = {}
    for i, r in zip(ids, rows):
        got.setdefault(i, []).append(r)
    pts = []
    for p in loop:
        rs = got.get(p["id"], [])
        if not rs or {r.name for r in rs} != {"_decode_split"}:
            pts.append(dict(p, error=f"not measured ({len(rs)} rows; deadline or failure)"))
            continue
        med = (lambda m: statistics.median(r.metrics.get(m) or 0 for r in rs))
        tt = [r.metrics.get("gpu__time_duration.sum") for r in rs]
        pts.append(dict(p, time_s_repeats=tt, time_s=statistics.median(tt), dram_read_bytes=med("dram__bytes_read.sum"),
                        l2_bytes=med("lts__t_bytes.sum"), sm_clock_Hz=med("sm__cycles_elapsed.avg.per_second"),
                        l2_pct_of_peak=med("lts__t_sectors.avg.pct_of_peak_sustained_elapsed")))
    return pts


def pipeline_table(points: list, curve=None, stream_tile_compute_s: float = 0.0) -> list[dict]:
    """What the ``pipeline`` points say, per (CTAs, dots, tiles in flight B): the measured period per tile T; the
    compute per tile c (the 1-CTA point with the most tiles in flight and the same dots: compute-bound there);
    the memory latency the SASS order implies, L = B x T - c (tile i + B issued once tile i is computed: T =
    (L + c) / B when latency-bound; None where T is within 5 % of c: compute-bound, no latency seen); the achieved
    DRAM rate; and, given the dram_stream `curve` ((B/s, s), ...), its latency at that rate and that less
    `stream_tile_compute_s` (the stream loop's own compute, which its Little's-law "latency" holds)."""
    pts = [p for p in points if p.get("kind") == "pipeline" and p.get("load") and p.get("time_s")]
    by = {(p["ctas"], p["dots"], p["num_stages"] - 1): p for p in pts}
    comp = {}
    for (ctas, dots, b), p in by.items():
        if ctas == 1 and b == max(bb for (c2, d2, bb) in by if c2 == 1 and d2 == dots):
            comp[dots] = p["time_s"] / p["tiles"]
    rows = []
    for (ctas, dots, b), p in sorted(by.items()):
        T = p["time_s"] / p["tiles"]
        c = comp.get(dots)
        bw = p["dram_read_bytes"] / p["time_s"] if p.get("dram_read_bytes") else None
        r = dict(ctas=ctas, dots=dots, tiles_in_flight=b, period_s=T, compute_s=c, dram_Bps=bw,
                 latency_s=(b * T - c) if (c is not None and T > 1.05 * c) else None)
        if curve and bw:
            from memsim.calibration import curve_latency_s
            r["curve_latency_s"] = curve_latency_s(curve, bw)
            r["curve_less_stream_compute_s"] = r["curve_latency_s"] - stream_tile_compute_s
        rows.append(r)
    return rows


def print_loop_table(points: list) -> None:
    fmt = (lambda x, k=1e6: "-" if x is None else f"{x * k:.3f}")
    print("variant  mode     ctas on_sm waves  period_us  model_c_us  replay_us  intercept_us  dram_TB/s")
    for r in loop_table(points):
        print(f"{r['variant']:8s} {r['mode']:8s} {r['ctas']:4d} {r['ctas_on_sm']:5d} {r['waves']:5d}  "
              f"{fmt(r['period_s']):>9s}  {fmt(r['model_compute_s']):>10s}  {fmt(r['replay_s']):>9s}  "
              f"{fmt(r['intercept_s']):>12s}  {fmt(r['dram_Bps'], 1e-12):>9s}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="JSON file for the points (GPU + ncu)")
    ap.add_argument("--plan", action="store_true", help="list the points and exit (no GPU)")
    ap.add_argument("--sets", default=",".join(FIRST_SETS),
                    help=f"comma-separated point sets of {', '.join(SETS)} (default: the first run's)")
    ap.add_argument("--run-points", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run-occupancy", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run-loop", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--launch-log", help=argparse.SUPPRESS)
    ap.add_argument("--deadline-s", type=float, default=150.0,
                    help="loop set: launch no new point after this many seconds (default 150)")
    ap.add_argument("--loop-table", metavar="RUN", help="(no GPU) print what a run file's loop points say")
    ap.add_argument("--merge-loop", metavar="RUN",
                    help="(no GPU) write a loop run's compute per tile into memsim/decode_compiled_sm90.json")
    ap.add_argument("--merge-loop-add", metavar="RUN",
                    help="(no GPU) add a loop run's variants to the measured loops, class ratios unchanged")
    ap.add_argument("--merge-epilogue", metavar="RUN", nargs="+",
                    help="(no GPU) write the split CTA's epilogue from loop runs' intercepts into the compiled table")
    ap.add_argument("--pipeline-table", metavar="RUN",
                    help="(no GPU) print what a run file's pipeline points say, with the h100-sxm dram_stream curve")
    a = ap.parse_args(argv)
    if a.pipeline_table:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import memsim
        from memsim.inference import DeviceFacts
        f = DeviceFacts.from_hardware(memsim.load_hardware("h100-sxm"))
        with open(a.pipeline_table) as fh:
            doc = json.load(fh)
        print("ctas dots B  period_us  compute_us  TB/s  latency_us(B*T-c)  curve_us  curve-stream_compute_us")
        for r in pipeline_table(doc.get("points", []), f.latency_curve, f.stream_tile_compute_s):
            fmt = (lambda x, k=1e6: "-" if x is None else f"{x * k:.3f}")
            print(f"{r['ctas']:4d} {r['dots']:4d} {r['tiles_in_flight']:2d}  {fmt(r['period_s']):>9s}  "
                  f"{fmt(r['compute_s']):>10s}  {fmt(r['dram_Bps'], 1e-12):>4s}  {fmt(r['latency_s']):>17s}  "
                  f"{fmt(r.get('curve_latency_s')):>8s}  {fmt(r.get('curve_less_stream_compute_s')):>8s}")
        return 0
    if a.merge_epilogue:
        try:
            e = merge_epilogue(a.merge_epilogue)
        except (OSError, ValueError) as exc:
            ap.error(str(exc))
        print(f"epilogue {e['epilogue_s'] * 1e6:.3f} us from {len(e['epilogue_points'])} points")
        return 0
    if a.merge_loop_add:
        try:
            e = merge_loop_add(a.merge_loop_add)
        except (OSError, ValueError) as exc:
            ap.error(str(exc))
        print(len(e["variants"]), "variants;", e["added_runs"][-1])
        return 0
    if a.merge_loop:
        try:
            e = merge_loop(a.merge_loop)
        except (OSError, ValueError) as exc:
            ap.error(str(exc))
        print(json.dumps(e["class_ratio"]), len(e["variants"]), "variants")
        return 0
    if a.loop_table:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(a.loop_table) as fh:
            print_loop_table(json.load(fh).get("points", []))
        return 0
    if a.deadline_s <= 0:
        ap.error(f"--deadline-s must be positive, got {a.deadline_s}")
    sets = tuple(x for x in a.sets.split(",") if x)
    try:
        P = plan(sets)
    except ValueError as e:
        ap.error(str(e))
    if a.plan:
        for p in P:
            print(json.dumps(p))
        return 0
    if a.run_points:
        return run_points(sets)
    if a.run_occupancy:
        return run_occupancy()
    if a.run_loop:
        if not a.launch_log:
            ap.error("--run-loop needs --launch-log")
        return run_loop(sets, a.deadline_s, a.launch_log)
    if not a.out:
        ap.error("--out is required (or --plan)")
    return measure(a.out, sets, a.deadline_s)


if __name__ == "__main__":
    sys.exit(main())
