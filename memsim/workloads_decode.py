"""The decode model: the CTA tile streams of `decode_launches()` and a SimPy run of them on a preset.

    >>> from memsim.inference import DecodeProblem, DecodeSchedule
    >>> from memsim.workloads_decode import simulate_decode, rank_num_splits
    >>> p = DecodeProblem.uniform(1, 32, 8, 128, 8192)
    >>> r = simulate_decode(p, DecodeSchedule(num_splits=16), "h100-sxm")
    >>> r["total"]["dram_read_bytes"] >= p.kv_bytes()
    True

Steps are ``[reads, writes, flops, exps, tiles]`` as in `memsim.workloads` (accesses are L2 keys of
runs of K/V tiles of one sequence and KV head, with their exact byte counts), built tile by tile from
the split ranges; `memsim.analytic_decode` is the independent closed form of the same bytes.

Time mechanism (what decides the split count):
* a CTA runs its compiled tile loop (sm_90 SASS of `_decode_split`): ``DEPBAR.LE SB0, N`` at the top waits for tile
  i, the dots compute it, and only then are tile i + B's loads issued into the freed buffer, B = the tiles in
  flight read off that SASS (`pipeline_buffers`: N // commit groups per iteration + 1; 1 for num_stages 2 and for
  paged loops without ``page_prefetch``, whose table entries Triton pipelines in their own groups).  So a CTA
  streams one tile per max(compute, (loaded latency + compute) / B) (`loop_step_s`; B = 1: latency THEN copy +
  compute), compute = the loop's own compute per tile measured by the `loop` microbenchmark (the warp-issue replay
  of its compiled loop x the measured / replayed ratio, `loop_compute_s`; shared by the CTAs running on an SM,
  followed step by step), or for a one-buffer loop the tile's bytes at the stream microbenchmark's copy rate + the
  loop's issue time (`cta_tile_costs`); the resident CTAs load the memory system and its latency is the fixed point of Little's law
  on the *loaded-latency curve* of the dram_stream microbenchmark at the load they make
  (`buffered_stream_latency_s`), recomputed every model step (STEPS_PER_CTA steps per split: the grain);
* residency: the compiled kernel's shared memory (`split_shared_bytes`: Triton buffers num_stages - 1 tiles, or
  one) and registers decide the CTAs per SM;
* the per-CTA limit's issue time counts the warps of every CTA resident on the SM (4 schedulers per SM);
* all CTAs share the DRAM rate (the highest the microbenchmark reached) first come first served, they run in
  waves over ``num_sms x ctas_per_sm`` slots (shared memory and warps limit residency), and a launch
  costs ``launch_overhead_s``;
* the combine launch: one CTA per output row, one round trip per 32 partials it reads;
* fixed costs of small launches (measured by microbenchmarks, not fitted): the block scheduler starts one CTA
  every ``cta_dispatch_s`` (launch_gpu, empty kernels of 1k-68k CTAs: 0.6 ns), and every CTA first waits for
  the loads its addresses depend on (`dependent_loads_before_stream`: the sequence length, and a paged
  prefetching loop's first table entry), one unloaded DRAM latency each (dram_stream: 0.86 us);
* a pipelined loop's prologue and epilogue (the `loop` / `loop2` points): its first tiles arrive no earlier than one
  unloaded latency + their first-come-first-served place on the DRAM link, then the first tile computes; a step
  computes its K/V tiles (not the Q block it also reads); after the loop the CTA's epilogue (`loop_epilogue_s`).
L2: an LRU over the accesses (`memsim.engine.L2Cache`); the partials the split launch writes are read
by the combine launch from L2 unless `flush_l2` (ncu flushes before every kernel).  With `flush_l2` (as ncu
measures) a kernel also writes back the dirty lines ncu leaves in the L2 once its reads push them out
(`ncu_residue_write_bytes`; 2.4 MB on the H100 from the l2_thrash_drift microbenchmark).
"""
from __future__ import annotations

import math
from dataclasses import replace

from .inference import (fused_arrive_s, fused_combine, fused_combine_tail_s, COMBINE_SPLITS_PER_ROUND, buffered_stream_latency_s, last_tile_drain_s, loop_step_s, DecodeProblem, DecodeSchedule, DeviceFacts, block_m_for, candidate_splits, combine_block_s,
                        combine_round_s, cta_limit_Bps, cta_tile_costs, paged_latency_extra_s,
                        dependent_loads_before_stream, loop_epilogue_s, pipeline_buffers, read_keys,
                        split_regs_per_thread,
                        split_shared_bytes,
                        combine_regs_per_thread, COMBINE_NUM_WARPS, combine_first_round_s, combine_interval_s,
                        decode_extra_device_bytes, decode_launches, decode_sram_bytes_per_cta, heads_per_cta,
                        inflight_bytes_per_cta, nonempty_splits, queue_free_latency_s, split_ranges, units_per_seq,
                        GPC_ARBITRATION, GRAPH_KERNEL_S, gpc_sm_map)
from .schedule import STAT_BYTES

__all__ = ["simulate_decode", "rank_num_splits", "choose_num_splits", "decode_cta_steps", "COMBINE_SPLITS_PER_ROUND"]

LEVEL_KEYS = ("global_read_bytes", "global_write_bytes", "l2_read_bytes", "l2_write_bytes",
              "dram_read_bytes", "dram_write_bytes")


def _acc(key, nbytes):
    # one access covering one "block" (the engine's L2 keeps a bitmask of blocks per key)
    return (key, 1, nbytes, nbytes, -1, nbytes)


def decode_cta_steps(p: DecodeProblem, s: DecodeSchedule, launch_name: str, coords: tuple, run_tiles: int = 16):
    """Steps of one CTA: ``coords`` = (split, unit) for decode_split, (row, unit) for decode_combine.  With split_d,
    decode_split's second coordinate is unit x split_d + part: the CTA reads the unit's K tiles whole (one L2 key for
    all parts: one misses, the L2 serves the others) and its part's columns of V, and writes its columns of O or of
    its partial (part 0 the statistic too)."""
    d, e = p.head_dim, p.element_bytes
    g, U, S = heads_per_cta(p, s), units_per_seq(p, s), s.num_splits
    a, unit = coords
    part = 0
    if launch_name == "decode_split" and s.split_d > 1:
        unit, part = divmod(unit, s.split_d)
    b, u = divmod(unit, U)
    hk = u if s.pack_gqa else u // p.group_size
    nq = p.seqlens_q[b]
    rows = g * nq
    L = read_keys(p, s, b)  # (early_tile: the first tile whole)
    sd = s.split_d
    dv = d // sd
    if launch_name == "decode_combine":
        n = nonempty_splits(L, S, s.block_n)
        if a >= rows:
            return []
        if sd == 1:
            reads = [_acc(("part", unit, sp, a), (d + 1) * STAT_BYTES) for sp in range(n)]
        else:  # the row's columns as the split_d CTAs wrote them (part 0 with the statistic)
            reads = [_acc(("part", unit, sp, a, pt), (dv + (pt == 0)) * STAT_BYTES) for sp in range(n)
                     for pt in range(sd)]
        return [[reads, [_acc(("O", unit, a), d * e)], 0, 0, max(1, n)]]
    sp = a
    ranges = split_ranges(L, S, s.block_n)
    o_key = ("O", unit) if sd == 1 else ("O", unit, part)
    if sp >= len(ranges):
        if S == 1:  # empty cache: O = 0 written, nothing read
            return [[[], [_acc(o_key, rows * dv * e)], 0, 0, 1]]
        return []
    k0, k1 = ranges[sp]
    steps = []
    pro = [_acc(("Q", unit), rows * d * e)]
    bn, R = s.block_n, run_tiles
    tiles = list(range(k0, k1, bn))
    for i in range(0, len(tiles), R):
        c0, c1 = tiles[i], min(k1, tiles[min(i + R, len(tiles)) - 1] + bn)
        cols = c1 - c0
        reads = pro + [_acc(("K", b, hk, c0), cols * d * e),
                       _acc(("V", b, hk, c0) if sd == 1 else ("V", b, hk, c0, part), cols * dv * e)]
        if p.paged:
            ps = p.page_size
            ent = sum((min(t + bn, k1) - 1) // ps - t // ps + 1 for t in tiles[i:i + R])
            reads.append(_acc(("BT", b, c0), 4 * ent))
        steps.append([reads, [], 2 * rows * cols * (d + dv), rows * cols, len(tiles[i:i + R])])
        pro = []
    if S == 1:
        steps[-1][1] = [_acc(o_key, rows * dv * e)]
    elif sd == 1:
        steps[-1][1] = [_acc(("part", unit, sp, m), (d + 1) * STAT_BYTES) for m in range(rows)]
    else:
        steps[-1][1] = [_acc(("part", unit, sp, m, part), (dv + (part == 0)) * STAT_BYTES) for m in range(rows)]
    return steps


def _coords(grid, idx):
    return idx % grid[0], (idx // grid[0]) % grid[1]


def _run_launch(hw, p, s, launch, l2, *, rate_Bps, fill_s, run_tiles, dram_Bps, ctas_per_sm, memory=None,
                inflight_Bps=None, hit_Bps=None, dispatch_s=0.0, head_s=0.0, buffers=1, round_bytes=None,
                round_s=0.0, drain_s=0.0, tile_costs=None, first_fcfs_s=None, epilogue_s=0.0, count_tiles=False,
                first_round=None, first_cap_s=None, gpcs=None):
    """SimPy run of one launch; returns its stats dict.

    memory(load bytes) -> (latency s, per-CTA limit B/s): the memory system at a load of `load` bytes in flight
    from DRAM over all streaming CTAs (None: every CTA streams at rate_Bps and fills in fill_s).  A CTA keeps
    min(inflight_Bps, its bytes) in flight; its misses go at in-flight / latency (at most the limit), its L2
    hits at hit_Bps (None: only the L2 link limits them); the first bytes arrive one latency after its start
    (the first step pays what the in-flight window does not already cover of it).
    dispatch_s: the block scheduler starts one CTA every dispatch_s (whole GPU); head_s: what a CTA waits for
    before its first step (`dependent_loads_before_stream` round trips).
    round_bytes, round_s: a non-pipelined round loop (the combine): a step's first round_bytes go at the rate, every
    further round costs round_s (`combine_round_s`, the rounds microbenchmark).  drain_s: what a CTA computes after
    its last bytes arrived, before its writes (`last_tile_drain_s`).
    tile_costs: (seconds per copied byte, issue seconds) of a tile, or a function of the CTAs sharing an SM (the
    running CTAs / num_sms, at least 1 and at most ctas_per_sm: the compute follows the CTAs as the load does).
    first_fcfs_s (pipelined split loops; None: off): a CTA's first tiles are requested at once when its stream starts
    and arrive no earlier than this unloaded latency + their first-come-first-served place on the DRAM link; the
    first tile's compute follows them (`memsim/MODEL.md` decode, "first tiles in their DRAM queue place").
    epilogue_s: what a split CTA spends after its loop and last tile's dots, before its writes end
    (`inference.loop_epilogue_s`).  count_tiles: a step's loop computes its K/V tiles (the step's tile count), not
    ceil(bytes / tile) -- the Q block and table entries a first step also reads are no tile to compute.
    first_cap_s (with first_fcfs_s): the first step's mean-field latency at most this (`queue_free_latency_s`): its
    queue is the FCFS link's place, not the curve's queue at the launch's whole load.
    first_round (the combine; None: off): bytes -> seconds of a CTA's whole first round of partials, load to fold
    (`inference.combine_first_round_s`), in place of one latency + the bytes at the rate, where its partials miss
    the L2 (the probes' case: ncu flushes it); L2-resident partials keep one latency + the bytes at the rate.
    gpcs ((SMs per GPC, per-GPC in-flight cap bytes); None: off): every slot is an SM's (slot i on SM i mod num_sms,
    SMs dealt to the GPCs round-robin), a CTA's compute is shared by the CTAs running on ITS SM, and the DRAM rate is
    shared by GPC: a GPC's share grows with its CTAs' bytes in flight up to the cap, then stops (`gpc_latency_factor`;
    memsim/MODEL.md decode, "the last partial wave")."""
    import simpy

    from .engine import Link
    env = simpy.Environment()
    dram = Link(env, dram_Bps, "dram")
    l2link = Link(env, hw.l2_bw_Bps, "l2")
    merge = 1.0 - hw.l2_read_request_fraction
    st = dict.fromkeys(LEVEL_KEYS, 0)
    st.update(flops=0, exp_count=0)
    n = launch.num_ctas
    nxt = iter(range(n))
    end = [0.0]
    next_start = [0.0]
    load = [0.0]  # bytes in flight from DRAM over the streaming CTAs (each CTA's in-flight x its miss share)
    running = [0]  # CTAs started and not ended
    gpc_of = gpc_sm_map(gpcs[0]) if gpcs else None
    gload = [0.0] * len(gpcs[0]) if gpcs else None  # load per GPC
    on_sm = [0] * hw.num_sms  # CTAs running per SM (gpcs only)
    # each GPC's port to the memory: its share of the DRAM rate, re-set at every booking (`gpc_share`)
    gport = [Link(env, dram_Bps, f"gpc{i}") for i in range(len(gpcs[0]))] if gpcs else None

    def cta(idx, sm=None):
        if dispatch_s:
            t0 = max(env.now, next_start[0])
            next_start[0] = t0 + dispatch_s
            if t0 > env.now:
                yield env.timeout(t0 - env.now)
        steps = decode_cta_steps(p, s, launch.name, _coords(launch.grid, idx), run_tiles)
        running[0] += 1
        g = None
        if gpc_of is not None and sm is not None:
            g = gpc_of[sm]
            on_sm[sm] += 1
        if head_s:
            yield env.timeout(head_s)
        port = env.now
        first = True
        last_c = 0.0
        total = sum(acc[2] for st_ in steps for acc in st_[0])
        # in flight: up to `buffers` K/V tiles (inflight_Bps is one tile's bytes)
        mine = min(buffers * inflight_Bps, total) if (memory is not None and inflight_Bps) else 0.0
        share = 1.0 if total else 0.0
        load[0] += mine * share
        if g is not None:
            gload[g] += mine * share
        for reads, writes, flops, exps, _tiles in steps:
            if reads:
                if port > env.now:
                    yield env.timeout(port - env.now)
                t = env.now
                gb = miss = 0
                for acc in reads:
                    gb += acc[2]
                    miss += l2.read(acc)
                wb = l2.evict() if l2.used > l2.capacity else 0
                l2req = gb - min(gb - miss, int(merge * gb))
                st["global_read_bytes"] += gb
                st["l2_read_bytes"] += l2req
                st["dram_read_bytes"] += miss
                st["dram_write_bytes"] += wb
                step_s = None
                if memory is not None:
                    if gb:
                        load[0] += mine * (miss / gb - share)
                        if g is not None:
                            gload[g] += mine * (miss / gb - share)
                        share = miss / gb
                    lat, limit = memory(load[0], first_cap_s if (first and first_fcfs_s is not None) else None)
                    if g is not None:
                        lat *= gpc_latency_factor(gload, g, load[0], gpcs[1])
                    if mine and round_bytes is None:
                        # compute of a tile: its copied bytes at the copy rate + the loop's issue (tile_costs);
                        # shared by the CTAs on its SM (gpcs), else by the running CTAs spread over the SMs
                        n_sm = (on_sm[sm] if g is not None and SM_BOUND_COMPUTE
                                else max(1, -(-running[0] // hw.num_sms)))
                        costs = (tile_costs(min(ctas_per_sm, n_sm))
                                 if callable(tile_costs) else tile_costs)
                        per_byte, issue = costs if costs else (1.0 / limit, 0.0)
                        last_c = min(miss, inflight_Bps) * per_byte + issue
                        kv = min(miss, _tiles * inflight_Bps) if count_tiles else miss
                        step_s = loop_step_s(kv, inflight_Bps, buffers, lat, last_c, first)
                    rate = min(limit, mine / lat) if mine else limit
                    fill = max(0.0, lat - mine / rate) if mine else lat
                else:
                    rate, fill = rate_Bps, fill_s
                own = t + (step_s if step_s is not None else miss / rate) + ((gb - miss) / hit_Bps if hit_Bps else 0.0)
                if round_s and round_bytes and gb > round_bytes:
                    own = t + min(miss, round_bytes) / rate + (-(-gb // round_bytes) - 1) * round_s
                # the whole first round (its latency included), then rounds -- as the probes measured it, partials
                # from DRAM (ncu flushes the L2); partials found in the L2 (flush_l2=False) keep the latency form
                if first and first_round is not None and miss:
                    own = (t + first_round(min(gb, round_bytes or gb))
                           + (max(0, -(-gb // round_bytes) - 1) * round_s if round_bytes else 0.0))
                    fill = 0.0
                fcfs = first and first_fcfs_s is not None and step_s is not None
                # first tiles (fcfs): one unloaded latency, then their place in the DRAM's queue, then the compute
                t_req = t + first_fcfs_s if fcfs else t
                arrived = dram.book(t_req, miss + wb)
                if g is not None and miss:
                    # the port's backlog re-timed at its new share (the bookings already made keep their times)
                    port_g, rate_g = gport[g], dram_Bps * gpc_share(gload, g, gpcs[1])
                    if port_g.free_at > t_req:
                        port_g.free_at = t_req + (port_g.free_at - t_req) * port_g.rate / rate_g
                    port_g.rate = rate_g
                    arrived = max(arrived, port_g.book(t_req, miss))
                arrived += last_c if fcfs else 0.0
                done = max(arrived, l2link.book(t, l2req), own)
                if first:
                    done += fill if step_s is None else 0.0  # (the loop's first step starts with its latency)
                    first = False
                port = done
            st["flops"] += flops
            st["exp_count"] += exps
            if writes:
                if drain_s and not first:  # the last tile's dots; the loop step already computed it for tile/limit
                    port += max(0.0, drain_s - last_c)
                if epilogue_s and not first:  # after the loop (the `loop` points' intercepts)
                    port += epilogue_s
                if port > env.now:
                    yield env.timeout(port - env.now)
                gw = 0
                for acc in writes:
                    gw += acc[2]
                    l2.write(acc)
                wb = l2.evict()
                st["global_write_bytes"] += gw
                st["l2_write_bytes"] += gw
                st["dram_write_bytes"] += wb
                port = max(l2link.book(env.now, gw), dram.book(env.now, wb))
        if port > env.now:
            yield env.timeout(port - env.now)
        load[0] -= mine * share
        running[0] -= 1
        if g is not None:
            gload[g] -= mine * share
            on_sm[sm] -= 1
        end[0] = max(end[0], env.now)

    def slot(sm):
        for idx in nxt:
            yield from cta(idx, sm)

    for i in range(min(n, hw.num_sms * ctas_per_sm)):
        env.process(slot(i % hw.num_sms))
    env.run()
    st["dram_write_bytes"] += int(hw.l2_eager_writeback_fraction * l2.dirty_bytes())
    st["time_s"] = end[0] + hw.launch_overhead_s
    return st


def ncu_residue_write_bytes(dram_read_bytes: float, residue_bytes: float, l2_bytes: int) -> float:
    """DRAM writes of the dirty lines ncu leaves in the L2 at a kernel's start (`calibration.ncu_dirty_residue_bytes`):
    the oldest lines of an LRU over the whole L2, written back as the kernel's DRAM reads push them out (all of
    them once reads + residue exceed the L2).  Measured decode kernels write back part of it already at 25-35 MB
    of reads (0.36 MB at 26 MB, 1.2-1.6 MB at 34 MB): the L2 is not one LRU -- not modelled."""
    return min(residue_bytes, max(0.0, dram_read_bytes + residue_bytes - l2_bytes))


def _memory_at(facts: DeviceFacts, inflight: float, limit_Bps: float | None, buffers: int = 1,
               extra_latency=None):
    """load bytes -> (latency, per-CTA limit): Little's law on the facts' loaded-latency curve, the load counted
    as load / (buffers x inflight) CTAs, each keeping `buffers` tiles of `inflight` bytes in flight and computing a
    tile in inflight / limit (memoised in 4 KB steps; `buffered_stream_latency_s`).  at(load, cap): the curve's
    latency at most `cap` (a first step's: its queue is the FCFS link's, `queue_free_latency_s`)."""
    memo = {}
    limit = limit_Bps or float("inf")

    def at(load, cap=None):
        k = max(1, round(load / 4096))
        if cap is not None:
            lat, lim = at(load)
            extra = extra_latency(k * 4096 / (max(1, buffers) * inflight)) if extra_latency is not None else 0.0
            return min(lat - extra, cap) + extra, lim
        if k not in memo:
            n = k * 4096 / (max(1, buffers) * inflight)
            if facts.latency_curve and limit_Bps:
                lat = buffered_stream_latency_s(facts, n, inflight, buffers, limit_Bps)
            else:
                lat = facts.stream(n, inflight, limit_Bps)[2]
            if extra_latency is not None:
                lat += extra_latency(n)
            memo[k] = (lat, limit)
        return memo[k]
    return at


#: the first step's mean-field latency capped at the curve's latency before its queue (`queue_free_latency_s`), its
#: queue left to the FCFS link: NOT adopted (off).  The session-9 probes (multi-wave S = 1 / 3 / 4, paged, ragged, 4
#: warps) say it is right there (split launches +8..+35 % -> -6..+12 %), but three 8-warp multi-wave cases get slower
#: on the card than it says and the 114 measured cases worse (5.4 -> 5.8 % median, 86 -> 84 within 10 %);
#: notes/decode.md "State after session 9"
QUEUE_CAP_FIRST_STEP = False

#: the GPC arbitration and SM-bound slots on (False: the mean field over all SMs, as before session 11)
GPC_MODEL = True
#: with GPC_MODEL: a CTA's compute shared by the CTAs running on its own SM (False: the running CTAs spread over all
#: SMs, as before)
SM_BOUND_COMPUTE = False
# GPC_ARBITRATION, gpc_sm_map and GRAPH_KERNEL_S live in memsim.inference (the kernels' split rule uses them too)


def gpc_share(gload, g: int, cap: float) -> float:
    """GPC g's share of the DRAM rate: min(its bytes in flight, cap) over the sum of that over the GPCs."""
    capped = sum(min(x, cap) for x in gload if x > 0)
    return min(gload[g], cap) / capped if capped > 0 and gload[g] > 0 else 1.0


def gpc_latency_factor(gload, g: int, load: float, cap: float) -> float:
    """Latency of a CTA of GPC g over the mean field's: the DRAM rate goes to the GPCs in proportion to min(their
    bytes in flight, cap), and within a GPC to its CTAs in proportion to their bytes in flight.  1 while no GPC is
    over the cap (every CTA then gets in-flight / latency, the mean field)."""
    mine = gload[g]
    if load <= 0 or mine <= 0:
        return 1.0
    capped = sum(min(x, cap) for x in gload if x > 0)
    return (capped / load) / (min(mine, cap) / mine)



#: model steps per CTA of the longest split (the grain): a step's rate is fixed when it starts, so a CTA that starts
#: under a high load keeps that load's latency for its whole step; 32 steps follow the load as CTAs end (the ragged
#: suite case: 16-tile steps 79.4 us, 1-tile steps 61.8, 32 steps per CTA 61.9; measured 58.5)
STEPS_PER_CTA = 32
#: at most this many K/V tiles x CTAs per model step in total (simulation time: ~5 us per step on these machines)
MAX_STEPS = 200_000


def default_run_tiles(problem: DecodeProblem, schedule: DecodeSchedule, longest_tiles: int,
                      l2_bytes: int | None = None, num_sms: int = 132) -> int:
    """Tiles per model step: the longest split in STEPS_PER_CTA steps, coarser when the launch would take more than
    MAX_STEPS steps in all.  With split_d (and `l2_bytes`), finer where a step of every resident CTA's K would not
    fit half the L2: the CTAs of a unit share their K lines through the L2 in lockstep on the card (a follower's hits
    let it catch up), and a step of more K than the L2 holds evicts a line before its partner's step reads it (8 x 128k
    at 32 steps: 1.48 x the DRAM reads; session 14)."""
    tiles = sum(-(-(k1 - k0) // schedule.block_n) for L in problem.read_seqlens_kv
                for k0, k1 in split_ranges(L, schedule.num_splits, schedule.block_n)) * units_per_seq(problem, schedule)
    run = max(1, -(-longest_tiles // STEPS_PER_CTA), -(-tiles // MAX_STEPS))
    if schedule.split_d > 1 and l2_bytes:
        ctas = min(tiles * schedule.split_d, num_sms * 2)  # (a bound on the CTAs resident together)
        k_tile = schedule.block_n * problem.head_dim * problem.element_bytes
        run = max(1, min(run, int(l2_bytes / 2 // max(1, ctas * k_tile))))
    return run


def simulate_decode(problem: DecodeProblem, schedule: DecodeSchedule, hardware="h100-sxm", *, flush_l2: bool = True,
                    run_tiles: int | None = None, context: str = "ncu") -> dict:
    """Predicted bytes per level and time of every launch, in the record shape of SimResult.to_dict()
    (`total` has time_s = gpu_time_s, the kernels back to back, and host_time_s, the Python launch cost).

    run_tiles: K/V tiles per model step (the grain); None = 16, or more so that no CTA has over 8 steps.
    Bytes do not depend on it.
    context: "ncu" (each kernel as ncu times it: the preset's launch_overhead_s, an empty kernel's
    gpu__time_duration) or "graph" (the launches replayed in a CUDA graph, as serving runs decode and the benchmarks
    time it: each kernel costs `GRAPH_KERNEL_S` of its preset instead; needs flush_l2=False)."""
    from .engine import L2Cache
    from .hardware import load_hardware
    if not isinstance(problem, DecodeProblem) or not isinstance(schedule, DecodeSchedule):
        raise TypeError("simulate_decode takes a memsim.inference.DecodeProblem and DecodeSchedule")
    from .schedule import require_bool
    require_bool("flush_l2", flush_l2)
    hw = load_hardware(hardware)
    if context not in ("ncu", "graph"):
        raise ValueError(f"simulate_decode context must be 'ncu' or 'graph', got {context!r}")
    if context == "graph":
        if flush_l2:
            raise ValueError("context='graph' replays the launches back to back: pass flush_l2=False")
        if hw.name not in GRAPH_KERNEL_S:
            raise ValueError(f"no CUDA-graph kernel cost measured for {hw.name!r} (GRAPH_KERNEL_S has "
                             f"{sorted(GRAPH_KERNEL_S)}): run benchmarks/decode_graph_gpu.py there")
        hw = replace(hw, launch_overhead_s=GRAPH_KERNEL_S[hw.name])
    facts = DeviceFacts.from_hardware(hw)
    smem = decode_sram_bytes_per_cta(problem, schedule)
    if smem > hw.smem_per_block_bytes:
        from .schedule import ScheduleError
        raise ScheduleError(f"decode with block_n={schedule.block_n}, num_stages={schedule.num_stages}, "
                            f"head_dim={problem.head_dim} needs {smem} bytes of shared memory per CTA; "
                            f"{hw.name} allows {hw.smem_per_block_bytes}")
    if run_tiles is None:
        longest = max(len(split_ranges(L, schedule.num_splits, schedule.block_n)) and
                      -(-(-(-L // schedule.num_splits)) // schedule.block_n) for L in problem.read_seqlens_kv)
        run_tiles = default_run_tiles(problem, schedule, longest, hw.l2_effective_bytes, hw.num_sms)
    l2 = L2Cache(hw.l2_effective_bytes)
    from .calibration import calibration_for, ncu_dirty_residue_bytes
    residue = (ncu_dirty_residue_bytes(calibration_for(hw), hw.l2_bytes) or 0.0) if flush_l2 else 0.0
    kernels = []
    d = problem.head_dim
    for L in decode_launches(problem, schedule):
        if flush_l2:
            l2.flush()
        round_bytes, round_s, drain = None, 0.0, 0.0
        first_round, dispatch = None, facts.cta_dispatch_s
        if L.name == "decode_split":
            buffers = pipeline_buffers(problem, schedule)
            serial = buffers <= 1
            per_sm = facts.ctas_per_sm(split_shared_bytes(problem, schedule), schedule.num_warps,
                                       split_regs_per_thread(problem, schedule))
            resident = min(L.num_ctas, hw.num_sms * per_sm)
            inflight = inflight_bytes_per_cta(problem, schedule)
            _, rate, lat = facts.stream(resident, inflight)  # (reported: the full-occupancy figures)
            on_sm = -(-resident // hw.num_sms)
            costs = cta_tile_costs(problem, schedule, facts, ctas_on_sm=on_sm)
            # the per-CTA limit: a whole tile per its compute (the measured loop compute where there is one)
            limit = (inflight / (inflight * costs[0] + costs[1]) if costs
                     else cta_limit_Bps(problem, schedule, facts, ctas_on_sm=on_sm))
            # scattered pages cost latency only where tiles are in flight together (the gather microbenchmark,
            # pipelined); a one-buffer loop waits a full latency per tile anyway (dram_stream layout points)
            memory = _memory_at(facts, inflight, limit, buffers,
                                None if serial else lambda n: paged_latency_extra_s(hw.name, problem.page_size, n))
            hit = limit
            # (+ with the fused combine: every CTA's arrival on its unit's counter, one atomic round trip)
            drain = last_tile_drain_s(problem, schedule, hw, on_sm) + fused_arrive_s(schedule, facts)
            memo_costs: dict = {}

            def tile_costs(n, problem=problem, schedule=schedule, memo_costs=memo_costs):
                if n not in memo_costs:
                    memo_costs[n] = cta_tile_costs(problem, schedule, facts, ctas_on_sm=n)
                return memo_costs[n]
            # a CTA's prologue and epilogue, pipelined loops (where the `loop` / `loop2` points measured them)
            first_fcfs = None if serial else facts.mem_latency_s
            epilogue = 0.0 if serial else loop_epilogue_s(problem, schedule, facts)
        else:
            serial, buffers, tile_costs = False, 1, None
            first_fcfs, epilogue = None, 0.0
            lat = facts.mem_latency_s  # a few partials per CTA: the unloaded latency
            rate = COMBINE_SPLITS_PER_ROUND * (d + 1) * STAT_BYTES / lat
            per_sm = facts.ctas_per_sm(0, COMBINE_NUM_WARPS, combine_regs_per_thread(problem, schedule))
            first_round = (None if combine_first_round_s(facts, 0.0) is None
                           else (lambda nbytes: combine_first_round_s(facts, nbytes)))
            dispatch = max(facts.cta_dispatch_s, combine_interval_s(problem, facts) / hw.num_sms)
            memory, inflight, hit = None, None, None
            round_bytes = combine_block_s(schedule.num_splits) * (d + 1) * STAT_BYTES
            round_s = combine_round_s(hw.name, round_bytes, min(L.num_ctas, hw.num_sms * per_sm)) or 0.0
        head = dependent_loads_before_stream(problem, schedule, L.name) * facts.mem_latency_s
        st = _run_launch(hw, problem, schedule, L, l2, rate_Bps=rate, fill_s=lat, run_tiles=run_tiles,
                         dram_Bps=facts.dram_Bps, ctas_per_sm=per_sm, memory=memory, inflight_Bps=inflight,
                         hit_Bps=hit, dispatch_s=dispatch, head_s=head,
                         buffers=buffers, round_bytes=round_bytes, round_s=round_s, drain_s=drain,
                         tile_costs=tile_costs, first_fcfs_s=first_fcfs, epilogue_s=epilogue,
                         count_tiles=first_fcfs is not None, first_round=first_round,
                         first_cap_s=(queue_free_latency_s(facts) if QUEUE_CAP_FIRST_STEP and first_fcfs is not None
                                      else None),
                         gpcs=(GPC_ARBITRATION.get(hw.name) if GPC_MODEL and L.name == "decode_split" else None))
        st["ncu_residue_write_bytes"] = res = ncu_residue_write_bytes(st["dram_read_bytes"], residue, hw.l2_bytes)
        st["dram_write_bytes"] += res
        st.update(name=L.name, grid=list(L.grid), num_ctas=L.num_ctas, ctas_per_sm=per_sm, cta_stream_Bps=rate,
                  latency_s=lat, head_s=head, cta_dispatch_s=dispatch, round_s=round_s, drain_s=drain,
                  epilogue_s=epilogue)
        kernels.append(st)
    if fused_combine(schedule):  # the split launch's own: its last CTA per unit merges and writes O
        split = kernels[0]
        for k, v in _fused_combine_record(problem, schedule, facts).items():
            split[k] += v
        split["fused_combine_s"] = _fused_combine_record(problem, schedule, facts)["time_s"]
    total = {k: sum(x[k] for x in kernels) for k in LEVEL_KEYS + ("flops", "exp_count", "time_s")}
    total["gpu_time_s"] = total["time_s"]
    total["host_time_s"] = len(kernels) * hw.host_launch_s
    total["kv_read_Bps"] = problem.kv_bytes() / total["gpu_time_s"]
    return {"hardware": hw.name, "problem": problem.to_dict(), "schedule": schedule.to_dict(), "kernels": kernels,
            "total": total, "peak_sram_per_cta_bytes": smem,
            "extra_device_bytes": decode_extra_device_bytes(problem, schedule),
            "memory_source": facts.source}


def _fused_combine_record(p: DecodeProblem, s: DecodeSchedule, facts: DeviceFacts) -> dict:
    """What the fused combine (DecodeSchedule.combine_fused) adds to the split launch's record: its time, what the
    last split CTA of a unit spends after counting itself in (`fused_combine_tail_s`); its bytes, the combine launch's
    (the partials read from the L2, O written to it)."""
    d, e = p.head_dim, p.element_bytes
    g, units = heads_per_cta(p, s), units_per_seq(p, s)
    part = sum(nonempty_splits(L, s.num_splits, s.block_n) * g * nq * (d + 1) * STAT_BYTES
               for L, nq in zip(p.read_seqlens_kv, p.seqlens_q)) * units
    out = sum(p.seqlens_q) * p.heads_q * d * e
    return dict(global_read_bytes=part, l2_read_bytes=part, global_write_bytes=out, l2_write_bytes=out,
                time_s=fused_combine_tail_s(p, s, facts))


def rank_num_splits(problem: DecodeProblem, schedule: DecodeSchedule, hardware="h100-sxm", candidates=None,
                    flush_l2: bool = False, context: str = "graph") -> list:
    """[(num_splits, predicted GPU time, result)] for each candidate split count, fastest first.

    flush_l2=False by default: in a real decode step the combine launch finds the partials in L2; context "graph":
    the split and combine launches replayed in a CUDA graph, as serving runs them (`simulate_decode`)."""
    cands = candidates or candidate_splits(problem, schedule)
    out = []
    for c in cands:
        r = simulate_decode(problem, replace(schedule, num_splits=c), hardware, flush_l2=flush_l2,
                            context=context if not flush_l2 else "ncu")
        out.append((c, r["total"]["gpu_time_s"], r))
    return sorted(out, key=lambda x: (x[1], x[0]))


def choose_num_splits(problem: DecodeProblem, schedule: DecodeSchedule, hardware="h100-sxm") -> tuple:
    """(best split count, why): the model's ranking explained (occupancy against combine traffic), the launches in a
    CUDA graph over a cache that is not in the L2 (as serving runs decode)."""
    ranked = rank_num_splits(problem, schedule, hardware)
    c, t, r = ranked[0]
    one = next(x for x in ranked if x[0] == 1)
    sp = r["kernels"][0]
    comb = r["kernels"][1]["time_s"] if len(r["kernels"]) > 1 else 0.0
    why = (f"num_splits={c}: {sp['num_ctas']} split CTAs ({sp['ctas_per_sm']} per SM), each streaming at most "
           f"{sp['cta_stream_Bps'] / 1e9:.0f} GB/s; split {sp['time_s'] * 1e6:.1f} us + combine {comb * 1e6:.1f} us "
           f"= {t * 1e6:.1f} us; 1 split: {one[1] * 1e6:.1f} us ({one[2]['kernels'][0]['num_ctas']} CTAs)")
    return c, why



def _register():
    from .workloads import workload

    @workload("decode", "fwd")
    def decode_workload(ctx):
        """{launch name: steps(coords)} of a (DecodeProblem, DecodeSchedule, run_tiles) context."""
        p, s, run = ctx

        def split(co):
            return decode_cta_steps(p, s, "decode_split", (co["split"], co["unit"]), run)

        def combine(co):
            return decode_cta_steps(p, s, "decode_combine", (co["row"], co["unit"]), run)
        return {"decode_split": split, "decode_combine": combine}


_register()
