"""The validation suite: named cases, each a problem + a schedule + a hardware preset.

Stdlib only (memsim.schedule), so `measure` runs where simpy is not installed.

What the suite covers (issue 4): naive forward and backward; flash1 forward at several
block sizes (the 2022 paper's Figure 2 middle); flash2 forward and backward; causal and
not; d = 64 and 128; N from 512 to 16384; both grid orders on the N=16384, B*H=32, d=64
shape where heads-fastest reads 37x more DRAM (DESIGN.md); the paper's GPT-2-medium shape
(B=64, H=16, N=1024, d=64), naive against flash (Figure 2 left).

Sizes are chosen so that the whole suite runs in one ncu process in a few minutes on an
H100: flash cases keep B*N = 16k tokens; naive cases keep S and P (B*H*N^2 elements each)
at or under 2 GiB, so N=16384 naive runs with B*H = 2.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass

from memsim.schedule import AttentionProblem, Schedule, kernel_launches

DEFAULT_HW = "h100-sxm"


@dataclass(frozen=True)
class Case:
    name: str
    problem: AttentionProblem
    schedule: Schedule
    hardware: str = DEFAULT_HW
    #: which report figures use this case: "fig2_left", "block_sweep", "grid_order", "scaling"
    tags: tuple = ()
    note: str = ""

    def launch_names(self) -> list[str]:
        return [l.name for l in kernel_launches(self.problem, self.schedule)]

    def to_spec(self) -> dict:
        """What the case runner needs (JSON-ready)."""
        return {"name": self.name, "problem": self.problem.to_dict(), "schedule": self.schedule.to_dict(),
                "hardware": self.hardware, "launches": self.launch_names()}

    def io_bytes(self) -> int:
        """Inputs + outputs + S/P (naive) the case allocates, a rough memory bound."""
        p, s = self.problem, self.schedule
        n = p.q_bytes() * 2 + p.kv_bytes()
        if s.phase == "bwd":
            n *= 2
        if s.algorithm == "naive":
            n += (3 if s.phase == "bwd" else 2) * p.batch * p.heads_q * p.seq_q * p.seq_kv * s.sp_bytes(p)
        return n


def _p(b, h, n, d, *, causal=False, dtype="fp16", hkv=None, nkv=None):
    return AttentionProblem(batch=b, heads_q=h, heads_kv=hkv or h, seq_q=n, seq_kv=nkv or n, head_dim=d,
                            dtype=dtype, causal=causal)


def _s(alg, phase="fwd", bm=128, bn=64, warps=4, stages=2, order="q_fastest"):
    return Schedule(algorithm=alg, phase=phase, block_m=bm, block_n=bn, num_warps=warps, num_stages=stages,
                    grid_order=order)


def build_suite() -> list[Case]:
    C = []

    # (a) Figure 2 left: GPT-2 medium, B=64, H=16, N=1024, d=64 -- naive vs flash, fwd and bwd
    g = _p(64, 16, 1024, 64)
    C += [Case("gpt2m_naive_fwd", g, _s("naive", bm=64, bn=64), tags=("fig2_left",)),
          Case("gpt2m_naive_bwd", g, _s("naive", "bwd", bm=64, bn=64), tags=("fig2_left",)),
          Case("gpt2m_flash1_fwd", g, _s("flash1", bm=64, bn=64), tags=("fig2_left",)),
          Case("gpt2m_flash2_fwd", g, _s("flash2", bm=128, bn=64, warps=8), tags=("fig2_left",)),
          Case("gpt2m_flash2_bwd", g, _s("flash2", "bwd", bm=64, bn=64), tags=("fig2_left",))]

    # (b) Figure 2 middle: flash1 forward, block size sweep on the GPT-2-medium shape
    for bn in (32, 64, 128, 256):
        C.append(Case(f"sweep_flash1_fwd_bn{bn}", g, _s("flash1", bm=64, bn=bn, warps=8 if bn >= 128 else 4),
                      tags=("block_sweep",), note="block_m=64, K/V block size block_n swept"))

    # (d) grid order: N=16384, B*H=32, d=64, 128x64 tiles (DESIGN.md: 201 MB vs 7.4 GB from DRAM)
    go = _p(1, 32, 16384, 64)
    for order in ("q_fastest", "heads_fastest"):
        C.append(Case(f"grid_{order}_flash2_fwd_n16384", go, _s("flash2", bm=128, bn=64, warps=8, order=order),
                      tags=("grid_order",)))

    # flash2 forward scaling, d=64 (H=32) and d=128 (H=16), B*N = 16384 tokens
    for n in (512, 1024, 2048, 4096, 8192, 16384):
        C.append(Case(f"flash2_fwd_d64_n{n}", _p(16384 // n, 32, n, 64), _s("flash2", bm=128, bn=64, warps=8),
                      tags=("scaling",)))
    for n in (1024, 4096, 16384):
        C.append(Case(f"flash2_fwd_d128_n{n}", _p(16384 // n, 16, n, 128), _s("flash2", bm=128, bn=64, warps=8),
                      tags=("scaling",)))
    # causal forward
    for d, h in ((64, 32), (128, 16)):
        for n in (1024, 16384):
            C.append(Case(f"flash2_fwd_causal_d{d}_n{n}", _p(16384 // n, h, n, d, causal=True),
                          _s("flash2", bm=128, bn=64, warps=8), tags=("scaling",)))
    # flash2 backward
    for d, h in ((64, 32), (128, 16)):
        for n in (1024, 4096):
            for causal in (False, True):
                cz = "_causal" if causal else ""
                C.append(Case(f"flash2_bwd{cz}_d{d}_n{n}", _p(16384 // n, h, n, d, causal=causal),
                              _s("flash2", "bwd", bm=64, bn=64), tags=("scaling",)))
    C.append(Case("flash2_bwd_d64_n16384", _p(1, 32, 16384, 64), _s("flash2", "bwd", bm=64, bn=64),
                  tags=("scaling",)))
    # flash1 forward beyond GPT-2: d=128, causal, long
    C.append(Case("flash1_fwd_d128_n4096", _p(4, 16, 4096, 128), _s("flash1", bm=64, bn=64), tags=("scaling",)))
    C.append(Case("flash1_fwd_causal_d64_n4096", _p(4, 32, 4096, 64, causal=True), _s("flash1", bm=64, bn=64),
                  tags=("scaling",)))
    # GQA and an odd length (edge tiles)
    C.append(Case("flash2_fwd_gqa4_d128_n4096", _p(4, 32, 4096, 128, hkv=8), _s("flash2", bm=128, bn=64, warps=8),
                  tags=("scaling",)))
    C.append(Case("flash2_fwd_d64_n4000", _p(4, 32, 4000, 64), _s("flash2", bm=128, bn=64, warps=8),
                  tags=("scaling",)))
    # naive: S and P materialised; B*H*N^2 <= 2^30 elements
    for n, bh in ((512, 64), (2048, 32), (4096, 16), (16384, 2)):
        for phase in ("fwd", "bwd"):
            C.append(Case(f"naive_{phase}_d64_n{n}", _p(1, bh, n, 64), _s("naive", phase, bm=64, bn=64),
                          tags=("scaling",)))
    C.append(Case("naive_fwd_causal_d128_n4096", _p(1, 16, 4096, 128, causal=True), _s("naive", bm=64, bn=64),
                  tags=("scaling",)))
    names = [c.name for c in C]
    assert len(names) == len(set(names)), "duplicate case names"
    return C


SUITE: list[Case] = build_suite()
BY_NAME = {c.name: c for c in SUITE}


class UnknownCaseError(KeyError):
    def __str__(self):
        return self.args[0]


def select(patterns: list[str] | str | None = None) -> list[Case]:
    """Cases by name or shell pattern ('flash2_*'), or tag ('tag:grid_order'); all when empty.
    Unknown names raise UnknownCaseError listing a few close ones."""
    return select_from(SUITE, patterns, "python -m verification cases")


def select_from(cases: list, patterns: list[str] | str | None, lister: str) -> list:
    """`select` over any list of cases (this suite's, the decode suite's); `lister` is the command that lists
    them, named in the error."""
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p]
    if not patterns:
        return list(cases)
    out = []
    for pat in patterns:
        if pat.startswith("tag:"):
            hit = [c for c in cases if pat[4:] in c.tags]
        else:
            hit = [c for c in cases if fnmatch.fnmatchcase(c.name, pat)]
        if not hit:
            import difflib
            close = difflib.get_close_matches(pat, [c.name for c in cases], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownCaseError(f"unknown case {pat!r}{hint} (`{lister}` lists them)")
        out += [c for c in hit if c not in out]
    return out


def case_from_record(rec: dict) -> Case:
    """Rebuild a Case from a stored measurement (its own problem/schedule, not the suite's)."""
    from memsim.schedule import problem_from_dict, schedule_from_dict
    name = rec["case"]
    tags = tuple(rec.get("tags") or (BY_NAME[name].tags if name in BY_NAME else ()))
    return Case(name, problem_from_dict(rec["problem"]), schedule_from_dict(rec["schedule"]),
                rec.get("hardware", DEFAULT_HW), tags)


def with_phase(schedule: Schedule, phase: str) -> Schedule:
    return dataclasses.replace(schedule, phase=phase)
