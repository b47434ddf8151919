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
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        r = subprocess.run([str(nvdisasm_path()), "-c", f.name], capture_output=True, text=True)
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


def tile_loop(sass: str) -> LoopProfile | None:
    """The tile loop: the first loop holding tensor-core instructions, else the first loop of at least
    MIN_LOOP_INSTRUCTIONS (program order; None: no loop).

    "First", not "longest", for loops without MMAs (fp32 dots run on FMAs): flash2's K/V loop comes twice,
    the unmasked blocks first and the masked diagonal / ragged tail after, and the masked copy is the longer
    one (its masks keep more values live: set A's fp32 flash2 forward spilled 2252 B per thread per iteration
    there against 604 B in the unmasked loop; ncu measured 711 B per tile, the unmasked loop plus the
    prologue's share).  The longest loop was the masked one, which runs at most once per CTA."""
    loops = parse(sass)
    if not loops:
        return None
    with_mma = [(lb, b) for lb, b in loops if any(op.split(":")[0] in MMA_OPS for op in b)]
    real = [(lb, b) for lb, b in loops if len(b) >= MIN_LOOP_INSTRUCTIONS]
    lb, body = with_mma[0] if with_mma else (real[0] if real else max(loops, key=lambda x: len(x[1])))
    return profile(body, lb)


def cubin_tile_loop(cubin: bytes) -> LoopProfile | None:
    return tile_loop(disassemble(cubin))
