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


# --- the correctness rule ---------------------------------------------------------------------------
#
# FlashAttention's own test (tests/test_flash_attn.py there) holds a kernel to
#     max|kernel - ref| <= 2 * max|peer - ref| + atol
# where `peer` is the same math in the input dtype and `atol` a rounding floor.  Here:
#   * ref = kernels.reference (float64);
#   * peer error = the larger of two plain implementations in the input dtype: autograd through
#     standard attention (kernels.naive_same_dtype) and the FlashAttention backward formulas
#     (`flash_formula_same_dtype`: P recomputed from the logsumexp, D = rowsum(dO * O),
#     dS = P * (dP - D), as our kernels and SDPA's flash/efficient backends compute it).  With one key D = dP exactly in autograd's form but not
#     in the kernels' form, so only the second yardstick shows the cancellation error the kernels
#     (and their peers) really have;
#   * floor = eps(dtype) * max|ref| (rounding the result to the dtype) + 8 * eps(fp32) * M, where M
#     is the largest magnitude of the terms summed into an output element, first order (float64,
#     absolute values): with W = P * (1 + scale |Q||K|^T + |lse|) (P = exp(S - lse) has a relative
#     error of eps times its exponent's terms), M = max of W|V| for o, W^T|dO| for dv,
#     scale * (W * (|dO||V|^T + rowsum|dO * O|)) |K| for dq and its transpose with |Q| for dk: fp32
#     accumulation noise scaled to the gradient's magnitude (and to the logits), not to 1.
# A kernel that drops a rescale or a term is off by O(|ref|), orders above this bar
# (tests/test_reliability_exactness.py keeps broken variants that must fail).
#
# Known limit: naive with S and P stored in fp16 (sp_dtype fp16, or an fp16 problem) overflows to inf
# and returns NaN once a scaled logit passes 65504 (fp16's largest finite value), although the inputs
# are finite; flash keeps S in fp32 registers and is unaffected.  check_rule reports such NaN as a
# failure naming the overflow (`FP16_MAX`).

FP16_MAX = 65504.0
ACC_NOISE_EPS = 8  # multiples of eps(fp32) per unit of term magnitude (fp32 accumulation)


def flash_formula_same_dtype(q, k, v, *, causal=False, scale=None, causal_align="top_left", do=None):
    """(o, dq, dk, dv) [or (o,) without do] by FlashAttention's backward formulas, in the inputs' dtype."""
    import math

    from .reference import causal_mask
    dt = q.dtype
    B, Hq, Nq, d = q.shape
    g = Hq // k.shape[1]
    sc = 1.0 / math.sqrt(d) if scale is None else float(scale)
    kx = k.repeat_interleave(g, dim=1) if g > 1 else k
    vx = v.repeat_interleave(g, dim=1) if g > 1 else v
    s = torch.matmul(q, kx.transpose(-1, -2)) * sc
    visible = None
    if causal:
        m = causal_mask(Nq, k.shape[2], causal_align, device=q.device)
        s = s.masked_fill(~m, float("-inf"))
        visible = m.any(-1)[:, None]
    mx = s.amax(-1, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    e = torch.exp(s - mx)
    den = e.sum(-1, keepdim=True)
    p = e / torch.where(den == 0, torch.ones_like(den), den)
    if visible is not None:
        p = torch.where(visible, p, torch.zeros_like(p))
    o = torch.matmul(p.to(dt), vx)
    if do is None:
        return (o,)
    do = do.to(dt)
    # the backward recomputes P from the saved logsumexp, as FlashAttention's kernels (and ours) do
    lse = mx + torch.log(torch.where(den == 0, torch.ones_like(den), den))
    p = torch.exp(s - lse)
    if visible is not None:
        p = torch.where(visible, p, torch.zeros_like(p))
    dv = torch.matmul(p.to(dt).transpose(-1, -2), do)
    dp = torch.matmul(do, vx.transpose(-1, -2))
    D = (do * o).sum(-1, keepdim=True)
    ds = (p * (dp - D)).to(dt)
    dq = torch.matmul(ds, kx) * sc
    dk = torch.matmul(ds.transpose(-1, -2), q) * sc
    if g > 1:  # GQA: sum the query heads of each k/v head
        dk = dk.reshape(B, -1, g, *dk.shape[2:]).sum(2)
        dv = dv.reshape(B, -1, g, *dv.shape[2:]).sum(2)
    return o, dq, dk, dv


def term_magnitudes(q, k, v, *, causal=False, scale=None, causal_align="top_left", do=None) -> dict:
    """{tensor name: largest magnitude of the terms summed into one of its elements} (float64, one
    (batch, head) at a time so the N x N matrices stay small)."""
    import math

    from .reference import causal_mask
    B, Hq, Nq, d = q.shape
    Hkv, Nkv = k.shape[1], k.shape[2]
    g = Hq // Hkv
    sc = 1.0 / math.sqrt(d) if scale is None else float(scale)
    mask = causal_mask(Nq, Nkv, causal_align, device=q.device) if causal else None
    out = {"o": 0.0} if do is None else {"o": 0.0, "dq": 0.0, "dk": 0.0, "dv": 0.0}
    dk_mag = torch.zeros(B, Hkv, Nkv, d, dtype=torch.float64, device=q.device) if do is not None else None
    dv_mag = torch.zeros_like(dk_mag) if do is not None else None
    for b in range(B):
        for h in range(Hq):
            qh, kh, vh = q[b, h].double(), k[b, h // g].double(), v[b, h // g].double()
            s = (qh @ kh.T) * sc
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            mx = s.amax(-1, keepdim=True)
            mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
            e = torch.exp(s - mx)
            den = e.sum(-1, keepdim=True)
            p = e / torch.where(den == 0, torch.ones_like(den), den)
            o = p @ vh
            # P = exp(S - lse) carries a relative error of eps times the size of its exponent's terms:
            # |S| summed from |q||k| scale, and |lse|
            lse = (mx + torch.log(torch.where(den == 0, torch.ones_like(den), den))).abs()
            w = p * (1.0 + (qh.abs() @ kh.abs().T) * sc + lse)
            out["o"] = max(out["o"], float((w @ vh.abs()).max()) if p.numel() else 0.0)
            if do is None:
                continue
            ado = do[b, h].double().abs()
            a = w * (ado @ vh.abs().T + (ado * o.abs()).sum(-1, keepdim=True))
            out["dq"] = max(out["dq"], float((a @ kh.abs()).max()) * sc)
            dk_mag[b, h // g] += (a.T @ qh.abs()) * sc
            dv_mag[b, h // g] += w.T @ ado
    if do is not None:
        out["dk"], out["dv"] = float(dk_mag.max()), float(dv_mag.max())
    return out


def rule_tolerance(ref64, peer_err: float, dtype, magnitude: float | None = None) -> tuple[float, float]:
    """(floor, tol) of the rule; tol = 2 * peer_err + floor.  Without `magnitude` (callers that have
    none) the accumulation term is scaled to max(1, max|ref|), the project's earlier floor."""
    dt = TORCH_DTYPES[dtype] if isinstance(dtype, str) else dtype
    finite = ref64[torch.isfinite(ref64)]
    big = finite.abs().max().item() if finite.numel() else 0.0
    scale = max(1.0, big) if magnitude is None else max(big, magnitude)
    floor = torch.finfo(dt).eps * big + ACC_NOISE_EPS * torch.finfo(torch.float32).eps * scale
    return floor, 2.0 * peer_err + floor


def check_rule(name, out, ref64, naive, dtype, verbose=True, *, peer=None, magnitude=None):
    """Assert the rule above: max|out - ref64| <= 2 * max(err naive, err peer) + floor.

    `naive` is standard attention in the input dtype (kernels.naive_same_dtype); `peer` the same math
    by FlashAttention's formulas (flash_formula_same_dtype); `magnitude` from term_magnitudes.
    Returns (kernel max error, yardstick max error)."""
    kerr, msg = describe_error(name, out, ref64)
    nerr, _ = describe_error(name + " (naive)", naive, ref64)
    if peer is not None:
        nerr = max(nerr, describe_error(name + " (peer)", peer, ref64)[0])
    floor, tol = rule_tolerance(ref64, nerr, dtype, magnitude)
    line = f"{msg}; same-dtype err {nerr:.3e}; floor {floor:.3e}; tol {tol:.3e}"
    if verbose:
        print(line)
    if torch.isnan(out).any():
        hint = (f" although the reference is finite (naive with S/P in fp16 overflows once a scaled logit passes "
                f"{FP16_MAX:g}; see kernels/testing.py)" if torch.isfinite(ref64).all() else "")
        raise AssertionError(f"NaN in {name}{hint}: {line}")
    assert kerr <= tol, f"{name} fails the correctness rule: {line}"
    return kerr, nerr


def yardsticks(q, k, v, *, causal=False, scale=None, causal_align="top_left", do=None) -> dict:
    """{tensor name: dict(naive=, peer=, magnitude=)} for check_rule(**yardsticks[name])."""
    from .reference import naive_same_dtype
    kw = dict(causal=causal, scale=scale, causal_align=causal_align)
    nv = naive_same_dtype(q, k, v, do=do, **kw)
    peer = flash_formula_same_dtype(q, k, v, do=do, **kw)
    mag = term_magnitudes(q, k, v, do=do, **kw)
    names = ("o",) if do is None else ("o", "dq", "dk", "dv")
    naive = (nv[0],) if do is None else (nv[0], *nv[2:])
    return {n: dict(naive=a, peer=b, magnitude=mag[n]) for n, a, b in zip(names, naive, peer)}


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
    from memsim.schedule import require_bool
    require_bool("backward", backward)
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
    else:
        o_ref, lse_ref = kernels.reference(q, k, v, **kw)
        g_ref = []
    ys = yardsticks(q, k, v, do=do if backward else None, **kw)
    check_rule("o", res.o, o_ref, dtype=dtype, verbose=verbose, **ys["o"])
    if res.lse is not None:
        check_lse(res.lse, lse_ref, verbose)
    if backward:
        for name, g, gr in zip(("dq", "dk", "dv"), grads, g_ref):
            assert g.shape == gr.shape
            check_rule(name, g, gr, dtype=dtype, verbose=verbose, **ys[name])
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
