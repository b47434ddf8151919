"""What one launch's CTAs cost the SM: occupancy from the compiled kernel, dot path, spill traffic.

The compiled Triton kernel decides three things the schedule alone does not:

* **registers per thread** -> how many CTAs fit on an SM (with shared memory, warps and the CTA cap).
  Registers are allocated per warp in units of ``REG_ALLOC_UNIT`` per thread (CUDA occupancy calculator,
  compute capability 8.x/9.x: 256 registers per warp).
* **spilled bytes per thread** -> local-memory traffic: spill stores and loads go through L1 to L2 every
  loop iteration (DESIGN.md: a spilling fp32 flash2 forward moved 2.2 GB global but 14.2 GB through L2).
  They count at the L2 level, not the global level (ncu ``l1tex__t_bytes`` global vs
  ``lts__t_sectors_srcunit_tex``), and their L2 transfers take time on the L2 link.
* the **dot path**: fp16/bf16 dots run on the tensor cores; fp32 dots are IEEE (``kernels._common
  .dot_precision``) and Triton runs them on the FMA pipes, about 8x slower than TF32 tensor cores.
* the **issue limit**: every instruction of the tile loop (its SASS, `kernels.sass`) must be issued by the
  SM's warp schedulers, in order per warp, each after the stall its control bits ask for and after the
  scoreboards it waits on are released.  With the calibration's `issue` figures the compiled table carries
  the replay of the loop (`memsim.warp_issue`: cycles per trip with c CTAs resident) and of the code outside
  it (prologue, epilogue, the masked tile: `cta_fixed_s`, once per CTA); without them, a loop iteration of a
  CTA of w warps takes at least instructions x w / (min(4, resident warps) x clock).  Few warps cannot hide
  each other's waits: small tiles with 1-2 warps, fp32 and spilling kernels are latency-bound here.  A loop or
  block of code larger than the instruction caches takes at least its fetch (calibration icache_curve), and a CTA
  that builds TMA descriptors waits for them before its first loads (`cta_start_s`, calibration tma_descriptor_s).

The facts come from `memsim.compiled` (a table produced by ``python -m kernels.compiled_facts`` from
the sm_90 compiler without a GPU).  When a launch is not in the table the hardware preset's
``regs_per_thread`` and no spills are assumed, and `LaunchCost.facts_source` says so.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .calibration import Calibration, dot_flops_per_sm_s, l2_link_Bps, local_Bps_per_sm
from .compiled import MIN_LOOP_INSTRUCTIONS
from . import fetch_run
from .issue_fit import fetch_cycles
from .hardware import Hardware
from . import spill_chain, spill_fetchcurve, spill_reuse, spill_rowmask, spill_streams
from .local_memory import LocalMemory, local_memory
from .spill_masked import trip_spill_factors

#: registers are allocated per warp in multiples of 8 per thread (256 per warp) on sm_80/sm_90
REG_ALLOC_UNIT = 8


@dataclass(frozen=True)
class LaunchCost:
    name: str
    num_warps: int
    regs_per_thread: int
    ctas_per_sm: int
    occupancy_limit: str
    #: seconds per dot FLOP on one SM (one CTA alone; co-resident CTAs share the SM's units)
    sec_per_flop: float
    sec_per_exp: float
    #: the issue limit: seconds the SM's schedulers need to issue one tile-loop iteration of one CTA (its SASS
    #: instruction count x warps / (warp issue rate x clock)); 0 where the table has no tile loop.  With the
    #: replay: its register loads waited on for an L2 hit
    issue_s_per_tile: float
    #: local-memory bytes that reach L2 per loop iteration (tile) of one CTA: spill stores (writes), loads
    spill_l2_write_bytes_per_tile: int
    spill_l2_read_bytes_per_tile: int
    #: where the spills live (memsim.local_memory): fractions of the spill L2 traffic that reach DRAM
    spill_dram_write_fraction: float
    spill_dram_read_fraction: float
    #: "compiled sm_90 table: <source>" or "assumed: preset regs_per_thread, no spills (not in table)"
    facts_source: str
    #: the spill latency limit: seconds one CTA's turn needs for its local loads and stores of one tile-loop
    #: iteration at the SM's measured local-memory rate for the warps resident on it (calibration
    #: local_rate_curve); 0 without spills or without that curve
    local_s_per_tile: float = 0.0
    #: the spill figures "per tile" are the whole CTA's (a kernel with no tile loop in its SASS): the engine
    #: spreads them over the CTA's tiles
    spill_once_per_cta: bool = False
    #: L2 link time of one spill-store byte, in tile-traffic bytes: the L2's rate / the measured spill-store
    #: rate (calibration spill_store_l2_Bps; 1 without it)
    spill_store_l2_weight: float = 1.0
    #: the placement itself (None without spills)
    local: LocalMemory | None = None
    #: MMA FLOPs one CTA issues per trip of the SASS tile loop (information: the engine books one trip per tile)
    trip_mma_flops: float = 0.0
    #: seconds of the SM's turn one CTA needs for its code outside the tile loop (the replay, once per CTA)
    cta_fixed_s: float = 0.0
    #: "replay" (the SASS replay, memsim.warp_issue), "instructions" (count / issue rate) or "" (no loop facts)
    issue_source: str = ""
    #: seconds a CTA waits before its first loads go out: its device-built TMA descriptors (calibration
    #: tma_descriptor_s x the SASS's UTMACCTL count); latency, not SM time (co-resident CTAs overlap it)
    cta_start_s: float = 0.0
    #: `issue_s_per_tile` with every register load of the tile loop a DRAM miss (the replay's second pass; 0:
    #: the loop waits on no register load, or no load latencies calibrated).  The engine mixes the two by each
    #: step's share of L2 misses, and no longer adds its own per-tile latency to such a loop's compute (the
    #: replay has placed those waits)
    issue_s_per_tile_dram: float = 0.0
    #: seconds of the SM's turn a persistent CTA needs between two of its tiles (the walk's code outside the tile
    #: loop: the next tile's set-up, the epilogue; the replay), booked with each step that stores a tile's output
    tile_fixed_s: float = 0.0
    #: bytes L1's tag stage counts per byte its SPLIT loads bring (the compiled tile loop's `l1_split_factor`: a
    #: chunk split into k pieces counts k times; 1.0 where unknown or none): memsim.sim applies it to the bytes of
    #: the tensors the workload names as split (LaunchWork.split_load_tensors), at the global level only
    l1_split_factor: float = 1.0
    #: the bytes of one piece of those chunks (`l1_split_piece_bytes`; 0.0 where unknown: every chunk counts
    #: `l1_split_factor` times)
    l1_split_piece_bytes: float = 0.0
    #: the full tile's count (the compiled loop's `l1_load_factor`), applied to the whole launch's reads where its
    #: loop splits chunks but the workload names no split tensor (fp32 flash2 dK/dV: runs of 4 lse / delta words,
    #: each under its own row predicate -- they alone would add a quarter of what ncu counts beyond the bytes; the
    #: rest is not understood, and this rule, the model before 2026-11-27, came within 3 % there)
    l1_load_factor: float = 1.0
    #: the tile loop's per-row statistics loads as every warp issues them (the compiled facts' `stat_loads`, made
    #: hashable by `stat_loads_key`): memsim.sim counts the tensors the workload names as statistics
    #: (LaunchWork.stat_load_tensors) `memsim.sectors.stat_load_count` times at the global level.  None: unknown
    stat_loads: tuple | None = None
    #: a trip of the kernel's masked loop copy (the causal band, a ragged tail) and of its unmasked one, each over a
    #: trip of the tile loop the replay chose (one of them is 1.0; both 1.0 where the SASS has one loop): the engine
    #: prices a CTA's trips by its share of masked ones (LaunchWork.cta_masked_tiles; memsim/MODEL.md "the masked
    #: copy of the tile loop")
    masked_trip_factor: float = 1.0
    unmasked_trip_factor: float = 1.0
    #: ((whole copy: store, load), (masked copy: store, load)) local bytes of a trip of each loop copy over the tile
    #: loop's (memsim.spill_masked.trip_spill_factors); None: every trip at the tile loop's
    spill_trip_factors: tuple | None = None
    #: two or more consumer warpgroups run the tile loop side by side (warp-specialised kernels): one group's
    #: softmax runs while the other's MMAs do, so a step computes for max(dot, exp, issue), not dot + exp
    overlap_dot_exp: bool = False
    #: spill traffic outside the tile loop (`CompiledFacts.local_regions`): of the code outside every loop, once per
    #: CTA, and of a walk's code around the tile loop (a persistent CTA), with each tile it stores -- (L2 write bytes,
    #: L2 read bytes)
    spill_cta_l2: tuple = (0, 0)
    spill_walk_l2: tuple = (0, 0)
    #: the kernel's code in bytes (`CompiledFacts.code_bytes`): read from DRAM once per launch after an L2 flush
    code_bytes: int = 0
    #: memory round trips a CTA waits for in a row before its first trip of the tile loop can compute: 1 where its
    #: first loads all go out at once; 2 where the prologue waits on some (K, V into shared memory) before it
    #: issues the first trip's copies (kernels.sass.prologue_round_trips; memsim/MODEL.md "the prologue's round
    #: trips")
    prologue_round_trips: int = 1
    #: a kernel without a tile loop: the bytes its CTA's register loads bring at full tile (kernels.sass
    #: .load_bytes_per_thread x threads).  A CTA that reads less (a ragged tile: its masked rows' loads are
    #: predicated off) waits that share of the round trips; 0: every CTA waits them all
    prologue_load_bytes: int = 0
    #: `issue_s_per_tile` of a trip whose loads are all masked off (no load latency: the replay's figures extended
    #: to latency 0); 0: the same as issue_s_per_tile.  The engine prices a step that loads nothing but makes trips
    #: at it (naive's row kernels' trips past seq_q)
    issue_s_per_tile_noload: float = 0.0
    #: a CTA's trip alone takes at least this many of its turns (the replay at one resident CTA over the turn at
    #: the launch's resident CTAs, memsim.spill_chain; 0: no bound, the default while MEMSIM_SPILL_CHAIN is off)
    chain_ratio: float = 0.0


def _outside_spills(f, cal: Calibration, threads: int, reload_per_byte: float, once_per_cta: bool, *,
                    walks: bool = False) -> tuple:
    """(per CTA, per walk tile) (L2 write bytes, L2 read bytes) of the spill code outside the tile loop (MODEL.md row
    "spill traffic outside the tile loop"): the straight code and the tile loop's guarded pre-header run once per
    CTA; `walks` (the replay found a persistent walk: `tile_fixed_cycles`) -- the walk's code around the tile loop
    once per tile it stores (its guarded pre-header only with a trip: left out).  Other loops around the tile loop
    (a GQA group's heads, flash1's) are left out: booked per stored tile they made the live sets worse (flash1 up to
    +96 % L2), and the engine does not know their trip counts.  Stores reach the L2 as the loop's do; reloads at the
    loop's L1-miss fraction.  Nothing for a kernel without a tile loop (its static counts are already its whole
    traffic, once per CTA)."""
    regions = getattr(f, "local_regions", None) if f is not None else None
    if not regions or once_per_cta:
        return (0, 0), (0, 0)

    def l2(*names):
        st = sum(regions.get(n, (0, 0))[0] for n in names)
        ld = sum(regions.get(n, (0, 0))[1] for n in names)
        return (int(cal.l2_write_per_spill_store_byte * st * threads), int(reload_per_byte * ld * threads))
    return l2("straight", "pre_straight"), (l2("walk") if walks else (0, 0))


def _lookup_facts(launch_name, problem, schedule):
    try:
        from . import compiled
    except ImportError:  # the table reader is optional
        return None
    try:
        f = compiled.lookup(launch_name, problem, schedule)
        if f is None:
            near = compiled.nearest(launch_name, problem, schedule)
            if near is not None:  # the same tile code compiled for another mask / grid order / shape class
                f = replace(near[0], source=f"{near[0].source}; nearest entry {near[1]}")
                spec = lambda k_: k_.rsplit("|", 1)[-1]  # noqa: E731 -- the integer specialisation part of a key
                if spec(near[1]) != spec(compiled.key(launch_name, problem, schedule)):
                    # another divisibility compiles other loads (kernels.sass.l1_split_factor): not this launch's
                    f = replace(f, l1_load_factor=None, l1_split_factor=None, l1_split_piece_bytes=None,
                                stat_loads=None)
        return f
    except (KeyError, ValueError, OSError):
        return None


def stat_loads_key(groups: list | None) -> tuple | None:
    """The compiled facts' `stat_loads` as a hashable value: the one layout the loop's statistics share, as
    (length, ((warps, (elements of each instruction, ..)), ..)); None where the loop has none or several layouts (the
    workload's tensors could not be told apart)."""
    if not groups or len(groups) != 1:
        return None
    g = groups[0]
    return int(g["length"]), tuple((int(n), tuple(tuple(int(e) for e in ins) for ins in instrs))
                                   for n, instrs in g["warps"])


def ctas_per_sm(hw: Hardware, smem_per_cta: int, num_warps: int, regs_per_thread: int) -> tuple[int, str]:
    """Resident CTAs per SM and the limit that decides, with registers rounded to the allocation unit."""
    regs = -(-regs_per_thread // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    threads = num_warps * 32
    limits = {
        "max_ctas_per_sm": hw.max_ctas_per_sm,
        "shared memory": hw.smem_per_sm_bytes // (smem_per_cta + hw.smem_reserved_per_block_bytes),
        "warps": hw.max_warps_per_sm // num_warps,
        "registers": hw.regs_per_sm // (threads * regs),
    }
    which = min(limits, key=limits.get)
    return limits[which], which


def launch_cost(hw: Hardware, cal: Calibration, launch_name: str, problem, schedule, smem_per_cta: int,
                facts=None, num_ctas: int | None = None) -> LaunchCost:
    """The cost figures of one launch (see module doc); `facts` overrides the table lookup."""
    f = facts if facts is not None else _lookup_facts(launch_name, problem, schedule)
    warps = schedule.num_warps
    once_per_cta = False
    if f is None:
        regs, st_b, ld_b = hw.regs_per_thread, 0, 0
        src = "assumed: preset regs_per_thread, no spills (launch not in the compiled-facts table)"
    else:
        regs, st_b, ld_b = f.regs_per_thread, f.spill_store_bytes, f.spill_load_bytes
        src = f"compiled: {getattr(f, 'source', 'table')}"
        loop = getattr(f, "loop", None)
        if loop and "local_store_bytes" in loop and loop.get("instructions", 0) >= MIN_LOOP_INSTRUCTIONS:
            # the tile loop's own local loads and stores (SASS), per thread per iteration: exact where
            # the static spill counts include code outside the loop (prologue, epilogue)
            st_b, ld_b = loop["local_store_bytes"], loop["local_load_bytes"]
            src += " + tile-loop SASS"
        elif loop is not None:
            # the SASS has no tile loop (naive_qk: the dot over d is unrolled): straight-line code runs each
            # spill instruction once per CTA, so the static counts are the CTA's whole spill traffic
            once_per_cta = True
            src += " + no tile loop in the SASS: static spill counts once per CTA"
    # occupancy from the shared memory the compiled kernel allocates (each launch its own: a case's launches share
    # one schedule, but the naive softmax allocates none where the schedule's tiles would need 100 KB); the
    # schedule's nominal tiles where the launch is not in the table
    smem_occ = f.shared_bytes if f is not None and getattr(f, "shared_bytes", None) is not None else smem_per_cta
    # ... and from the warps it launches: a warp-specialised kernel of num_warps 4 launches 12 (two consumer
    # warpgroups and a producer; ncu launch__occupancy_limit_registers = 1 at 168 registers)
    launched = (getattr(f, "launched_warps", None) if f is not None else None) or warps
    per_sm, limit = ctas_per_sm(hw, smem_occ, launched, regs)
    loop = getattr(f, "loop", None) if f is not None else None
    # the CTAs resident on an SM (those of a small grid do not fill its slots); co-resident CTAs take turns
    resident = max(1, min(per_sm, -(-num_ctas // hw.num_sms))) if num_ctas else max(1, per_sm)
    issue, issue_src, trip_flops, fixed, start_s, issue_dram, tile_fixed = 0.0, "", 0.0, 0.0, 0.0, 0.0, 0.0
    rtrips, issue_noload, rt_bytes = 1, 0.0, 0
    masked_f = unmasked_f = 1.0
    rep = getattr(f, "issue", None) if f is not None else None
    if fetch_run.curve_on():  # MEMSIM_FETCH_RUN=curve / all: a 144 KB loop fetches at the 256 KB rate
        cal = replace(cal, icache_loop_curve=fetch_run.loop_curve(cal))
    if spill_fetchcurve.on():  # MEMSIM_FETCH_40K: a 40-56 KB loop fetches at ~2.43 cycles an instruction
        cal = replace(cal, icache_loop_curve=spill_fetchcurve.loop_curve(cal.icache_loop_curve or cal.icache_curve))
    if rep and fetch_run.window_on():  # MEMSIM_FETCH_RUN=1 / all: the loop's replays with the fetch window
        fr = fetch_run.figures_for(warps, rep)
        if fr:
            rep = {**rep, **{k_: fr[k_] for k_ in ("tile_cycles", "tile_cycles_local_l2", "tile_cycles_dram",
                                                   "band_cycles") if fr.get(k_)}}
    rep_ok = bool(rep and cal.issue is not None and per_sm >= 1 and rep.get("latencies") == cal.issue.fingerprint()
                  and rep.get("tile_cycles"))
    # consumer warpgroups running the tile loop side by side (warp-specialised kernels; kernels.sass.warp_specialised)
    groups = int(rep.get("groups", 1)) if rep_ok else 1
    clock = cal.sm_clock_Hz or hw.clock_Hz
    if rep_ok and rep.get("mma_instructions") and cal.mma_sm_clock_Hz:
        # a kernel that issues tensor-core instructions runs at the card's tensor clock (`tile_loop` fact: every
        # such launch measured at 1.73-1.82 GHz where the FFMA-only ones ran at 1.97)
        clock = cal.mma_sm_clock_Hz
        src += f"; tensor clock {clock / 1e9:.2f} GHz"

    def at(cycles: list) -> float:
        """Replayed cycles at the resident CTAs (beyond the replayed ones the SM is issue- or pipe-bound: cycles
        grow with the CTAs)."""
        k = min(resident, len(cycles))
        return cycles[k - 1] * resident / k
    if rep_ok:
        # the SASS replay with this calibration's figures, at the resident CTAs; each co-resident CTA's turn
        # takes its share
        # ... and at least the time to fetch the code (calibration icache_curve): a loop or block larger than the
        # instruction caches streams from the L2 every pass; the resident warps run the same code and share it
        if rep.get("tile_instructions", 0) >= MIN_LOOP_INSTRUCTIONS:
            fetch = fetch_cycles(cal.icache_loop_curve or cal.icache_curve, rep["tile_instructions"])
            issue = max(at(rep["tile_cycles"]), fetch) / (resident * clock)
            if rep.get("tile_cycles_dram"):
                issue_dram = max(at(rep["tile_cycles_dram"]), fetch) / (resident * clock)
                lat_ = cal.issue
                if lat_.load_dram_cycles > lat_.load_l2_cycles > 0:
                    # a trip whose loads are all masked off (naive's row kernels past seq_q) waits on none: the
                    # replay is linear in the load latency, so at latency 0 it is the L2-hit trip less the
                    # L2-hit latency's share of the difference (memsim/MODEL.md "naive's row kernels")
                    slope = (issue_dram - issue) / (lat_.load_dram_cycles - lat_.load_l2_cycles)
                    issue_noload = max(fetch / (resident * clock), issue - slope * lat_.load_l2_cycles)
                    if spill_rowmask.enabled():  # MEMSIM_ROW_MASK: a row trip's loads past seq_kv wait for nothing
                        share = spill_rowmask.real_share(launch_name, getattr(problem, "seq_kv", 0),
                                                         getattr(schedule, "block_m", 0))
                        issue, issue_dram, issue_noload = spill_rowmask.trip_costs(
                            issue, issue_dram, issue_noload, lat_.load_l2_cycles, lat_.load_dram_cycles, share,
                            floor=fetch / (resident * clock))
            if spill_streams.mode():  # MEMSIM_FETCH_STREAMS: co-resident CTAs fetch a loop past the cache apart
                xs = spill_streams.extra_cycles(fetch, rep["tile_instructions"], resident, warps) / (resident * clock)
                issue, issue_dram, issue_noload = issue + xs, issue_dram + xs if issue_dram else 0.0, \
                    issue_noload + xs if issue_noload else 0.0
            trip_flops = rep.get("tile_mma_flops_per_warp", 0.0) * warps * groups
            if rep.get("band_instructions") and rep.get("band_cycles") and at(rep["tile_cycles"]) > 0:
                # the other copy of the loop (kernels.sass.band_profile): a masked trip costs its own replay
                r = max(at(rep["band_cycles"]), fetch) / max(at(rep["tile_cycles"]), fetch)
                masked_f, unmasked_f = (r, 1.0) if rep.get("band_masked") else (1.0, r)
        straight = max(at(rep["straight_cycles"]), fetch_cycles(cal.icache_curve, rep.get("straight_instructions", 0)))
        fixed = straight / (resident * clock)
        if rep.get("tile_fixed_cycles"):  # a persistent CTA's walk: its code between tiles, once per tile
            tile_fixed = at(rep["tile_fixed_cycles"]) / (resident * clock)
        n_desc = rep.get("tma_descriptor_inits", 0)
        if n_desc and cal.tma_descriptor_s:
            start_s = cal.tma_descriptor_s[0] + cal.tma_descriptor_s[1] * n_desc
        issue_src = "replay"
        src += "; SASS replay (memsim.warp_issue)"
        # the prologue's round trips before the first trip (kernels.sass.prologue_round_trips), where the kernel has
        # no local memory; without a tile loop, the whole kernel's round trips in a row (flash2's preprocess at
        # d = 256: 27).  A spilling kernel's prologue waits for register-pressure batches of its tiles (flash2
        # d=256 dK/dV: 43 levels, the card paid next to none of them -- not measured by the microbenchmark, left out)
        spills = f is not None and bool(f.local_bytes_per_thread)
        if not spills:
            rtrips = int(rep.get("prologue_round_trips") or 1)
            if rep.get("tile_instructions", 0) < MIN_LOOP_INSTRUCTIONS:
                rt_bytes = int(rep.get("load_bytes_per_thread") or 0) * warps * 32
        if rtrips > 1:
            src += f"; {rtrips} load round trips before the first trip"
    elif loop and loop.get("instructions", 0) >= MIN_LOOP_INSTRUCTIONS and per_sm >= 1:
        # the SM issues warp_issue_per_sm_per_cycle warp instructions per clock, but a warp at most one: with
        # fewer resident warps than schedulers, the resident warps are the limit.  The engine books the
        # co-resident CTAs' turns one after another on the SM, so each turn takes its share.
        lanes = min(hw.warp_issue_per_sm_per_cycle, warps * per_sm)
        issue = loop["instructions"] * warps / (lanes * clock)
        issue_src = "instructions"
    threads = warps * 32
    local = None
    reload_per_byte = cal.l2_read_per_spill_load_byte
    if (st_b or ld_b) and f is not None and per_sm >= 1:
        local = local_memory(hw, cal, local_bytes_per_thread=max(f.local_bytes_per_thread, 1), threads=threads,
                             ctas_per_sm=per_sm, num_ctas=num_ctas or per_sm * hw.num_sms,
                             smem_per_cta_bytes=f.shared_bytes if f.shared_bytes else smem_per_cta,
                             store_bytes_per_iteration=st_b or None,
                             reuse=spill_reuse.reuse_for(f))
        reload_per_byte = max(reload_per_byte, local.l1_miss_fraction)
    local_s = 0.0
    x = 0.0
    if rep_ok and rep.get("tile_cycles_local_l2") and issue:
        # the replay waits on each spill reload for its expected latency: an L1 hit (the LDS figure), else an
        # L2 hit or a DRAM miss in the proportions memsim.local_memory places the spilled bytes; the replay is
        # linear in that latency between the L1-hit pass and the L2-hit one (and beyond, for DRAM misses)
        lat = cal.issue
        hit = lat.cycles.get("LDL", lat.cycles.get("LDS", 0.0))
        miss = local.l1_miss_fraction if local is not None else 0.0
        fd = local.dram_read_fraction if local is not None else 0.0
        expect = (1 - miss) * hit + miss * ((1 - fd) * lat.load_l2_cycles + fd * lat.load_dram_cycles)
        x = (expect - hit) / (lat.load_l2_cycles - hit) if lat.load_l2_cycles > hit else 0.0
        more = x * max(0.0, at(rep["tile_cycles_local_l2"]) - at(rep["tile_cycles"])) / (resident * clock)
        issue += more
        if issue_dram:
            issue_dram += more
        issue_src += "+reloads"
        src += f"; spill reloads waited on at {expect:.0f} cycles each (replay)"
    chain = 0.0
    if rep_ok and issue and rep.get("tile_instructions", 0) >= MIN_LOOP_INSTRUCTIONS:
        chain = spill_chain.ratio_for(rep, resident, spills=bool(ld_b), x=x,
                                      fetch_cycles=fetch_cycles(cal.icache_loop_curve or cal.icache_curve, rep["tile_instructions"]))
    if (st_b or ld_b) and per_sm >= 1 and not (rep_ok and rep.get("tile_cycles_local_l2") and issue):
        # every warp waits on its own reloads: the SM moves local bytes at the rate measured for its warps
        rate = local_Bps_per_sm(cal, warps * resident)
        if rate:
            local_s = (st_b + ld_b) * threads / rate
    bm, bn = getattr(schedule, "block_m", None), getattr(schedule, "block_n", None)
    if bm and bn and getattr(problem, "head_dim", None):
        # a chain of small dots runs at the rate measured for its per-warp dot and the warps on the SM
        dot_rate = dot_flops_per_sm_s(cal, problem.dtype, block_m=bm, block_n=bn, head_dim=problem.head_dim,
                                      num_warps=warps, warps_per_sm=warps * groups * resident)
    else:
        dot_rate = cal.dot_flops_per_sm_s[problem.dtype]
    cta_l2, walk_l2 = _outside_spills(f, cal, threads, reload_per_byte, once_per_cta, walks=bool(tile_fixed))
    return LaunchCost(
        spill_cta_l2=cta_l2, spill_walk_l2=walk_l2, code_bytes=int(getattr(f, "code_bytes", None) or 0),
        name=launch_name, num_warps=warps, regs_per_thread=regs, ctas_per_sm=per_sm, occupancy_limit=limit,
        sec_per_flop=1.0 / dot_rate, sec_per_exp=1.0 / cal.exp_per_sm_s,
        issue_s_per_tile=issue,
        spill_l2_write_bytes_per_tile=int(cal.l2_write_per_spill_store_byte * st_b * threads),
        spill_l2_read_bytes_per_tile=int(reload_per_byte * ld_b * threads),
        spill_dram_write_fraction=local.dram_write_fraction if local else 0.0,
        spill_dram_read_fraction=local.dram_read_fraction if local else 0.0,
        facts_source=src + (f"; {local.explain()}" if local else ""), local=local, local_s_per_tile=local_s,
        spill_once_per_cta=once_per_cta, trip_mma_flops=trip_flops, cta_fixed_s=fixed, issue_source=issue_src,
        cta_start_s=start_s, issue_s_per_tile_dram=issue_dram, tile_fixed_s=tile_fixed, overlap_dot_exp=groups >= 2,
        masked_trip_factor=masked_f, unmasked_trip_factor=unmasked_f, prologue_round_trips=rtrips, prologue_load_bytes=rt_bytes,
        issue_s_per_tile_noload=issue_noload, chain_ratio=chain,
        spill_trip_factors=trip_spill_factors(f) if (st_b or ld_b) else None,
        l1_split_factor=(getattr(f, "l1_split_factor", None) or 1.0) if f is not None else 1.0,
        l1_split_piece_bytes=(getattr(f, "l1_split_piece_bytes", None) or 0.0) if f is not None else 0.0,
        l1_load_factor=(getattr(f, "l1_load_factor", None) or 1.0) if f is not None else 1.0,
        stat_loads=stat_loads_key(getattr(f, "stat_loads", None)) if f is not None else None,
        spill_store_l2_weight=(max(1.0, l2_link_Bps(hw, cal) / cal.spill_store_l2_Bps) if cal.spill_store_l2_Bps
                               else 1.0))
