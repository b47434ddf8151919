"""Exactness suite: every algorithm, forward and backward, against the float64 reference.

The correctness rule (DESIGN.md, on FlashAttention's footing), per output tensor
(o forward; dq, dk, dv backward):

    max|kernel - ref64|  <=  2 * max|same-dtype - ref64|  +  floor

where ref64 = kernels.reference (float64), "same-dtype" is the worse of two plain implementations
of the same math in the input dtype (kernels.naive_same_dtype, autograd through standard
attention, and kernels.testing.flash_formula_same_dtype, the FlashAttention backward formulas the
kernels and SDPA's fused backends use) and

    floor = eps(dtype) * max|ref64|  +  8 * eps(fp32) * M

with M the largest magnitude of the terms summed into one output element (kernels.testing.
term_magnitudes).  One formula, kernels.testing.rule_tolerance, for the kernels' tests and this
suite.  A NaN or Inf anywhere in the kernel output fails the case.  Naive attention with S and P in
fp16 returns NaN once a scaled logit passes 65504 (fp16's largest value) although the inputs are
finite; the suite's inputs stay far below (documented in kernels/testing.py).

On a GPU the cases use realistic shapes; without one they run through the Triton
interpreter (TRITON_INTERPRET=1, set before triton is imported) on small shapes.
Fresh random inputs (fixed seeds, never zeros); outputs are allocated poisoned (NaN) through
kernels.testing.poisoned_allocations, so an element the kernel forgets to write shows up.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

ALGS = (("naive", "fwd"), ("naive", "bwd"), ("flash1", "fwd"), ("flash2", "fwd"), ("flash2", "bwd"))


@dataclass(frozen=True)
class NumCase:
    algorithm: str
    phase: str
    dtype: str
    head_dim: int
    seq_q: int
    seq_kv: int
    heads_q: int = 2
    heads_kv: int = 2
    batch: int = 1
    causal: bool = False
    causal_align: str = "top_left"
    layout: str = "contiguous"  # or "bnhd": (B, N, H, d) storage viewed as (B, H, N, d)
    block_m: int = 32
    block_n: int = 16
    grid_order: str = "q_fastest"
    seed: int = 0

    @property
    def id(self) -> str:
        c = ("causal-" + ("tl" if self.causal_align == "top_left" else "br")) if self.causal else "full"
        g = f"h{self.heads_q}" + (f"kv{self.heads_kv}" if self.heads_kv != self.heads_q else "")
        extra = "" if self.layout == "contiguous" else f"-{self.layout}"
        extra += "" if self.grid_order == "q_fastest" else "-headsfast"
        return (f"{self.algorithm}-{self.phase}-{self.dtype}-d{self.head_dim}-q{self.seq_q}k{self.seq_kv}-{g}-{c}"
                f"-b{self.block_m}x{self.block_n}{extra}")


def build_cases(gpu: bool) -> list[NumCase]:
    """The exactness matrix.  Interpreter: small shapes; GPU: larger ones and more head dims."""
    cases: list[NumCase] = []
    if gpu:
        bm, bn = 64, 64
        dims = (32, 64, 128)
        lens = ((1, 1), (113, 113), (203, 203), (1023, 1023), (256, 512), (512, 256), (2048, 2048))
        dtypes = ("fp16", "bf16", "fp32")
        B, H = 2, 4
    else:
        bm, bn = 32, 16
        dims = (16, 64)
        lens = ((1, 1), (113, 113), (64, 96), (96, 64))
        dtypes = ("fp16", "bf16", "fp32")
        B, H = 1, 2
    for alg, ph in ALGS:
        # dtypes at one head dim and a plain length
        for dt in dtypes:
            cases.append(NumCase(alg, ph, dt, 64, lens[1][0], lens[1][1], H, H, B, block_m=bm, block_n=bn))
        # head dims, lengths, causal alignments (fp16)
        for d in dims:
            for nq, nkv in lens:
                for causal, align in ((False, "top_left"), (True, "top_left"), (True, "bottom_right")):
                    if d != 64 and (nq, nkv) not in (lens[1], lens[-1]):
                        continue  # other head dims: two lengths are enough
                    if causal and align == "bottom_right" and nq == nkv:
                        continue  # same as top_left
                    cases.append(NumCase(alg, ph, "fp16", d, nq, nkv, H, H, B, causal, align, block_m=bm,
                                         block_n=bn))
        # GQA (4 q heads per k/v head... 2 on the interpreter), causal and not
        for causal in (False, True):
            cases.append(NumCase(alg, ph, "bf16", 64, lens[1][0], lens[1][1], 2 * H, max(1, H // 2), B, causal,
                                 block_m=bm, block_n=bn, seed=1))
        # non-contiguous strides, heads-fastest grid, fully masked rows (bottom_right, seq_q > seq_kv)
        cases.append(NumCase(alg, ph, "fp16", 64, lens[1][0], lens[1][1], H, H, B, layout="bnhd", block_m=bm,
                             block_n=bn, seed=2))
        if alg != "flash1":
            cases.append(NumCase(alg, ph, "fp16", 64, lens[1][0], lens[1][1], H, H, B, grid_order="heads_fastest",
                                 block_m=bm, block_n=bn, seed=3))
        cases.append(NumCase(alg, ph, "fp16", 64, 96 if not gpu else 512, 40 if not gpu else 200, H, H, B, True,
                             "bottom_right", block_m=bm, block_n=bn, seed=4))
    seen, out = set(), []
    for c in cases:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out


@dataclass
class TensorResult:
    tensor: str
    max_err: float
    mean_err: float
    naive_max_err: float
    noise: float
    tol: float
    nonfinite: int
    passed: bool


@dataclass
class CaseResult:
    case: NumCase
    results: list = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    #: why a failure here is not the kernel's (a known tool artefact); none is set automatically
    artefact: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.results) and all(r.passed for r in self.results)

    @property
    def status(self) -> str:
        if self.passed:
            return "pass"
        return "interpreter-artefact" if self.artefact and self.error is None else "FAIL"


def rule(kernel_out, ref, naive_out, dtype: str, name: str, *, peer=None, magnitude=None) -> TensorResult:
    """Apply the correctness rule (kernels.testing.rule_tolerance) to one tensor; errors measured by
    kernels.testing.describe_error (NaN counts as an infinite error, matching infinities as none)."""
    import torch

    from kernels.testing import describe_error, rule_tolerance
    nonfinite = int((~torch.isfinite(kernel_out.detach().to(torch.float64))).sum().item())
    max_err, _ = describe_error(name, kernel_out, ref)
    nmax, _ = describe_error(name + " (naive)", naive_out, ref)
    if peer is not None:
        nmax = max(nmax, describe_error(name + " (peer)", peer, ref)[0])
    diff = (kernel_out.detach().to(torch.float64) - ref).abs()
    fin = diff[torch.isfinite(diff)]
    mean_err = float(fin.mean().item()) if fin.numel() else 0.0
    noise, tol = rule_tolerance(ref, nmax, dtype, magnitude)
    ok = nonfinite == 0 and max_err <= tol
    return TensorResult(name, max_err, mean_err, nmax, noise, tol, nonfinite, ok)


def _naive_arg(y: dict) -> dict:
    return {"naive_out": y["naive"], "peer": y["peer"], "magnitude": y["magnitude"]}


def run_case(c: NumCase, device) -> CaseResult:
    import dataclasses

    import torch

    import kernels
    from memsim.schedule import AttentionProblem, Schedule

    t0 = time.time()
    res = CaseResult(c)
    try:
        dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[c.dtype]
        g = torch.Generator(device="cpu").manual_seed(c.seed)

        def rnd(b, h, n, d):
            if c.layout == "bnhd":
                return torch.randn(b, n, h, d, generator=g).to(device=device, dtype=dt).transpose(1, 2)
            return torch.randn(b, h, n, d, generator=g).to(device=device, dtype=dt)

        q = rnd(c.batch, c.heads_q, c.seq_q, c.head_dim)
        k = rnd(c.batch, c.heads_kv, c.seq_kv, c.head_dim)
        v = rnd(c.batch, c.heads_kv, c.seq_kv, c.head_dim)
        prob = AttentionProblem(c.batch, c.heads_q, c.heads_kv, c.seq_q, c.seq_kv, c.head_dim, c.dtype, c.causal,
                                None, c.causal_align)
        sched = Schedule(c.algorithm, c.phase, c.block_m, c.block_n, 4, 1 if device.type == "cpu" else 2,
                         c.grid_order)
        kw = dict(causal=c.causal, scale=prob.scale, causal_align=c.causal_align)
        from kernels.testing import poisoned_allocations
        with poisoned_allocations():  # an output element the kernel never writes stays NaN
            fwd = kernels.forward(prob, dataclasses.replace(sched, phase="fwd"), q, k, v)
        from kernels.testing import yardsticks
        if c.phase == "fwd":
            o_ref, _lse = kernels.reference(q, k, v, **kw)[:2]
            res.results.append(rule(fwd.o, o_ref, dtype=c.dtype, name="o", **_naive_arg(yardsticks(q, k, v, **kw)["o"])))
        else:
            do = rnd(c.batch, c.heads_q, c.seq_q, c.head_dim)
            with poisoned_allocations():
                dq, dk, dv = kernels.backward(prob, sched, q, k, v, fwd.o, do, fwd)
            ref = kernels.reference(q, k, v, do=do, **kw)
            ys = yardsticks(q, k, v, do=do, **kw)
            for name, a, r in (("dq", dq, ref[-3]), ("dk", dk, ref[-2]), ("dv", dv, ref[-1])):
                res.results.append(rule(a, r, dtype=c.dtype, name=name, **_naive_arg(ys[name])))
    except Exception as e:
        res.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400]
    res.seconds = time.time() - t0
    return res


def setup_backend():
    """(device, mode): CUDA if torch sees a GPU, else the Triton interpreter on CPU.

    Must run before `triton` is imported (TRITON_INTERPRET is read at import)."""
    import torch
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return torch.device("cuda"), "gpu"
    os.environ["TRITON_INTERPRET"] = "1"
    return torch.device("cpu"), "interpreter"


def run_suite(cases, device, *, progress=None, on_result=None) -> list[CaseResult]:
    out = []
    for i, c in enumerate(cases, 1):
        r = run_case(c, device)
        out.append(r)
        if on_result:
            on_result(out)
        if progress:
            status = "ERROR " + r.error if r.error else r.status
            progress(f"[{i}/{len(cases)}] {c.id}: {status} ({r.seconds:.1f} s)")
    return out


def to_json(results: list[CaseResult], mode: str, provenance: dict) -> dict:
    rows = []
    for r in results:
        base = {"case": r.case.id, **r.case.__dict__, "seconds": round(r.seconds, 3), "case_status": r.status,
                "artefact": r.artefact}
        if r.error:
            rows.append({**base, "tensor": None, "error": r.error, "pass": False})
        for t in r.results:
            rows.append({**base, **t.__dict__, "pass": t.passed})
    n_pass = sum(r.passed for r in results)
    n_art = sum(r.status == "interpreter-artefact" for r in results)
    return {"mode": mode,
            "rule": "max|kernel-ref64| <= 2*max(|naive_same_dtype-ref64|, |flash_formula_same_dtype-ref64|) + "
                    "eps(dtype)*max|ref64| + 8*eps32*M (M: largest term magnitude; kernels/testing.py)",
            "cases": len(results), "passed": n_pass, "artefacts": n_art, "failed": len(results) - n_pass - n_art,
            "rows": rows, "provenance": provenance}


def to_markdown(doc: dict) -> str:
    p = doc["provenance"]
    lines = [f"# Exactness: kernels vs the float64 reference ({doc['mode']})", "",
             *(["**PARTIAL: the run was interrupted; only the cases below ran.**", ""]
               if doc.get("complete") is False else []),
             f"{doc['passed']}/{doc['cases']} cases pass, {doc['failed']} fail"
             + (f", {doc['artefacts']} interpreter artefact(s) (see below)" if doc.get("artefacts") else "")
             + f". Rule: `{doc['rule']}` per output tensor; NaN/Inf fails.", "",
             f"Device: {p.get('gpu') or p.get('device')}; torch {p.get('torch')}, triton {p.get('triton')}; "
             f"{p.get('date')}; `{p.get('command')}`", "",
             "| case | tensor | max err | mean err | naive max err | noise | tol | pass |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in doc["rows"]:
        if r.get("tensor") is None:
            lines.append(f"| {r['case']} | - | error: {r['error']} | | | | | **FAIL** |")
            continue
        nf = f" ({r['nonfinite']} non-finite)" if r["nonfinite"] else ""
        verdict = "pass" if r["pass"] else ("fail: interpreter artefact" if r.get("artefact") else "**FAIL**")
        lines.append(f"| {r['case']} | {r['tensor']} | {r['max_err']:.3g}{nf} | {r['mean_err']:.3g} | "
                     f"{r['naive_max_err']:.3g} | {r['noise']:.2g} | {r['tol']:.3g} | {verdict} |")
    arts = sorted({r["artefact"] for r in doc["rows"] if r.get("artefact")})
    if arts:
        lines += ["", "Interpreter artefacts (not counted as failures):"] + [f"- {a}" for a in arts]
    return "\n".join(lines) + "\n"
