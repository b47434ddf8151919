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
from ._common import TORCH_DTYPES as _DT
from .testing import check_rule, poisoned_allocations, seed_of


# The kernel test cases (tests/test_decode_kernel.py; the GPU script runs the same table)
# name: (B, Nq, Hq, Hkv, d, seqlens, dtype, page_size, num_splits)
CASES = {
    "len1": (1, 1, 4, 4, 16, [1], "fp16", None, None),
    "ragged_odd_split3": (3, 1, 8, 2, 32, [113, 1, 47], "bf16", None, 3),
    "gqa4_fp32_split4": (2, 1, 8, 2, 64, [203, 64], "fp32", None, 4),
    "mqa_split2": (2, 1, 8, 1, 32, [33, 17], "fp16", None, 2),
    "empty_and_short": (3, 1, 4, 2, 16, [0, 5, 0], "bf16", None, 1),
    "empty_and_short_split2": (3, 1, 4, 2, 16, [0, 5, 0], "bf16", None, 2),
    "all_empty_split4": (2, 1, 4, 2, 16, [0, 0], "fp16", None, 4),
    "nq3_longer_than_cache": (2, 3, 4, 2, 16, [2, 40], "fp16", None, 2),
    "more_splits_than_tiles": (1, 1, 4, 2, 16, [20], "bf16", None, 8),
    "paged16_ragged_split3": (3, 1, 8, 2, 32, [113, 1, 47], "bf16", 16, 3),
    "paged16_nq2": (2, 2, 4, 2, 16, [31, 16], "fp16", 16, 1),
    "paged64_split2": (2, 1, 8, 2, 32, [130, 64], "fp16", 64, 2),
    "paged64_empty": (2, 1, 4, 1, 16, [0, 65], "bf16", 64, 2),
    "paged7_odd_page": (2, 1, 4, 2, 16, [23, 9], "fp32", 7, 2),
}


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


# Packed queries of several lengths (kernels.decode with cu_seqlens_q; tests/test_decode_varlen.py and the GPU run)
# name: (query tokens per sequence, Hq, Hkv, d, cache lengths, dtype, page_size, num_splits, schedule kwargs)
VARLEN_CASES = {
    "mixed_nq0_empty_cache": ([1, 3, 0, 2], 4, 2, 16, [17, 40, 9, 0], "fp16", None, 1, {}),
    "split3_q_longer_than_cache": ([2, 0, 1, 4], 8, 2, 32, [113, 50, 1, 3], "bf16", None, 3, {}),
    "one_token_each_split2": ([1, 1, 1], 4, 1, 16, [5, 0, 33], "fp16", None, 2, {}),
    "paged16_split2": ([3, 1, 0], 4, 2, 16, [31, 16, 20], "fp32", 16, 2, {}),
    "paged7_prefetch_split2": ([2, 0, 3], 4, 2, 16, [23, 9, 2], "bf16", 7,  2,
                               {"page_prefetch": True, "block_n": 16, "num_warps": 1, "num_stages": 1}),
    "paged8_tiles_prefetch_split2": ([2, 1, 0, 1], 4, 2, 16, [23, 1, 9, 40], "bf16", 8, 2,
                                     {"page_prefetch": True, "block_n": 32, "num_warps": 1, "num_stages": 1}),
    "unpacked_gqa_split2": ([1, 2], 8, 2, 16, [40, 7], "fp16", None, 2,
                            {"pack_gqa": False, "block_n": 16, "num_warps": 1, "num_stages": 1}),
}


def make_varlen_inputs(nqs, Hq, Hkv, d, seqlens, dtype, device, seed, *, page_size=None):
    """(q packed (sum nqs, Hq, d), k_cache, v_cache, cache_seqlens, block_table, pages, cu_seqlens_q): the cache as
    make_decode_inputs (NaN outside the lengths), the queries of sequence b in rows cu[b] .. cu[b + 1]."""
    B = len(nqs)
    q4, kc, vc, lens, bt, pages = make_decode_inputs(B, max(1, max(nqs)), Hq, Hkv, d, seqlens, dtype, device, seed,
                                                     page_size=page_size)
    q = torch.cat([q4[b, :n] for b, n in enumerate(nqs)], 0)
    cu = torch.tensor([0] + list(torch.tensor(nqs).cumsum(0).tolist()), dtype=torch.int32, device=q.device)
    return q, kc, vc, lens, bt, pages, cu


def varlen_reference(q, cu, k_cache, v_cache, seqlens, pages=None, page_size=None, scale=None):
    """(float64 reference, same math in the input dtype), each like the packed q: every sequence alone through
    decode_reference (its nq_b rows bottom-right against its cache)."""
    cu = [int(x) for x in cu.cpu()]
    refs, naives = [], []
    for b, L in enumerate(seqlens):
        qb = q[cu[b]:cu[b + 1]]
        if qb.shape[0] == 0:
            continue
        kb, vb = (k_cache, v_cache) if page_size is not None else (k_cache[b:b + 1], v_cache[b:b + 1])
        pb = [pages[b]] if page_size is not None else None
        r, n = decode_reference(qb[None], kb, vb, [L], pb, page_size, scale)
        refs.append(r[0])
        naives.append(n[0])
    Hq, d = q.shape[1:]
    if not refs:
        return torch.zeros((0, Hq, d), dtype=torch.float64), torch.zeros((0, Hq, d), dtype=q.dtype)
    return torch.cat(refs, 0), torch.cat(naives, 0)


def run_varlen_case(name, device, verbose=True, case=None, gpu_tiles=False):
    """kernels.decode with cu_seqlens_q on VARLEN_CASES[name] (or `case`, a tuple of that shape) under poisoned
    allocations: the correctness rule, rows that see no key exactly 0, the result shaped like the packed q.
    gpu_tiles: the case's schedule flags on the GPU default tile (block_n 64, 4 warps, 3 stages)."""
    from memsim.inference import DecodeSchedule
    from .decode_kv import decode
    nqs, Hq, Hkv, d, lens, dtype, page, S, kw = case or VARLEN_CASES[name]
    kw = dict(kw)
    gpu_bn = kw.pop("gpu_block_n", 64)  # (decode_testing --block-n: the tile on the GPU)
    if gpu_tiles and kw:
        kw = {**kw, "block_n": gpu_bn, "num_warps": 4, "num_stages": 3}
    q, kc, vc, cl, bt, pages, cu = make_varlen_inputs(nqs, Hq, Hkv, d, lens, dtype, device,
                                                      seed_of("decode-varlen", name), page_size=page)
    sched = DecodeSchedule(num_splits=S or 1, **kw) if kw else None
    splits = S if sched is None else (None if S else "auto")  # None with no schedule: the split rule
    with poisoned_allocations():
        out = decode(q, kc, vc, cl, cu_seqlens_q=cu, block_table=bt, schedule=sched, num_splits=splits)
    assert out.shape == q.shape and out.dtype == q.dtype, (out.shape, out.dtype)
    ref, naive = varlen_reference(q, cu, kc, vc, lens, pages, page)
    empty = torch.tensor([kernels_visible(L, n, r) == 0 for L, n in zip(lens, nqs) for r in range(n)], dtype=torch.bool)
    if bool(empty.any()):
        z = out.detach().cpu()[empty]
        assert not torch.isnan(z).any() and bool((z == 0).all()), "rows with no visible key must be exactly 0"
    if verbose:
        print(f"decode varlen {name}: nq={nqs} lens={lens} {dtype} page={page} splits={S}")
    return check_rule("o", out, ref, naive, dtype, verbose)


def kernels_visible(L, Nq, r):
    return max(0, min(L, L - Nq + r + 1))


def make_problem_inputs(problem, device, seed=0):
    """Random inputs of a memsim.inference.DecodeProblem made on `device` (fast for GB-sized caches):
    (q, k_cache, v_cache, cache_seqlens, block_table or None). Paged caches get exactly the pages the
    sequences need, in a shuffled order; unused table entries are -1."""
    p = problem
    dt = _DT[p.dtype]
    gen = torch.Generator(device=device).manual_seed(seed)
    B, nq, d = p.batch, p.max_seq_q, p.head_dim
    if len(set(p.seqlens_q)) != 1:
        raise ValueError("kernels.decode takes one query length per batch (q is (B, Nq, Hq, d)); "
                         f"got seqlens_q {p.seqlens_q}")
    q = torch.randn((B, nq, p.heads_q, d), generator=gen, device=device, dtype=torch.float32).to(dt)
    lens = torch.tensor(p.seqlens_kv, dtype=torch.int32, device=device)
    if p.page_size is None:
        shape = (B, max(1, p.capacity_kv), p.heads_kv, d)
        k = torch.randn(shape, generator=gen, device=device, dtype=dt)
        v = torch.randn(shape, generator=gen, device=device, dtype=dt)
        return q, k, v, lens, None
    ps = p.page_size
    need = [-(-L // ps) for L in p.seqlens_kv]
    max_pages = max(1, -(-p.capacity_kv // ps))
    n_pages = max(1, sum(need))
    shape = (n_pages, ps, p.heads_kv, d)
    k = torch.randn(shape, generator=gen, device=device, dtype=dt)
    v = torch.randn(shape, generator=gen, device=device, dtype=dt)
    order = torch.randperm(n_pages, generator=gen, device=device).to(torch.int32)
    bt = torch.full((B, max_pages), -1, dtype=torch.int32, device=device)
    i = 0
    for b, n in enumerate(need):
        bt[b, :n] = order[i:i + n]
        i += n
    return q, k, v, lens, bt


def main(argv=None) -> int:
    """Every kernel test case (and the schedule variants) on the GPU, without pytest: one line per case.
    ``--only varlen`` runs the packed-query (cu_seqlens_q) cases alone; ``--pdl`` runs every case with the combine
    as a programmatic dependent launch (DecodeSchedule.combine_pdl; cases without a schedule on the GPU default
    tile, the split count given or the rule's); ``--fused`` likewise with the combine folded into the split launch
    (DecodeSchedule.combine_fused)."""
    import argparse
    import sys
    import time
    ap = argparse.ArgumentParser(prog="python -m kernels.decode_testing", description=main.__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("varlen",), help="run only this group of cases")
    ap.add_argument("--name", default="", help="run only the cases whose name contains one of these (comma-separated)")
    ap.add_argument("--pdl", action="store_true", help="the combine as a programmatic dependent launch")
    ap.add_argument("--fused", action="store_true", help="the combine folded into the split launch")
    ap.add_argument("--split-d", type=int, default=1,
                    help="every case with DecodeSchedule.split_d = this (at most head_dim / 16; session 14)")
    ap.add_argument("--block-n", type=int, default=None,
                    help="with --split-d: every case's schedule at this K/V tile (128: kernels.decode's SPLIT_D_TILE)")
    a = ap.parse_args(argv)
    only = a.only

    from memsim.inference import DecodeSchedule
    dev = "cuda"
    fails = 0
    todo = [(n, c, None) for n, c in CASES.items()]
    for pf in (False, True):
        for page, bn in ((16, 64), (64, 64), (16, 16), (7, 32), (16, 128), (64, 128)):
            todo.append((f"prefetch{pf}_page{page}_bn{bn}", (3, 1, 8, 2, 64, [300, 1, 129], "bf16", page, None),
                         DecodeSchedule(num_splits=2, block_n=bn, num_warps=4, num_stages=3, page_prefetch=pf)))
    for pack in (False,):
        for bn in (32, 128):
            todo.append((f"sched_pack{pack}_bn{bn}", (2, 2, 8, 2, 32, [77, 3], "bf16", 16, None),
                         DecodeSchedule(num_splits=3, pack_gqa=pack, block_n=bn, num_warps=4, num_stages=3)))
    # larger shapes on the card: the benchmark's heads and head dim, ragged, paged, several splits
    for page in (None, 16, 64):
        for S in ((1, None) if page is None else (None,)):
            todo.append((f"big_page{page}_s{S}", (3, 1, 32, 8, 128, [8192, 1, 3001], "bf16", page, S), None))
    todo.append(("big_q4_mqa", (2, 4, 16, 1, 128, [5000, 3], "fp16", 64, None), None))
    # kernels.decode's 128-key tile (TILE_CANDIDATES, session 15) at the benchmark's heads: one split and three (pdl)
    for page in (None, 16, 64):
        for S, pdl in ((1, False), (3, True)):
            todo.append((f"big_bn128_page{page}_s{S}", (3, 1, 32, 8, 128, [8192, 1, 3001], "bf16", page, None),
                         DecodeSchedule(num_splits=S, block_n=128, num_warps=4, num_stages=3, combine_pdl=pdl,
                                        page_prefetch=page is not None)))
    # kernels.decode's 32-key tile at one split (SHORT_TILE, session 18) at the benchmark's heads, ragged, <= 2k keys
    todo.append(("big_bn32_s1", (3, 1, 32, 8, 128, [2048, 1, 1001], "bf16", None, None),
                 DecodeSchedule(num_splits=1, block_n=32, num_warps=4, num_stages=3)))
    # ... and as the public default picks it (32 sequences, capacity 1k, ragged and empty: 256 CTAs, one wave)
    todo.append(("big_default_short_b32", (32, 1, 32, 8, 128, [1024, 1, 0, 513] * 8, "bf16", None, None), None))
    # the first tile loaded beside the length (DecodeSchedule.early_tile, session 19): one split, contiguous, ragged
    # with empty and shorter-than-a-tile sequences (their first tile is read whole: NaN past L must not reach O)
    for bn, sd in ((32, 1), (64, 1), (128, 1), (128, 2)):
        todo.append((f"early_bn{bn}_sd{sd}", (4, 1, 32, 8, 128, [2048, 1, 0, 1001], "bf16", None, None),
                     DecodeSchedule(num_splits=1, block_n=bn, num_warps=4, num_stages=3, split_d=sd, early_tile=True)))
    # ... and as the public default picks it (EARLY_TILE_DEFAULT: 64 sequences, capacity 1k, ragged and empty)
    todo.append(("early_default_b64", (64, 1, 32, 8, 128, [1024, 1, 0, 513, 31, 32, 33, 1000] * 8, "bf16", None, None),
                 None))
    # ... and SHORT_TILE in place of a one-wave bn64 pick (SHORT_TILE_ONE_WAVE_MIN_PER_SM, session 20): 40 sequences,
    # capacity 1k (320 CTAs, 2.4 per SM: bn32 with early_tile) and 24 of capacity 1.5k (192 CTAs: bn32, no early tile)
    todo.append(("short_one_wave_b40", (40, 1, 32, 8, 128, [1024, 1, 0, 513, 31, 32, 33, 1000] * 5, "bf16", None, None),
                 None))
    todo.append(("short_one_wave_b24", (24, 1, 32, 8, 128, [1536, 1, 0, 1025, 31, 32, 33, 1500] * 3, "bf16", None,
                                        None), None))
    todo.append(("early_bn32_q2_mqa", (3, 2, 16, 1, 128, [700, 1, 17], "fp16", None, None),
                 DecodeSchedule(num_splits=1, block_n=32, num_warps=4, num_stages=3, early_tile=True)))
    if only == "varlen":
        todo = []
    flag = "combine_fused" if a.fused else "combine_pdl" if a.pdl else None
    if flag:
        from dataclasses import replace
        from .decode_kv import default_decode_schedule
        tag = "_fused" if a.fused else "_pdl"
        todo = [(n + tag, (*c[:8], c[8] if sched else (c[8] or "auto")),
                 replace(sched or default_decode_schedule(dev), **{flag: True})) for n, c, sched in todo]
    if a.split_d > 1:
        from dataclasses import replace
        from .decode_kv import default_decode_schedule
        todo = [(n + f"_sd{min(a.split_d, c[4] // 16)}", (*c[:8], c[8] if sched else (c[8] or "auto")),
                 replace(sched or default_decode_schedule(dev), split_d=min(a.split_d, c[4] // 16),
                         **({"block_n": a.block_n} if a.block_n else {})))
                for n, c, sched in todo]
    names = a.name.split(",")
    todo = [x for x in todo if any(n in x[0] for n in names)]
    for name, (B, Nq, Hq, Hkv, d, lens, dt, page, S), sched in todo:
        t0 = time.time()
        try:
            kerr, nerr = run_decode_case(B, Nq, Hq, Hkv, d, lens, dt, dev, page_size=page, num_splits=S,
                                         schedule=sched, verbose=False)
            print(f"PASS {name}: err {kerr:.3e} (naive {nerr:.3e}) {time.time() - t0:.1f}s", flush=True)
        except Exception as exc:  # report every case, then fail
            fails += 1
            print(f"FAIL {name}: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
    vtodo = [(n, None) for n in VARLEN_CASES]
    vtodo.append(("varlen_big_paged16_prefetch", ([1, 4, 0, 2], 32, 8, 128, [8192, 3001, 500, 1], "bf16", 16, None,
                                                  {"page_prefetch": True})))
    vtodo.append(("varlen_big_contiguous_auto", ([3, 1, 2], 32, 8, 128, [20000, 2, 4097], "fp16", None, None, {})))
    vtodo.append(("varlen_early_bn32", ([1, 4, 0, 2], 32, 8, 128, [3001, 5, 500, 0], "bf16", None, 1,
                                        {"block_n": 32, "early_tile": True, "gpu_block_n": 32})))
    if flag:
        vtodo = [(n + tag, (*(case or VARLEN_CASES[n])[:8], {**(case or VARLEN_CASES[n])[8], flag: True}))
                 for n, case in vtodo]
    if a.split_d > 1:
        vtodo = [(n + "_sd", (*c[:8], {**c[8], "split_d": min(a.split_d, c[3] // 16),
                                       **({"gpu_block_n": a.block_n} if a.block_n else {})}))
                 for n, c in ((n, case or VARLEN_CASES[n]) for n, case in vtodo)]
    vtodo = [x for x in vtodo if any(n in x[0] for n in names)]
    for name, case in vtodo:
        t0 = time.time()
        try:
            kerr, nerr = run_varlen_case(name, dev, verbose=False, case=case, gpu_tiles=True)
            print(f"PASS varlen {name}: err {kerr:.3e} (naive {nerr:.3e}) {time.time() - t0:.1f}s", flush=True)
        except Exception as exc:
            fails += 1
            print(f"FAIL varlen {name}: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
    n_all = len(todo) + len(vtodo)
    print(f"{n_all - fails} passed, {fails} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
