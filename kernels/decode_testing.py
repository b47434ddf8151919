"""Helpers for testing kernels.decode (tests/test_decode_kernel.py and the GPU script use them).

- `make_decode_inputs`: fresh random q and a contiguous or paged KV cache with per-sequence lengths;
  every cache slot past a sequence's length, and every page no sequence uses, holds NaN, and unused
  block-table entries are -1, so a kernel that reads what it must not shows up as NaN or a crash.
- `decode_reference`: float64 attention per sequence (bottom-right), and the same math in the input
  dtype (the correctness rule's yardstick), through kernels.reference.
- `run_decode_case`: one case under poisoned allocations, checked with kernels.testing.check_rule.
"""
from __future__ import annotations

import torch

from .reference import naive_same_dtype, reference
from .testing import _DT, check_rule, poisoned_allocations, seed_of


def make_decode_inputs(B, Nq, Hq, Hkv, d, seqlens, dtype, device, seed, *, page_size=None, capacity=None,
                       spare_pages=3):
    """(q, k_cache, v_cache, cache_seqlens, block_table or None, pages) with the layouts of kernels.decode.

    pages[b] = the page ids of sequence b (paged) or None. Pages are handed out in a shuffled order."""
    gen = torch.Generator().manual_seed(seed)
    dt = _DT[dtype] if isinstance(dtype, str) else dtype
    seqlens = list(seqlens)
    assert len(seqlens) == B
    cap = capacity or max(1, max(seqlens))

    def rnd(*shape):
        t = torch.randn(shape, generator=gen, dtype=torch.float32)
        return torch.where(t == 0, torch.full_like(t, 0.0625), t)

    q = rnd(B, Nq, Hq, d).to(dt)
    lens = torch.tensor(seqlens, dtype=torch.int32)
    if page_size is None:
        k = rnd(B, cap, Hkv, d)
        v = rnd(B, cap, Hkv, d)
        for b, L in enumerate(seqlens):
            k[b, L:] = float("nan")
            v[b, L:] = float("nan")
        bt, pages = None, [None] * B
    else:
        max_pages = -(-cap // page_size)
        need = [-(-L // page_size) for L in seqlens]
        n_pages = sum(need) + spare_pages
        order = torch.randperm(n_pages, generator=gen).tolist()
        k = torch.full((n_pages, page_size, Hkv, d), float("nan"))
        v = torch.full((n_pages, page_size, Hkv, d), float("nan"))
        bt = torch.full((B, max_pages), -1, dtype=torch.int32)
        pages, i = [], 0
        for b, L in enumerate(seqlens):
            pb = order[i:i + need[b]]
            i += need[b]
            pages.append(pb)
            for j, pg in enumerate(pb):
                bt[b, j] = pg
                n = min(page_size, L - j * page_size)
                k[pg, :n] = rnd(n, Hkv, d)
                v[pg, :n] = rnd(n, Hkv, d)
    return (q.to(device), k.to(dt).to(device), v.to(dt).to(device), lens.to(device),
            None if bt is None else bt.to(device), pages)


def gather_sequence(k_cache, b, L, pages, page_size):
    """The first L cached rows of sequence b as (L, Hkv, d)."""
    if page_size is None:
        return k_cache[b, :L]
    if L == 0:
        return k_cache[:0, 0]
    rows = torch.cat([k_cache[pg] for pg in pages[b]], 0)
    return rows[:L]


def decode_reference(q, k_cache, v_cache, seqlens, pages=None, page_size=None, scale=None):
    """(float64 reference, same math in the input dtype), each (B, Nq, Hq, d); empty caches give 0."""
    B, Nq, Hq, d = q.shape
    ref = torch.zeros((B, Nq, Hq, d), dtype=torch.float64)
    naive = torch.zeros((B, Nq, Hq, d), dtype=q.dtype)
    pages = pages or [None] * B
    for b, L in enumerate(seqlens):
        if L == 0:
            continue
        qb = q[b:b + 1].transpose(1, 2).cpu()                                  # (1, Hq, Nq, d)
        kb = gather_sequence(k_cache, b, L, pages, page_size).cpu().transpose(0, 1)[None]  # (1, Hkv, L, d)
        vb = gather_sequence(v_cache, b, L, pages, page_size).cpu().transpose(0, 1)[None]
        kw = dict(causal=True, causal_align="bottom_right", scale=scale)
        o64, _ = reference(qb, kb, vb, **kw)
        on, _ = naive_same_dtype(qb, kb, vb, **kw)
        ref[b] = o64[0].transpose(0, 1)
        naive[b] = on[0].transpose(0, 1)
    return ref, naive


def run_decode_case(B, Nq, Hq, Hkv, d, seqlens, dtype, device, *, page_size=None, num_splits=None, schedule=None,
                    capacity=None, scale=None, verbose=True):
    """Run kernels.decode on one case under poisoned allocations and assert the correctness rule."""
    from .decode_kv import decode
    seed = seed_of("decode", B, Nq, Hq, Hkv, d, tuple(seqlens), dtype, page_size, num_splits, capacity)
    q, kc, vc, lens, bt, pages = make_decode_inputs(B, Nq, Hq, Hkv, d, seqlens, dtype, device, seed,
                                                    page_size=page_size, capacity=capacity)
    with poisoned_allocations():
        out = decode(q, kc, vc, lens, block_table=bt, scale=scale, num_splits=num_splits, schedule=schedule)
    assert out.shape == q.shape and out.dtype == q.dtype, (out.shape, out.dtype)
    ref, naive = decode_reference(q, kc, vc, list(seqlens), pages, page_size, scale)
    if verbose:
        print(f"decode B={B} Nq={Nq} Hq={Hq} Hkv={Hkv} d={d} lens={list(seqlens)} {dtype} page={page_size} "
              f"splits={num_splits}")
    empty_rows = torch.tensor([[kernels_visible(L, Nq, r) == 0 for r in range(Nq)] for L in seqlens])
    if bool(empty_rows.any()):  # rows that see no key: exactly zero
        z = out.detach().cpu()[empty_rows]
        assert not torch.isnan(z).any() and bool((z == 0).all()), "rows with no visible key must be exactly 0"
    return check_rule("o", out, ref, naive, dtype, verbose)


def kernels_visible(L, Nq, r):
    return max(0, min(L, L - Nq + r + 1))
