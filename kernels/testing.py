"""Helpers for testing the kernels (used by tests/test_kernels_*.py; reusable by verification/).

- `make_inputs`: fresh random, non-zero (B, H, N, d) tensors from a fixed seed, optionally laid out
  with non-contiguous strides (a (B, N, H, d) buffer transposed, or a slice of a wider last dim).
- `check_rule`: DESIGN.md's correctness rule with a verbose report (max/mean error and where).
- `poisoned_allocations`: every torch.empty/empty_like inside the block returns NaN-filled memory, so
  an element a kernel forgets to write (or a workspace it reads before writing) shows up as NaN.
"""
from __future__ import annotations

import contextlib
import zlib

import torch

from ._common import TORCH_DTYPES


def seed_of(*parts) -> int:
    """A fixed seed derived from the test's parameters (stable across runs and machines)."""
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


def make_tensor(shape, dtype, device, gen, layout="contiguous", scale=1.0):
    """Random normal tensor of `shape` (B, H, N, d); layout 'contiguous', 'bnhd' (stored as
    (B, N, H, d) and transposed) or 'wide' (a view of the first d columns of a (.., 2d) buffer)."""
    B, H, N, d = shape
    if layout == "contiguous":
        base = torch.randn(shape, generator=gen, dtype=torch.float32)
        t = base
    elif layout == "bnhd":
        base = torch.randn((B, N, H, d), generator=gen, dtype=torch.float32)
        t = base.transpose(1, 2)
    elif layout == "wide":
        base = torch.randn((B, H, N, 2 * d), generator=gen, dtype=torch.float32)
        t = base[..., :d]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    t = (t * scale).to(device=device, dtype=TORCH_DTYPES[dtype] if isinstance(dtype, str) else dtype)
    # avoid exact zeros (they hide unwritten outputs)
    t = torch.where(t == 0, torch.full_like(t, 0.0625), t)
    if layout == "contiguous":
        return t.contiguous()
    # keep the strided view: rebuild it over a buffer of the target dtype/device
    if layout == "bnhd":
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    buf = torch.empty((B, H, N, 2 * d), dtype=t.dtype, device=device)
    buf.normal_()
    buf[..., :d] = t
    return buf[..., :d]


def make_inputs(B, Hq, Hkv, Nq, Nkv, d, dtype, device, seed, layout="contiguous", scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    q = make_tensor((B, Hq, Nq, d), dtype, device, gen, layout, scale)
    k = make_tensor((B, Hkv, Nkv, d), dtype, device, gen, layout, scale)
    v = make_tensor((B, Hkv, Nkv, d), dtype, device, gen, layout)
    do = make_tensor((B, Hq, Nq, d), dtype, device, gen, "contiguous")
    return q, k, v, do


def describe_error(name, out, ref) -> tuple[float, str]:
    """(max abs error, one-line report: max/mean error, where, values there)."""
    out64 = out.detach().double().cpu()
    ref64 = ref.detach().double().cpu()
    both_inf = torch.isinf(out64) & torch.isinf(ref64) & (torch.sign(out64) == torch.sign(ref64))
    err = torch.where(both_inf, torch.zeros_like(out64), (out64 - ref64).abs())
    err = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err)
    mx = err.max().item() if err.numel() else 0.0
    idx = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape)) if err.numel() else ()
    msg = (f"{name}: max err {mx:.3e} at {idx} (got {out64[idx].item() if idx else float('nan'):.6g}, "
           f"want {ref64[idx].item() if idx else float('nan'):.6g}), mean err {err[torch.isfinite(err)].mean().item() if err.numel() else 0.0:.3e}, "
           f"nan {int(torch.isnan(out64).sum())}")
    return mx, msg


def check_rule(name, out, ref64, naive, dtype, verbose=True):
    """Assert DESIGN.md's rule: max|out - ref| <= 2 max|naive - ref| + reference rounding noise.

    `naive` is the same math done plainly in the input dtype (kernels.naive_same_dtype)."""
    dt = TORCH_DTYPES[dtype] if isinstance(dtype, str) else dtype
    kerr, msg = describe_error(name, out, ref64)
    nerr, _ = describe_error(name + " (naive)", naive, ref64)
    finite = ref64[torch.isfinite(ref64)]
    # reference rounding noise: one ulp of the largest result in its dtype, plus the fp32 accumulation
    # noise every kernel has (8 fp32 eps at the scale of the terms, taken as >= 1 for unit inputs) --
    # without it a result that is exactly 0 in float64 (e.g. dq with one key) could never pass
    big = finite.abs().max().item() if finite.numel() else 0.0
    noise = torch.finfo(dt).eps * big + 8 * torch.finfo(torch.float32).eps * max(1.0, big)
    tol = 2.0 * nerr + noise
    line = f"{msg}; naive-in-dtype err {nerr:.3e}; tol {tol:.3e}"
    if verbose:
        print(line)
    assert not torch.isnan(out).any(), f"NaN in {name}: {line}"
    assert kerr <= tol, f"{name} fails the correctness rule: {line}"
    return kerr, nerr


def check_lse(lse, ref_lse, verbose=True):
    """lse: -inf exactly where the reference is -inf (rows with no visible key), else close."""
    err, msg = describe_error("lse", lse, ref_lse)
    if verbose:
        print(msg)
    assert torch.equal(torch.isneginf(lse.cpu()), torch.isneginf(ref_lse.cpu())), f"lse -inf pattern differs: {msg}"
    finite = ref_lse[torch.isfinite(ref_lse)]
    tol = 1e-4 * max(1.0, finite.abs().max().item() if finite.numel() else 1.0)
    assert err <= tol, f"lse error {err:.3e} > {tol:.3e}: {msg}"


@contextlib.contextmanager
def poisoned_allocations():
    """Inside the block, torch.empty / torch.empty_like return NaN-filled (floating) tensors."""
    empty, empty_like = torch.empty, torch.empty_like

    def _poison(t):
        if t.is_floating_point():
            t.fill_(float("nan"))
        return t

    def p_empty(*a, **kw):
        return _poison(empty(*a, **kw))

    def p_empty_like(*a, **kw):
        return _poison(empty_like(*a, **kw))

    torch.empty, torch.empty_like = p_empty, p_empty_like
    try:
        yield
    finally:
        torch.empty, torch.empty_like = empty, empty_like


def _schedule(alg, phase, blocks, device, problem, sp_dtype=None, grid_order="q_fastest"):
    from memsim.schedule import Schedule

    from ._common import default_schedule
    if blocks is None:
        s = default_schedule(problem, alg, phase, device)
        from dataclasses import replace
        return replace(s, sp_dtype=sp_dtype, grid_order=grid_order)
    bm, bn = blocks
    warps = 1 if torch.device(device).type == "cpu" else 4
    return Schedule(algorithm=alg, phase=phase, block_m=bm, block_n=bn, num_warps=warps, num_stages=1,
                    sp_dtype=sp_dtype, grid_order=grid_order)


def run_case(alg, shape, dtype, device, *, causal=False, align="top_left", blocks=None, layout="contiguous",
             scale=None, input_scale=1.0, backward=False, sp_dtype=None, grid_order="q_fastest",
             verbose=True):
    """Run one forward (and optionally backward) case under poisoned allocations and assert the rule.

    shape = (B, Hq, Hkv, Nq, Nkv, d).  Returns the ForwardResult and grads (or None)."""
    import kernels
    B, Hq, Hkv, Nq, Nkv, d = shape
    seed = seed_of(alg, shape, dtype, causal, align, blocks, layout, scale, input_scale, backward)
    q, k, v, do = make_inputs(B, Hq, Hkv, Nq, Nkv, d, dtype, device, seed, layout, input_scale)
    problem = kernels.problem_for(q, k, v, causal=causal, scale=scale, causal_align=align)
    fwd_alg = alg
    fs = _schedule(fwd_alg, "fwd", blocks, device, problem, sp_dtype, grid_order)
    if verbose:
        print(f"case {alg} {shape} {dtype} causal={causal}/{align} layout={layout} fwd {fs}")
    kw = dict(causal=causal, scale=scale, causal_align=align)
    with poisoned_allocations():
        res = kernels.forward(problem, fs, q, k, v)
        grads = None
        if backward:
            bs = _schedule("naive" if alg == "naive" else "flash2", "bwd", blocks, device, problem, sp_dtype,
                           grid_order)
            grads = kernels.backward(problem, bs, q, k, v, res.o, do, res)
    if backward:
        o_ref, lse_ref, *g_ref = kernels.reference(q, k, v, do=do, **kw)
        _, _, *g_naive = kernels.naive_same_dtype(q, k, v, do=do, **kw)
    else:
        o_ref, lse_ref = kernels.reference(q, k, v, **kw)
        g_ref = g_naive = []
    o_naive, _ = kernels.naive_same_dtype(q, k, v, **kw)[:2]
    check_rule("o", res.o, o_ref, o_naive, dtype, verbose)
    if res.lse is not None:
        check_lse(res.lse, lse_ref, verbose)
    if backward:
        for name, g, gr, gn in zip(("dq", "dk", "dv"), grads, g_ref, g_naive):
            assert g.shape == gr.shape
            check_rule(name, g, gr, gn, dtype, verbose)
    return res, grads


# The shapes the kernel tests (forward and backward) run over, small enough for the interpreter.
DTYPES = ["fp16", "bf16", "fp32"]
# (B, Hq, Hkv, Nq, Nkv, d): odd lengths, seq_q != seq_kv both ways, GQA and MQA
SHAPES = {
    "n1": (1, 2, 2, 1, 1, 32),
    "n17": (2, 2, 2, 17, 17, 32),
    "n113_gqa": (1, 2, 1, 113, 113, 16),
    "n203": (1, 1, 1, 203, 203, 16),
    "q17_kv113": (1, 2, 2, 17, 113, 64),
    "q113_kv17_mqa": (1, 4, 1, 113, 17, 32),
    "q33_kv47_gqa": (2, 4, 2, 33, 47, 64),
}
MASKS = [(False, "top_left"), (True, "top_left"), (True, "bottom_right")]
