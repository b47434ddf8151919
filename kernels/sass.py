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
        ops.append((pending, op))
        pending = None
    loops = []
    for at, target in branches:
        start = label_at.get(target)
        if start is not None and start <= at:
            loops.append((target, [op for _, op in ops[start:at + 1]]))
    return loops


def _width(suffixes: str) -> int:
    """Bytes one thread moves with a local load/store of these suffixes (.64, .128, .U8, ...; default 32 bit)."""
    for suf, n in ((".128", 16), (".64", 8), (".U16", 2), (".S16", 2), (".U8", 1), (".S8", 1)):
        if suf in (suffixes or ""):
            return n
    return 4


def local_reuse(body: list[str], word_bytes: int = 4, bucket_bytes: int = 16) -> dict | None:
    """Reuse distances of the loop's local loads and stores (see LoopProfile.local_reuse).

    Walking back from each LDL (around the loop: the body repeats) to the last STL that wrote its first word,
    the distinct other words loaded or stored in between, x 4 bytes, is its distance (what may evict it); a
    reload of a value no STL of the loop writes (stored before the loop) gets the loop's whole local
    footprint.  For each STL, back to the previous STL of the same word, the distinct other words STORED in
    between (what is written after it and may push it out of the dirty set before it is written again).  Histograms of
    (distance rounded half up to `bucket_bytes`, bytes)."""
    seq = []
    for op in body:
        parts = op.split(":")
        if parts[0] in ("STL", "LDL") and len(parts) == 3:
            seq.append((parts[0], int(parts[2]), int(parts[1])))
    if not seq:
        return None
    words = [set(range(o // word_bytes, (o + max(w, word_bytes) - 1) // word_bytes + 1)) for _, o, w in seq]
    footprint = len(set().union(*words)) * word_bytes
    n = len(seq)
    hist = {"reload": {}, "restore": {}}
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
        if dist is None:
            dist = footprint
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


def cubin_tile_loop(cubin: bytes) -> LoopProfile | None:
    return tile_loop(disassemble(cubin))


# --- control bits: what memsim.warp_issue replays ---------------------------------------------------------------
_CTRL_WORD = re.compile(r"^\s*/\*\s*(0x[0-9a-f]{16})\s*\*/\s*$")
_DEPBAR = re.compile(r"SB(\d)\s*,\s*(0x[0-9a-f]+|\d+)")
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
    from memsim.warp_issue import Instr
    lines = sass.splitlines()
    out, labels, branches = [], {}, []
    i = 0
    while i < len(lines):
        ln = lines[i]
        m = _LABEL.match(ln)
        if m:
            labels[m.group(1)] = len(out)
            i += 1
            continue
        m = _INSTR.match(ln)
        if not m or i + 1 >= len(lines):
            i += 1
            continue
        c = _CTRL_WORD.match(lines[i + 1])
        if not c:
            raise SassError("instructions() needs nvdisasm -hex output (the control word under each instruction)")
        ctrl = int(c.group(1), 16) >> 41
        op, mods, rest = m.group(2), m.group(3) or "", m.group(4) or ""
        dep = None
        if op == "DEPBAR":
            d = _DEPBAR.search(rest)
            if d:
                dep = (int(d.group(1)), int(d.group(2), 0))
        if op == "BRA":
            t = _TARGET.search(rest)
            if t:
                branches.append((len(out), t.group(1)))
        out.append(Instr(op=op, stall=ctrl & 15, write_sb=(ctrl >> 5) & 7, read_sb=(ctrl >> 8) & 7,
                         wait_mask=(ctrl >> 11) & 63, smem_bytes=_smem_bytes(op, mods), mma_flops=_mma_flops(op, mods + rest),
                         depbar=dep, barrier=(op == "BAR" and ".SYNC" in mods),
                         wgmma_wait=(op == "WARPGROUP" and "DEPBAR" in mods)))
        i += 2
    loops = [(t, labels[t], at) for at, t in branches if t in labels and labels[t] <= at]
    return out, loops


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
#: latency too, so loops waiting on their cp.async copies get tile_cycles_dram; mma_instructions counted)
PROFILE_VERSION = 8


def _without_loads(fingerprint: str | None) -> str | None:
    """A figures fingerprint less its register-load latencies (profile 5 entries were replayed without them)."""
    return None if fingerprint is None else ";".join(p for p in fingerprint.split(";") if not p.startswith("ldg="))


def issue_profile(sass: str, *, num_warps: int, max_ctas: int, lat, known: dict | None = None) -> dict | None:
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
    * ``latencies``: `lat.fingerprint()` (memsim uses the figures only with the same calibration).

    `known`: the entry's previous figures.  Where they were replayed (profile 5) with the same figures but for the
    register-load latencies, what those cannot change is copied rather than replayed again: the straight-line
    replay (loads released at once in both), and the tile loop's when it has no register load."""
    from memsim.warp_issue import ASYNC_COMMITS, REGISTER_LOADS, replay
    ins, loops = instructions(sass)
    if not ins:
        return None
    span = None
    if loops:
        named = [(lb, [x.op for x in ins[a:b + 1]]) for lb, a, b in loops]
        lb, _ = _pick_tile_loop(named)
        span = next((a, b) for l2, a, b in loops if l2 == lb)
    body = ins[span[0]:span[1] + 1] if span else []
    rest = _outside_loops(ins, loops)
    flops = sum(x.mma_flops / (4 if x.op == "HGMMA" else 1) for x in body)
    out = {"tile_cycles": [], "straight_cycles": [], "tile_mma_flops_per_warp": flops,
           "tile_instructions": len(body), "straight_instructions": len(rest),
           "tma_descriptor_inits": sum(x.op == "UTMACCTL" for x in rest), "latencies": lat.fingerprint(),
           "profile": PROFILE_VERSION, "mma_instructions": sum(x.op in ("HMMA", "HGMMA") for x in ins)}
    from dataclasses import replace
    waits = any(x.op in REGISTER_LOADS or x.op in ASYNC_COMMITS for x in body)
    loads = waits and bool(lat.load_l2_cycles or lat.load_dram_cycles)
    at_l2 = lat.at_load_latency("l2") if loads else replace(lat, load_cycles=0.0)
    straight = replace(lat, load_cycles=0.0)
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
    for c in range(1, n + 1):
        if (reuse and not loads) or reuse6:
            out["tile_cycles"].append(known["tile_cycles"][c - 1])
        else:
            out["tile_cycles"].append(round(replay(body, warps_per_cta=num_warps, ctas=c, lat=at_l2), 1)
                                      if body else 0.0)
        if loads:
            out["tile_cycles_dram"].append(known["tile_cycles_dram"][c - 1] if reuse6 else
                                           round(replay(body, warps_per_cta=num_warps, ctas=c,
                                                        lat=lat.at_load_latency("dram")), 1))
        if reloads:
            out["tile_cycles_local_l2"].append(round(replay(body, warps_per_cta=num_warps, ctas=c,
                                                            lat=replace(at_l2, local_cycles=lat.load_l2_cycles)), 1))
        if reuse or reuse6 or same_straight:
            out["straight_cycles"].append(known["straight_cycles"][c - 1])
        else:
            out["straight_cycles"].append(round(replay(rest, warps_per_cta=num_warps, ctas=c, lat=straight,
                                                       trips=1), 1) if rest else 0.0)
    return out
