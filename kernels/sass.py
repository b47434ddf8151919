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

_INSTR = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)((?:\.[A-Z0-9_]+)*)\b(.*)$")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_TARGET = re.compile(r"`\((\.L_x_\d+)\)")
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
            op = f"{op}:{_width(m.group(3))}"
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


def profile(body: list[str], label: str) -> LoopProfile:
    base = [op.split(":")[0] for op in body]
    st = sum(int(op.split(":")[1]) for op in body if op.startswith("STL:"))
    ld = sum(int(op.split(":")[1]) for op in body if op.startswith("LDL:"))
    return LoopProfile(instructions=len(base), mma=sum(op in MMA_OPS for op in base),
                       mufu=sum(op == "MUFU" for op in base), memory=sum(op in MEM_OPS for op in base),
                       local=sum(op in ("LDL", "STL") for op in base), label=label,
                       local_store_bytes=st, local_load_bytes=ld)


def tile_loop(sass: str) -> LoopProfile | None:
    """The tile loop: the first loop holding tensor-core instructions, else the longest loop (None: no loop)."""
    loops = parse(sass)
    if not loops:
        return None
    with_mma = [(lb, b) for lb, b in loops if any(op.split(":")[0] in MMA_OPS for op in b)]
    lb, body = with_mma[0] if with_mma else max(loops, key=lambda x: len(x[1]))
    return profile(body, lb)


def cubin_tile_loop(cubin: bytes) -> LoopProfile | None:
    return tile_loop(disassemble(cubin))
