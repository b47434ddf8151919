"""Compiled-kernel facts as data: registers, spills and shared memory per launch (stdlib only).

`python -m kernels.compiled_facts` compiles every launch of the cases it is given for a GPU
architecture on a machine without a GPU (Triton 3.6 compiles for sm_90 on a CPU; ptxas -v, run
exactly as Triton runs it, prints the registers and spill bytes) and writes one table per
architecture, ``memsim/presets/compiled/<arch>.json``.  The model reads it here, without torch or
triton: `lookup(launch_name, problem, schedule, arch="sm90") -> CompiledFacts | None`.

Key (`key`): the launch name and everything of the problem and schedule that can change the
compiled code: dtype, head dim, block_m, block_n, warps, stages, causal and its alignment, grid
order, GQA group size (a constexpr of the flash kernels), the S/P dtype, and Triton's
specialisation class of every integer the launchers pass (`spec_class`: ==1 becomes a constant,
a multiple of 16 is marked divisible, anything else is plain): heads_q, heads_kv, seq_q, seq_kv,
seq_q*seq_kv (the naive S/P strides) and the causal offset; for the launches over row blocks
(the naive softmax passes, which load whole rows) the next power of two of seq_kv.  Two problems with one key compile to
the same kernel; the builder checks that (an entry records Triton's own specialisation, and a
second problem with the same key but another specialisation is an error there).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

#: a SASS "loop" shorter than this is the kernel's trailing trap loop (a branch to itself), not a tile loop
#: (kernels.sass picks the tile loop, memsim.costs trusts only such loops)
MIN_LOOP_INSTRUCTIONS = 8

TABLE_DIR = Path(__file__).resolve().parent / "presets" / "compiled"
FORMAT = "memsim.compiled_facts/1"


@dataclass(frozen=True)
class CompiledFacts:
    """One compiled launch: per-thread registers and local memory, per-CTA shared memory."""

    launch: str
    regs_per_thread: int
    #: bytes of spill stores / loads in the code (ptxas -v; static counts per thread, not traffic)
    spill_store_bytes: int
    spill_load_bytes: int
    #: local memory per thread (ptxas "stack frame"; the GPU's CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)
    local_bytes_per_thread: int
    #: shared memory per CTA (Triton's metadata.shared)
    shared_bytes: int
    num_warps: int
    num_stages: int
    #: "ptxas sm_90a, triton 3.6.0"
    source: str
    #: the tile loop's instruction mix from the SASS (kernels.sass), if recorded
    loop: dict | None = None
    #: the SASS replay (memsim.warp_issue via kernels.sass.issue_profile): cycles per tile-loop trip and of the
    #: code outside it, for 1..k co-resident CTAs, and the calibration fingerprint they were computed with
    issue: dict | None = None
    #: warps the compiled kernel launches per CTA (Triton's metadata.num_warps): a warp-specialised kernel of
    #: `num_warps` 4 launches 12 (two consumer warpgroups and a producer); None: not recorded (= num_warps)
    launched_warps: int | None = None
    #: bytes L1's tag stage counts for the tile loop's register loads per byte they bring (kernels.sass.l1_load_factor:
    #: a chunk split into k 4-byte loads counts k times); None: not recorded or no LDG in the loop
    l1_load_factor: float | None = None
    #: the same count over the loop's SPLIT loads only (kernels.sass.l1_split_factor: k for chunks of k pieces);
    #: None: not recorded or no split chunk.  memsim applies it to the split tensors' bytes (memsim/MODEL.md)
    l1_split_factor: float | None = None
    #: the bytes of one piece of those split chunks (kernels.sass.l1_split_piece_bytes: 2 or 4)
    l1_split_piece_bytes: float | None = None
    #: the most 16-byte pieces the tile loop loads one thread's chunk in (kernels.sass.l1_wide_pieces: 2 for flash1's
    #: fp32 workspace at 8 elements a thread, 1 at 4); None: not recorded or no wide load
    l1_wide_pieces: int | None = None
    #: where the kernel's spill stores / reloads sit, {region: [store, load] bytes per thread} for the regions with
    #: local traffic (kernels.sass.local_regions: tile, pre_straight, pre_walk, walk, other, straight); None: not
    #: recorded (or no local memory)
    local_regions: dict | None = None
    #: the kernel's SASS in bytes (16 per instruction): what a launch fetches from DRAM after an L2 flush; None: not
    #: recorded
    code_bytes: int | None = None
    #: the tile loop's rank-1 fp32 loads (per-row statistics: flash2 dK/dV's lse_i, delta_i) as every warp issues
    #: them (kernels.stat_loads.stat_loads: [{"loads", "length", "vec", "per_thread", "warps": [[count, [elements
    #: of one instruction, ..]], ..]}]); None: not recorded or none.  memsim.sectors.stat_load_count
    stat_loads: list | None = None

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0


def spec_class(x: int) -> str:
    """Triton's specialisation of an integer argument: '1' (== 1, a constant), '16' (divisible by 16), 'n'."""
    if x == 1:
        return "1"
    return "16" if x % 16 == 0 else "n"


def _row_launch(launch_name: str, problem, schedule) -> bool:
    from .schedule import kernel_launches
    return any(L.name == launch_name and "row_block" in L.axes for L in kernel_launches(problem, schedule))


def key(launch_name: str, problem, schedule) -> str:
    p, s = problem, schedule
    spec = ",".join(spec_class(v) for v in (p.heads_q, p.heads_kv, p.seq_q, p.seq_kv, p.seq_q * p.seq_kv,
                                              p.causal_offset))
    parts = [launch_name, p.dtype, f"d{p.head_dim}", f"bm{s.block_m}", f"bn{s.block_n}", f"w{s.num_warps}",
             f"st{s.num_stages}", f"causal-{p.causal_align}" if p.causal else "full", s.grid_order,
             f"g{p.group_size}", f"sp-{s.sp_dtype or p.dtype}", f"spec:{spec}"]
    if _row_launch(launch_name, p, s):  # row-softmax launches load whole rows: the row width is a constexpr
        parts.append(f"row{1 << max(0, (p.seq_kv - 1).bit_length())}")
    return "|".join(parts)


def table_path(arch: str = "sm90") -> Path:
    return TABLE_DIR / f"{arch}.json"


_CACHE: dict = {}


def load_table(arch: str = "sm90") -> dict:
    """{key: entry dict} of the architecture's table ({} when there is none)."""
    p = table_path(arch)
    if not p.is_file():
        return {}
    stamp = p.stat().st_mtime_ns
    hit = _CACHE.get(arch)
    if hit and hit[0] == stamp:
        return hit[1]
    d = json.loads(p.read_text(encoding="utf-8"))
    if d.get("format") != FORMAT:
        raise ValueError(f"{p}: not a compiled-facts table (format {d.get('format')!r}, expected {FORMAT!r})")
    entries = d.get("entries", {})
    _CACHE[arch] = (stamp, entries)
    return entries


_FIELDS = {f.name for f in fields(CompiledFacts)}


def facts_from_entry(e: dict) -> CompiledFacts:
    return CompiledFacts(**{k: v for k, v in e.items() if k in _FIELDS})


def lookup(launch_name: str, problem, schedule, arch: str = "sm90") -> CompiledFacts | None:
    """The compiled facts of one launch of (problem, schedule), or None if the table lacks it."""
    e = load_table(arch).get(key(launch_name, problem, schedule))
    return None if e is None else facts_from_entry(e)


#: key parts compared by `nearest`, most decisive first (launch, dtype, head dim, tiles, warps, stages)
_NEAR_PARTS = 7


def nearest(launch_name: str, problem, schedule, arch: str = "sm90") -> tuple[CompiledFacts, str] | None:
    """For a launch the table lacks: the entry that compiles the same tile code -- same launch, dtype, head
    dim, tiles, warps and stages (the register allocation and the tile loop depend on these), differing only
    in the mask, grid order, GQA group, S/P dtype or integer specialisation -- with the key it came from.
    Among several, the one sharing most of the remaining key parts.  None when no entry shares the first
    seven parts, then the first six (any stage count); the model then assumes the preset's registers and no
    spills, and says so."""
    want = key(launch_name, problem, schedule).split("|")
    for n in (_NEAR_PARTS, _NEAR_PARTS - 1):  # then: any stage count (it changes the buffers, less the loop)
        best, best_score = None, -1
        for k, e in load_table(arch).items():
            parts = k.split("|")
            if parts[:n] != want[:n]:
                continue
            score = sum(a == b for a, b in zip(parts[n:], want[n:]))
            if score > best_score:
                best, best_score = (facts_from_entry(e), k), score
        if best is not None:
            return best
    return None
