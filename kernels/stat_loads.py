"""Per-row statistics that every warp loads for itself: the lanes' addresses of a tile loop's 1-D loads.

flash2's dK/dV pass (and hopper's fused backward) walks Q blocks with K_j, V_j resident; each trip loads lse_i and
delta_i, block_m fp32 values, and broadcasts them along the columns of the S^T tile (`lse2[None, :]`).  Triton gives
such a load the slice of the tile's own layout (`#ttg.slice<{dim = 0, parent = #mma}>`), so every warp loads the
columns its part of the tile holds, and in the MMA accumulator's layout every warp holds every column: lse_i is read
once per warp, 8 times for 8 warps, and the lanes that hold the same column share an address.  L1's tag stage counts,
per warp instruction, the sectors its active lanes touch (ncu per instruction, `benchmarks/ldg_sectors_gpu.sh`: a
bm128 bn64 w8 bf16 dK/dV pass loads lse / delta as 16 LDG.E.64 each per warp and trip, one sector each -- 8x the
vector's bytes; at seq_q not a multiple of 16 Triton cannot prove 8-byte alignment and loads one element a time,
whose 4 lane groups straddle a sector boundary for most row offsets: ~24x).

This module reads, from a compiled kernel, which elements each warp instruction of such a load touches:
- the loads: `tt.load` (or, in a loop pipelined 2+ stages, `ttg.async_copy_global_to_local`: a cp.async copy, whose
  redundant threads Triton predicates off) of a rank-1 fp32 tensor inside the innermost `scf.for` regions of the
  TTGIR, with its layout -- or, in a kernel whose loops load none (flash2's dQ pass), those outside every loop;
- the lanes: Triton's own linear layout of that layout (`GluonOpBuilder.to_linear_layout`), element index of every
  (warp, lane, register);
- the instructions: a thread's registers in order, `vec` contiguous elements per load instruction, where `vec` is
  what the pointer's alignment allows (16 B at most; one element where the row offset bh x seq_q is not provably
  aligned), read from the tile loop's SASS, which must hold that many loads of that width.
memsim (stdlib only) turns the per-warp element sets into sectors for each row offset and ragged block
(`memsim.sectors.stat_load_count`).
"""
from __future__ import annotations

import re

#: a rank-1 fp32 load -- a register load, or a pipelined loop's cp.async copy into shared memory (the same layout:
#: each thread copies the elements it will read) -- its length and layout (`#name` or an inline `#ttg.slice<{...}>`)
_LOAD = re.compile(r"(tt\.load\s[^:]*|ttg\.async_copy_global_to_local\s.*?):\s*tensor<(\d+)x!tt\.ptr<f32>,\s*"
                   r"(#[\w.]+(?:<\{[^}]*\}>)?)>")
_ATTR = re.compile(r"^(#[\w]+)\s*=\s*(#ttg\.[\w]+<\{.*\}>)\s*$")
_INT_LIST = r"\[([\d,\s]*)\]"


def _ints(text: str, name: str) -> list[int] | None:
    m = re.search(rf"\b{name}\s*=\s*{_INT_LIST}", text)
    return [int(x) for x in m.group(1).split(",") if x.strip()] if m else None


def _attributes(ttgir: str) -> dict:
    return {m.group(1): m.group(2) for m in map(_ATTR.match, ttgir.splitlines()) if m}


def _strip_attrs(line: str) -> str:
    return re.sub(r"<\{[^}]*\}>", "", line)


def vector_loads(ttgir: str) -> tuple[list[list[tuple[int, str, bool]]], list[tuple[int, str, bool]]]:
    """([per innermost `scf.for` region: [(length, layout text, copy)]], [the same outside every loop]): the rank-1
    fp32 loads of the kernel, in order (copy: a cp.async copy into shared memory, not a register load).  A tile loop's
    masked and unmasked copies are two regions; regions without a load are left out.  An outer loop (a GQA kernel's
    loop over the group's heads) holds a pipelined inner loop's prologue copies, not trips: it is not a tile loop."""
    loops, outside, depth, open_ = [], [], 0, []  # open_: [depth at the loop's line, its loads, holds a loop]
    for line in ttgir.splitlines():
        bare = _strip_attrs(line)
        m = _LOAD.search(line)
        if m:
            load = (int(m.group(2)), m.group(3), m.group(1).startswith("ttg.async_copy"))
            (open_[-1][1] if open_ else outside).append(load)
        if "scf.for" in bare and bare.rstrip().endswith("{"):
            if open_:
                open_[-1][2] = True
            open_.append([depth, [], False])
        depth += bare.count("{") - bare.count("}")
        while open_ and depth <= open_[-1][0]:
            _, loads, outer = open_.pop()
            if loads and not outer:
                loops.append(loads)
    return loops, outside


def _layout(text: str, attrs: dict, num_warps: int):
    """The gluon layout object of a TTGIR layout attribute (blocked, nvidia_mma, or a slice of one); None for others."""
    from triton.experimental.gluon import language as gl
    text = attrs.get(text, text)
    if text.startswith("#ttg.slice"):
        dim = re.search(r"dim\s*=\s*(\d+)", text)
        parent = re.search(r"parent\s*=\s*(#[\w]+)", text)
        if not dim or not parent:
            return None
        p = _layout(parent.group(1), attrs, num_warps)
        return None if p is None else gl.SliceLayout(int(dim.group(1)), p)
    if text.startswith("#ttg.blocked"):
        spt, tpw, wpc, order = (_ints(text, n) for n in ("sizePerThread", "threadsPerWarp", "warpsPerCTA", "order"))
        if None in (spt, tpw, wpc, order):
            return None
        return gl.BlockedLayout(spt, tpw, wpc, order)
    if text.startswith("#ttg.nvidia_mma"):
        major = re.search(r"versionMajor\s*=\s*(\d+)", text)
        minor = re.search(r"versionMinor\s*=\s*(\d+)", text)
        wpc, instr = _ints(text, "warpsPerCTA"), _ints(text, "instrShape")
        if not major or wpc is None or instr is None:
            return None
        return gl.NVMMADistributedLayout([int(major.group(1)), int(minor.group(1)) if minor else 0], wpc, instr)
    return None


def lane_elements(layout, length: int, num_warps: int, *, unique: bool = False) -> list[list[list[int]]]:
    """[warp][lane] -> the distinct elements that thread holds, in register order (Triton's linear layout).

    `unique`: as a copy into shared memory issues them -- Triton predicates off the threads that hold only another
    thread's data (a lane or warp whose index sets a bit whose basis is zero: the layout broadcasts along it), so
    those hold nothing here; a register load has every thread load its own copy."""
    from triton._C.libtriton import gluon_ir, ir
    ctx = ir.context()
    ir.load_dialects(ctx)
    builder = gluon_ir.GluonOpBuilder(ctx)
    ll = builder.to_linear_layout(layout._to_ir(builder), [length])
    regs, lanes, warps = ([b[0] for b in bases] for bases in (ll.reg_bases, ll.lane_bases, ll.warp_bases))
    if len(lanes) != 5 or 1 << len(warps) != num_warps:
        raise ValueError(f"a layout of {1 << len(lanes)} lanes and {1 << len(warps)} warps, not 32 and {num_warps}")

    def xor(bases, i):
        v = 0
        for bit, b in enumerate(bases):
            if i >> bit & 1:
                v ^= b
        return v

    def redundant(bases, i):
        return unique and any(i >> bit & 1 and b == 0 for bit, b in enumerate(bases))
    out = []
    for w in range(num_warps):
        wv = xor(warps, w)
        per_lane = []
        for lane in range(32):
            lv = xor(lanes, lane) ^ wv
            seen, elems = set(), []
            for r in range(1 << len(regs)):
                e = xor(regs, r) ^ lv
                if e not in seen:
                    seen.add(e)
                    elems.append(e)
            per_lane.append(None if redundant(warps, w) or redundant(lanes, lane) else elems)
        out.append(per_lane)
    return out


def contiguity(per_thread: list[int]) -> int:
    """The longest power-of-two run of consecutive elements that every aligned group of a thread's registers holds."""
    c = 1
    while c * 2 <= len(per_thread) and all(per_thread[i + j] == per_thread[i] + j
                                           for i in range(0, len(per_thread), c * 2) for j in range(c * 2)
                                           if i + j < len(per_thread)) and per_thread[0] % (c * 2) == 0:
        c *= 2
    return c


def warp_instructions(per_lane: list, vec: int) -> list[tuple[int, ...]]:
    """One warp's load instructions: instruction k touches, in every active lane (None: predicated off), that lane's
    k-th group of `vec` elements; each as the sorted distinct elements of its lanes.  [] for a warp with no active
    lane (a copy's redundant warp issues nothing)."""
    active = [x for x in per_lane if x is not None]
    if not active:
        return []
    n = len(active[0])
    if any(len(x) != n for x in active) or n % vec:
        raise ValueError("lanes hold different numbers of elements")
    return [tuple(sorted({e for lane in active for e in lane[k:k + vec]})) for k in range(0, n, vec)]


def ttgir_num_warps(ttgir: str) -> int:
    """The warps the TTGIR module's layouts are laid out for (its "ttg.num-warps" attribute)."""
    m = re.search(r'"ttg\.num-warps"\s*=\s*(\d+)', ttgir)
    if not m:
        raise ValueError("the TTGIR names no ttg.num-warps")
    return int(m.group(1))


def _narrow_loads_by_width(sass: str, *, whole: bool = False) -> dict | None:
    """{width in bytes: count} over the tile loop's global loads (kernels.sass.tile_loop_lines; `whole`: the whole
    kernel's): register loads (LDG) and cp.async copies (LDGSTS); None without a tile loop."""
    from kernels.sass import _LDG, _LDG_WIDTH, _LDGSTS, tile_loop_lines
    lines = sass.splitlines() if whole else tile_loop_lines(sass)
    if lines is None:
        return None
    count: dict = {}
    for ln in lines:
        m = _LDG.search(ln) or _LDGSTS.search(ln)
        if m:
            w = next((v for k_, v in _LDG_WIDTH.items() if k_ in m.group(1)), 4)
            count[w] = count.get(w, 0) + 1
    return count


def stat_loads(ttgir: str, sass: str, *, num_warps: int) -> list | None:
    """The tile loop's rank-1 fp32 loads (`once`: a kernel whose loops load none -- its loads outside them, once per
    CTA) as [{"loads": n, "length": L, "vec": v, "copy": c, "once": o, "per_thread": k,
    "warps": [[count, [instr, ..]], ..]}] -- instr: the elements (0..L-1) one warp instruction touches; warps with
    the same instructions counted together (a copy's redundant warps left out); k: the instructions a thread issues
    per load; c: cp.async copies into shared memory (a pipelined loop's), whose redundant threads Triton predicates
    off -- or None when the loop loads none, or the SASS's tile loop does not hold the loads a width predicts.

    The width: Triton loads `vec` contiguous elements of a thread at once where the pointer's alignment allows
    (16 B at most; it specialises integer arguments on divisibility by 16, so a row offset bh x seq_q is aligned only
    where seq_q % 16 == 0), else one.  Read from the SASS: one element at a time where the tile loop holds enough
    4-byte loads for that, else the widest the layout's contiguity gives that the loop holds enough loads of."""
    loops, outside = vector_loads(ttgir)
    # one copy of the tile loop (the masked copy loads the same); a kernel whose loops load none: its loads outside
    # them, once per CTA (flash2's dQ pass: lse_i, delta_i before its K/V loop)
    once = not loops
    found = outside if once else max(loops, key=len)
    if not found:
        return None
    attrs = _attributes(ttgir)
    groups: dict = {}
    for length, text, copy in found:
        layout = _layout(text, attrs, num_warps)
        if layout is None:
            return None
        key_ = (length, repr(layout), copy)
        if key_ in groups:
            groups[key_]["loads"] += 1
        else:
            groups[key_] = {"loads": 1, "length": length, "copy": copy,
                            "lanes": lane_elements(layout, length, num_warps, unique=copy)}
    have = _narrow_loads_by_width(sass, whole=once) or {}

    def need(vec):
        return sum(g["loads"] * len(g["lanes"][0][0]) // vec for g in groups.values())
    widest = min(min(contiguity(g["lanes"][0][0]) for g in groups.values()), 4)
    vecs = [v for v in (1, 2, 4) if v <= widest and have.get(4 * v, 0) >= need(v)]
    if not vecs:
        return None
    vec = vecs[0]
    out = []
    for g in groups.values():
        patterns: dict = {}
        for per_lane in g["lanes"]:
            ins = tuple(warp_instructions(per_lane, vec))
            if ins:  # a copy's redundant warps issue nothing
                patterns[ins] = patterns.get(ins, 0) + 1
        out.append({"loads": g["loads"], "length": g["length"], "vec": vec, "copy": g["copy"], "once": once,
                    "per_thread": len(g["lanes"][0][0]) // vec,
                    "warps": [[n, [list(i) for i in ins]] for ins, n in patterns.items()]})
    return out
