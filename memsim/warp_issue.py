"""How long the SM's warps take to issue a loop of compiled code: a replay of its SASS, instruction by instruction.

A warp issues its instructions in program order, one per clock at most, on one of the SM's four schedulers (warp
i of a CTA on scheduler i mod 4).  The compiler (ptxas) writes in each instruction's control bits what the
hardware needs to keep the order safe (`kernels.sass.instructions` reads them):

* a **stall count** (0-15 cycles): the scheduler waits that long before this warp's next instruction.  ptxas
  sets it from the fixed latency of the result (FFMA 4, HMMA ~ 16-30, ...): dependent fixed-latency chains are
  paid for here;
* for **variable-latency** instructions (MUFU, SHFL, LDS, LDSM, LDL, S2R, LDC, LDG, ...), a write scoreboard
  (0-5) the result releases when it is ready, and a read scoreboard for sources still being read (stores);
* a **wait mask**: the scoreboards this instruction waits on before it may issue.

The replay runs W warps (the CTAs resident on one SM x their warps) through the loop body a few times and
returns the steady-state cycles per trip.  Besides the control bits it needs, as hardware data
(`IssueLatencies`, from the `issue_latency` microbenchmark and the dot-chain points, memsim.calibration):

* how long each variable-latency class takes to release its scoreboard (cycles);
* the pipes warps share: a scheduler's tensor core (mma.sync HMMA, FLOPs per cycle), the SM's tensor cores for
  warpgroup MMAs (HGMMA, issued by each of the 4 warps of a warpgroup, executed once), a scheduler's SFU (MUFU,
  cycles per warp instruction), the SM's shared-memory port (bytes per cycle: LDS, LDSM, STS, LDGSTS);
* CTA barriers (BAR.SYNC): a warp passes when every warp of its CTA has arrived.

Global-memory *transfers* are the engine's business (memsim.engine: bytes over the L2 and DRAM links).  Their
*latency* is split by who can see it.  TMA copies release at once here: the pipeline the engine books waits for
them.  Asynchronous copies (cp.async: LDGSTS, committed as a group by LDGDEPBAR) release when the group's commit
does, after the load latency: the loop waits on them with DEPBAR.LE SB0, N, and where ptxas placed that wait
decides how much of the latency a trip exposes -- Triton 3.6's two-stage loops issue the next tile's copies at the
end of a trip and wait for all of them (N = 0) at the start of the next, so the whole round trip is exposed;
three stages keep one group in flight (N = 1 or 2) and hide it behind a trip (benchmarks/tile_loop_gpu.py: the
real loops at one CTA per SM were 19-60 % slower than the replay that released them at once).  A register load
(LDG) whose result a later instruction waits on is replayed with the load latency (`IssueLatencies.load_cycles`: an L2 hit or a DRAM miss, measured by a one-warp pointer chase,
benchmarks/load_latency_gpu.py): only the replay knows how many such waits a trip has and how much of them the
other resident warps hide (set A's naive softmax waits on 255 loads in turn per row; 255 registers leave nothing
to prefetch with).  `load_cycles` 0 is the old rule (released at once).  What the replay adds to the model is what
the SM itself needs per iteration when few warps cannot hide each other's waits (memsim.costs).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

#: instruction classes whose scoreboard release the replay times (everything else: the engine, or immediate)
LATENCY_CLASSES = ("MUFU", "SHFL", "LDS", "LDSM", "LDL", "S2R", "LDC", "BAR")
#: global-memory classes: released at once (the engine books transfers and their latency) -- except the register
#: loads below, which take `IssueLatencies.load_cycles`
GLOBAL_OPS = frozenset({"LDG", "LDGSTS", "ATOM", "ATOMG", "RED", "UTMALDG", "UBLKCP", "SYNCS", "LDGDEPBAR"})
#: register loads from global memory: their result is waited on by the warp (scoreboard), not by a pipeline
REGISTER_LOADS = frozenset({"LDG", "LD"})
#: the commit of a group of asynchronous copies (cp.async: LDGSTS ... LDGDEPBAR): the scoreboard it sets is
#: what DEPBAR.LE SBk, N waits on, so it releases when the group's copies have landed -- the load latency too
ASYNC_COMMITS = frozenset({"LDGDEPBAR"})
_NO_SB = 7


@dataclass(frozen=True)
class Instr:
    """One SASS instruction as the replay needs it (`kernels.sass.instructions` builds these)."""
    op: str  # opcode without modifiers: FFMA, HMMA, MUFU, LDS, DEPBAR, BAR, WARPGROUP, ...
    stall: int  # control bits: cycles before the warp's next instruction
    write_sb: int = _NO_SB  # scoreboard its result releases (7: none)
    read_sb: int = _NO_SB  # scoreboard its sources release (7: none)
    wait_mask: int = 0  # scoreboards it waits on (bit i: scoreboard i)
    #: bytes this warp instruction moves through the SM's shared-memory port (LDS/STS/LDSM/LDGSTS)
    smem_bytes: int = 0
    #: FLOPs of an MMA instruction (HMMA: per warp; HGMMA: per warpgroup, issued by each of its 4 warps)
    mma_flops: int = 0
    #: DEPBAR.LE SBk, N: (k, N) -- wait until at most N of scoreboard k's groups are outstanding
    depbar: tuple | None = None
    #: BAR.SYNC (a CTA barrier); WARPGROUP.DEPBAR / .ARRIVE are op "WARPGROUP" with this flag for the wait
    barrier: bool = False
    wgmma_wait: bool = False
    #: bytes an asynchronous copy (LDGSTS) brings from global memory (its lanes x width; the shared-memory port's
    #: `smem_bytes` may count more: bank-conflict wavefronts)
    global_bytes: int = 0

    def to_list(self) -> list:
        out = [self.op, self.stall, self.write_sb, self.read_sb, self.wait_mask, self.smem_bytes, self.mma_flops,
               list(self.depbar) if self.depbar else None, self.barrier, self.wgmma_wait]
        return out + [self.global_bytes] if self.global_bytes else out

    @classmethod
    def from_list(cls, x) -> "Instr":
        op, st, wb, rb, wm, sm, fl, dep, bar, wg = x[:10]
        return cls(op, int(st), int(wb), int(rb), int(wm), int(sm), int(fl), tuple(dep) if dep else None,
                   bool(bar), bool(wg), int(x[10]) if len(x) > 10 else 0)


@dataclass(frozen=True)
class IssueLatencies:
    """The SM's facts the replay needs (cycles of the SM clock); see the module doc."""
    #: cycles from issue to scoreboard release, per class in LATENCY_CLASSES
    cycles: dict
    #: mma.sync throughput of one scheduler's tensor core (FLOPs per cycle)
    hmma_flops_per_cycle: float
    #: warpgroup-MMA throughput of the SM (FLOPs per cycle)
    hgmma_flops_per_cycle: float
    #: cycles one warp's MUFU occupies its scheduler's SFU
    mufu_cycles: float = 2.0
    #: shared-memory port of the SM (bytes per cycle)
    smem_bytes_per_cycle: float = 128.0
    #: cycles a register load from global memory (LDG) takes to release its scoreboard in this replay (0: at
    #: once); `load_l2_cycles` / `load_dram_cycles` are the measured latencies of an L2 hit and a DRAM miss, which
    #: kernels.sass.issue_profile replays one after the other (memsim.costs mixes them by the step's L2 misses)
    load_cycles: float = 0.0
    load_l2_cycles: float = 0.0
    load_dram_cycles: float = 0.0
    #: cycles a spill reload (LDL) takes to release its scoreboard in this replay (0: an L1 hit, the LDS figure);
    #: kernels.sass.issue_profile replays loops with reloads once more with every reload an L2 hit
    local_cycles: float = 0.0
    #: bytes per cycle at which the SM takes in the data of its asynchronous copies (LDGSTS) from the L2: a copy's
    #: bytes land `load_cycles` after its issue at the earliest and one after another at this rate, and a cp.async
    #: group's commit releases when its last copy has landed (0: no such limit, the group lands with its commit's
    #: latency whatever its size); `benchmarks/sm_fill_gpu.py`, memsim.issue_fit.sm_fill_from
    fill_bytes_per_cycle: float = 0.0
    #: where each figure came from
    source: str = ""
    extra: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A short text that changes when any figure does (compiled-table entries record the one they used)."""
        parts = [f"{k}={self.cycles[k]:.1f}" for k in sorted(self.cycles)]
        parts += [f"hmma={self.hmma_flops_per_cycle:.0f}", f"hgmma={self.hgmma_flops_per_cycle:.0f}",
                  f"mufu={self.mufu_cycles:.2f}", f"smem={self.smem_bytes_per_cycle:.0f}"]
        if self.load_l2_cycles or self.load_dram_cycles:
            parts.append(f"ldg={self.load_l2_cycles:.0f}/{self.load_dram_cycles:.0f}")
        if self.fill_bytes_per_cycle:
            parts.append(f"fill={self.fill_bytes_per_cycle:.1f}")
        return ";".join(parts)

    def at_load_latency(self, where: str) -> "IssueLatencies":
        """These figures with register loads released after an L2 hit (`where` "l2") or a DRAM miss ("dram")."""
        from dataclasses import replace
        if where not in ("l2", "dram"):
            raise ValueError(f"at_load_latency: where must be 'l2' or 'dram', not {where!r}")
        return replace(self, load_cycles=self.load_l2_cycles if where == "l2" else self.load_dram_cycles)

    def release(self, op: str) -> float:
        if op in REGISTER_LOADS or op in ASYNC_COMMITS:
            return self.load_cycles
        if op == "LDL" and self.local_cycles:
            return self.local_cycles
        if op in GLOBAL_OPS:
            return 0.0
        if op in self.cycles:
            return self.cycles[op]
        if op in ("S2UR", "CS2R"):
            return self.cycles.get("S2R", 0.0)
        if op in ("LDSM", "LDS", "STS", "LDL", "STL"):
            return self.cycles.get("LDS", 0.0)
        return self.cycles.get("SHFL", 0.0)  # other MIO-queue instructions (SHFL-like)


def replay(body: list[Instr], *, warps_per_cta: int, ctas: int, lat: IssueLatencies, trips: int = 3,
           fetch: tuple | None = None) -> float:
    """Cycles per trip of `body` (a loop: steady state over `trips` trips, the first dropped) with `ctas` CTAs of
    `warps_per_cta` warps on one SM.  trips=1: the cycles of one pass (straight-line code).  `fetch` (switch
    MEMSIM_FETCH_RUN, memsim.fetch_run.window): (cycles per 128-B line, lines ahead) -- each warp's code arrives a
    line at a time at that rate, no further ahead of the warp than that many lines (None: code never waited for)."""
    if not body:
        return 0.0
    cpl, depth = (float(fetch[0]), max(1, int(fetch[1]))) if fetch else (0.0, 0)
    arrive: list = [{} for _ in range(max(1, warps_per_cta) * max(1, ctas))]  # per warp: line -> its code's arrival
    n = len(body)
    warps = max(1, warps_per_cta) * max(1, ctas)
    # one trip more than measured: a trip ends when the next one may start (its first instruction's issue)
    total = n * (trips + 1) if trips > 1 else n
    pc = [0] * warps
    ready_at = [0.0] * warps  # earliest issue of the warp's next instruction (stall counts)
    sb = [[[] for _ in range(8)] for _ in range(warps)]  # per warp, per scoreboard: release times outstanding
    sched_free = [0.0] * 4
    hmma_free = [0.0] * 4
    mufu_free = [0.0] * 4
    smem_free = 0.0
    fill_free = 0.0  # when the SM's intake of copy data from the L2 is free again (fill_bytes_per_cycle)
    group_land = [0.0] * warps  # per warp: when the copies of its open cp.async group have all landed
    tc_free = 0.0
    wg_pending: dict = {}
    bar_count: dict = {}  # (cta, barrier instance) -> [arrived, last arrival]
    bar_seen = [0] * warps
    arrived = [None] * warps
    start = [[0.0] * (trips + 2) for _ in range(warps)]
    last = [-1.0] * warps  # when each warp last issued: ties go to the warp that waited longest (round robin)
    waiting: dict = {}  # barrier key -> warps blocked there until the rest of their CTA arrives

    def earliest(w: int):
        """When warp w's next instruction may issue given everything issued so far (None: blocked at a barrier)."""
        ins = body[pc[w] % n]
        t = ready_at[w]
        if cpl:  # its line's code must have arrived (memsim.fetch_run)
            a = arrive[w].get(pc[w] // 8)
            if a is None:  # the first lines: fetched one after another from the start
                a = arrive[w][pc[w] // 8] = (pc[w] // 8 + 1) * cpl
            if a > t:
                t = a
        if ins.wait_mask:
            m = ins.wait_mask
            for b in range(6):
                if m >> b & 1 and sb[w][b]:
                    r = max(sb[w][b])
                    if r > t:
                        t = r
        s = w & 3
        if sched_free[s] > t:
            t = sched_free[s]
        if ins.op == "HMMA" and hmma_free[s] > t:
            t = hmma_free[s]
        elif ins.op == "MUFU" and mufu_free[s] > t:
            t = mufu_free[s]
        if ins.depbar is not None:
            k, keep = ins.depbar
            pend = sorted(sb[w][k])
            if len(pend) > keep and pend[len(pend) - keep - 1] > t:
                t = pend[len(pend) - keep - 1]
        if ins.wgmma_wait:
            pend = wg_pending.get((w // warps_per_cta, (w % warps_per_cta) // 4))
            if pend and max(pend) > t:
                t = max(pend)
        if ins.barrier:
            key = (w // warps_per_cta, bar_seen[w])
            a = bar_count.get(key)
            if arrived[w] != key:
                a = bar_count.setdefault(key, [0, 0.0])
                a[0] += 1
                a[1] = max(a[1], t)
                arrived[w] = key
                if a[0] == warps_per_cta:  # the last one in: the others go on
                    for v in waiting.pop(key, ()):
                        heapq.heappush(heap, (a[1], last[v], v))
            if a[0] < warps_per_cta:
                waiting.setdefault(key, []).append(w)
                return None
            t = max(t, a[1] + lat.cycles.get("BAR", 0.0))
        return t

    # lazy priority queue: every constraint only moves a warp's earliest issue later, so a popped warp whose
    # recomputed time is still the smallest is the next to issue (ties: the warp that issued least recently)
    heap = [(0.0, -1.0, w) for w in range(warps)]
    heapq.heapify(heap)
    while heap:
        _, _, w = heapq.heappop(heap)
        if pc[w] >= total:
            continue
        t = earliest(w)
        if t is None:
            continue
        if heap and (t, last[w]) > (heap[0][0], heap[0][1]):
            heapq.heappush(heap, (t, last[w], w))
            continue
        ins = body[pc[w] % n]
        s = w & 3
        sched_free[s] = t + 1
        last[w] = t
        if pc[w] % n == 0:
            start[w][pc[w] // n] = t
        if ins.op == "HMMA" and ins.mma_flops:
            hmma_free[s] = t + ins.mma_flops / lat.hmma_flops_per_cycle
        elif ins.op == "MUFU":
            mufu_free[s] = t + lat.mufu_cycles
        done_smem = t
        if ins.smem_bytes:
            st = max(t, smem_free)
            smem_free = st + ins.smem_bytes / lat.smem_bytes_per_cycle
            done_smem = smem_free
        if lat.fill_bytes_per_cycle and ins.global_bytes:
            # the copy's bytes arrive after the load latency, behind every copy the SM asked for before
            fill_free = max(t + lat.load_cycles, fill_free) + ins.global_bytes / lat.fill_bytes_per_cycle
            group_land[w] = max(group_land[w], fill_free)
        if ins.op == "HGMMA" and ins.mma_flops:
            # each warp of the warpgroup issues it; the tensor cores run it once: a quarter per warp
            st = max(t, tc_free)
            tc_free = st + ins.mma_flops / 4 / lat.hgmma_flops_per_cycle
            wg_pending.setdefault((w // warps_per_cta, (w % warps_per_cta) // 4), []).append(tc_free)
        if ins.wgmma_wait:
            wg_pending[(w // warps_per_cta, (w % warps_per_cta) // 4)] = []
        if ins.barrier:
            bar_seen[w] += 1
            arrived[w] = None
        for b in range(6):
            if ins.wait_mask >> b & 1:
                sb[w][b] = []
        if ins.depbar is not None:
            k, keep = ins.depbar
            pend = sorted(sb[w][k])
            sb[w][k] = pend[len(pend) - keep:] if keep else []
        if ins.write_sb != _NO_SB:
            rel = lat.release(ins.op)
            done = max(t + rel, done_smem if rel else t)
            if ins.op in ASYNC_COMMITS and lat.fill_bytes_per_cycle:
                done = max(done, group_land[w])  # the group is there when its last copy has landed
                group_land[w] = 0.0
            sb[w][ins.write_sb].append(done)
        if ins.read_sb != _NO_SB:
            sb[w][ins.read_sb].append(t + (1.0 if ins.op in GLOBAL_OPS else min(lat.release(ins.op), 8.0)))
        if cpl and pc[w] % 8 == 0:
            # the warp enters line x: line x + depth may be fetched, after line x + depth - 1
            x = pc[w] // 8
            prev = arrive[w].get(x + depth - 1, (x + depth) * cpl)
            arrive[w][x + depth] = max(prev, t) + cpl
            arrive[w].pop(x - 1, None)
        ready_at[w] = t + max(1, ins.stall)
        pc[w] += 1
        if pc[w] == total:
            start[w][total // n] = ready_at[w]
        else:
            heapq.heappush(heap, (ready_at[w], t, w))
    if any(p_ < total for p_ in pc):  # a warp left waiting at a barrier the rest of its CTA never reaches
        raise ValueError("warp_issue.replay: barrier deadlock (a BAR.SYNC not every warp of the CTA reaches)")
    if trips == 1:
        return max(start[w][1] - start[w][0] for w in range(warps))
    return max((start[w][trips] - start[w][1]) / (trips - 1) for w in range(warps))
