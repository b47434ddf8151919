"""Shared-memory wavefronts of each shared-memory instruction of a compiled kernel, from its SASS (no GPU).

The shared-memory port of an SM moves one *wavefront* per cycle: one 128-byte row across its 32 banks of 4 bytes.
A warp instruction whose lanes hit one bank at several different 4-byte words needs one wavefront per word
(a bank conflict); lanes reading the same word share it (a broadcast).  Which words the lanes touch is fixed by
the compiled code: the shared addresses are integer functions of the thread index (``S2R SR_TID.X``) and of
values that are the same for every lane of a warp (the CTA index, kernel arguments, the stage of a pipelined
loop, the shared window's base).  An offset common to every lane of a warp only renames the banks, so it does
not change the wavefronts.

`_Emulator` runs the kernel's integer instructions for every thread of one CTA at once (numpy vectors of
32 x num_warps lanes): IMAD, IADD3, VIADD, LEA, LOP3, SHF, SGXT, SEL, ISETP, PRMT, SHFL, ... and the
uniform-datapath versions (UIADD3, ULEA, ...), spills (STL/LDL) kept per lane.  Everything that is not known on the CPU
(kernel arguments ``c[0x0][...]``, the CTA index, loaded data, floating-point results) starts at 0 and carries
a taint: *uniform* (the same for every lane of a warp) or *varying*.  Straight code runs once in program order;
each loop body (the loops `kernels.sass.instructions` finds) runs `trips` times (its instructions keep the
addresses of every trip), so the loop-carried stage offsets advance.  A guard predicate computed from the thread
index alone selects the lanes of a shared-memory instruction; one that depends on unknowns (a bounds check) is
taken as true.  `wavefronts` then counts, per warp and per trip, the wavefronts of each LDS / LDSM / STS / LDGSTS
under a `BankModel`; `smem_wavefronts` is the entry point the replay uses.  Evidence and limits:
notes/smem_banks.md.

An address tainted *varying* (it depends on loaded data: a gather from shared memory) is not computed: the
instruction gets the conflict-free count (bytes / 128) and is listed in `SmemReport.unresolved`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from kernels.sass import _TARGET, loops_of, scan

MASK32 = 0xFFFFFFFF
EXACT, UNIFORM, VARYING = 0, 1, 2
SMEM_OPS = ("LDS", "LDSM", "STS", "LDGSTS")


@dataclass(frozen=True)
class BankModel:
    """How the shared-memory port serves one warp instruction (hardware as data).

    ``banks`` x ``bank_bytes`` is one wavefront; in one wavefront a bank delivers one 4-byte word (to any number of
    lanes: a broadcast).  A warp's access of `w` bytes per lane is split into *phases* of ``phase_lanes[w]``
    consecutive lanes (an LDS.128: quarter-warps of 8 lanes x 16 B = 128 B; an LDS.64: half-warps); a phase needs
    as many wavefronts as the most distinct words it asks of one bank.  Within a *group* of ``group_lanes[w]``
    consecutive lanes, the phases whose lanes all ask for one address (broadcast phases) are served together
    (``group_share``; an LDS.128 of one 16-B row by a half-warp: 1 wavefront, not 2); the other phases each cost
    their own, even when they ask for the same words (two quarter-warps reading the same 128 B through 8
    addresses each: 2).  Groups never share; stores never share (``store_group_share``).

    H100 (`H100`): the rules that reproduce, to the wavefront, the tile loops of run-2026-11-26T0948 (2 fp32) and
    run-2026-11-26T1124 (9 fp32, 3 fp16) -- see notes/smem_banks.md for which measurement decided what.  Accesses
    of 1-4 bytes: one phase of 32 lanes (the textbook rule)."""
    name: str = "sm90"
    banks: int = 32
    bank_bytes: int = 4
    warp_size: int = 32
    #: access bytes per lane -> lanes per phase
    phase_lanes: tuple = ((1, 32), (2, 32), (4, 32), (8, 16), (16, 8))
    #: access bytes per lane -> lanes per group (the phases of a group may share one wavefront)
    group_lanes: tuple = ((1, 32), (2, 32), (4, 32), (8, 32), (16, 16))
    #: which phases of a group share wavefronts: "uniform_phases" -- those whose lanes all ask for one address (a
    #: broadcast phase) are served together, as many wavefronts as the most of their rows in one bank, the others
    #: each on their own (the H100: run-2026-11-26T0948 and T1124); "uniform_group" -- one wavefront only when the
    #: whole group asks for one address; "one_wavefront" -- one wavefront whenever the group's words fit one (the
    #: hypothesis the T1124 predictions were made with: see notes/smem_banks.md)
    group_share: str = "uniform_phases"
    #: whether stores (STS, and LDGSTS's shared side) share a group's wavefront too: on the H100 they do not (an
    #: STS.128 of two 16-B rows by the two half-warps: 4 wavefronts, run-2026-11-26T1124's w8 loop)
    store_group_share: bool = False

    @property
    def wavefront_bytes(self) -> int:
        return self.banks * self.bank_bytes

    def lanes(self, width_bytes: int) -> tuple[int, int]:
        """(lanes per phase, lanes per group) for accesses of `width_bytes` per lane."""
        return dict(self.phase_lanes)[width_bytes], dict(self.group_lanes)[width_bytes]


H100 = BankModel()


@dataclass(frozen=True)
class SmemAccess:
    """One shared-memory instruction of the SASS: its index in `kernels.sass.instructions(sass)[0]`."""
    index: int
    op: str  # LDS, LDSM, STS, LDGSTS
    mods: str
    width_bytes: int  # bytes per lane (LDSM: 16, one row of an 8x8 matrix per lane)
    active_lanes: int  # lanes that give an address (LDSM.x1: 8, .x2: 16, .x4: 32; otherwise 32)
    text: str


@dataclass(frozen=True)
class SmemReport:
    #: index in `kernels.sass.instructions(sass)[0]` -> wavefronts per warp instruction (mean over warps and trips)
    wavefronts: dict
    #: index -> the conflict-free count (bytes one warp moves / 128 B, at least 1)
    ideal: dict
    #: indices whose addresses depend on loaded data (given the conflict-free count)
    unresolved: tuple = ()
    #: index -> SmemAccess
    accesses: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ parsing
_GUARD = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(@!?U?P[T0-9])\s")
_REG = re.compile(r"^(U?R)(\d+|Z)$")
_PRED = re.compile(r"^(!?)(U?P)(\d|T)$")
_CONST = re.compile(r"^c\[(0x[0-9a-f]+)\]\[(0x[0-9a-f]+)\]$")
_IMM = re.compile(r"^-?(0x[0-9a-fA-F]+|\d+)$")


@dataclass
class _Ins:
    op: str
    mods: str
    guard: str | None
    operands: list
    text: str


def _split_operands(rest: str) -> list[str]:
    rest = rest.strip().rstrip(";").strip()
    rest = rest.split(";")[0]
    out, depth, cur = [], 0, ""
    for ch in rest:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def dead_arms(sass: str, scanned: tuple | None = None) -> frozenset:
    """Indices of the straight-code arms that never reach a loop: a block that a conditional forward branch jumps
    over and that ends in an unconditional forward BRA past a whole loop (Triton's "nothing to do" arm: zero the
    accumulators, jump to the epilogue).  Straight code otherwise runs in program order through both arms of a
    branch; this arm's writes (the decode kernel's empty-split arm zeroed the register holding the LDSM row and
    shifted another twice) would reach the loop's addresses, which the card never lets them do."""
    labels, found = scanned if scanned is not None else scan(sass)  # `scanned`: scan(sass), when the caller has it
    loops = loops_of(labels, found)

    def target(k):
        m = found[k][1]
        t = _TARGET.search(m.group(4) or "") if m.group(2) == "BRA" else None
        return labels.get(t.group(1)) if t else None

    def guard(k):
        g = _GUARD.match(found[k][0])
        return g.group(1) if g else None

    dead = set()
    for j in range(len(found)):
        t = target(j)
        if t is None or t <= j or guard(j) not in (None, "@PT", "@UPT"):
            continue
        skipped = [a for _, a, b in loops if j < a and b < t]
        if not skipped:
            continue
        first = min(skipped)
        for i in range(j - 1, -1, -1):  # the conditional branch that jumps over this arm, toward the loop
            op = found[i][1].group(2)
            if op in ("BRA", "EXIT", "RET") and guard(i) in (None, "@PT", "@UPT"):
                break  # another unconditional transfer first: this arm has another entry
            ti = target(i)
            if ti is not None and guard(i) not in (None, "@PT", "@UPT", "@!PT", "@!UPT") and j < ti <= first:
                dead.update(range(i + 1, j + 1))
                break
    return frozenset(dead)


def decode(sass: str) -> tuple[list[_Ins], list[tuple[str, int, int]]]:
    """([_Ins] in the order of `kernels.sass.instructions`, [(label, first, last index of the loop body)]: the loops
    `kernels.sass.instructions` finds)."""
    return _decode_scanned(*scan(sass))


def _decode_scanned(labels: dict, found: list) -> tuple[list[_Ins], list[tuple[str, int, int]]]:
    out = []
    for ln, m, _ in found:
        g = _GUARD.match(ln)
        out.append(_Ins(m.group(2), m.group(3) or "", g.group(1) if g else None, _split_operands(m.group(4) or ""),
                        ln.split("*/", 1)[1].split(";")[0].strip()))
    return out, loops_of(labels, found)


# ------------------------------------------------------------------------------------------------ emulation
class _State:
    """Per-lane registers (numpy int64 vectors holding 32-bit values) with a taint each."""

    def __init__(self, num_warps: int, unknown_seed: int | None = None):
        self.n = 32 * num_warps
        self.tid = np.arange(self.n, dtype=np.int64)
        self.regs: dict[str, tuple[np.ndarray, int]] = {}
        self.preds: dict[str, np.ndarray] = {}
        self.pred_taints: dict[str, int] = {}
        self.local: dict[int, tuple[np.ndarray, int]] = {}
        self.zero = np.zeros(self.n, dtype=np.int64)
        self.rng = None if unknown_seed is None else np.random.default_rng(unknown_seed)
        self.unknown_values: dict[str, int] = {}

    def unknown(self, key: str) -> np.ndarray:
        """A value the CPU cannot know, the same for every lane: 0, or (sensitivity check) a random multiple of
        16 fixed per key."""
        if self.rng is None:
            return self.zero
        if key not in self.unknown_values:
            self.unknown_values[key] = int(self.rng.integers(0, 1 << 16)) * 16
        return np.full(self.n, self.unknown_values[key], dtype=np.int64)

    def get(self, name: str) -> tuple[np.ndarray, int]:
        m = _REG.match(name)
        if m.group(2) == "Z":
            return self.zero, EXACT
        if name in self.regs:
            return self.regs[name]
        return self.unknown("reg:" + name), UNIFORM if name.startswith("U") else VARYING

    def set(self, name: str, val: np.ndarray, taint: int, guard: np.ndarray | None = None) -> None:
        m = _REG.match(name)
        if not m or m.group(2) == "Z":
            return
        val = np.asarray(val, dtype=np.int64) & MASK32
        if val.shape != (self.n,):
            val = np.broadcast_to(val, (self.n,)).copy()
        if guard is not None:
            old, ot = self.get(name)
            val = np.where(guard, val, old)
            taint = max(taint, ot)
        self.regs[name] = (val, taint)

    def pred(self, name: str) -> np.ndarray:
        m = _PRED.match(name)
        if not m:
            return np.ones(self.n, dtype=bool)
        neg, kind, idx = m.groups()
        v = np.ones(self.n, dtype=bool) if idx == "T" else self.preds.get(kind + idx, np.ones(self.n, dtype=bool))
        return ~v if neg else v

    def pred_taint(self, name: str) -> int:
        m = _PRED.match(name)
        if not m or m.group(3) == "T":
            return EXACT
        return self.pred_taints.get(m.group(2) + m.group(3), UNIFORM)

    def set_pred(self, name: str, val: np.ndarray, guard: np.ndarray | None = None, taint: int = EXACT) -> None:
        m = _PRED.match(name)
        if not m or m.group(3) == "T":
            return
        key = m.group(2) + m.group(3)
        if guard is not None:
            val = np.where(guard, val, self.preds.get(key, np.ones(self.n, dtype=bool)))
            taint = max(taint, self.pred_taints.get(key, UNIFORM))
        self.preds[key] = np.asarray(val, dtype=bool)
        self.pred_taints[key] = taint


def _reg_base(tok: str) -> str:
    return re.sub(r"\.(reuse|64|X\d+|H[01]|B[0-3]|U32)$", "", tok.replace(".reuse", ""))


def _val(st: _State, tok: str) -> tuple[np.ndarray, int]:
    """The value of a source operand (register, immediate, constant bank) as a 32-bit vector."""
    t = tok.replace(".reuse", "").strip()
    neg = inv = absv = False
    if t.startswith("|") and t.endswith("|"):
        t, absv = t[1:-1], True
    if t.startswith("-") and not _IMM.match(t):
        t, neg = t[1:], True
    if t.startswith("~"):
        t, inv = t[1:], True
    if t.startswith("!"):
        return st.pred(t).astype(np.int64), EXACT
    m = _IMM.match(t)
    if m:
        v = np.full(st.n, int(t, 0) & MASK32, dtype=np.int64)
        taint = EXACT
    elif _CONST.match(t):
        v, taint = st.unknown("const:" + t), UNIFORM
    elif t.startswith("SR_") or t == "SRZ":
        v, taint = _special(st, t)
    else:
        base = re.sub(r"\.(64|X\d+|H[01]|B[0-3]|U32)$", "", t)
        if _REG.match(base):
            v, taint = st.get(base)
        elif _PRED.match(base):
            return st.pred(base).astype(np.int64), EXACT
        else:  # a float immediate, a label, ...: a constant the same for every lane
            return st.unknown("imm:" + t), UNIFORM
    if absv:
        s = np.where(v & 0x80000000, v - (1 << 32), v)
        v = np.abs(s) & MASK32
    if neg:
        v = (-v) & MASK32
    if inv:
        v = (~v) & MASK32
    return v, taint


def _special(st: _State, name: str) -> tuple[np.ndarray, int]:
    if name == "SR_TID.X":
        return st.tid.copy(), EXACT
    if name == "SR_LANEID":
        return st.tid % 32, EXACT
    if name in ("SR_TID.Y", "SR_TID.Z", "SRZ"):
        return st.zero, EXACT
    if name in ("SR_LTMASK", "SR_LEMASK", "SR_GTMASK", "SR_GEMASK", "SR_EQMASK"):
        lane = st.tid % 32
        f = {"SR_LTMASK": lambda l: (1 << l) - 1, "SR_LEMASK": lambda l: (2 << l) - 1,
             "SR_GTMASK": lambda l: MASK32 ^ ((2 << l) - 1), "SR_GEMASK": lambda l: MASK32 ^ ((1 << l) - 1),
             "SR_EQMASK": lambda l: 1 << l}[name]
        return np.array([f(int(l)) & MASK32 for l in lane], dtype=np.int64), EXACT
    # the CTA index, the clock, the CTA's id in its cluster, the shared window: the same for every lane
    return st.unknown("sr:" + name), UNIFORM


def _signed(v: np.ndarray) -> np.ndarray:
    return np.where(v & 0x80000000, v - (1 << 32), v)


def _lop3(a, b, c, lut: int) -> np.ndarray:
    r = np.zeros_like(a)
    for i in range(8):
        if lut >> i & 1:
            x = (a if i & 4 else ~a) & (b if i & 2 else ~b) & (c if i & 1 else ~c)
            r |= x
    return r & MASK32


def _prmt(a, sel, b) -> np.ndarray:
    r = np.zeros_like(a)
    both = (b << 32) | a
    for k in range(4):
        s = (sel >> (4 * k)) & 0xF
        byte = (both >> ((s & 7) * 8)) & 0xFF
        byte = np.where(s & 8, np.where(byte & 0x80, 0xFF, 0), byte)
        r |= byte << (8 * k)
    return r & MASK32


_CMP = {"EQ": np.equal, "NE": np.not_equal, "LT": np.less, "LE": np.less_equal, "GT": np.greater,
        "GE": np.greater_equal}


def _bool(kind: str, x, y):
    return {"AND": x & y, "OR": x | y, "XOR": x ^ y}[kind]


def _width(op: str, mods: str) -> int:
    if op == "LDSM":
        return 16
    for suf, n in ((".128", 16), (".64", 8), (".U16", 2), (".S16", 2), (".U8", 1), (".S8", 1)):
        if suf in mods:
            return n
    return 4


def _regs_of(dest: str, n: int) -> list[str]:
    m = _REG.match(_reg_base(dest))
    if not m or m.group(2) == "Z":
        return []
    return [f"{m.group(1)}{int(m.group(2)) + k}" for k in range(n)]


def _addr(st: _State, tok: str) -> tuple[np.ndarray, int]:
    """The value of a ``[R+UR+imm]`` address operand."""
    inner = tok[tok.rindex("[") + 1:tok.rindex("]")]
    total, taint = np.zeros(st.n, dtype=np.int64), EXACT
    for term in re.split(r"\+(?![^\[]*\])", inner.replace("-", "+-")):
        term = term.strip()
        if not term:
            continue
        scale = 1
        m = re.match(r"^(U?R\d+|U?RZ)\.X(\d+)$", term)
        if m:
            term, scale = m.group(1), int(m.group(2))
        term = re.sub(r"\.(64|U32)$", "", term)
        v, t = _val(st, term)
        total = total + v * scale
        taint = max(taint, t)
    return total & MASK32, taint


class _Emulator:
    def __init__(self, ins: list[_Ins], num_warps: int, unknown_seed: int | None = None, dead=frozenset()):
        self.ins = ins
        #: straight-code arms that never reach a loop (`dead_arms`): not run
        self.dead = dead
        self.st = _State(num_warps, unknown_seed)
        #: index -> [(addresses, taint)], one per visit
        self.visits: dict[int, list] = {}

    def run(self, loops: list, trips: int) -> None:
        body_end = {}
        for _, a, b in loops:
            body_end.setdefault(b, []).append(a)
        k = 0
        n = len(self.ins)
        while k < n:
            if k in self.dead:
                k += 1
                continue
            self.step(k)
            for a in body_end.get(k, []):  # the end of a loop: its body again (trips - 1 more times)
                for _ in range(trips - 1):
                    for j in range(a, k + 1):
                        self.step(j)
            k += 1

    def step(self, k: int) -> None:
        x = self.ins[k]
        st = self.st
        guard = None
        if x.guard:
            if x.guard in ("@!PT", "@!UPT"):
                return
            guard = st.pred(x.guard[1:])
        op, mods, o = x.op, x.mods, x.operands
        try:
            self._exec(k, op, mods, o, guard)
        except (ValueError, IndexError, KeyError, AttributeError):
            self._unknown(o, mods, guard)

    def _unknown(self, o, mods, guard, *, n_regs: int | None = None):
        """A destination this emulator does not compute: 0 and a taint (varying if any source varies)."""
        if not o:
            return
        names = [_reg_base(t.lstrip("-~|").rstrip("|")) for t in o[1:]]
        srcs = [self.st.get(t) for t in names if _REG.match(t)]
        varying = any(t == VARYING or (len(v) and (v != v[0]).any()) for v, t in srcs)
        n = n_regs or (4 if ".128" in mods else 2 if ".64" in mods or ".WIDE" in mods else 1)
        for r in _regs_of(o[0], n):
            self.st.set(r, self.st.zero, VARYING if varying else UNIFORM, guard)

    def _exec(self, k, op, mods, o, guard):
        st = self.st
        base = op[1:] if op.startswith("U") and op not in ("UTMALDG", "UTMASTG") else op
        if op in SMEM_OPS:
            self._smem(k, op, mods, o, guard)
            return
        if op in ("STL",):
            a, _ = _addr(st, o[0])
            key = int(a[0])
            n = _width(op, mods) // 4
            regs = _regs_of(o[1], max(n, 1)) if _reg_base(o[1]) != "RZ" else []
            for j in range(max(n, 1)):
                if regs:
                    st.local[key + 4 * j] = st.get(regs[j])
                else:
                    st.local[key + 4 * j] = (st.zero, EXACT)
            return
        if op == "LDL":
            a, _ = _addr(st, o[1])
            key = int(a[0])
            n = max(_width(op, mods) // 4, 1)
            for j, r in enumerate(_regs_of(o[0], n)):
                v, t = st.local.get(key + 4 * j, (st.zero, VARYING))
                st.set(r, v, t, guard)
            return
        if op == "SHFL":
            self._shfl(mods, o, guard)
            return
        if op in ("LDG", "LD", "LDC", "ULDC", "ATOM", "ATOMS", "ATOMG", "RED", "VOTE", "VOTEU", "MATCH",
                  "REDUX", "CREDUX", "F2I", "I2F", "FRND", "MUFU", "P2R", "S2UR", "LDTRAM"):
            if op in ("LDC", "ULDC") and len(o) > 1 and _CONST.match(o[1].replace(".64", "")):
                n = 2 if ".64" in mods else 1
                for j, r in enumerate(_regs_of(o[0], n)):
                    st.set(r, st.unknown(f"const:{o[1]}:{j}"), UNIFORM, guard)
                return
            if op == "S2UR":
                v, t = _special(st, o[1])
                st.set(o[0], v, t, guard)
                return
            self._unknown(o, mods, guard)
            if op in ("LDG", "LD", "ATOM", "ATOMS", "ATOMG", "MUFU", "F2I", "I2F", "FRND", "P2R", "MATCH"):
                n = 4 if ".128" in mods else 2 if ".64" in mods else 1
                for r in _regs_of(o[0], n):
                    st.set(r, st.zero, VARYING, guard)
            return
        if base == "MOV" or base == "MOV32I":
            v, t = _val(st, o[1])
            st.set(o[0], v, t, guard)
        elif op == "S2R":
            v, t = _special(st, o[1])
            st.set(o[0], v, t, guard)
        elif op == "R2UR":
            v, t = _val(st, o[1])
            st.set(o[0], np.full(st.n, v[0]), t, guard)  # uniform by contract
        elif op in ("CS2R",):
            n = 1 if ".32" in mods else 2
            if o[1] == "SRZ":
                for r in _regs_of(o[0], n):
                    st.set(r, st.zero, EXACT, guard)
            else:
                for r in _regs_of(o[0], n):
                    st.set(r, st.unknown("sr:" + o[1]), UNIFORM, guard)
        elif base == "VIADD":
            d, srcs = self._dest_and_sources(o)
            vals = [_val(st, x) for x in srcs[:2]]
            st.set(d, sum(v for v, _ in vals), max(t for _, t in vals), guard)
        elif base == "IADD3":
            d, srcs = self._dest_and_sources(o)
            vals = [_val(st, s) for s in srcs[-3:]]
            v = sum(x[0] for x in vals)
            st.set(d, v, max(x[1] for x in vals), guard)
        elif base == "IMAD" or base == "IMAD32I":
            d, srcs = self._dest_and_sources(o)
            (a, ta), (b, tb), (c, tc) = (_val(st, s) for s in srcs[-3:])
            taint = max(ta, tb, tc)
            if ".WIDE" in mods:
                c_hi, _ = _val(st, self._next_reg(srcs[-1]))
                if ".U32" in mods:
                    prod = a * b
                else:
                    prod = _signed(a) * _signed(b)
                full = prod + ((c_hi << 32) | c)
                regs = _regs_of(d, 2)
                st.set(regs[0], full & MASK32, taint, guard) if regs else None
                if len(regs) > 1:
                    st.set(regs[1], (full >> 32) & MASK32, taint, guard)
            elif ".HI" in mods:
                prod = a * b if ".U32" in mods else _signed(a) * _signed(b)
                st.set(d, (prod >> 32) + c, taint, guard)
            else:
                st.set(d, a * b + c, taint, guard)
        elif base == "LEA":
            d, srcs = self._dest_and_sources(o)
            if ".HI" in mods:
                # LEA.HI d, a, b, c, s: b + (c:a >> (32 - s)) -- the high word of a pointer; .SX32: c = sign of a
                a, ta = _val(st, srcs[0])
                b, tb = _val(st, srcs[1])
                s = int(srcs[-1], 0)
                if ".SX32" in mods or len(srcs) < 4:
                    hi = np.where(a & 0x80000000, MASK32, 0)
                    tc = ta
                else:
                    hi, tc = _val(st, srcs[2])
                full = (hi << 32) | a
                st.set(d, b + (full >> (32 - s)), max(ta, tb, tc), guard)
            else:
                a, ta = _val(st, srcs[0])
                b, tb = _val(st, srcs[1])
                s = int(srcs[2], 0)
                st.set(d, (a << s) + b, max(ta, tb), guard)
        elif base == "LOP3":
            dests, srcs = self._dests_and_sources(o, reg_dest=True)
            (a, ta), (b, tb), (c, tc) = (_val(st, s) for s in srcs[:3])
            lut = int(srcs[3], 0)
            r = _lop3(a, b, c, lut)
            for dd in dests:
                if _PRED.match(dd):
                    st.set_pred(dd, r != 0, guard, max(ta, tb, tc))
                else:
                    st.set(dd, r, max(ta, tb, tc), guard)
        elif base == "SHF":
            d, srcs = self._dest_and_sources(o)
            (a, ta), (s, ts), (c, tc) = (_val(st, x) for x in srcs[:3])
            sh = s & 31 if ".W" in mods else np.minimum(s, 32)
            if ".L" in mods:
                full = ((c << 32) | a) << sh
                r = (full >> 32) if ".HI" in mods else full
            else:
                hi = _signed(c) if ".S32" in mods or ".S64" in mods else c
                full = (hi << 32) | a
                r = (full >> sh) >> 32 if ".HI" in mods else full >> sh
            st.set(d, r & MASK32, max(ta, ts, tc), guard)
        elif base == "SGXT":
            d, srcs = self._dest_and_sources(o)
            a, ta = _val(st, srcs[0])
            nb, tn = _val(st, srcs[1])
            nbits = int(nb[0])
            m = (1 << nbits) - 1 if nbits < 32 else MASK32
            r = a & m
            if ".U32" not in mods and 0 < nbits < 32:
                r = np.where(r >> (nbits - 1) & 1, r | (MASK32 ^ m), r)
            st.set(d, r, max(ta, tn), guard)
        elif base == "BMSK":
            d, srcs = self._dest_and_sources(o)
            (p, tp), (w, tw) = (_val(st, x) for x in srcs[:2])
            r = np.array([((1 << int(ww)) - 1) << int(pp) if ww < 33 else MASK32 for pp, ww in zip(p, w)],
                         dtype=np.int64)
            st.set(d, r, max(tp, tw), guard)
        elif base in ("SEL", "FSEL"):
            d, srcs = o[0], o[1:]
            (a, ta), (b, tb) = _val(st, srcs[0]), _val(st, srcs[1])
            p = st.pred(srcs[2])
            st.set(d, np.where(p, a, b), max(ta, tb), guard)
        elif base in ("IMNMX", "VIMNMX"):
            d, srcs = o[0], o[1:]
            (a, ta), (b, tb) = _val(st, srcs[0]), _val(st, srcs[1])
            p = st.pred(srcs[2]) if len(srcs) > 2 else np.ones(st.n, dtype=bool)
            if ".U32" not in mods:
                a2, b2 = _signed(a), _signed(b)
            else:
                a2, b2 = a, b
            st.set(d, np.where(p, np.minimum(a2, b2), np.maximum(a2, b2)), max(ta, tb), guard)
        elif base == "IABS":
            d, srcs = self._dest_and_sources(o)
            a, ta = _val(st, srcs[0])
            st.set(d, np.abs(_signed(a)), ta, guard)
        elif base == "PRMT":
            d, srcs = self._dest_and_sources(o)
            (a, ta), (s, ts), (b, tb) = (_val(st, x) for x in srcs[:3])
            st.set(d, _prmt(a, s, b), max(ta, ts, tb), guard)
        elif base == "POPC":
            d, srcs = self._dest_and_sources(o)
            a, ta = _val(st, srcs[0])
            st.set(d, np.array([bin(int(x)).count("1") for x in a], dtype=np.int64), ta, guard)
        elif base == "FLO":
            d, srcs = self._dest_and_sources(o)
            a, ta = _val(st, srcs[0])
            st.set(d, np.array([int(x).bit_length() - 1 if x else MASK32 for x in a], dtype=np.int64), ta, guard)
        elif base == "ISETP":
            dests, srcs = self._dests_and_sources(o)
            (a, ta), (b, tb) = _val(st, srcs[0]), _val(st, srcs[1])
            pc = st.pred(srcs[2]) if len(srcs) > 2 else np.ones(st.n, dtype=bool)
            parts = mods.split(".")
            cmp = next((p for p in parts if p in _CMP), "NE")
            comb = next((p for p in parts if p in ("AND", "OR", "XOR")), "AND")
            if ".U32" not in mods and ".EX" not in mods:
                a, b = _signed(a), _signed(b)
            r = _CMP[cmp](a, b)
            tp = max(ta, tb, st.pred_taint(srcs[2]) if len(srcs) > 2 else EXACT)
            st.set_pred(dests[0], _bool(comb, r, pc), guard, tp)
            if len(dests) > 1:
                st.set_pred(dests[1], _bool(comb, ~r, pc), guard, tp)
        elif base == "PLOP3":
            dests, srcs = self._dests_and_sources(o)
            a, b, c = (st.pred(s) for s in srcs[:3])
            lut = int(srcs[3], 0)
            r = _lop3(a.astype(np.int64), b.astype(np.int64), c.astype(np.int64), lut) & 1
            st.set_pred(dests[0], r.astype(bool), guard, max(st.pred_taint(x) for x in srcs[:3]))
        elif op in ("BRA", "EXIT", "BAR", "NOP", "DEPBAR", "LDGDEPBAR", "BSSY", "BSYNC", "WARPSYNC", "YIELD",
                    "MEMBAR", "FENCE", "ERRBAR", "CCTL", "RET", "CALL", "BPT", "STG", "ST", "SYNCS", "ARRIVES",
                    "WARPGROUP", "HGMMA", "UTMALDG", "UTMASTG", "UTMACMDFLUSH", "UTMAPF", "ELECT", "ACQBULK",
                    "USETMAXREG", "BREAK", "BMOV", "NANOSLEEP", "KILL", "PREEXIT"):
            return
        else:  # floating point and the rest: a value the CPU does not know
            self._unknown(o, mods, guard)

    def _shfl(self, mods, o, guard):
        """SHFL.{IDX,UP,DOWN,BFLY} Pd, Rd, Ra, b, c -- PTX shfl.sync's lane arithmetic within each warp (Triton
        makes the warp index uniform with SHFL.IDX ..., 0x0, 0x1f)."""
        st = self.st
        regs = [t for t in o if not _PRED.match(t)]
        d, a_tok, b_tok, c_tok = regs[0], regs[1], regs[2], regs[3]
        (a, ta), (b, tb), (c, tc) = _val(st, a_tok), _val(st, b_tok), _val(st, c_tok)
        lane = st.tid % 32
        clamp, segmask = c & 0x1F, (c >> 8) & 0x1F
        min_lane = lane & segmask
        max_lane = min_lane | (clamp & ~segmask & 0x1F)
        if ".IDX" in mods:
            j = min_lane | (b & ~segmask & 0x1F)
            j = np.where(j > max_lane, lane, j)
        elif ".UP" in mods:
            j = lane - b
            j = np.where(j < min_lane, lane, j)
        elif ".DOWN" in mods:
            j = lane + b
            j = np.where(j > max_lane, lane, j)
        else:  # BFLY
            j = lane ^ (b & 0x1F)
            j = np.where(j > max_lane, lane, j)
        src = (st.tid - lane) + j
        st.set(d, a[src], max(ta, tb, tc), guard)

    @staticmethod
    def _next_reg(tok: str) -> str:
        b = _reg_base(tok)
        m = _REG.match(b)
        if not m or m.group(2) == "Z":
            return "RZ"
        return f"{m.group(1)}{int(m.group(2)) + 1}"

    @staticmethod
    def _dests_and_sources(o, reg_dest: bool = False):
        """Leading predicate destinations (ISETP, PLOP3; LOP3's optional one) and, with `reg_dest`, the register
        destination after them (LOP3.LUT P0, R2, ...), then the sources."""
        dests, i = [], 0
        while i < len(o) and _PRED.match(o[i]):
            dests.append(o[i])
            i += 1
        if reg_dest and i < len(o) and _REG.match(_reg_base(o[i])):
            dests.append(o[i])
            i += 1
        return dests, o[i:]

    @staticmethod
    def _dest_and_sources(o):
        """Register destination; carry-out / carry-in predicates (IADD3 d, P0, P1, a, b, c; LEA d, P0, a, b, s;
        IADD3.X d, a, b, c, P0, P1) dropped."""
        d = o[0]
        srcs = [s for s in o[1:] if not _PRED.match(s)]
        return d, srcs

    def _smem(self, k, op, mods, o, guard):
        st = self.st
        if op in ("LDS", "LDSM"):
            addr_tok = o[1]
        elif op == "STS":
            addr_tok = o[0]
        else:  # LDGSTS [shared], [global], ...
            addr_tok = o[0]
        a, taint = _addr(st, addr_tok)
        # a guard computed from the thread index alone selects lanes (which lanes of a replicated layout store);
        # one that depends on what the CPU does not know (a bounds check against the sequence length) is taken
        # as true for every lane (a full tile)
        g = self.ins[k].guard
        if guard is not None and st.pred_taint(g[1:]) == EXACT:
            active = guard.copy()
        else:
            active = np.ones(st.n, dtype=bool)
        self.visits.setdefault(k, []).append((a.copy(), taint, active.copy()))
        if op in ("LDS", "LDSM"):
            n = {16: 4, 8: 2}.get(_width(op, mods), 1)
            if op == "LDSM":
                n = 4 if ".4" in mods else 2 if ".2" in mods else 1
            for r in _regs_of(o[0], n):
                st.set(r, st.zero, VARYING, guard)


# ------------------------------------------------------------------------------------------------ wavefronts
def _ldsm_matrices(mods: str) -> int:
    return 4 if ".4" in mods else 2 if ".2" in mods else 1


def _most_per_bank(word_addr: np.ndarray, words_per_lane: int, banks: int) -> int:
    """Wavefronts one phase needs: the most distinct 4-byte words asked of one bank (0: no lane)."""
    if word_addr.size == 0:
        return 0
    words = np.unique((word_addr[:, None] + np.arange(words_per_lane)[None, :]).ravel())
    return int(np.bincount(words % banks, minlength=banks).max())


def warp_wavefronts(addresses, width_bytes: int, model: BankModel = H100, active=None, *, store: bool = False) -> int:
    """Wavefronts one warp instruction needs: `addresses` the warp's 32 byte addresses (each lane moves
    `width_bytes` from there), `active` the lanes that access (default all), `store` for STS / LDGSTS; see
    `BankModel`."""
    addr = np.asarray(addresses, dtype=np.int64) // model.bank_bytes
    act = np.ones(len(addr), dtype=bool) if active is None else np.asarray(active, dtype=bool)
    per_lane = max(width_bytes // model.bank_bytes, 1)
    phase, group = model.lanes(width_bytes)
    if store and not model.store_group_share:
        group = phase
    total = 0
    for g0 in range(0, len(addr), group):
        if not act[g0:g0 + group].any():
            continue
        phases = []
        for p0 in range(g0, g0 + group, phase):
            pa = addr[p0:p0 + phase][act[p0:p0 + phase]]
            if pa.size:
                phases.append(pa)
        if group == phase:
            total += _most_per_bank(phases[0], per_lane, model.banks)
            continue
        if model.group_share == "one_wavefront" and _most_per_bank(np.concatenate(phases), per_lane, model.banks) <= 1:
            total += 1
            continue
        uniform = [pa for pa in phases if (pa == pa[0]).all()]
        if model.group_share == "uniform_group" and len(uniform) == len(phases) and \
                len({int(pa[0]) for pa in uniform}) == 1:
            total += 1
            continue
        if model.group_share == "uniform_phases" and uniform:
            # phases whose lanes all ask for one address are served together (their rows, one per bank per
            # wavefront); the others each on their own
            total += _most_per_bank(np.array([int(pa[0]) for pa in uniform]), per_lane, model.banks)
            phases = [pa for pa in phases if not (pa == pa[0]).all()]
        total += sum(_most_per_bank(pa, per_lane, model.banks) for pa in phases)
    return total


def _access(k: int, x: _Ins) -> SmemAccess:
    w = _width(x.op, x.mods)
    active = 8 * _ldsm_matrices(x.mods) if x.op == "LDSM" else 32
    return SmemAccess(k, x.op, x.mods, w, active, x.text)


def wavefronts(sass: str, *, num_warps: int, model: BankModel = H100, trips: int = 2,
               unknown_seed: int | None = None) -> SmemReport:
    """Wavefronts per warp instruction of every shared-memory instruction (LDS, LDSM, STS, LDGSTS) of `sass`
    (`kernels.sass.disassemble`'s text; needs its -hex control words only to align indices with
    `kernels.sass.instructions`).  `num_warps`: the launch's warps per CTA (the thread index runs over
    32 x num_warps lanes).  Each value is the mean over the CTA's warps and over the `trips` passes of a loop body
    (the stage of a multi-buffered loop advances each trip).  `unknown_seed`: give the values the CPU cannot know
    random uniform values instead of 0 (a sensitivity check: the result should not change)."""
    scanned = scan(sass)
    ins, loops = _decode_scanned(*scanned)
    em = _Emulator(ins, num_warps, unknown_seed, dead_arms(sass, scanned))
    em.run(loops, trips)
    out, ideal, accesses, unresolved = {}, {}, {}, []
    for k, x in enumerate(ins):
        if x.op not in SMEM_OPS:
            continue
        acc = _access(k, x)
        accesses[k] = acc
        if x.guard in ("@!PT", "@!UPT"):  # never executes (ptxas's padding): issued, no wavefront
            out[k], ideal[k] = 0.0, 0
            continue
        ideal[k] = max(1, acc.active_lanes * acc.width_bytes // model.wavefront_bytes)
        visits = em.visits.get(k, [])
        if not visits or any(t == VARYING for _, t, _ in visits):
            unresolved.append(k)
            out[k] = float(ideal[k])
            continue
        vals = []
        for a, _, act in visits:
            for w in range(num_warps):
                sl = slice(32 * w, 32 * w + 32)
                lane_act = act[sl].copy()
                if x.op == "LDSM":
                    lane_act[acc.active_lanes:] = False
                vals.append(warp_wavefronts(a[sl], acc.width_bytes, model, lane_act,
                                            store=x.op in ("STS", "LDGSTS")))
        out[k] = float(np.mean(vals))
    return SmemReport(wavefronts=out, ideal=ideal, unresolved=tuple(unresolved), accesses=accesses)


def smem_wavefronts(sass: str, *, num_warps: int, model: BankModel = H100) -> dict:
    """{index in `kernels.sass.instructions(sass)[0]`: wavefronts per warp instruction} of the shared-memory
    instructions (the entry point the replay uses: ``Instr.smem_bytes = wavefronts x model.wavefront_bytes``)."""
    return wavefronts(sass, num_warps=num_warps, model=model).wavefronts
