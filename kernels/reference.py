"""Reference attention: float64 (`reference`) and the same math in the input dtype (`naive_same_dtype`).

The correctness rule (DESIGN.md, after FlashAttention's test suite): a kernel's max error against
the float64 reference must be at most 2x the max error of `naive_same_dtype` (standard attention
computed in the input dtype), plus the rounding noise of the result (one ulp of its largest value).
Both take (B, H, N, d) tensors with GQA (k/v heads dividing q heads) and either causal alignment.
"""
from __future__ import annotations

import math

import torch

from memsim.schedule import require_bool


def causal_mask(seq_q: int, seq_kv: int, causal_align: str = "top_left", device=None) -> torch.Tensor:
    """Boolean (seq_q, seq_kv): True where query row r may attend key column c."""
    if causal_align not in ("top_left", "bottom_right"):
        raise ValueError(f"causal_align must be 'top_left' or 'bottom_right', got {causal_align!r}")
    offset = seq_kv - seq_q if causal_align == "bottom_right" else 0
    r = torch.arange(seq_q, device=device)[:, None]
    c = torch.arange(seq_kv, device=device)[None, :]
    return c <= r + offset


def _attend(q, k, v, causal, scale, causal_align, compute_dtype, do=None, want_lse=True):
    B, Hq, Nq, d = q.shape
    Hkv, Nkv = k.shape[1], k.shape[2]
    if Hq % Hkv:
        raise ValueError(f"heads of q ({Hq}) must be a multiple of heads of k/v ({Hkv})")
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    g = Hq // Hkv
    leaves = [t.detach().to(compute_dtype).requires_grad_(do is not None) for t in (q, k, v)]
    qq, kk, vv = leaves
    kx = kk.repeat_interleave(g, dim=1) if g > 1 else kk
    vx = vv.repeat_interleave(g, dim=1) if g > 1 else vv
    with torch.enable_grad() if do is not None else torch.no_grad():
        s = torch.matmul(qq, kx.transpose(-1, -2)) * scale
        if causal:
            mask = causal_mask(Nq, Nkv, causal_align, device=q.device)
            s = s.masked_fill(~mask, float("-inf"))
            visible_row = mask.any(-1)[:, None]  # fully masked rows -> output 0
        m = s.amax(-1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        e = torch.exp(s - m)
        denom = e.sum(-1, keepdim=True)
        p = e / torch.where(denom == 0, torch.ones_like(denom), denom)
        if causal:
            p = torch.where(visible_row, p, torch.zeros_like(p))
        o = torch.matmul(p.to(compute_dtype), vx)
        lse = None
        if want_lse:
            lse = (m + torch.log(denom)).squeeze(-1)
        if do is None:
            return o, lse
        dq, dk, dv = torch.autograd.grad(o, (qq, kk, vv), do.to(compute_dtype))
    return o.detach(), lse.detach() if lse is not None else None, dq, dk, dv


def reference(q, k, v, *, causal: bool = False, scale: float | None = None, causal_align: str = "top_left",
              do=None):
    """float64 attention of (B, H, N, d) tensors on their device.

    Returns (o, lse) or, when `do` is given, (o, lse, dq, dk, dv), all float64.  lse is the natural-log
    logsumexp of the scaled scores per query row, -inf for a row with no visible key (whose o is 0)."""
    require_bool("causal", causal)
    out = _attend(q, k, v, causal, scale, causal_align, torch.float64, do=do)
    if do is None:
        return out
    o, lse, dq, dk, dv = out
    return o, lse, dq, dk, dv


def naive_same_dtype(q, k, v, *, causal: bool = False, scale: float | None = None,
                     causal_align: str = "top_left", do=None):
    """Standard attention computed in the inputs' own dtype (the correctness rule's yardstick).

    Same returns as `reference`, in the input dtype (lse omitted: None)."""
    require_bool("causal", causal)
    out = _attend(q, k, v, causal, scale, causal_align, q.dtype, do=do, want_lse=False)
    return out
