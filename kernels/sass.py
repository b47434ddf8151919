"""Instruction counts of a compiled kernel's loops, from its SASS (no GPU needed).

Triton ships ``nvdisasm`` beside ``ptxas``; the cubin that ``triton.compile`` produces for sm_90 on a
CPU machine disassembles to the exact machine code the GPU runs.  A loop is a backward branch
(``BRA`` to a label above it); its body is the instructions between the label and the branch.  For the
attention kernels the tile loop is the loop that holds the tensor-core instructions (``HGMMA`` on
sm_90, ``HMMA`` on older parts) -- or, for kernels without any, the longest loop.

Per loop we count every instruction (what the warp schedulers must issue, one per clock each), the
tensor-core ones (issued, but executed asynchronously by the tensor cores), the SFU ones (``MUFU``)
and the memory ones.  The model (`memsim.costs`) turns the issue count into the time a loop iteration
needs at the SM's issue rate.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from memsim.compiled import MIN_LOOP_INSTRUCTIONS

_INSTR = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)((?:\.[A-Z0-9_]+)*)\b(.*)$")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_TARGET = re.compile(r"`\((\.L_x_\d+)\)")
#: an instruction line with a guard predicate (@P0, @!UP1, @PT ...)
_PREDICATED = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+@")
#: a local access's address: [R1], [R1+0x40] (the stack pointer plus a constant offset)
_LOCAL_ADDR = re.compile(r"\[(R\d+|RZ)(?:\+(?:0x)?([0-9a-fA-F]+))?\]")
MMA_OPS = ("HGMMA", "HMMA", "IMMA", "DMMA")
MEM_OPS = ("LDG", "STG", "LDS", "STS", "LDSM", "LDL", "STL", "LDGSTS", "UTMALDG", "UTMASTG", "RED", "ATOM")


class SassError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoopProfile:
    #: instructions in the loop body (per thread, per iteration)
    instructions: int
    mma: int
    mufu: int
    memory: int
    #: local-memory (spill) loads and stores in the loop body, and their bytes per thread per iteration
    local: int
    #: the loop label in the SASS, for the record
    label: str
    local_store_bytes: int = 0
    local_load_bytes: int = 0
    #: reuse distances of the loop's local memory (`local_reuse`): {"reload": [[distance, bytes], ...],
    #: "restore": [[distance, bytes], ...]}; distance = distinct local bytes per thread touched since the value
    #: was last stored (reloads) or stored (stores), in program order around the loop
    local_reuse: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def nvdisasm_path() -> Path:
    import triton
    p = Path(triton.__file__).resolve().parent / "backends" / "nvidia" / "bin" / "nvdisasm"
    if not p.is_file():
        raise SassError(f"nvdisasm not found at {p} (it ships with Triton's NVIDIA backend)")
    return p


def disassemble(cubin: bytes) -> str:
    """The SASS text with each instruction's encoding (``-hex``): the second 64-bit word of an instruction holds
    its control bits (`instructions`); `parse` reads the same text."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        r = subprocess.run([str(nvdisasm_path()), "-c", "-hex", f.name], capture_output=True, text=True)
    if r.returncode != 0:
        raise SassError(f"nvdisasm failed: {r.stderr.strip()[:300]}")
    return r.stdout


def parse(sass: str) -> list[tuple[str, list[str]]]:
    """[(label, [opcodes of the loop body])] for every backward branch."""
    lines = sass.splitlines()
    ops: list[tuple[str | None, str]] = []  # (label defined before this instruction, opcode)
    label_at: dict[str, int] = {}
    branches: list[tuple[int, str]] = []
    exits: list[int] = []
    pending = None
    for ln in lines:
        m = _LABEL.match(ln)
        if m:
            pending = m.group(1)
            label_at[pending] = len(ops)
            continue
        m = _INSTR.match(ln)
        if not m:
            continue
        op = m.group(2)
        if op in ("STL", "LDL"):
            off = _LOCAL_ADDR.search(m.group(4) or "")
            op = f"{op}:{_width(m.group(3))}:{int(off.group(2), 16) if off and off.group(2) else 0}"
        if op == "BRA":
            t = _TARGET.search(m.group(4) or "")
            if t:
                branches.append((len(ops), t.group(1)))
        if op == "EXIT" and not _PREDICATED.match(ln):
            exits.append(len(ops))
        ops.append((pending, op))
        pending = None
    loops = []
    for at, target in branches:
        start = label_at.get(target)
        if start is not None and start <= at and not _stub_branch(at, start, exits):
            loops.append((target, [op for _, op in ops[start:at + 1]]))
    return loops


def _stub_branch(at: int, target: int, exits: list[int]) -> bool:
    """A branch placed after the kernel's last unconditional EXIT back to code before it: the return of an
    out-of-line stub (Triton 3.6's mbarrier try-wait retries: `SYNCS.PHASECHK.TRANS64.TRYWAIT`, `@!P0 BRA` to
    itself, `BRA` back to the continuation), not the end of a loop.  Read as a loop it swallowed a
    warp-specialised kernel's whole body (its code outside loops: 7 instructions, no TMA descriptor)."""
    return bool(exits) and target <= exits[-1] < at


def _width(suffixes: str) -> int:
    """Bytes one thread moves with a local load/store of these suffixes (.64, .128, .U8, ...; default 32 bit)."""
    for suf, n in ((".128", 16), (".64", 8), (".U16", 2), (".S16", 2), (".U8", 1), (".S8", 1)):
        if suf in (suffixes or ""):
            return n
    return 4


def local_distances(body: list[str], word_bytes: int = 4) -> list:
    """(kind, bytes, reuse distance in bytes per thread) of every STL / LDL of the loop body, in order (the rule of
    `local_reuse`, below, which keeps only the histograms)."""
    seq = []
    for op in body:
        parts = op.split(":")
        if parts[0] in ("STL", "LDL") and len(parts) == 3:
            seq.append((parts[0], int(parts[2]), int(parts[1])))
    if not seq:
        return []
    words = [set(range(o // word_bytes, (o + max(w, word_bytes) - 1) // word_bytes + 1)) for _, o, w in seq]
    footprint = len(set().union(*words)) * word_bytes
    n, out = len(seq), []
    for i, (kind, o, w) in enumerate(seq):
        first = o // word_bytes
        seen: set = set()
        dist = None
        for step in range(1, n + 1):
            j = (i - step) % n
            if seq[j][0] == "STL" and first in words[j]:
                dist = len(seen - words[i]) * word_bytes
                break
            if kind == "LDL" or seq[j][0] == "STL":  # a store waits for other stores (the L2 cleans oldest-written first)
                seen |= words[j]
        out.append((kind, w, footprint if dist is None else dist))
    return out


def local_reuse(body: list[str], word_bytes: int = 4, bucket_bytes: int = 16) -> dict | None:
    """Reuse distances of the loop's local loads and stores (see LoopProfile.local_reuse).

    Walking back from each LDL (around the loop: the body repeats) to the last STL that wrote its first word,
    the distinct other words loaded or stored in between, x 4 bytes, is its distance (what may evict it); a
    reload of a value no STL of the loop writes (stored before the loop) gets the loop's whole local
    footprint.  For each STL, back to the previous STL of the same word, the distinct other words STORED in
    between (what is written after it and may push it out of the dirty set before it is written again).  Histograms of
    (distance rounded half up to `bucket_bytes`, bytes)."""
    dists = local_distances(body, word_bytes)
    if not dists:
        return None
    hist = {"reload": {}, "restore": {}}
    for kind, w, dist in dists:
        key = "reload" if kind == "LDL" else "restore"
        b = bucket_bytes * ((dist + bucket_bytes // 2) // bucket_bytes)
        hist[key][b] = hist[key].get(b, 0) + w
    return {k: sorted([d, n_] for d, n_ in v.items()) for k, v in hist.items()}


def profile(body: list[str], label: str) -> LoopProfile:
    base = [op.split(":")[0] for op in body]
    st = sum(int(op.split(":")[1]) for op in body if op.startswith("STL:"))
    ld = sum(int(op.split(":")[1]) for op in body if op.startswith("LDL:"))
    return LoopProfile(instructions=len(base), mma=sum(op in MMA_OPS for op in base),
                       mufu=sum(op == "MUFU" for op in base), memory=sum(op in MEM_OPS for op in base),
                       local=sum(op in ("LDL", "STL") for op in base), label=label,
                       local_store_bytes=st, local_load_bytes=ld, local_reuse=local_reuse(body))


def _pick_tile_loop(loops: list):
    """(label, body) of the tile loop among `loops` [(label, body of opcodes)] (the rule in `tile_loop`)."""
    with_mma = [(lb, b) for lb, b in loops if any(op.split(":")[0] in MMA_OPS for op in b)]
    if with_mma:
        return with_mma[0]
    real = [(lb, b) for lb, b in loops if len(b) >= MIN_LOOP_INSTRUCTIONS]
    if not real:
        return max(loops, key=lambda x: len(x[1]))
    # fp32 dots run on FFMAs: the first loop doing at least half the most FFMAs of any loop (set I's fp32 flash1
    # opens with a 272-instruction loop of stores that zero its O workspace: no FFMA, not the tile loop)
    ffma = [sum(op == "FFMA" for op in b) for _, b in real]
    top = max(ffma)
    return next(lb_b for lb_b, n in zip(real, ffma) if n >= 0.5 * top) if top else real[0]


def tile_loop(sass: str) -> LoopProfile | None:
    """The tile loop: the first loop holding tensor-core instructions, else the first loop of at least
    MIN_LOOP_INSTRUCTIONS doing at least half the FFMAs of the loop that does most (program order; None: no loop).

    "First", not "longest", for loops without MMAs (fp32 dots run on FMAs): flash2's K/V loop comes twice,
    the unmasked blocks first and the masked diagonal / ragged tail after, and the masked copy is the longer
    one (its masks keep more values live: set A's fp32 flash2 forward spilled 2252 B per thread per iteration
    there against 604 B in the unmasked loop; ncu measured 711 B per tile, the unmasked loop plus the
    prologue's share).  The longest loop was the masked one, which runs at most once per CTA."""
    loops = parse(sass)
    if not loops:
        return None
    lb, body = _pick_tile_loop(loops)
    return profile(body, lb)


#: where a kernel's local stores / reloads sit (`local_regions`)
LOCAL_REGIONS = ("tile", "pre_straight", "pre_walk", "walk", "other", "straight")
_LOCAL_WIDTH = {".128": 16, ".64": 8, ".U16": 2, ".S16": 2, ".U8": 1, ".S8": 1}


def local_regions(sass: str, tile_label: str | None) -> dict:
    """{region: [store bytes, load bytes] per thread} of a kernel's local stores (STL) and reloads (LDL), by where
    they sit in its SASS (`disassemble`'s -hex text) relative to the tile loop (label `tile_label`):

    * ``tile``: the tile loop (the model books it per trip: `LoopProfile.local_store_bytes`);
    * ``pre_straight`` / ``pre_walk``: between the tile loop's guard -- the last conditional branch before it that
      jumps to just past its end (no trip: skip the loop) -- and the loop: once per CTA (per walk tile) that makes
      a trip;
    * ``walk``: inside a loop that holds the tile loop (a persistent CTA's walk over its tiles): once per tile;
    * ``other``: in another loop (the masked copy of the tile loop, a ragged tail: booked at the tile loop's cost);
    * ``straight``: outside every loop: once per CTA (the prologue storing what the loop keeps spilled, the
      epilogue reloading it).

    The `spill_sm` microbenchmark's 70 ncu points (benchmarks/spill_regions.py --microbench): ncu's local bytes
    less the tile loop's per trip leave exactly the straight bytes per thread per CTA."""
    labels, found = scan(sass)
    loops = loops_of(labels, found)
    tile = next(((a, b) for lb, a, b in loops if lb == tile_label), None)
    pre: set = set()
    if tile is not None:
        ts, te = tile
        for g in range(ts - 1, -1, -1):
            ln, m, _ctrl = found[g]
            if m.group(2) == "BRA" and "@" in ln.split("BRA")[0]:
                t = _TARGET.search(m.group(4) or "")
                if t and labels.get(t.group(1), -1) == te + 1:
                    pre = set(range(g + 1, ts))
                    break
    out = {r: [0, 0] for r in LOCAL_REGIONS}
    for i, (_ln, m, _ctrl) in enumerate(found):
        op = m.group(2)
        if op not in ("STL", "LDL"):
            continue
        j = 0 if op == "STL" else 1
        w = next((v for k, v in _LOCAL_WIDTH.items() if k in (m.group(3) or "")), 4)
        inside = [(a, b) for _lb, a, b in loops if a <= i <= b]
        if tile is not None and tile[0] <= i <= tile[1]:
            out["tile"][j] += w
        elif i in pre:
            out["pre_walk" if inside else "pre_straight"][j] += w
        elif tile is not None and any(a <= tile[0] and tile[1] <= b for a, b in inside):
            out["walk"][j] += w
        elif inside:
            out["other"][j] += w
        else:
            out["straight"][j] += w
    return out


_LDG = re.compile(r"\bLDG\.E((?:\.[A-Z0-9_]+)*)\s+R\d+,\s*desc\[[^\]]+\]\[(R\d+)(?:\.64)?(?:\+(0x[0-9a-f]+))?\]")
_LDG_WIDTH = {".128": 16, ".64": 8, ".U16": 2, ".S16": 2, ".U8": 1, ".S8": 1}
#: a cp.async copy (LDGSTS) reads global memory through the same tag stage: its global operand is the second one
_LDGSTS = re.compile(r"\bLDGSTS\.E((?:\.[A-Z0-9_]+)*)\s+\[[^\]]+\],\s*desc\[[^\]]+\]\[(R\d+)(?:\.64)?(?:\+(0x[0-9a-f]+))?\]")


def tile_loop_lines(sass: str) -> list | None:
    """The SASS text lines of the tile loop (`tile_loop`): from its label to its last backward branch; None without
    one."""
    lp = tile_loop(sass)
    if lp is None:
        return None
    lines = sass.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith(lp.label + ":")), None)
    if start is None:
        return None
    ends = [i for i, ln in enumerate(lines) if i > start and "BRA" in ln and lp.label in ln]
    return lines[start:ends[-1] + 1] if ends else None


def _ldg_runs(lines: list, *, copies: bool, runs) -> list:
    """Global loads of `lines` as [width, loads] groups: loads of one kind and width from one base register at offsets
    that continue one another form one group where `runs(width)` says such loads make runs; any other load is a
    group of one.  `copies`: cp.async copies (LDGSTS) beside register loads (LDG)."""
    groups: list = []
    open_run: dict = {}  # (kind, base register) -> (its run, the next offset that would continue it)
    for ln in lines:
        m, kind = _LDG.search(ln), "ldg"
        if not m and copies:
            m, kind = _LDGSTS.search(ln), "ldgsts"
        if not m:
            continue
        mods, off = m.group(1), int(m.group(3) or "0", 16)
        base = (kind, m.group(2))
        w = next((v for k_, v in _LDG_WIDTH.items() if k_ in mods), 4)
        run = open_run.get(base)
        if runs(w) and run is not None and run[1] == off and run[0][0] == w:
            run[0][1] += 1
            open_run[base] = (run[0], off + w)
            continue
        g = [w, 1]
        groups.append(g)
        open_run[base] = (g, off + w) if runs(w) else None
    return groups


def _tile_loop_ldg_groups(sass: str) -> list | None:
    """The tile loop's global loads -- register loads (LDG) and cp.async copies (LDGSTS, a multi-stage loop's) -- as
    [width, loads] groups: a run of 4-byte-or-narrower loads of one kind from one base register at offsets that
    continue one another is one group of `loads` pieces; a vector load is a group of one.  None when the SASS has no
    tile loop or the loop has no global load.  (A naive dQ loop of 2 stages copies each thread's 32-byte dS chunk as 8
    4-byte LDGSTS where seq_kv is not a multiple of 16: live r1_014, ncu 5.4x its bytes.)"""
    lines = tile_loop_lines(sass)
    if lines is None:
        return None
    return _ldg_runs(lines, copies=True, runs=lambda w: w <= 4) or None


def _is_split_chunk(width: int, loads: int) -> bool:
    """A chunk of >= 16 B split into pieces is a vector load the compiler could not emit (lanes' chunks side by
    side); shorter runs are per-row values (m, l, lse) whose lanes share addresses -- they count once."""
    return loads > 1 and width * loads >= 16


def l1_load_factor(sass: str) -> float | None:
    """Bytes L1's tag stage counts for the tile loop's register loads (LDG), per byte they bring, from the SASS.

    Where Triton cannot prove a row's 16-byte alignment (a stride in elements not a multiple of 16: a naive
    kernel's P / dS rows of seq_kv elements) it splits each thread's contiguous chunk of a tile into k 4-byte
    loads from one base register at offsets 0, 4, .., 4(k-1).  Every one of those k warp instructions touches the
    sectors of the whole 32-lane x 4k-byte span, so the tag stage counts the chunk k times (ncu, per instruction,
    `benchmarks/ldg_sectors_gpu.sh`: 8 such loads -> 29.2 sectors for 3.65 needed, 4 -> 16.75 for 4; vector loads
    LDG.E.128 / .64 count what they bring).  Only chunks of 16 B or more count so: a run of one or two 4-byte loads
    is a per-row value whose lanes share addresses (fp32 flash1's m / l: ncu finds no excess there).  Returns
    sum(counted) / sum(brought) over the loop's LDGs (1.0: no split group), None when the loop has no LDG.  The mix
    of a full tile: the model prices the split loads per tensor with `l1_split_factor`."""
    groups = _tile_loop_ldg_groups(sass)
    if groups is None:
        return None
    brought = sum(w * k for w, k in groups)
    counted = sum(w * k * (k if _is_split_chunk(w, k) else 1) for w, k in groups)
    return counted / brought


def _loopless_wide_groups(sass: str) -> list | None:
    """A kernel without a tile loop: its register loads as [width, loads] groups where a run of 8- or 16-byte loads
    from one base register at offsets that continue one another is one group (a thread's 32-byte chunk of an fp32
    tile loaded as two LDG.E.128 at +0 and +0x10: hopper's dQ conversion, whose layout is the bf16 store's, 8
    elements a thread); None where the kernel has a tile loop or no such run.  Each piece instruction's lanes touch
    every sector of their chunks' span, as 4-byte pieces do (`l1_split_factor`)."""
    lp = tile_loop(sass)
    if lp is not None and lp.instructions >= MIN_LOOP_INSTRUCTIONS:
        return None
    groups = _ldg_runs(sass.splitlines(), copies=False, runs=lambda w: w >= 8)
    return groups if any(k > 1 for w, k in groups if w >= 8) else None


def l1_wide_pieces(sass: str) -> int | None:
    """The most 16-byte (or 8-byte) pieces the tile loop loads one thread's contiguous chunk in: 2 where a chunk of
    32 bytes comes as two LDG.E.128 from one base register at +0 and +0x10 (flash1's fp32 O workspace in the layout of
    its fp16 / bf16 tiles, 8 elements a thread), 1 where every wide load brings its own chunk (the same workspace at
    4 elements a thread: d16 tiles of few rows, or fp32 kernels); None without a tile loop or a wide load.  Each
    piece instruction touches every sector of its lanes' chunks (`_loopless_wide_groups`), so L1's tag stage counts
    such a tile `pieces` times (memsim.workloads.flash1_l1_reread_bytes_per_row)."""
    lines = tile_loop_lines(sass)
    if lines is None:
        return None
    wide = [k for w, k in _ldg_runs(lines, copies=False, runs=lambda w: w >= 8) if w >= 8]
    return max(wide) if wide else None


def _split_groups(sass: str) -> list:
    """The split chunks l1_split_factor / l1_split_piece_bytes price: the tile loop's, else a loopless kernel's
    wide ones."""
    tile = [(w, k) for w, k in (_tile_loop_ldg_groups(sass) or ()) if _is_split_chunk(w, k)]
    if tile:
        return tile
    return [(w, k) for w, k in (_loopless_wide_groups(sass) or ()) if k > 1]


def l1_split_piece_bytes(sass: str) -> float | None:
    """The width in bytes of one piece of the tile loop's split chunks (2: fp16 / bf16 elements loaded one at a
    time, 4: fp32 or 4-byte words), weighted by the chunks' bytes; None when the loop splits no chunk.  With
    `l1_split_factor` (the pieces per chunk) it gives the chunk: a row's last chunk holds fewer valid bytes and
    issues only the pieces that cover them (each piece has its own column predicate)."""
    split = _split_groups(sass)
    if not split:
        return None
    return sum(w * w * k for w, k in split) / sum(w * k for w, k in split)


def l1_split_factor(sass: str) -> float | None:
    """Bytes L1's tag stage counts per byte brought, over the tile loop's SPLIT loads only (`l1_load_factor`'s
    chunks of k pieces: k each, weighted by their bytes); None when the loop splits no chunk.

    The model applies it to the bytes of the tensors whose loads are split (memsim.workloads: rows at a pitch in
    elements that is not a multiple of 16), not to the launch's whole mix: a one-query naive P.V reads 1 valid row
    of P's 32-row tile (the other rows' loads are predicated off) beside a whole V tile, so the full tile's mix
    (3.3) over-counts its global bytes 2x where the split tensor's own factor (8) gives them.  A kernel without a
    tile loop: its wide split chunks (`_loopless_wide_groups`)."""
    split = _split_groups(sass)
    if not split:
        return None
    return sum(w * k * k for w, k in split) / sum(w * k for w, k in split)


def cubin_tile_loop(cubin: bytes) -> LoopProfile | None:
    return tile_loop(disassemble(cubin))


# --- control bits: what memsim.warp_issue replays ---------------------------------------------------------------
_CTRL_WORD = re.compile(r"^\s*/\*\s*(0x[0-9a-f]{16})\s*\*/\s*$")
_DEPBAR = re.compile(r"SB(\d)\s*,\s*(0x[0-9a-f]+|\d+)")
_SETMAXREG = re.compile(r"USETMAXREG\.(DEALLOC|TRY_ALLOC)\.CTAPOOL\s+(?:UP\d,\s*)?(0x[0-9a-f]+)")
_MMA_SHAPE = {"16816": (16, 8, 16), "1688": (16, 8, 8), "16832": (16, 8, 32), "884": (8, 8, 4), "8816": (8, 8, 16)}


def _smem_bytes(op: str, mods: str) -> int:
    """Bytes one warp instruction moves through the shared-memory port."""
    if op == "LDSM":
        return 128 * (4 if ".4" in mods else 2 if ".2" in mods else 1)
    if op in ("LDS", "STS", "LDGSTS"):
        return 32 * _width(mods)
    return 0


def _mma_flops(op: str, mods: str) -> int:
    if op == "HMMA":
        m = re.search(r"\.(16816|1688|16832|884|8816)", mods)
        if m:
            a, b, c = _MMA_SHAPE[m.group(1)]
            return 2 * a * b * c
    if op == "HGMMA":
        m = re.search(r"\.(\d+)x(\d+)x(\d+)", mods)
        if m:
            return 2 * int(m.group(1)) * int(m.group(2)) * int(m.group(3))
    return 0


def instructions(sass: str):
    """([memsim.warp_issue.Instr], [(label, first, last index of the loop body)]) of `disassemble`'s text.

    Control bits (Volta and later, the high 23 bits of the 128-bit instruction: bits 41-62 of its second 64-bit
    word): stall cycles [41:44], yield [45], write scoreboard [46:48], read scoreboard [49:51], wait mask
    [52:57] (7 = no scoreboard).  Loops: a BRA to a label at or above it, as `parse`."""
    out, loops, _ = _decode(sass)
    return out, loops


def scan(sass: str) -> tuple[dict, list]:
    """Walk `disassemble`'s text (``-hex``): ({label: index of the instruction after it}, [(line, `_INSTR` match,
    control bits = the second 64-bit word >> 41)] in program order).  `instructions` and `kernels.smem_banks`
    read the same walk, so their instruction indices agree."""
    lines = sass.splitlines()
    labels, found = {}, []
    i = 0
    while i < len(lines):
        ln = lines[i]
        m = _LABEL.match(ln)
        if m:
            labels[m.group(1)] = len(found)
            i += 1
            continue
        m = _INSTR.match(ln)
        if not m or i + 1 >= len(lines):
            i += 1
            continue
        c = _CTRL_WORD.match(lines[i + 1])
        if not c:
            raise SassError("instructions() needs nvdisasm -hex output (the control word under each instruction)")
        found.append((ln, m, int(c.group(1), 16) >> 41))
        i += 2
    return labels, found


def loops_of(labels: dict, found: list) -> list:
    """[(label, first, last index of the loop body)]: every backward branch of `scan`'s walk that closes a loop (a
    stub's return after the last EXIT does not, `_stub_branch`), in program order of the branches."""
    exits = [k for k, (ln, m, _) in enumerate(found) if m.group(2) == "EXIT" and not _PREDICATED.match(ln)]
    out = []
    for at, (_, m, _) in enumerate(found):
        t = _TARGET.search(m.group(4) or "") if m.group(2) == "BRA" else None
        if t and t.group(1) in labels and labels[t.group(1)] <= at and not _stub_branch(at, labels[t.group(1)], exits):
            out.append((t.group(1), labels[t.group(1)], at))
    return out


def _decode(sass: str):
    """`instructions`' (Instrs, loops) and the `USETMAXREG` marks [(instruction index, "alloc" | "dealloc",
    registers)] of a warp-specialised kernel."""
    from memsim.warp_issue import Instr
    labels, found = scan(sass)
    out, marks = [], []
    for ln, m, ctrl in found:
        op, mods, rest = m.group(2), m.group(3) or "", m.group(4) or ""
        dep = None
        if op == "DEPBAR":
            d = _DEPBAR.search(rest)
            if d:
                dep = (int(d.group(1)), int(d.group(2), 0))
        elif op == "USETMAXREG":
            r = _SETMAXREG.search(ln)
            if r:
                marks.append((len(out), "alloc" if r.group(1) == "TRY_ALLOC" else "dealloc", int(r.group(2), 16)))
        out.append(Instr(op=op, stall=ctrl & 15, write_sb=(ctrl >> 5) & 7, read_sb=(ctrl >> 8) & 7,
                         wait_mask=(ctrl >> 11) & 63, smem_bytes=_smem_bytes(op, mods), mma_flops=_mma_flops(op, mods + rest),
                         depbar=dep, barrier=(op == "BAR" and ".SYNC" in mods),
                         wgmma_wait=(op == "WARPGROUP" and "DEPBAR" in mods),
                         global_bytes=_smem_bytes(op, mods) if op == "LDGSTS" else 0))
    return out, loops_of(labels, found), marks


@dataclass(frozen=True)
class WarpSpecialised:
    """How a warp-specialised kernel (Triton 3.6's `tl.range(..., warp_specialize=True)`) splits its warps.

    The SASS holds one region per partition, each opened by a `USETMAXREG`: the consumer warpgroups raise their
    registers (`TRY_ALLOC`) and run the tile loop, each on its share of the tile (hopper_fwd: two groups of 4
    warps, 64 rows each); the producer lowers them the most (`DEALLOC` 40) and only builds the TMA descriptors
    and issues the loads.  ncu: 384 threads per CTA for a `num_warps=4` launch."""
    #: consumer partitions that run the tile loop (they share the SM's tensor cores and SFUs)
    groups: int
    #: first and last instruction index of the tile loop in the first consumer partition
    tile: tuple[int, int]
    #: the first consumer's code outside its loops, once per CTA (prologue; the epilogue too unless persistent)
    once: tuple
    #: a persistent kernel (an MMA loop around the tile loop: the CTA walks tiles): the walk's body outside the
    #: tile loop (the next tile's set-up, the epilogue), once per tile
    per_tile: tuple
    #: TMA descriptors the producer builds one after another before its first load (`UTMACCTL`); the
    #: consumers' own (the output's) are built at the same time, in their partitions
    producer_descriptors: int


#: loops of fewer instructions and no MMA inside a partition are spin waits (mbarrier try-wait, register
#: re-allocation)
_SPIN_LOOP = 8


def warp_specialised(ins: list, loops: list, marks: list) -> WarpSpecialised | None:
    """The partitions of `_decode`'s output (None: not warp-specialised, or no consumer holds an MMA loop)."""
    if not marks:
        return None
    regions = [(i, marks[k + 1][0] if k + 1 < len(marks) else len(ins), kind, regs)
               for k, (i, kind, regs) in enumerate(marks)]
    deallocs = [r for r in regions if r[2] == "dealloc"]
    cons = [r for r in regions if r[2] == "alloc" and any(x.op in MMA_OPS for x in ins[r[0]:r[1]])]
    if not deallocs or not cons:
        return None
    prod = min(deallocs, key=lambda r: r[3])
    first, end = cons[0][0], cons[0][1]
    inner = [(a, b) for _, a, b in loops if first <= a and b < end]
    with_mma = [(a, b) for a, b in inner if any(x.op in MMA_OPS for x in ins[a:b + 1])]
    if not with_mma:
        return None
    ta, tb = min(with_mma, key=lambda ab: ab[1] - ab[0])  # the innermost: an enclosing one walks the tiles
    outer = [(a, b) for a, b in with_mma if a <= ta and tb <= b and (a, b) != (ta, tb)]
    spin = [(a, b) for a, b in inner if b - a < _SPIN_LOOP and (a, b) not in with_mma]

    def outside(lo, hi, holes):
        drop = {k for a, b in holes for k in range(a, b + 1)}
        return tuple(x for k, x in enumerate(ins[lo:hi], lo) if k not in drop and x.op not in ("BRA", "EXIT", "NOP"))
    if outer:
        oa, ob = max(outer, key=lambda ab: ab[1] - ab[0])
        # every MMA loop inside the walk runs blocks the workload books as steps (the tile loop; a causal kernel's
        # masked diagonal band): none of them is per-tile code
        steps = [(a, b) for a, b in with_mma if oa <= a and b <= ob and (a, b) != (oa, ob)]
        once, per_tile = outside(first, end, [(oa, ob)] + spin), outside(oa, ob + 1, steps + spin)
    else:
        once, per_tile = outside(first, end, [(ta, tb)] + spin), ()
    return WarpSpecialised(groups=len(cons), tile=(ta, tb), once=once, per_tile=per_tile,
                           producer_descriptors=sum(x.op == "UTMACCTL" for x in ins[prod[0]:prod[1]]))


def _outside_loops(ins: list, loops: list) -> list:
    """The code outside every loop (prologue, epilogue): the other loops (the masked diagonal tile, a ragged
    tail) run once per masked tile, which the engine books as tiles at the tile loop's cost."""
    in_loop = {k for _, a, b in loops for k in range(a, b + 1)}
    return [x for k, x in enumerate(ins) if k not in in_loop and x.op not in ("BRA", "EXIT", "NOP")]


#: what `issue_profile` computes; entries with another version are recomputed by compiled_facts --refresh-issue
#: (2: the code outside the tile loop excludes every loop body; 3: records straight_instructions; 4: and
#: tma_descriptor_inits; 5: no-MMA tile loops chosen by their FFMA count, the entry's `loop` recomputed too;
#: 6: the tile loop replayed with register loads at the L2-hit latency (tile_cycles) and the DRAM-miss one
#: (tile_cycles_dram); 7: loops with spill reloads replayed once more with every reload an L2 hit
#: (tile_cycles_local_l2); 8: the commit of a group of asynchronous copies (LDGDEPBAR) released after the load
#: latency too, so loops waiting on their cp.async copies get tile_cycles_dram; mma_instructions counted;
#: 9: stub branches after the last EXIT are not loops, warp-specialised kernels replayed by partition: groups,
#: the producer's descriptors, the persistent walk's per-tile code in tile_fixed_cycles; 10: shared-memory
#: instructions charge the port their bank conflicts' wavefronts, kernels.smem_banks; 11: a cp.async group
#: releases when its copies' bytes have come in at the SM's fill rate (IssueLatencies.fill_bytes_per_cycle,
#: benchmarks/sm_fill_gpu.py) -- only tile loops with LDGSTS change, straight code replays without it.  Within 11,
#: a persistent warp-specialised walk's per-tile code leaves out every MMA loop of the walk and the trips its peeled
#: MMAs amount to (`tile_fixed_peeled_trips`: the workload books those blocks as steps); its entries were replayed
#: with --refresh-issue --force --launch-prefix, the fingerprint does not see the fix)
PROFILE_VERSION = 11


def _without_tensor(fingerprint: str | None) -> str | None:
    """A figures fingerprint less its tensor-pipe rates (they time HMMA / HGMMA instructions only)."""
    return None if fingerprint is None else ";".join(p for p in fingerprint.split(";")
                                                      if not p.startswith(("hmma=", "hgmma=")))


def _without_fill(fingerprint: str | None) -> str | None:
    """A figures fingerprint less the SM's copy-fill rate (it times LDGSTS in tile loops only)."""
    return None if fingerprint is None else ";".join(p for p in fingerprint.split(";") if not p.startswith("fill="))


def _without_loads(fingerprint: str | None) -> str | None:
    """A figures fingerprint less its register-load latencies (profile 5 entries were replayed without them)."""
    return None if fingerprint is None else ";".join(p for p in fingerprint.split(";") if not p.startswith("ldg="))


def _ported(sass: str, ins: list, num_warps: int) -> tuple[list, bool]:
    """`ins` with each shared-memory instruction's port charge: the shared-memory port moves one 128-B wavefront
    per cycle, so each LDS / LDSM / STS / LDGSTS costs its bank conflicts' wavefronts (kernels.smem_banks: the
    lanes' addresses from the SASS), not its bytes / 128.  Also whether no charge changed."""
    from dataclasses import replace as _with
    from kernels.smem_banks import H100 as _BANKS, smem_wavefronts
    wf = smem_wavefronts(sass, num_warps=num_warps)
    ported = [_with(x, smem_bytes=round(wf[k] * _BANKS.wavefront_bytes)) if k in wf else x for k, x in enumerate(ins)]
    return ported, ported == ins


def _plain_tile_body(ins: list, loops: list) -> list:
    """The tile loop's instructions of a kernel that is not warp-specialised (`_pick_tile_loop`; [] if none)."""
    if not loops:
        return []
    named = [(lb, [x.op for x in ins[a:b + 1]]) for lb, a, b in loops]
    lb, _ = _pick_tile_loop(named)
    a, b = next((a, b) for l2, a, b in loops if l2 == lb)
    return ins[a:b + 1]


def _band_range(ins: list, loops: list) -> tuple[int, int] | None:
    """(first, last) instruction index of the kernel's other tile loop (None: none): a loop outside the tile loop
    (neither inside nor around it) doing the same dot work per trip -- the same MMA instructions, or for a loop
    without MMAs (fp32 dots on FFMAs) FFMAs within 10 % -- and of 0.5-2x its instructions; the longest such.
    flash2 / hopper compile each K/V (or Q) loop twice (kernels/flash2.py, MASKED): the blocks every row sees whole
    and the masked ones (the causal diagonal band, a ragged tail), and the masked copy carries the mask arithmetic
    (forward d=128 128x16: 416 instructions against 347)."""
    if not loops:
        return None
    named = [(lb, [x.op for x in ins[a:b + 1]]) for lb, a, b in loops]
    lb, _ = _pick_tile_loop(named)
    ta, tb = next((a, b) for l2, a, b in loops if l2 == lb)

    def work(a, b):
        body = ins[a:b + 1]
        return sum(x.op in MMA_OPS for x in body), sum(x.op == "FFMA" for x in body), len(body)
    mma, ffma, n = work(ta, tb)
    best = None
    for _, a, b in loops:
        if (a, b) == (ta, tb) or (a <= ta and tb <= b) or (ta <= a and b <= tb):
            continue
        m2, f2, n2 = work(a, b)
        same = m2 == mma and (mma > 0 or (ffma > 0 and abs(f2 - ffma) <= 0.1 * ffma))
        if same and 0.5 * n <= n2 <= 2 * n and (best is None or n2 > best[1] - best[0] + 1):
            best = (a, b)
    return best


def _selects(body: list) -> int:
    """The mask's selects in a loop body (FSEL, SEL: a masked score, a row that sees nothing yet)."""
    return sum(x.op in ("FSEL", "SEL") for x in body)


def band_profile(ins: list, loops: list, *, num_warps: int, max_ctas: int, lat, sass: str | None = None) -> dict:
    """The other tile loop (`_band_range`) replayed as `issue_profile` replays the tile loop (its register loads
    and copy groups at the L2-hit latency), for 1..max_ctas CTAs: ``band_cycles``, ``band_instructions`` and
    ``band_masked`` (the band is the masked copy: it has more of the mask's selects than the tile loop; flash2's
    dK/dV pass runs its masked band first, so there the tile loop is the masked one.  Not "the longer copy": in a
    spilling fp32 kernel the spill code can make the whole copy longer -- the spills helper's count over 126
    cached spilling kernels, notes/spills.md session 13).  With the SASS text (`sass`) and local traffic in the band:
    ``band_local_bytes`` [store, load] per thread of one trip (`memsim.spill_masked`).
    ``band_instructions`` 0: no band.  `ins`: `_decode`'s instructions with their port charges (`_ported`)."""
    from dataclasses import replace
    from memsim.warp_issue import ASYNC_COMMITS, REGISTER_LOADS, replay
    band = _band_range(ins, loops)
    if band is None:
        return {"band_instructions": 0}
    a, b = band
    body = ins[a:b + 1]
    loads = (any(x.op in REGISTER_LOADS or x.op in ASYNC_COMMITS for x in body)
             and bool(lat.load_l2_cycles or lat.load_dram_cycles))
    at_l2 = lat.at_load_latency("l2") if loads else replace(lat, load_cycles=0.0)
    tile = _plain_tile_body(ins, loops)
    out = {"band_instructions": len(body), "band_masked": _selects(body) > _selects(tile),
           "band_cycles": [round(replay(body, warps_per_cta=num_warps, ctas=c, lat=at_l2), 1)
                           for c in range(1, max(1, max_ctas) + 1)]}
    if sass is not None and any(x.op in ("STL", "LDL") for x in body + tile):
        label = next(lb for lb, a_, b_ in loops if (a_, b_) == (a, b))
        lp = profile(dict(parse(sass))[label], label)
        out["band_local_bytes"] = [lp.local_store_bytes, lp.local_load_bytes]
    return out


def _round_trip_levels(prologue: list) -> tuple[int, list, list]:
    """Walk `prologue` (instructions in program order, issued in order by each warp) counting memory round trips:
    an instruction waits for the level of every scoreboard in its wait mask (and DEPBAR.LE SBk, N for the level of
    the copy groups beyond the last N), and a register load (LDG) or a copy (LDGSTS) issued after waiting for level
    L lands at level L + 1.  Returns (the level the walk has waited for at its end, [level of each committed copy
    group], [level of each scoreboard's outstanding register loads])."""
    from memsim.warp_issue import ASYNC_COMMITS, REGISTER_LOADS
    level, groups, pending = 0, [], 0
    sb = [0] * 8
    for x in prologue:
        m = x.wait_mask
        for bit in range(6):
            if m >> bit & 1 and sb[bit] > level:
                level = sb[bit]
        if x.depbar is not None:
            n_ = x.depbar[1]
            if len(groups) > n_:
                level = max(level, max(groups[:len(groups) - n_]))
        if x.op in REGISTER_LOADS and x.write_sb != 7:
            sb[x.write_sb] = max(sb[x.write_sb], level + 1)
        elif x.op == "LDGSTS":
            pending = max(pending, level + 1)
        elif x.op in ASYNC_COMMITS:
            groups.append(pending or level + 1)
            pending = 0
    return level, groups, sb


def prologue_round_trips(sass: str) -> int | None:
    """Memory round trips a CTA of a kernel that is not warp-specialised waits for in a row before its first trip
    of the tile loop (`_pick_tile_loop`) can compute (None: no loop at all, or warp-specialised); for a kernel
    without a tile loop (flash2's preprocess: a 64 x 256 fp32 O / dO tile loaded in register-pressure batches, 27
    in a row), the round trips of the whole kernel.  1: every load the
    first trip needs goes out at once.  flash2's dK/dV pass loads K and V into registers and stores them to shared
    memory (the STS waits for the loads) before it issues the first Q / dO copies, and its forward does the same
    with Q: 2.  The first trip needs its first copy group (a pipelined loop), or issues its own loads after the
    prologue's waits (a loop without copies), and the registers the prologue loaded (`_round_trip_levels`)."""
    ins, loops, marks = _decode(sass)
    if not ins or not loops or warp_specialised(ins, loops, marks) is not None:
        return None
    named = [(lb, [x.op for x in ins[a:b + 1]]) for lb, a, b in loops]
    lb, body = _pick_tile_loop(named)
    start = next(a for l2, a, _b in loops if l2 == lb)
    level, groups, sb = _round_trip_levels(ins[:start])
    if len(body) < MIN_LOOP_INSTRUCTIONS:
        # no tile loop (the one "loop" is the branch-to-self after EXIT): the prologue is the whole kernel, and
        # its round trips in a row are the deepest level it loads at -- there is no first trip to wait for
        return max(1, level, max(sb), max(groups, default=0))
    first = groups[0] if groups else level + 1
    return max(1, first, max(sb))


def load_bytes_per_thread(sass: str) -> int:
    """Bytes one thread's register loads (LDG) bring over the whole kernel when none is predicated off: what a CTA
    of a kernel without a tile loop reads at full tile.  A CTA of a ragged tile issues fewer: its masked rows'
    loads are predicated off and set no scoreboard, so the chain of round trips it waits for is shorter
    (flash2's preprocess loads O / dO row by row, each row's pair under its own `row < seq_q` predicate)."""
    total = 0
    for ln in sass.splitlines():
        m = _LDG.search(ln)
        if m:
            total += next((v for k_, v in _LDG_WIDTH.items() if k_ in m.group(1)), 4)
    return total


def tile_loop_body(sass: str, *, num_warps: int) -> list:
    """The tile loop `issue_profile` replays for a kernel that is not warp-specialised, with its port charges
    (what a microbenchmark's fit replays: benchmarks/sm_fill_gpu.py)."""
    ins, loops, _ = _decode(sass)
    return _plain_tile_body(_ported(sass, ins, num_warps)[0], loops) if ins else []


def issue_profile(sass: str, *, num_warps: int, max_ctas: int, lat, known: dict | None = None,
                  walk: bool = False) -> dict | None:
    """What memsim.costs needs from `memsim.warp_issue.replay` for one compiled launch (`_issue_profile`), and for a
    kernel that is not warp-specialised its other tile loop (`band_profile`: the masked copy of a K/V loop)."""
    out = _issue_profile(sass, num_warps=num_warps, max_ctas=max_ctas, lat=lat, known=known, walk=walk)
    if out is not None and "groups" not in out:
        out.update(band_fields(sass, num_warps=num_warps, max_ctas=max_ctas, lat=lat))
        rt = prologue_round_trips(sass)
        if rt is not None:
            out["prologue_round_trips"] = rt
            if out.get("tile_instructions", 0) < MIN_LOOP_INSTRUCTIONS:  # no tile loop: a ragged CTA's chain
                out["load_bytes_per_thread"] = load_bytes_per_thread(sass)
    return out


def band_fields(sass: str, *, num_warps: int, max_ctas: int, lat) -> dict:
    """`band_profile` of a compiled kernel's SASS text ({} for a warp-specialised kernel: its partitions' loops are
    read by `warp_specialised`)."""
    ins, loops, marks = _decode(sass)
    if not ins:
        return {}
    ins, _ = _ported(sass, ins, num_warps)
    if warp_specialised(ins, loops, marks) is not None:
        return {}
    return band_profile(ins, loops, num_warps=num_warps, max_ctas=max(1, max_ctas), lat=lat, sass=sass)


def _issue_profile(sass: str, *, num_warps: int, max_ctas: int, lat, known: dict | None = None,
                   walk: bool = False) -> dict | None:
    """What memsim.costs needs from `memsim.warp_issue.replay` for one compiled launch:

    * ``tile_cycles[c-1]``: cycles per trip of the tile loop (`tile_loop`'s choice) with c CTAs on the SM,
      c = 1..max_ctas, its register loads (LDG) waited on for an L2 hit (`IssueLatencies.load_l2_cycles`);
    * ``tile_cycles_dram[c-1]``: the same with every register load and copy group a DRAM miss (present only when
      the loop has register loads or cp.async commits and the figures a DRAM latency; memsim.costs mixes the two
      by the launch's L2 misses);
    * ``mma_instructions``: the kernel's HMMA / HGMMA instructions (a kernel with any runs at the card's tensor
      clock, memsim.costs);
    * ``tile_cycles_local_l2[c-1]``: `tile_cycles` with every spill reload (LDL) an L2 hit instead of an L1 hit
      (present only for loops with reloads; memsim.costs moves along the difference by the reloads' expected
      latency, from memsim.local_memory's L1 and L2 miss fractions);
    * ``tile_mma_flops_per_warp``: the MMA FLOPs one warp issues per trip (the engine divides by a tile's to
      find how many tiles a trip does: LLVM unrolls small loops);
    * ``straight_cycles[c-1]``: one pass over the code outside every loop (prologue, epilogue), c CTAs per SM
      (the other loops -- the masked diagonal tile, a ragged tail -- run per masked tile, which the engine books
      at the tile loop's cost), register loads released at once (a CTA's first loads are the engine's
      first-tile latency);
    * ``latencies``: `lat.fingerprint()` (memsim uses the figures only with the same calibration);
    * warp-specialised kernels (`warp_specialised`): ``groups`` (consumer warpgroups; each replays as a CTA of
      `num_warps` warps, so c CTAs are groups x c of them), the tile loop and the code outside it taken from the
      first consumer's partition, ``tma_descriptor_inits`` the producer's, and for a persistent kernel
      ``tile_fixed_cycles[c-1]`` (the tile walk's code outside the tile loop, once per tile).

    `walk`: the kernel is persistent (compiled_facts: its name says so) -- where it is not warp-specialised, the
    loop around its tile loop walks the CTA's tiles and that loop's code outside every loop inside it is replayed as
    ``tile_fixed_cycles`` too (P's r26112617_009, a 2-warp fp32 persistent forward: 1779 instructions per tile,
    4745 cycles at one CTA per SM, which no figure charged).

    `known`: the entry's previous figures.  Where they were replayed (profile 5) with the same figures but for the
    register-load latencies, what those cannot change is copied rather than replayed again: the straight-line
    replay (loads released at once in both), and the tile loop's when it has no register load."""
    from memsim.warp_issue import ASYNC_COMMITS, REGISTER_LOADS, replay
    ins, loops, marks = _decode(sass)
    if not ins:
        return None
    ins, port_same = _ported(sass, ins, num_warps)
    ws = warp_specialised(ins, loops, marks)
    per_tile: list = []
    if ws is not None:
        # each consumer warpgroup of `num_warps` warps replays as a CTA of its own (its own named barrier and
        # wgmma queue; the SM's pipes shared): c CTAs on the SM are groups x c of them
        body, rest, per_tile = ins[ws.tile[0]:ws.tile[1] + 1], list(ws.once), list(ws.per_tile)
        groups, n_desc = ws.groups, ws.producer_descriptors
    else:
        body = _plain_tile_body(ins, loops)
        rest = _outside_loops(ins, loops)
        groups, n_desc = 1, sum(x.op == "UTMACCTL" for x in rest)
        if walk and body and loops:
            # a persistent kernel that is not warp-specialised (session 12, notes/spills.md): the loop around the
            # tile loop walks the CTA's tiles; its code outside every loop inside it (the tile loop, the masked
            # band, a ragged tail: the workload books those as steps) runs once per tile
            named = [(lb, [x.op for x in ins[a:b + 1]]) for lb, a, b in loops]
            lb_, _ = _pick_tile_loop(named)
            ta, tb = next((a, b) for l2, a, b in loops if l2 == lb_)
            outer = [(a, b) for _, a, b in loops if a <= ta and tb <= b and (a, b) != (ta, tb)]
            if outer:
                oa, ob = max(outer, key=lambda ab: ab[1] - ab[0])
                holes = [(a, b) for _, a, b in loops if oa <= a and b <= ob and (a, b) != (oa, ob)]
                drop = {k for a, b in holes for k in range(a, b + 1)}
                per_tile = [x for k, x in enumerate(ins[oa:ob + 1], oa) if k not in drop
                            and x.op not in ("BRA", "EXIT", "NOP")]
    flops = sum(x.mma_flops / (4 if x.op == "HGMMA" else 1) for x in body)
    out = {"tile_cycles": [], "straight_cycles": [], "tile_mma_flops_per_warp": flops,
           "tile_instructions": len(body), "straight_instructions": len(rest),
           "tma_descriptor_inits": n_desc, "latencies": lat.fingerprint(),
           "profile": PROFILE_VERSION, "mma_instructions": sum(x.op in ("HMMA", "HGMMA") for x in ins)}
    if ws is not None:
        out["groups"] = groups
    peeled = 0
    if per_tile:
        out["tile_fixed_cycles"], out["tile_fixed_instructions"] = [], len(per_tile)
        # whole tile-loop trips' worth of MMA work in the per-tile code (FLOPs per warp, as `flops` counts them)
        peeled = round(sum(x.mma_flops / (4 if x.op == "HGMMA" else 1) for x in per_tile) / flops) if flops else 0
        out["tile_fixed_peeled_trips"] = peeled
    from dataclasses import replace
    waits = any(x.op in REGISTER_LOADS or x.op in ASYNC_COMMITS for x in body)
    loads = waits and bool(lat.load_l2_cycles or lat.load_dram_cycles)
    at_l2 = lat.at_load_latency("l2") if loads else replace(lat, load_cycles=0.0)
    # the code outside the loop: loads and copies released at once, no fill (a CTA's first loads are the engine's
    # first-tile latency and bytes)
    straight = replace(lat, load_cycles=0.0, fill_bytes_per_cycle=0.0)
    if loads:
        out["tile_cycles_dram"] = []
    n = max(1, max_ctas)
    reloads = any(x.op == "LDL" for x in body) and bool(lat.load_l2_cycles)
    if reloads:
        out["tile_cycles_local_l2"] = []
    same_shape = (known is not None and len(known.get("straight_cycles") or ()) == n
                  and len(known.get("tile_cycles") or ()) == n and known.get("tile_instructions") == len(body)
                  and known.get("straight_instructions") == len(rest))
    # profile 5: replayed without load latencies (straight code unchanged, loops without loads unchanged);
    # profile 6: with them, the spill-reload replay missing (everything else unchanged)
    reuse = same_shape and known.get("profile") == 5 and (_without_loads(known.get("latencies")) ==
                                                        _without_loads(lat.fingerprint()))
    reuse6 = same_shape and known.get("profile") == 6 and known.get("latencies") == lat.fingerprint()
    # profile 7: the same but for the copy commits' latency (loops without LDGDEPBAR, and straight code, unchanged)
    same_straight = same_shape and known.get("profile") == 7 and known.get("latencies") == lat.fingerprint()
    if same_straight and not any(x.op in ASYNC_COMMITS for x in body):
        for k_ in ("tile_cycles", "tile_cycles_dram", "tile_cycles_local_l2", "straight_cycles"):
            if k_ in known:
                out[k_] = list(known[k_])
        return out
    # profile 10 -> 11: only the copy fill changed, which times a tile loop's LDGSTS: straight code keeps its
    # figures, and a kernel whose tile loop has no LDGSTS keeps them all
    same10 = (same_shape and known.get("profile") == 10
              and _without_fill(known.get("latencies")) == _without_fill(lat.fingerprint())
              and (not loads or "tile_cycles_dram" in known) and (not reloads or "tile_cycles_local_l2" in known))
    if same10 and not per_tile and not any(x.op == "LDGSTS" for x in body):
        for k_ in ("tile_cycles", "tile_cycles_dram", "tile_cycles_local_l2", "straight_cycles", "tile_fixed_cycles"):
            if k_ in known:
                out[k_] = list(known[k_])
        return out
    # profile 9 -> 10: only the shared-memory port's charges changed: a kernel whose every shared-memory
    # instruction is conflict-free (the same charge as before) keeps its figures
    if (same_shape and port_same and known.get("profile") == 9 and known.get("latencies") == lat.fingerprint()
            and (not loads or "tile_cycles_dram" in known) and (not reloads or "tile_cycles_local_l2" in known)):
        for k_ in ("tile_cycles", "tile_cycles_dram", "tile_cycles_local_l2", "straight_cycles", "tile_fixed_cycles"):
            if k_ in known:
                out[k_] = list(known[k_])
        return out
    # profile 8 -> 9: only the tensor-pipe rates and the warp-specialised / stub reading changed; a kernel that is
    # not warp-specialised and whose loop and straight code are the same size (no stub branch moved them) keeps
    # the replays of code without tensor-core instructions
    same8 = (same_shape and ws is None and port_same and known.get("profile") == 8
             and _without_tensor(known.get("latencies")) == _without_tensor(lat.fingerprint()))
    keep_tile = (same8 and not any(x.op in MMA_OPS for x in body) and (not loads or "tile_cycles_dram" in known)
                 and (not reloads or "tile_cycles_local_l2" in known))
    keep_straight = same8 and not any(x.op in MMA_OPS for x in rest)
    if keep_tile and keep_straight:
        for k_ in ("tile_cycles", "tile_cycles_dram", "tile_cycles_local_l2", "straight_cycles"):
            if k_ in known:
                out[k_] = list(known[k_])
        return out
    for c in range(1, n + 1):
        if (reuse and not loads) or reuse6 or keep_tile:
            out["tile_cycles"].append(known["tile_cycles"][c - 1])
        else:
            out["tile_cycles"].append(round(replay(body, warps_per_cta=num_warps, ctas=groups * c, lat=at_l2), 1)
                                      if body else 0.0)
        if loads:
            out["tile_cycles_dram"].append(known["tile_cycles_dram"][c - 1] if reuse6 or keep_tile else
                                           round(replay(body, warps_per_cta=num_warps, ctas=groups * c,
                                                        lat=lat.at_load_latency("dram")), 1))
        if reloads and keep_tile:
            out["tile_cycles_local_l2"].append(known["tile_cycles_local_l2"][c - 1])
        elif reloads:
            out["tile_cycles_local_l2"].append(round(replay(body, warps_per_cta=num_warps, ctas=groups * c,
                                                            lat=replace(at_l2, local_cycles=lat.load_l2_cycles)), 1))
        if reuse or reuse6 or same_straight or keep_straight or same10:
            out["straight_cycles"].append(known["straight_cycles"][c - 1])
        else:
            out["straight_cycles"].append(round(replay(rest, warps_per_cta=num_warps, ctas=groups * c, lat=straight,
                                                       trips=1), 1) if rest else 0.0)
        if per_tile:
            # a software-pipelined walk peels its first and last blocks' MMAs out of the tile loop (FA3: S_0 before
            # it, the last P V after it): the workload books those blocks as steps at the trip's cost, so the
            # per-tile cost is the peeled code less the trips its MMAs amount to
            fixed = replay(per_tile, warps_per_cta=num_warps, ctas=groups * c, lat=straight, trips=1)
            out["tile_fixed_cycles"].append(round(max(0.0, fixed - peeled * out["tile_cycles"][c - 1]), 1))
    return out
