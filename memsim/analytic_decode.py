"""Closed forms of the decode byte contract (memsim/inference.py), independent of memsim.workloads_decode.

Per sequence b with L_b cached keys, nq_b query tokens, n_b non-empty splits, g query heads per CTA and
U units (CTAs per split and sequence), e element bytes, d head dim:

    decode_split  reads  U * (n_b * g * nq_b * d * e  +  2 * L_b * d * e  +  4 * T_b)
                  (split_d = D > 1: U * (D * (n_b * g * nq_b * d * e + L_b * d * e + 4 * T_b) + L_b * d * e): each of
                  a unit's D CTAs reads Q, the whole K and the table, and its d / D columns of V)
                  writes U * g * nq_b * d * e                       (S = 1: O, also for L_b = 0)
                         U * n_b * g * nq_b * (d + 1) * 4           (S > 1: the partials)
    decode_combine reads the partials once and writes O.
    With early_tile (one split, contiguous) L_b is at least block_n: the first tile is read whole, and Q with it
    (n_b = 1) even for an empty sequence.
    With combine_fused (no combine launch) decode_split makes the combine's reads and writes too (its last CTA per
    unit); the counters' atomics (4 bytes per split CTA and unit) are not counted.

T_b (paged only) = block-table entries read: one per (tile, page it touches); a tile of block_n keys
starting at a multiple of block_n touches ceil-aligned pages: with block_n a multiple of page_size,
block_n / page_size per full tile; with page_size a multiple of block_n, one per tile.  The workload
counts the same bytes tile by tile (tests/test_decode_model.py compares them).
"""
from __future__ import annotations

from .inference import (DecodeProblem, DecodeSchedule, fused_combine, heads_per_cta, nonempty_splits, read_keys,
                        split_chunk, units_per_seq)
from .schedule import STAT_BYTES, cdiv

__all__ = ["decode_launch_counts", "table_entries", "decode_compulsory_dram_bytes"]


def _pages_in(k0: int, k1: int, ps: int) -> int:
    return (k1 - 1) // ps - k0 // ps + 1 if k1 > k0 else 0


def table_entries(seq_kv: int, num_splits: int, block_n: int, page_size: int) -> int:
    """Block-table entries one CTA of this sequence reads over all its splits (per tile, distinct pages)."""
    if seq_kv == 0:
        return 0
    chunk = split_chunk(seq_kv, num_splits, block_n)
    full_tiles, rest = divmod(seq_kv, block_n)  # tiles never straddle a split boundary (chunk % block_n == 0)
    if block_n % page_size == 0:
        return full_tiles * (block_n // page_size) + (cdiv(rest, page_size) if rest else 0)
    if page_size % block_n == 0:
        return full_tiles + (1 if rest else 0)
    del chunk
    return sum(_pages_in(c0, min(c0 + block_n, seq_kv), page_size) for c0 in range(0, seq_kv, block_n))


def decode_launch_counts(p: DecodeProblem, s: DecodeSchedule) -> dict:
    """{launch name: {"global_read_bytes", "global_write_bytes"}} of the byte contract."""
    d, e = p.head_dim, p.element_bytes
    g, U, S = heads_per_cta(p, s), units_per_seq(p, s), s.num_splits
    rd = wr = crd = cwr = 0
    for b, nq in enumerate(p.seqlens_q):
        L = read_keys(p, s, b)  # early_tile: at least the first tile, and Q (n = 1) even for an empty sequence
        n = nonempty_splits(L, S, s.block_n)
        rows = g * nq
        bt = 4 * table_entries(L, S, s.block_n, p.page_size) if p.paged else 0
        D = s.split_d
        rd += U * (D * (n * rows * d * e + L * d * e + bt) + L * d * e)
        if S == 1:
            wr += U * rows * d * e
        else:
            part = U * n * rows * (d + 1) * STAT_BYTES
            wr += part
            crd += part
            cwr += U * rows * d * e
    out = {"decode_split": {"global_read_bytes": rd, "global_write_bytes": wr}}
    if fused_combine(s):
        out["decode_split"] = {"global_read_bytes": rd + crd, "global_write_bytes": wr + cwr}
    elif S > 1:
        out["decode_combine"] = {"global_read_bytes": crd, "global_write_bytes": cwr}
    return out


def decode_compulsory_dram_bytes(p: DecodeProblem, s: DecodeSchedule) -> dict:
    """{launch: (read, write)}: Q, the cached K/V (once per KV head, whatever the packing), the table
    entries in use and O -- the DRAM lower bound; the partials count where S > 1."""
    d, e = p.head_dim, p.element_bytes
    kv = p.kv_bytes()
    q = p.q_bytes()
    bt = 4 * sum(cdiv(L, p.page_size) for L in p.read_seqlens_kv) if p.paged else 0
    o = q
    if s.num_splits == 1:
        return {"decode_split": (q + kv + bt, o)}
    part = _partial_bytes(p, s)
    if fused_combine(s):  # the partials go to the L2 and come back within the launch: the same DRAM lower bound
        return {"decode_split": (q + kv + bt + part, part + o)}
    return {"decode_split": (q + kv + bt, part), "decode_combine": (part, o)}


def _partial_bytes(p: DecodeProblem, s: DecodeSchedule) -> int:
    g, U = heads_per_cta(p, s), units_per_seq(p, s)
    return sum(U * nonempty_splits(L, s.num_splits, s.block_n) * g * nq * (p.head_dim + 1) * STAT_BYTES
               for L, nq in zip(p.read_seqlens_kv, p.seqlens_q))
