"""The SimPy discrete-event model: SM slots, a CTA dispatcher, shared links, an L2.

Components (small classes holding `env`, as in SimPy's own examples):

* `Link` -- a bandwidth shared by everything in flight (DRAM, the L2 crossbar).
  A transfer is booked on the link's calendar: it starts when the link is free
  (first come, first served) and lasts bytes / rate; the delay lives in the link.
* `SM` -- the compute units of one streaming multiprocessor (tensor cores and
  SFU); the CTAs resident on it take turns, so co-resident CTAs share its rate.
* `L2Cache` -- capacity, LRU reuse at (tensor, head, run-of-blocks) granularity
  with a bitmask of the blocks held, write-allocate and write-back: a dirty
  line costs a DRAM write when it is evicted *during* the kernel; of the dirty
  lines still resident at the end only the part the L2 has already cleaned in
  the background (``l2_eager_writeback_fraction``, booked by `memsim.sim`) is
  that kernel's -- ncu flushes before a kernel, not after.
* `Dispatcher` -- hands out CTAs in grid order (axis 0 fastest) to whichever
  CTA slot frees first.  Each SM has ``ctas_per_sm`` slots (limited by shared
  memory, warps, registers and the CTA cap); a slot is a SimPy process that
  asks the dispatcher for the next CTA whenever its previous one retires
  (first CTA on every SM first, then the second, ... as the hardware's block
  scheduler fills an idle GPU).

A CTA is a SimPy process walking its steps (see `memsim.workloads`): it books
the step's loads on the L2 and DRAM links, waits for the data, books its
compute on its SM; with ``num_stages >= 2`` the next step's loads are issued as
soon as the current step's compute starts (double buffering), with one stage
they wait for it to finish.  Writes are issued when the step's compute ends.
"""
from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from statistics import NormalDist

import simpy

from .calibration import curve_latency_s, reduce_add_Bps
from .hardware import Hardware
from .schedule import HEAD_AXES, cdiv
from .spill_chain import chain_end
from .spill_rowmask import sm_gap_enabled, wait_bytes_enabled
from .spill_masked import cta_spill_mix


def _mask_bytes(m: int, full: int, lastbit: int, lastbytes: int) -> int:
    n = m.bit_count() * full
    if lastbit >= 0 and (m >> lastbit) & 1:
        n += lastbytes - full
    return n


#: standard-normal quantiles at a low-discrepancy sequence (golden-ratio steps): the ages at which successive dirty
#: lines are cleaned, spread as the measured law says without random numbers (`L2Cache.clean_age`)
_CLEAN_Z = tuple(NormalDist().inv_cdf(((i + 0.5) * 0.6180339887498949) % 1.0) for i in range(4096))


class L2Cache:
    """LRU cache of runs of blocks; counts DRAM reads (misses) and write-backs.

    Dirty data is written back in three ways: a dirty line evicted by LRU; -- when more than
    `dirty_capacity` bytes are dirty -- the oldest dirty lines are written back and stay resident, clean
    (measured on the H100, ``verification calibrate`` l2_writeback: a kernel that only writes W fresh bytes
    gets W - 22 MB written to DRAM inside it for every W of 32..128 MB, nothing up to 8 MB, whatever its
    duration; the L2 holds about 22 MB dirty although it holds 50 MB); and -- with `clean_age` = (mean, sd) --
    a dirty line is written back (and stays, clean) once the bytes brought into the L2 after its last write pass
    a threshold spread as N(mean, sd) over the lines (`benchmarks/l2_dirty_reads_gpu.py`: W bytes stored, then R
    other bytes read, R = 0-96 MB: 29 points fit by mean 33.75 MB, sd 7.5 MB, and the 12 points with the stores
    spread among the reads follow within 0.5 MB).  A line that a second reader reads (a CTA event other than the
    one that brought it in) adds `share_extra` x its bytes to that clock once: it takes room in both halves of the
    L2 (`benchmarks/l2_readers_gpu.py`).  What is still dirty at the end of a kernel is written after
    it and is not that kernel's (ncu flushes before a kernel, not after).
    """

    def __init__(self, capacity_bytes: int, dirty_capacity_bytes: int | None = None,
                 clean_age: tuple | None = None, share_extra: float = 0.0):
        self.capacity = capacity_bytes
        self.dirty_capacity = dirty_capacity_bytes
        self.used = 0
        self.lines: OrderedDict = OrderedDict()  # key -> [mask, dirty_mask, bytes, full, lastbit, lastbytes(, reader)]
        self.dirty_order: OrderedDict = OrderedDict()  # keys with dirty blocks -> self.alloc at the last write
        self.dirty = 0
        self.dram_read = 0
        self.dram_write = 0
        self.hit_bytes = 0
        #: bytes brought into the L2 so far (read misses and newly written blocks): the clock of a dirty line's age
        self.alloc = 0
        #: (mean, sd) bytes of the age law, or None; `age_scale` multiplies both while a folded launch runs
        self.clean_age = clean_age
        self.age_scale = 1.0
        #: extra age-clock bytes (x the line's) when a second reader reads a line (`calibration.l2_shared_copy_extra`)
        self.share_extra = share_extra
        self._due: list = []  # heap of (alloc at which the line is cleaned, alloc at its write, key)
        self._n_aged = 0

    def read(self, acc, reader=None) -> int:
        """Bring the access's blocks in; return the bytes that came from DRAM.  `reader`: who reads (a CTA event);
        with `share_extra`, the first read of a line by a second reader adds share_extra x its bytes to the age
        clock (the line now has a copy in both halves of the L2)."""
        key, mask, nb, full, lb, lbytes = acc
        lines = self.lines
        e = lines.get(key)
        if e is None:
            # nb is the access's traffic (sectors, memsim.sectors); the line holds the blocks' own bytes
            miss = _mask_bytes(mask, full, lb, lbytes)
            lines[key] = [mask, 0, miss, full, lb, lbytes, reader]
        else:
            new = mask & ~e[0]
            miss = _mask_bytes(new, full, lb, lbytes) if new else 0
            e[0] |= new
            e[2] += miss
            lines.move_to_end(key)
            if self.share_extra and reader is not None and len(e) > 6 and e[6] is not None and e[6] != reader:
                self.alloc += self.share_extra * e[2]
                e[6] = None  # counted once: the line is shared
        self.used += miss
        self.dram_read += miss
        self.hit_bytes += nb - miss
        self.alloc += miss
        return miss

    def write(self, acc) -> None:
        key, mask, nb, full, lb, lbytes = acc
        lines = self.lines
        e = lines.get(key)
        if e is None:
            nb = _mask_bytes(mask, full, lb, lbytes)
            lines[key] = [mask, mask, nb, full, lb, lbytes]
            self.used += nb
            self.dirty += nb
            self.alloc += nb
        else:
            new = mask & ~e[0]
            if new:
                add = _mask_bytes(new, full, lb, lbytes)
                e[2] += add
                self.used += add
                self.alloc += add
                e[0] |= new
            newly = mask & ~e[1]
            if newly:
                self.dirty += _mask_bytes(newly, full, lb, lbytes)
            e[1] |= mask
            lines.move_to_end(key)
        self._mark(key)

    def _mark(self, key) -> None:
        """`key` was written now: youngest in the dirty order, and (with the age law) its cleaning age drawn."""
        self.dirty_order[key] = self.alloc
        self.dirty_order.move_to_end(key)
        if self.clean_age is not None:
            mean, sd = self.clean_age
            z = _CLEAN_Z[self._n_aged % len(_CLEAN_Z)]
            self._n_aged += 1
            heapq.heappush(self._due, (self.alloc + max(0.0, mean + sd * z) * self.age_scale, self.alloc, key))

    def seed_dirty(self, total_bytes: int, pieces: int = 64) -> None:
        """Dirty lines that are not the kernel's (ncu's residue after its flush: `calibration.ncu_dirty_residue_bytes`),
        oldest of all: `pieces` runs of total_bytes / pieces, written back by LRU, the dirty limit or the age law
        as the kernel brings its own bytes in."""
        b = int(total_bytes) // pieces
        for i in range(pieces if b > 0 else 0):
            key = ("ncu_residue", i)
            self.lines[key] = [1, 1, b, b, -1, 0]
            self.lines.move_to_end(key, last=False)
            self.used += b
            self.dirty += b
            self._mark(key)

    def aging_due(self) -> bool:
        """Some dirty line has reached the age at which it is cleaned."""
        d = self._due
        return bool(d) and d[0][0] < self.alloc

    def evict(self) -> int:
        """Evict least-recently-used lines until the contents fit, then clean the oldest dirty lines until the
        dirty bytes fit; return the bytes written back."""
        wb = 0
        lines = self.lines
        while self.used > self.capacity and lines:
            k, e = lines.popitem(last=False)
            self.used -= e[2]
            if e[1]:
                d = _mask_bytes(e[1], e[3], e[4], e[5])
                wb += d
                self.dirty -= d
                self.dirty_order.pop(k, None)
        due = self._due
        if due:
            order = self.dirty_order
            while due and due[0][0] < self.alloc:
                _, stamp, k = heapq.heappop(due)
                if order.get(k, -1) != stamp:
                    continue  # written again since (a younger entry stands for it) or already clean
                order.pop(k)
                wb += self._clean(k)
        cap = self.dirty_capacity
        if cap is not None:
            order = self.dirty_order
            while self.dirty > cap and order:
                k, _ = order.popitem(last=False)
                wb += self._clean(k)
        self.dram_write += wb
        return wb

    def _clean(self, k) -> int:
        """Write line k's dirty blocks back (it stays resident, clean); return the bytes written."""
        e = self.lines.get(k)
        if e is None or not e[1]:
            return 0
        d = _mask_bytes(e[1], e[3], e[4], e[5])
        self.dirty -= d
        e[1] = 0
        return d

    def dirty_bytes(self) -> int:
        """Bytes of dirty blocks resident now."""
        return self.dirty

    def flush(self) -> None:
        """Write everything back and empty the cache (what ncu does before each kernel); not counted."""
        self.lines.clear()
        self.dirty_order.clear()
        self._due.clear()
        self.used = 0
        self.dirty = 0


class Link:
    """A shared bandwidth: transfers are booked first come, first served."""

    def __init__(self, env: simpy.Environment, rate_Bps: float, name: str, memory_s: float | None = None):
        self.env, self.rate, self.name = env, rate_Bps, name
        self.free_at = 0.0
        self.bytes = 0
        #: the recent demand: bytes booked, decayed with time constant memory_s (None: not tracked)
        self.memory_s = memory_s
        self._recent = 0.0
        self._recent_t = 0.0

    def book(self, t: float, nbytes: int) -> float:
        """Book `nbytes` starting no earlier than `t`; return when the transfer completes."""
        if nbytes <= 0:
            return t
        start = t if t > self.free_at else self.free_at
        self.free_at = start + nbytes / self.rate
        self.bytes += nbytes
        if self.memory_s:
            self._decay(t)
            self._recent += nbytes
        return self.free_at

    def _decay(self, t: float) -> None:
        if t > self._recent_t:
            self._recent *= math.exp(-(t - self._recent_t) / self.memory_s)
            self._recent_t = t

    def recent_Bps(self, t: float) -> float:
        """Bytes per second asked of the link over about the last `memory_s` (exponentially weighted)."""
        if not self.memory_s:
            return 0.0
        self._decay(t)
        return self._recent / self.memory_s


class SM:
    """Tensor cores and SFU of one SM, shared by its resident CTAs in turn."""

    __slots__ = ("free_at", "busy_s")

    def __init__(self):
        self.free_at = 0.0
        self.busy_s = 0.0

    def book(self, t: float, dur: float) -> tuple[float, float]:
        start = t if t > self.free_at else self.free_at
        self.free_at = start + dur
        self.busy_s += dur
        return start, self.free_at


class Dispatcher:
    """The CTA dispatcher: CTAs leave in grid order (dispatch index = x + gx*(y + gy*z))."""

    __slots__ = ("n", "i")

    def __init__(self, num_ctas: int):
        self.n, self.i = num_ctas, 0

    def next_cta(self):
        if self.i >= self.n:
            return None
        self.i += 1
        return self.i - 1


def _merge_into(d: dict, accs, s: int) -> None:
    for acc in accs:
        e = d.get(acc[0])
        if e is None:
            d[acc[0]] = [acc[1], acc[2] * s, acc[3] * s, acc[4], acc[5] * s]
        else:
            e[0] |= acc[1]
            e[1] += acc[2] * s


def _merged_accesses(d: dict) -> list:
    """One access per key; bytes beyond the blocks' own size (several CTAs naming the same block) follow as
    a second access of the same key, which finds its blocks resident: the L2 line holds each block once."""
    out = []
    for key, (mask, nb, full, lb, lbytes) in d.items():
        own = _mask_bytes(mask, full, lb, lbytes)
        out.append((key, mask, own, full, lb, lbytes))
        if nb > own:
            out.append((key, mask, nb - own, full, lb, lbytes))
    return out


class CtaBatches:
    """A launch's CTAs as events of `ctas_per_event` consecutive CTAs (dispatch order), each CTA standing
    for `heads_per_event` identical CTAs of as many heads (`memsim.grain`).

    Event b walks the merged steps of CTAs [b*k, b*k + k): step s of the event is step s of each of them,
    their accesses to one L2 key combined (blocks OR-ed, bytes summed, see `_merged_accesses`), FLOPs, exps
    and tiles summed.  With heads_per_event = f every byte (and every L2 line), FLOP, exp and tile is
    multiplied by f (by `head_scale(cta)` where given: the last folded head may stand for fewer).  Global
    bytes, FLOPs and exps are exactly those of the CTAs it stands for."""

    def __init__(self, work, ctas_per_event: int = 1, heads_per_event: int = 1, launch=None, true_num_ctas=None,
                 head_scale=None):
        self.work, self.k, self.f = work, ctas_per_event, heads_per_event
        f = heads_per_event
        self.scale = head_scale if head_scale is not None else (lambda i: f)
        self.launch = launch if launch is not None else work.launch
        self.name = work.name
        self.num_warps = work.num_warps
        self.dependent_loop = work.dependent_loop
        self.tma_row_bytes = getattr(work, "tma_row_bytes", None)
        self.write_partial_share = getattr(work, "write_partial_share", None)
        self.reduce_adds = getattr(work, "reduce_adds", None)
        self.split_load_tensors = getattr(work, "split_load_tensors", None)
        self.stat_load_tensors = getattr(work, "stat_load_tensors", None)
        self.stage_loop = getattr(work, "stage_loop", False)
        self.ctas = work.num_ctas
        #: events the dispatcher hands out
        self.num_ctas = cdiv(work.num_ctas, ctas_per_event)
        #: CTAs of the real launch this stands for
        self.true_num_ctas = (true_num_ctas if true_num_ctas is not None
                              else sum(self.scale(i) for i in range(work.num_ctas)))
        self.cta_l1_bytes = None if work.cta_l1_bytes is None else self._l1
        self.cta_masked_tiles = None if getattr(work, "cta_masked_tiles", None) is None else self._masked

    def _idx(self, b: int) -> range:
        return range(b * self.k, min(self.ctas, (b + 1) * self.k))

    def ctas_in(self, b: int) -> int:
        """Real CTAs event b stands for."""
        return sum(self.scale(i) for i in self._idx(b))

    def _l1(self, b: int) -> int:
        return sum(self.work.cta_l1_bytes(i) * self.scale(i) for i in self._idx(b))

    def _masked(self, b: int) -> int:
        return sum(self.work.cta_masked_tiles(i) * self.scale(i) for i in self._idx(b))

    def cta_steps(self, b: int) -> list:
        get, scale = self.work.cta_steps, self.scale
        idx = self._idx(b)
        lists = [(get(i), scale(i)) for i in idx]
        if len(lists) == 1 and self.f == 1:
            return lists[0][0]
        out = []
        for s in range(max(len(x) for x, _ in lists)):
            rd, wr = {}, {}
            fl = ex = tl = 0
            for x, m in lists:
                if s < len(x):
                    reads, writes, flops, exps, tiles = x[s]
                    _merge_into(rd, reads, m)
                    _merge_into(wr, writes, m)
                    fl += flops * m
                    ex += exps * m
                    tl += tiles * m
            out.append([_merged_accesses(rd), _merged_accesses(wr), fl, ex, tl])
        return out


@dataclass
class LaunchStats:
    name: str
    num_ctas: int
    ctas_per_sm: int
    occupancy_limit: str
    steps: int = 0
    tiles: int = 0
    global_read_bytes: int = 0
    #: part of global_read_bytes beyond the byte contract, served by L1 (see memsim.workloads)
    l1_reread_bytes: int = 0
    #: reduce-adds that reached the L2 (LaunchWork.reduce_adds): not in l2_write_bytes (ncu's op_red, not op_write)
    l2_reduce_bytes: int = 0
    #: {tensor name: part of global_read_bytes read of it} for the launch's split tensors (LaunchWork.split_load_tensors)
    #: and its per-row statistics (LaunchWork.stat_load_tensors)
    split_read_bytes: dict = field(default_factory=dict)
    global_write_bytes: int = 0
    l2_read_bytes: int = 0
    l2_write_bytes: int = 0
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    flops: int = 0
    exp_count: int = 0
    #: local-memory (register spill) bytes that reached L2, included in l2_read/l2_write_bytes
    spill_l2_read_bytes: int = 0
    spill_l2_write_bytes: int = 0
    #: the part of them that reached DRAM (memsim.local_memory), included in dram_read/dram_write_bytes
    spill_dram_read_bytes: int = 0
    spill_dram_write_bytes: int = 0
    #: summed busy time of the SMs' dot/exp units (for the binding-limit report)
    sm_busy_s: float = 0.0
    time_s: float = 0.0


class LaunchModel:
    """One kernel launch on the modelled GPU."""

    def __init__(self, hw: Hardware, work, l2: L2Cache, cost, *, num_stages: int, dram_Bps: float,
                 launch_overhead_s: float, merge_window_s: float | None = None, merge_group_sms: int = 1,
                 dependent_Bps: float | None = None,
                 dependent_latency_s: float | None = None, cta_dispatch_s: float = 0.0,
                 fill_latency_s: float | None = None, tma_coalesce_min_row_bytes: int | None = None,
                 l2_Bps: float | None = None, l2_write_Bps: float | None = None,
                 partial_store_cost: float | None = None, dram_queue_latency=None,
                 round_trip_s: float | None = None, reduce_add_curve=None, round_trip_l2_s: float | None = None):
        self.hw, self.work, self.l2, self.cost = hw, work, l2, cost
        #: a read of lines whose DRAM fill is still in flight (another CTA missed on them less than this long ago)
        #: waits for that fill, as a miss does: the L2 holds it until the line lands (None: not tracked)
        self.fill_latency_s = fill_latency_s
        self.fill_at: dict = {}
        self.env = simpy.Environment()
        #: the loaded DRAM latency (`dram_stream` microbenchmark, `calibration.dram_queue_latency`): (curve of
        #: (B/s, latency beyond the unloaded one), the unloaded latency s) -- a step that waits on its loads (a CTA's
        #: first, or an unpipelined loop's) waits the unloaded latency, and its L2 misses longer while the DRAM is
        #: busy; the link averages the rate asked of it over one unloaded latency.  None: the preset's latency
        self.dram_queue = dram_queue_latency
        self.dram = Link(self.env, dram_Bps, "dram", memory_s=dram_queue_latency[1] if dram_queue_latency else None)
        #: the L2 link: the measured read rate where calibrated (memsim.calibration.l2_link_Bps), else the preset's
        self.l2link = Link(self.env, l2_Bps or hw.l2_bw_Bps, "l2")
        #: global stores also pass a write link where its rate is measured (`l2_bandwidth` fact: stores alone reach
        #: the L2 at 4.1 TB/s, reads at 7.4, and a copy moves 3.5 each way -- 7.0 in all: reads and writes share
        #: the L2's own rate, and writes have a lower ceiling of their own)
        self.l2wlink = Link(self.env, l2_write_Bps, "l2w") if l2_write_Bps else None
        #: stores of sectors an instruction covers in part cost the write link `partial_store_cost` whole sectors
        #: each (`l2_bandwidth` pitch points): {tensor name: 1 + (cost - 1) x the tensor's partial share}
        shares = getattr(work, "write_partial_share", None) or {}
        self.write_weight = ({n: 1.0 + (partial_store_cost - 1.0) * sh for n, sh in shares.items() if sh}
                             if partial_store_cost and self.l2wlink is not None else {})
        #: fp32 reduce-adds in the L2 (LaunchWork.reduce_adds): their tensor's bytes pass a link at the rate the
        #: L2 takes reduce-adds shared by the CTAs that add into the same lines at once -- the mean sharers of a
        #: block, at most the resident CTAs (`l2_atomics` microbenchmark, `calibration.reduce_add_Bps`)
        red = getattr(work, "reduce_adds", None)
        self.reduce_name, self.reduce_link = (red[0] if red is not None else None), None
        if red is not None and reduce_add_curve:
            at_once = min(red[1], cost.ctas_per_sm * hw.num_sms, work.num_ctas)
            self.reduce_link = Link(self.env, reduce_add_Bps(reduce_add_curve, at_once), "reduce")
        used_sms = min(hw.num_sms, work.num_ctas)  # SMs beyond the grid never get a CTA
        self.sms = [SM() for _ in range(used_sms)]
        #: a dependent loop moves its bytes at this rate per CTA (measured: dependent_loop roundtrip)
        self.dep_Bps = dependent_Bps
        #: the round trip a dependent tile loop pays per tile (measured: dependent_loop roundtrip)
        self.dep_lat = dependent_latency_s if dependent_latency_s is not None else hw.mem_latency_s
        self.ctas_per_sm, self.limit = cost.ctas_per_sm, cost.occupancy_limit
        #: the block scheduler starts one CTA every cta_dispatch_s on the whole GPU (measured: verification
        #: calibrate, launch_gpu ctas): the first wave does not start at once, CTAs of one head drift apart
        self.cta_dispatch_s = cta_dispatch_s
        self.next_dispatch = 0.0
        self.stages = num_stages
        self.sec_per_flop = cost.sec_per_flop
        self.sec_per_exp = cost.sec_per_exp
        self.issue_s_per_tile = cost.issue_s_per_tile
        #: the same with every register load a DRAM miss (0: the tile loop waits on none; see LaunchCost)
        self.issue_s_per_tile_dram = getattr(cost, "issue_s_per_tile_dram", 0.0)
        #: ... and with no load to wait for (a step without reads that makes trips; 0: issue_s_per_tile)
        self.issue_s_per_tile_noload = getattr(cost, "issue_s_per_tile_noload", 0.0)
        #: (unmasked, masked) trip of the loop over the tile loop's (LaunchCost.*_trip_factor)
        self.trip_factors = (getattr(cost, "unmasked_trip_factor", 1.0), getattr(cost, "masked_trip_factor", 1.0))
        self.spill_trip_factors = getattr(cost, "spill_trip_factors", None)
        #: the CTA's code outside the tile loop
        self.cta_fixed_s = cost.cta_fixed_s
        #: load round trips in a row before a CTA's first trip computes (LaunchCost.prologue_round_trips), each
        #: after the first `round_trip_s` (the `prologue_trips` microbenchmark; None: the first loads' latency)
        self.round_trips = getattr(cost, "prologue_round_trips", 1)
        self.round_trip_s = round_trip_s
        self.round_trip_l2_s = round_trip_l2_s
        self.round_trip_bytes = getattr(cost, "prologue_load_bytes", 0)
        #: a CTA's wait before its first loads (device-built TMA descriptors): latency, the SM stays free
        self.cta_start_s = cost.cta_start_s
        #: a persistent CTA's code between its tiles, with each step that stores a tile's output
        self.tile_fixed_s = getattr(cost, "tile_fixed_s", 0.0)
        #: consumer warpgroups side by side: a step's dot and exp overlap (max, not sum)
        self.overlap = getattr(cost, "overlap_dot_exp", False)
        self.local_s_per_tile = cost.local_s_per_tile
        #: a CTA's trips alone take at least chain_ratio of its turns (memsim.spill_chain; 0: no bound)
        self.chain_ratio = getattr(cost, "chain_ratio", 0.0)
        self.fold_f = getattr(work, "f", 1) if isinstance(work, CtaBatches) else 1  # heads an event's CTA stands for
        self.spill_st_weight = cost.spill_store_l2_weight
        self.spill_once = cost.spill_once_per_cta
        #: spill bytes of the code outside the tile loop: once per CTA, and per stored tile of a walk (L2 w, L2 r)
        self.spill_cta = getattr(cost, "spill_cta_l2", (0, 0))
        self.spill_walk = getattr(cost, "spill_walk_l2", (0, 0))
        self.spill_wr, self.spill_rd = cost.spill_l2_write_bytes_per_tile, cost.spill_l2_read_bytes_per_tile
        self.spill_dram_wf, self.spill_dram_rf = cost.spill_dram_write_fraction, cost.spill_dram_read_fraction
        self.launch_overhead_s = launch_overhead_s
        #: L2 request merging: a read of a line another CTA requested less than merge_window_s earlier joins
        #: that request and never reaches the L2 tags (measured: verification calibrate, l2_merge); without
        #: a calibrated window, the preset's constant l2_read_request_fraction applies to L2 hits
        self.merge_window = merge_window_s
        self.merge_group = max(1, merge_group_sms)
        #: a folded event of a launch whose fastest grid axis is a head stands for f CTAs dispatched side by side, on f
        #: neighbouring SMs of the real GPU: its model SM spans f real SMs, so merge groups count real SMs
        #: (MODEL.md "Grain": a head's CTAs merge only where the real launch puts them in one group)
        launch = getattr(work, "launch", None)
        self.merge_sm_scale = self.fold_f if launch is not None and launch.axes[0] in HEAD_AXES else 1
        self.merge = 1.0 - hw.l2_read_request_fraction
        #: TMA boxes of rows narrower than the coalescer's line-sized requests (`tma_window` microbenchmark): each
        #: row is a partial-line request the L2 request coalescer never merges, so every byte reaches the L2
        row = getattr(work, "tma_row_bytes", None)
        self.coalesce = not (row is not None and tma_coalesce_min_row_bytes is not None
                             and row < tma_coalesce_min_row_bytes)
        self.last_request: dict = {}
        self.stats = LaunchStats(work.name, work.num_ctas, self.ctas_per_sm, self.limit)
        self.dispatcher = Dispatcher(work.num_ctas)
        self.end_time = 0.0

    def _jitter(self, idx: int) -> float:
        j = self.hw.cta_time_jitter
        if not j:
            return 1.0
        u = ((idx * 2654435761 + 12345) & 0xFFFFFFFF) / 4294967296.0  # deterministic, in [0, 1)
        return 1.0 + j * (2.0 * u - 1.0)

    def ctas_in(self, idx) -> int:
        """Real CTAs event `idx` stands for (an event of a CTA batch or of folded heads stands for several)."""
        per = getattr(self.work, "ctas_in", None)
        return per(idx) if per is not None else 1

    def slot(self, sm_id):
        """One CTA slot of SM `sm_id`: runs CTAs from the dispatcher until none is left."""
        nxt = self.dispatcher.next_cta
        prog = self.progress
        idx = nxt()
        while idx is not None:
            yield from self.cta(idx, sm_id)
            if prog is not None:
                prog.tick(self.ctas_in(idx))
            idx = nxt()

    def _issue_writes(self, writes, t):
        st, l2 = self.stats, self.l2
        g = 0
        for acc in writes:
            g += acc[2]
            l2.write(acc)
        wb = l2.evict()
        # reduce-adds (RED) reach the L2 as reductions, not writes: ncu counts them in lts__t_sectors_op_red, not in
        # the op_write the L2 level compares (held-out Y 004: 0.162 MB of writes measured = its dK / dV stores, 4.03
        # MB booked with its dQacc adds); they still dirty their lines and pass their own link
        rb = sum(acc[2] for acc in writes if acc[0][0] == self.reduce_name) if self.reduce_name is not None else 0
        st.global_write_bytes += g
        st.l2_write_bytes += g - rb
        st.l2_reduce_bytes += rb
        st.dram_write_bytes += wb
        end = max(self.l2link.book(t, g), self.dram.book(t, wb))
        if self.reduce_link is not None and rb:
            end = max(end, self.reduce_link.book(t, rb))
        if self.l2wlink is not None:
            ww = self.write_weight
            gw = sum(acc[2] * ww.get(acc[0][0], 1.0) for acc in writes) if ww else g
            end = max(end, self.l2wlink.book(t, gw))
        return end

    def cta(self, idx, sm_id):
        env, st, l2 = self.env, self.stats, self.l2
        if self.cta_dispatch_s:
            t = self.next_dispatch if self.next_dispatch > env.now else env.now
            self.next_dispatch = t + self.cta_dispatch_s * self.ctas_in(idx)
            if t > env.now:
                yield env.timeout(t - env.now)
        if self.cta_start_s:  # once per event: a batch's or folded heads' CTAs overlap it (it is latency)
            yield env.timeout(self.cta_start_s)
        l2read, evict = l2.read, l2.evict
        sm = self.sms[sm_id]
        steps = self.work.cta_steps(idx)
        jit = self._jitter(idx)
        # a waiting step's latency: the measured unloaded one where calibrated (dram_stream: a CTA's 16-32 KB in
        # flight, 0.86 us on the H100), else the preset's estimate; + the loaded excess below
        lat = self.dram_queue[1] if self.dram_queue else self.hw.mem_latency_s
        dq = self.dram_queue[0] if self.dram_queue else None
        rtrips, rt_s, rt_l2 = self.round_trips, self.round_trip_s, self.round_trip_l2_s
        spf, spe = self.sec_per_flop * jit, self.sec_per_exp * jit
        pipelined = self.stages >= 2
        dep_lat, dep_Bps = self.dep_lat, self.dep_Bps
        issue_tile = self.issue_s_per_tile * (jit if self.issue_s_per_tile else 1.0)
        issue_idle = self.issue_s_per_tile_noload * jit  # a trip that loads nothing (its loads masked off)
        # a loop that waits on its own register loads: the replay placed those waits (an L2 hit or a DRAM miss
        # each, mixed by the step's misses); the engine no longer delays the step's compute by a latency of its own
        load_extra = (self.issue_s_per_tile_dram * jit - issue_tile) if self.issue_s_per_tile_dram else 0.0
        # the kernel's two copies of the loop: the CTA's share of trips in the masked copy (a CTA's steps do not say
        # which of their tiles are masked: the share, spread over them); None: one copy, or not counted
        masked_of = getattr(self.work, "cta_masked_tiles", None)
        trips = sum(st_[4] for st_ in steps) if masked_of is not None else 0
        masked_share = min(1.0, masked_of(idx) / trips) if trips else None
        uf, mf = self.trip_factors
        if issue_tile and masked_share is not None and (uf != 1.0 or mf != 1.0):
            # the masked trips at the masked copy's replay, the rest at the unmasked one's
            mix = uf + masked_share * (mf - uf)
            issue_tile *= mix
            load_extra *= mix
        frac = fwait = 0.0
        fill_lat, fill_at = self.fill_latency_s, self.fill_at
        local_tile = self.local_s_per_tile * jit
        group = sm_id * self.merge_sm_scale // self.merge_group  # SMs of one group merge their reads of the same lines
        sp_rd, sp_wr = self.spill_rd, self.spill_wr
        if self.spill_trip_factors is not None and masked_share is not None and (sp_rd or sp_wr):
            # each trip stores and reloads its own loop copy's local bytes (memsim.spill_masked): the CTA's share
            mw, mr = cta_spill_mix(self.spill_trip_factors, masked_share, 1.0)
            sp_rd, sp_wr = sp_rd * mr, sp_wr * mw
        outside_cta, outside_walk = any(self.spill_cta), any(self.spill_walk)
        spill = (sp_rd + sp_wr) > 0 or outside_cta or outside_walk
        s_rd = s_wr = sd_rd = sd_wr = 0
        sp_wf, sp_rf = self.spill_dram_wf, self.spill_dram_rf
        dependent = self.work.dependent_loop
        merge = self.merge
        window = self.merge_window
        last_req = self.last_request
        l2book, dbook = self.l2link.book, self.dram.book
        prev_end = done = env.now
        n = len(steps)
        g_rd = l2_rd = d_rd = d_wr = fl = ex = tl = l1r = 0
        g_split: dict = {}
        # the tensors whose read bytes memsim.sim counts again at L1's tag stage: split loads and per-row statistics
        split = set(getattr(self.work, "split_load_tensors", None) or ()) | set(
            getattr(self.work, "stat_load_tensors", None) or ())
        stage_loop = getattr(self.work, "stage_loop", False)
        if self.work.cta_l1_bytes is not None:
            l1r = self.work.cta_l1_bytes(idx)  # re-reads of data this CTA just loaded: served by L1, never L2
        if self.spill_once and (spill or local_tile):
            # no tile loop: a CTA's spill figures are its whole traffic, spread over the event's tiles; an event
            # of a CTA batch or of folded heads (memsim.grain) stands for several CTAs
            share = self.ctas_in(idx) / (sum(st_[4] for st_ in steps) or 1)
            sp_rd, sp_wr, local_tile = sp_rd * share, sp_wr * share, local_tile * share
        # the code outside the tile loop (prologue, epilogue, masked tile), once per real CTA, in the last step
        fixed = self.cta_fixed_s * jit * self.ctas_in(idx) if self.cta_fixed_s else 0.0
        tile_fixed = self.tile_fixed_s * jit
        overlap = self.overlap
        # MEMSIM_WAIT_BYTES: register-load waits mixed by the step's own bytes that miss; MEMSIM_SM_GAP: a step its
        # own chain holds back books its turn in the SM's gap (memsim.spill_rowmask; both off by default)
        wait_own, gap = wait_bytes_enabled(), sm_gap_enabled()
        for k, (reads, writes, flops, exps, tiles) in enumerate(steps):
            now = env.now
            if reads:
                tl += tiles
                g = miss = waited = own = 0
                if split:
                    for acc in reads:
                        if acc[0][0] in split:
                            g_split[acc[0][0]] = g_split.get(acc[0][0], 0) + acc[2]
                if window is None:
                    for acc in reads:
                        g += acc[2]
                        if wait_own:
                            own += _mask_bytes(acc[1], acc[3], acc[4], acc[5])
                        m_ = l2read(acc, idx)
                        miss += m_
                        if fill_lat is not None:
                            if fill_at.get(acc[0], 0.0) > now:
                                waited += acc[2] - m_
                            if m_:
                                fill_at[acc[0]] = now + fill_lat
                    # constant fraction, applied to L2 hits
                    l2_req = g - min(g - miss, int(merge * g)) if self.coalesce else g
                else:
                    # a run of blocks is requested one block per tile-time: block b of an access that starts at
                    # block f at time t goes out at t + (b - f) * pace; two CTAs' requests for the same block
                    # merge when they go out less than `window` apart (the first is still in flight)
                    l2_req = 0
                    pace = (flops * spf + exps * spe) / tiles if tiles else 0.0
                    for acc in reads:
                        key, mask, nb = acc[0], acc[1], acc[2]
                        g += nb
                        if wait_own:
                            own += _mask_bytes(mask, acc[3], acc[4], acc[5])
                        # lines whose fill another CTA's miss started are still on their way: joining that
                        # request, or hitting the L2 before they land, waits as long as the miss does
                        in_flight = fill_lat is not None and fill_at.get(key, 0.0) > now
                        whole = nb
                        f = (mask & -mask).bit_length()
                        prev = last_req.get((group, key)) if self.coalesce else None
                        if prev is not None and prev[1] != idx:
                            both = mask & prev[3]
                            if both and abs((now - prev[0]) - (f - prev[2]) * pace) < window:
                                nb -= _mask_bytes(both, acc[3], acc[4], acc[5])  # joins the request in flight
                                mask &= ~both
                                if not mask:
                                    if in_flight:
                                        waited += whole
                                    continue  # all of it arrives with the other request: no L2, no DRAM
                        m_ = l2read(acc if mask == acc[1] else (key, mask, nb, acc[3], acc[4], acc[5]), idx)
                        miss += m_
                        if in_flight:
                            waited += whole - m_
                        if m_ and fill_lat is not None:
                            fill_at[key] = now + fill_lat
                        last_req[(group, key)] = (now, idx, f, mask)
                        l2_req += nb
                wb = evict() if l2.used > l2.capacity or l2.aging_due() else 0
                g_rd += g
                l2_rd += l2_req
                d_rd += miss
                d_wr += wb
                a, b = l2book(now, l2_req), dbook(now, miss + wb)
                xfer_end = a if a > b else b
                if g:
                    frac = min(1.0, (miss + waited) / g)
                fwait = min(1.0, miss / own + waited / g) if (wait_own and own and g) else frac
                if dependent:
                    # the loop cannot prefetch: every tile waits for its own loads (a round trip each)
                    ready = first = xfer_end + dep_lat * tiles
                    if not tiles:
                        # an outer step whose inner loop makes no trip still waits for its loads: the kernel puts
                        # K_j / V_j in the dot operands' layout before the inner loop (kernels/flash1.py), and the
                        # next step's loads go out after -- a load chained after a wait, a round trip later
                        # (`prologue_trips`: the DRAM share at round_trip_s, the L2 hits at round_trip_l2_s)
                        rt = rt_s if rt_s is not None else lat
                        if rt_l2 is not None:
                            rt = frac * rt + (1.0 - frac) * rt_l2
                        ready = first = xfer_end + rt
                    if dep_Bps:  # ... and moves its loads and stores at one CTA's dependent-loop rate
                        ready = first = ready + (g + sum(a[2] for a in writes)) / dep_Bps
                    # (a store-then-load round trip through the L2: not a register load's wait, which the replay
                    # has; it stays before the step's compute)
                else:
                    wait = lat if (k == 0 or not pipelined) else 0.0
                    queued = 0.0
                    if wait and dq is not None and frac:
                        # the DRAM's queues at the rate asked of it lately: the misses of this step wait longer
                        queued = frac * curve_latency_s(dq, self.dram.recent_Bps(now))
                        wait += queued
                    if k == 0 and rtrips > 1:
                        # the prologue waits on loads before it issues the first trip's (kernels.sass
                        # .prologue_round_trips): that many round trips in a row before the first compute, each
                        # after the first a round trip of its own -- for the step's L2 hits an L2 round trip where
                        # one is calibrated (`prologue_trips --plan l2`) -- and the DRAM's queue again
                        rt = rt_s if rt_s is not None else lat
                        if rt_l2 is not None:
                            rt = frac * rt + (1.0 - frac) * rt_l2
                        levels = rtrips
                        if self.round_trip_bytes:
                            # a kernel without a tile loop: its step is the whole kernel's loads, booked at once,
                            # where the chain asks for a level's share at a time -- the queue of that rate is
                            # waited once (above), not per level, and the chain runs while the links move the
                            # step's bytes: only what it takes beyond their transfer shows (a busy DRAM hides it,
                            # as the 8 KB points of `prologue_trips` showed).  A ragged CTA (its masked rows' loads
                            # are predicated off and wait for nothing) waits the share of the chain it loads
                            if g:
                                levels = max(1.0, rtrips * min(1.0, g / (self.round_trip_bytes * self.ctas_in(idx))))
                            wait += max(0.0, (levels - 1) * rt - (xfer_end - now))
                        else:
                            wait += (levels - 1) * (rt + queued)
                    ready = xfer_end + wait
                    if load_extra and k:
                        wait = 0.0
                    # compute may start once the first tile is in (a step of no tile-loop trip: once all is in)
                    first = now + (xfer_end - now) / (tiles or 1) + wait
            else:
                ready = first = now
                frac = fwait = 0.0  # no loads: the loop's register loads wait for nothing (naive's trips past seq_q)
            if overlap:  # one warpgroup's softmax under the other's MMAs
                a_, b_ = flops * spf, exps * spe
                dur = a_ if a_ > b_ else b_
            else:
                dur = flops * spf + exps * spe
            if issue_tile:  # the schedulers must issue every instruction of the tile loop, one trip per tile
                # (the step's useful FLOPs over the trip's MMA FLOPs are NOT tiles per trip: ragged and masked
                # tiles do fewer useful FLOPs than the padded MMAs the trip issues; reading them as an unrolled
                # loop made set J's one-key dK/dV 20x too fast and set D's d=16 hopper forward 2x)
                d_issue = tiles * ((issue_tile + fwait * load_extra) if reads or not issue_idle else issue_idle)
                if d_issue > dur:
                    dur = d_issue
            if local_tile:  # ... and the warps wait on their spilled registers' round trips
                d_local = tiles * local_tile
                if d_local > dur:
                    dur = d_local
            if fixed and k == n - 1:
                dur += fixed
            if tile_fixed and writes:  # a persistent CTA's epilogue and next set-up, once per tile it stores
                dur += tile_fixed
            t0 = first if first > prev_end else prev_end
            free0 = sm.free_at
            start = t0 if t0 > free0 else free0
            end = start + dur
            if end < ready:  # the last tile's data arrived after the compute could have finished
                end = ready
            sm_end = end  # the SM's turn: a CTA draining its spill traffic does not keep the others waiting
            if not pipelined and stage_loop and tiles > 1 and reads and not dependent and not load_extra:
                # a one-stage loop issues tile j+1's loads only once tile j's compute has freed its buffer: each
                # tile of the step waits its own round trip (its share of the transfer and the latency), in turn
                # with the compute -- as the tile grain walks it; the SM's turn is only the compute (co-resident
                # CTAs issue while this one waits)
                serial = first + dur + (tiles - 1) * (lat + queued + (xfer_end - now) / tiles)
                if end < serial:
                    end = serial
            if self.chain_ratio and issue_tile and tiles:  # ... nor one whose own chain is longer than its turns
                # from when its loads went out (or its previous step ended): the links' queues overlap the chain
                c0 = now if now > prev_end else prev_end
                end = max(end, chain_end(c0, d_issue, self.chain_ratio, self.ctas_in(idx) / self.fold_f))
            if spill:
                # register spills: stores and reloads of local memory every iteration, through L2
                sp_r, sp_w = sp_rd * tiles, sp_wr * tiles
                # ... and outside the loop: the prologue's stores and the epilogue's reloads once per CTA (with its
                # last step), a walk's code around the loop with each tile it stores.  Those reloads read back what
                # was stored shortly before: L2 hits, not placed in DRAM (the loop's DRAM fraction is its own)
                out_w = out_r = 0
                if outside_cta and k == n - 1:
                    c_ = self.ctas_in(idx)
                    out_w, out_r = self.spill_cta[0] * c_, self.spill_cta[1] * c_
                if outside_walk and writes:
                    out_w, out_r = out_w + self.spill_walk[0], out_r + self.spill_walk[1]
                l2_rd += sp_r + out_r
                s_rd += sp_r + out_r
                s_wr += sp_w + out_w
                # booked now: a link's calendar takes no bookings ahead; the L2 takes 4-byte spill stores
                # slower than tile traffic (calibration spill_store_l2_Bps), so each costs more link time
                sp_end = l2book(now, sp_r + out_r + (sp_w + out_w) * self.spill_st_weight)
                sp_w += out_w  # written back as the loop's stores are (the placed fraction)
                if sp_wf or sp_rf:
                    # local memory that overflows the L2 (memsim.local_memory): write-backs and reload misses
                    dr, dw = int(sp_r * sp_rf), int(sp_w * sp_wf)
                    sd_rd += dr
                    sd_wr += dw
                    d_end = dbook(now, dr + dw)
                    if sp_end < d_end:
                        sp_end = d_end
                if end < sp_end:
                    end = sp_end
            sm.free_at = free0 + (sm_end - start) if (gap and t0 > free0) else sm_end
            sm.busy_s += dur
            fl += flops
            ex += exps
            prev_end = done = end
            if writes:
                yield env.timeout(end - now)
                done = self._issue_writes(writes, env.now)
            elif k + 1 < n:
                # double buffering: next loads go out when this compute starts; else when it ends
                yield env.timeout((start if pipelined else end) - now)
        st.steps += n
        st.tiles += tl
        st.global_read_bytes += g_rd + l1r
        st.l1_reread_bytes += l1r
        for n_, b_ in g_split.items():
            st.split_read_bytes[n_] = st.split_read_bytes.get(n_, 0) + b_
        st.l2_read_bytes += l2_rd
        st.l2_write_bytes += s_wr
        st.spill_l2_read_bytes += s_rd
        st.spill_l2_write_bytes += s_wr
        st.spill_dram_read_bytes += sd_rd
        st.spill_dram_write_bytes += sd_wr
        st.dram_read_bytes += sd_rd
        st.dram_write_bytes += sd_wr
        st.dram_read_bytes += d_rd
        st.dram_write_bytes += d_wr
        st.flops += fl
        st.exp_count += ex
        if done > env.now:
            yield env.timeout(done - env.now)
        if env.now > self.end_time:
            self.end_time = env.now

    #: a `memsim.grain.Progress` (tick(ctas) after each event) or None
    progress = None
    #: L2 capacity factor while this launch runs (folded heads, `memsim.grain.fold_l2_scale`)
    l2_scale = 1.0

    def run(self) -> LaunchStats:
        n, num_sms = self.work.num_ctas, self.hw.num_sms
        cap, dcap = self.l2.capacity, getattr(self.l2, "dirty_capacity", None)
        if self.l2_scale != 1.0:  # the capacity and the dirty limit of the L2 share each head in flight keeps
            self.l2.capacity = int(cap * self.l2_scale)
            if dcap is not None:
                self.l2.dirty_capacity = int(dcap * self.l2_scale)
            self.l2.age_scale = self.l2_scale
        for k in range(self.ctas_per_sm):  # first CTA on every SM, then the second, ...
            if k * num_sms >= n:
                break
            for sm in range(min(num_sms, n - k * num_sms)):
                self.env.process(self.slot(sm))
        self.env.run()
        self.l2.age_scale = 1.0
        if self.l2.capacity != cap:
            # back to the real L2: what does not fit it was written back while the launch ran (LRU first)
            self.l2.capacity = cap
            if dcap is not None:
                self.l2.dirty_capacity = dcap
            self.stats.dram_write_bytes += self.l2.evict()
        # a CtaBatches work dispatches events; the launch has the CTAs they stand for
        self.stats.num_ctas = getattr(self.work, "true_num_ctas", n)
        self.stats.time_s = self.end_time + self.launch_overhead_s
        self.stats.sm_busy_s = sum(sm.busy_s for sm in self.sms)
        return self.stats
