"""The five built-in algorithm-phases as registry entries: naive fwd/bwd, flash1 fwd, flash2 fwd/bwd.

Notation of the closed forms (stdlib only, sums over block indices, never over tiles): B*Hq heads
(BH), B*Hkv kv heads (BHkv), G = Hq / Hkv, N = seq_q, Nk = seq_kv, d = head_dim, e = element bytes,
s = S/P element bytes, ST = 4 (fp32 statistics), Mb / Nb = number of Q / K-V blocks, rows_i = rows
of Q block i that exist, V_i = K/V blocks Q block i computes (`visible_blocks`).  The model's tile
streams (`memsim.workloads`) are a separate computation of the same bytes; the closed-form test
compares the two.
"""
from __future__ import annotations

from dataclasses import dataclass

from .algorithms import AlgorithmSpec, DefaultSchedule, register
from .schedule import STAT_BYTES, AttentionProblem, Launch, Schedule, cdiv

_TWO_BYTE = ("fp16", "bf16")


# --- launches ----------------------------------------------------------------------------------
def _launch(name: str, block_axis: str, nblocks: int, head_axis: str, nheads: int, s: Schedule,
            smem: int) -> Launch:
    """One CTA per (block, head); with q_fastest the block index is grid axis 0 (varies fastest)."""
    if s.grid_order == "q_fastest":
        return Launch(name, (nblocks, nheads, 1), (block_axis, head_axis, "one"), smem)
    return Launch(name, (nheads, nblocks, 1), (head_axis, block_axis, "one"), smem)


def _launch2d(name: str, mb: int, nb: int, bh: int, s: Schedule, smem: int) -> Launch:
    """One CTA per (Q block, K block, batch*head_q); the two block axes stay innermost."""
    if s.grid_order == "q_fastest":
        return Launch(name, (mb, nb, bh), ("q_block", "kv_block", "bh"), smem)
    return Launch(name, (bh, mb, nb), ("bh", "q_block", "kv_block"), smem)


def _sizes(p: AttentionProblem, s: Schedule):
    return cdiv(p.seq_q, s.block_m), cdiv(p.seq_kv, s.block_n), p.batch * p.heads_q, p.batch * p.heads_kv


# --- closed-form sums shared by the contracts ------------------------------------------------------
def visible_blocks(problem: AttentionProblem, schedule: Schedule) -> list[int]:
    """V_i: how many K/V blocks Q block i computes (its last row's visible columns, in blocks)."""
    p, bm, bn = problem, schedule.block_m, schedule.block_n
    out = []
    for i in range(cdiv(p.seq_q, bm)):
        last_row = min((i + 1) * bm, p.seq_q) - 1
        out.append(cdiv(p.visible_cols(last_row), bn))
    return out


@dataclass(frozen=True)
class _Sums:
    rows: list          # rows_i
    V: list             # V_i
    sum_rc: int         # computed score elements per head: sum_i rows_i * cols seen by block i
    sum_cols: int       # sum_i cols seen by block i
    sum_rv: int         # sum_i rows_i * V_i (online-softmax rescales; flash1 Q re-reads)
    qrows_for_j: list   # rows of the Q blocks that see K/V block j


def _sums(p: AttentionProblem, s: Schedule) -> _Sums:
    mb, nb = cdiv(p.seq_q, s.block_m), cdiv(p.seq_kv, s.block_n)
    V = visible_blocks(p, s)
    rows = [min(s.block_m, p.seq_q - i * s.block_m) for i in range(mb)]
    cols_seen = [min(p.seq_kv, v * s.block_n) for v in V]
    return _Sums(rows, V, sum(r * c for r, c in zip(rows, cols_seen)), sum(cols_seen),
                 sum(r * v for r, v in zip(rows, V)), _qrows_for_j(rows, V, nb))


def _qrows_for_j(rows: list, V: list, nb: int) -> list:
    """For each K/V block j, the rows of the Q blocks that see it (V_i > j), in O(Mb + Nb): a Q block that
    sees V_i blocks adds its rows to blocks 0..V_i-1, so bucket rows by V_i and take suffix sums."""
    by_v = [0] * (nb + 1)
    for r, v in zip(rows, V):
        by_v[v] += r
    out, acc = [0] * nb, 0
    for j in range(nb - 1, -1, -1):
        acc += by_v[j + 1]
        out[j] = acc
    return out


def _c(gr: int, gw: int, fl: int = 0, ex: int = 0) -> dict:
    return {"global_read_bytes": gr, "global_write_bytes": gw, "flops": fl, "exp_count": ex}


def _defaults(device: str, dtypes: tuple, causal, table: dict, source: str) -> tuple[DefaultSchedule, ...]:
    """Rows from {head_dim: (block_m, block_n, num_warps, num_stages)}."""
    return tuple(DefaultSchedule(device, dtypes, (d,), causal, *t, source=source) for d, t in table.items())


_INTERPRETER = (DefaultSchedule("interpreter", ("fp16", "bf16", "fp32"), None, None, 16, 16, 1, 1,
                                source="small tiles: the CPU interpreter runs every tile in numpy"),)
_TUNED = ("benchmarks/attention.py --tune on an H100 80GB HBM3 (bf16, N=4096, B*N=16k, H*d=2048; "
          "2026-11-25, kernels/NOTES.md)")
_HALVED = "the bf16 schedule with block_m and block_n halved (fp32 ieee dots; exercised by the H100 test run)"


# --- flash2 fwd ------------------------------------------------------------------------------------
def _flash2_fwd_sram(p: AttentionProblem, s: Schedule) -> int:
    """Q_i resident, stages x (K_j + V_j)."""
    d, e = p.head_dim, p.element_bytes
    return s.block_m * d * e + s.num_stages * 2 * s.block_n * d * e


def _flash2_fwd_launches(p, s):
    mb, _, bh, _ = _sizes(p, s)
    return (_launch("flash2_fwd", "q_block", mb, "bh", bh, s, _flash2_fwd_sram(p, s)),)


def _flash2_fwd_contract(p, s):
    d, e, N, BH, x = p.head_dim, p.element_bytes, p.seq_q, p.batch * p.heads_q, _sums(p, s)
    return {"flash2_fwd": _c(BH * (N * d * e + 2 * d * e * x.sum_cols), BH * N * (d * e + STAT_BYTES),
                             BH * 4 * d * x.sum_rc, BH * (x.sum_rc + x.sum_rv))}


def _lse_bytes(p) -> int:
    return p.batch * p.heads_q * p.seq_q * STAT_BYTES


def _flash2_fwd_compulsory(p, s):
    return {"flash2_fwd": (p.q_bytes() + p.kv_bytes(), p.o_bytes() + _lse_bytes(p))}


FLASH2_FWD = AlgorithmSpec(
    algorithm="flash2", phase="fwd", problem_type=AttentionProblem,
    launches=_flash2_fwd_launches, sram_bytes_per_cta=_flash2_fwd_sram, contract=_flash2_fwd_contract,
    compulsory_dram_bytes=_flash2_fwd_compulsory, extra_device_bytes=lambda p, s: _lse_bytes(p),
    default_schedules=_defaults("gpu", ("fp32",), None, {
        16: (64, 32, 4, 3), 32: (64, 32, 4, 3), 64: (64, 32, 4, 3), 128: (64, 32, 8, 3), 256: (32, 16, 4, 2)},
        _HALVED) + _defaults("gpu", _TWO_BYTE, True, {
        64: (64, 64, 4, 3),     # 396 TFLOP/s (128x64 w8 s3: 380)
        128: (64, 64, 4, 3),    # 441
    }, _TUNED + ", causal") + _defaults("gpu", _TWO_BYTE, None, {
        16: (128, 64, 4, 3), 32: (128, 64, 4, 3),
        64: (128, 64, 8, 3),    # 436 TFLOP/s (64x64 w4 s3: 432)
        128: (64, 64, 4, 3),    # 489
        256: (64, 32, 4, 2)}, _TUNED) + _INTERPRETER,
    description="""\
flash2, fwd -- one launch ``flash2_fwd``, one CTA per (Q block, batch*head_q):
    Q_i (rows x d x e) read once and kept in SRAM; for each K/V block j that is
    not fully masked: K_j, V_j (cols x d x e each) read; O_i (rows x d x e) and
    the logsumexp (rows x 4) written once.  Extra memory: lse, B*Hq*Nq*4.
    SRAM: Q_i resident, stages x (K_j + V_j).""")


# --- flash2 bwd ------------------------------------------------------------------------------------
def _flash2_bwd_sram(p, s):
    """The dK/dV pass (the larger): K_j, V_j resident, stages x (Q_i + dO_i + lse + delta)."""
    d, e = p.head_dim, p.element_bytes
    return 2 * s.block_n * d * e + s.num_stages * (2 * s.block_m * d * e + 2 * s.block_m * STAT_BYTES)


def _flash2_bwd_launches(p, s):
    mb, nb, bh, bhkv = _sizes(p, s)
    smem = _flash2_bwd_sram(p, s)
    return (_launch("flash2_bwd_preprocess", "q_block", mb, "bh", bh, s, smem),
            _launch("flash2_bwd_dkdv", "kv_block", nb, "bh_kv", bhkv, s, smem),
            _launch("flash2_bwd_dq", "q_block", mb, "bh", bh, s, smem))


def _flash2_bwd_contract(p, s):
    d, e, ST, N, Nk = p.head_dim, p.element_bytes, STAT_BYTES, p.seq_q, p.seq_kv
    BH, BHkv, G, x = p.batch * p.heads_q, p.batch * p.heads_kv, p.group_size, _sums(p, s)
    return {
        "flash2_bwd_preprocess": _c(BH * 2 * N * d * e, BH * N * ST),
        "flash2_bwd_dkdv": _c(BHkv * (2 * Nk * d * e + G * (2 * d * e + 2 * ST) * sum(x.qrows_for_j)),
                              BHkv * 2 * Nk * d * e, BH * 8 * d * x.sum_rc, BH * x.sum_rc),
        "flash2_bwd_dq": _c(BH * (N * (2 * d * e + 2 * ST) + 2 * d * e * x.sum_cols), BH * N * d * e,
                            BH * 6 * d * x.sum_rc, BH * x.sum_rc),
    }


def _flash2_bwd_compulsory(p, s):
    q, kv, o, stat = p.q_bytes(), p.kv_bytes(), p.o_bytes(), _lse_bytes(p)
    return {"flash2_bwd_preprocess": (2 * o, stat), "flash2_bwd_dkdv": (kv + 2 * q + 2 * stat, kv),
            "flash2_bwd_dq": (q + o + 2 * stat + kv, q)}


FLASH2_BWD = AlgorithmSpec(
    algorithm="flash2", phase="bwd", problem_type=AttentionProblem,
    launches=_flash2_bwd_launches, sram_bytes_per_cta=_flash2_bwd_sram, contract=_flash2_bwd_contract,
    compulsory_dram_bytes=_flash2_bwd_compulsory, extra_device_bytes=lambda p, s: 2 * _lse_bytes(p),
    default_schedules=_defaults("gpu", ("fp32",), None, {
        16: (32, 32, 4, 2), 32: (32, 32, 4, 2), 64: (32, 32, 4, 2), 128: (32, 32, 8, 2), 256: (16, 16, 4, 1)},
        _HALVED) + _defaults("gpu", _TWO_BYTE, True, {
        64: (64, 64, 4, 3),     # 276 TFLOP/s (64x128 w4 s2: 289, but 92 without the mask)
        128: (64, 64, 4, 2),    # 323
    }, _TUNED + ", causal") + _defaults("gpu", _TWO_BYTE, None, {
        16: (64, 64, 4, 2), 32: (64, 64, 4, 2),
        64: (64, 64, 4, 3),     # 357
        128: (64, 64, 4, 2),    # 385
        256: (32, 32, 4, 1)}, _TUNED) + _INTERPRETER,
    description="""\
flash2, bwd -- three launches (deterministic, no atomics):
    ``flash2_bwd_preprocess`` one CTA per (Q block, batch*head_q): reads O_i,
    dO_i, writes delta_i = rowsum(dO*O) (rows x 4).
    ``flash2_bwd_dkdv`` one CTA per (K/V block, batch*head_kv): K_j, V_j kept
    in SRAM; for every q head of the GQA group and every unmasked Q block i:
    Q_i, dO_i (rows x d x e), lse_i, delta_i (rows x 4) read; dK_j, dV_j
    (cols x d x e) written once.
    ``flash2_bwd_dq`` one CTA per (Q block, batch*head_q): Q_i, dO_i, lse_i,
    delta_i read once; for each unmasked j: K_j, V_j read; dQ_i written once.
    Extra memory: lse (kept from fwd) + delta, B*Hq*Nq*4 each.
    SRAM (the dK/dV pass, the larger): K_j, V_j resident, stages x (Q_i + dO_i + lse + delta).""")


# --- flash1 fwd ------------------------------------------------------------------------------------
def _flash1_sram(p, s):
    """K_j, V_j resident, stages x (Q_i + O_i fp32 + m_i + l_i)."""
    d, e, bm = p.head_dim, p.element_bytes, s.block_m
    return 2 * s.block_n * d * e + s.num_stages * (bm * d * e + bm * d * STAT_BYTES + 2 * bm * STAT_BYTES)


def _flash1_launches(p, s):
    return (Launch("flash1_fwd", (p.batch * p.heads_q, 1, 1), ("bh", "one", "one"), _flash1_sram(p, s)),)


def _flash1_contract(p, s):
    d, e, ST, N, Nk = p.head_dim, p.element_bytes, STAT_BYTES, p.seq_q, p.seq_kv
    BH, x = p.batch * p.heads_q, _sums(p, s)
    ws = (d + 2) * ST
    revisits = sum(r * max(v - 1, 0) for r, v in zip(x.rows, x.V))
    return {"flash1_fwd": _c(BH * (2 * Nk * d * e + d * e * x.sum_rv + ws * revisits),
                             BH * (ws * revisits + N * (d * e + ST)),
                             BH * 4 * d * x.sum_rc, BH * (x.sum_rc + x.sum_rv))}


def _flash1_workspace_bytes(p) -> int:
    return p.batch * p.heads_q * p.seq_q * (p.head_dim + 2) * STAT_BYTES


FLASH1_FWD = AlgorithmSpec(
    algorithm="flash1", phase="fwd", problem_type=AttentionProblem,
    launches=_flash1_launches, sram_bytes_per_cta=_flash1_sram, contract=_flash1_contract,
    # the workspace is produced inside the launch: written, never read before it starts
    compulsory_dram_bytes=lambda p, s: {"flash1_fwd": (p.q_bytes() + p.kv_bytes(),
                                                       _flash1_workspace_bytes(p) + p.o_bytes() + _lse_bytes(p))},
    extra_device_bytes=lambda p, s: _flash1_workspace_bytes(p) + _lse_bytes(p),
    default_schedules=_defaults("gpu", ("fp32",), None, {
        16: (32, 32, 4, 2), 32: (32, 32, 4, 2), 64: (32, 32, 4, 2), 128: (32, 32, 8, 2), 256: (16, 16, 4, 1)},
        _HALVED) + _defaults("gpu", _TWO_BYTE, None, {
        16: (64, 64, 4, 2), 32: (64, 64, 4, 2), 64: (64, 64, 4, 2), 128: (64, 64, 8, 2), 256: (32, 32, 4, 1)},
        "fits the H100's shared memory (not tuned: flash1 is the 2022 baseline)") + _INTERPRETER,
    description="""\
flash1, fwd -- one launch ``flash1_fwd``, one CTA per batch*head_q, running the
    2022 paper's Algorithm 1: K/V blocks j outer, Q blocks i inner.  K_j, V_j
    read once per j; for each unmasked (j, i): Q_i read; O_i (rows x d x 4),
    m_i, l_i (rows x 4 each) read back from an fp32 workspace unless this is the
    first visit of block i, and written back unless it is the last visit; on the
    last visit O_i (rows x d x e) and lse_i (rows x 4) are written instead.
    Extra memory: the fp32 workspace (B*Hq*Nq*(d+2)*4) plus lse.
    SRAM: K_j, V_j resident, stages x (Q_i + O_i fp32 + m_i + l_i).""")


# --- naive fwd / bwd ---------------------------------------------------------------------------------
def _naive_sram(p, s):
    """The matmul tiles, stages x (A tile + B tile) with the d-deep (or block_n-deep) operand."""
    d, e, bm, bn, st, sp = p.head_dim, p.element_bytes, s.block_m, s.block_n, s.num_stages, s.sp_bytes(p)
    qk = st * (bm + bn) * d * e          # S = Q K^T: Q_i and K_j, d deep
    pv = st * (bm * bn * sp + bn * d * e)  # O = P V: P_ij and V_j, block_n deep
    return max(qk, pv)


def _naive_fwd_launches(p, s):
    mb, nb, bh, _ = _sizes(p, s)
    smem = _naive_sram(p, s)
    return (_launch2d("naive_qk", mb, nb, bh, s, smem),
            _launch("naive_softmax", "row_block", mb, "bh", bh, s, smem),
            _launch("naive_pv", "q_block", mb, "bh", bh, s, smem))


def _naive_bwd_launches(p, s):
    mb, nb, bh, bhkv = _sizes(p, s)
    smem = _naive_sram(p, s)
    return (_launch("naive_bwd_dv", "kv_block", nb, "bh_kv", bhkv, s, smem),
            _launch2d("naive_bwd_dp", mb, nb, bh, s, smem),
            _launch("naive_bwd_ds", "row_block", mb, "bh", bh, s, smem),
            _launch("naive_bwd_dq", "q_block", mb, "bh", bh, s, smem),
            _launch("naive_bwd_dk", "kv_block", nb, "bh_kv", bhkv, s, smem))


def _naive_terms(p, s):
    """(BH, BHkv, N*d*e re-read per K block, Nk*d*e re-read per Q block, one S-like matrix per head)."""
    mb, nb, bh, bhkv = _sizes(p, s)
    de = p.head_dim * p.element_bytes
    return bh, bhkv, nb * p.seq_q * de, mb * p.seq_kv * de, p.seq_q * p.seq_kv * s.sp_bytes(p)


def _naive_fwd_contract(p, s):
    BH, _, q_rereads, kv_rereads, SP = _naive_terms(p, s)
    mm = BH * 2 * p.seq_q * p.seq_kv * p.head_dim
    return {"naive_qk": _c(BH * (q_rereads + kv_rereads), BH * SP, mm),
            "naive_softmax": _c(BH * SP, BH * SP, 0, BH * p.seq_q * p.seq_kv),
            "naive_pv": _c(BH * (SP + kv_rereads), BH * p.seq_q * p.head_dim * p.element_bytes, mm)}


def _naive_bwd_contract(p, s):
    BH, BHkv, q_rereads, kv_rereads, SP = _naive_terms(p, s)
    de, mm = p.head_dim * p.element_bytes, BH * 2 * p.seq_q * p.seq_kv * p.head_dim
    return {"naive_bwd_dv": _c(BH * (SP + q_rereads), BHkv * p.seq_kv * de, mm),
            "naive_bwd_dp": _c(BH * (q_rereads + kv_rereads), BH * SP, mm),
            "naive_bwd_ds": _c(BH * 2 * SP, BH * SP),
            "naive_bwd_dq": _c(BH * (SP + kv_rereads), BH * p.seq_q * de, mm),
            "naive_bwd_dk": _c(BH * (SP + q_rereads), BHkv * p.seq_kv * de, mm)}


def _sp_matrix_bytes(p, s) -> int:
    """One (B*Hq, Nq, Nkv) S/P-like buffer."""
    return p.batch * p.heads_q * p.seq_q * p.seq_kv * s.sp_bytes(p)


def _naive_fwd_compulsory(p, s):
    q, k, o, SP = p.q_bytes(), p.kv_bytes() // 2, p.o_bytes(), _sp_matrix_bytes(p, s)
    return {"naive_qk": (q + k, SP), "naive_softmax": (SP, SP), "naive_pv": (SP + k, o)}


def _naive_bwd_compulsory(p, s):
    q, k, o, SP = p.q_bytes(), p.kv_bytes() // 2, p.o_bytes(), _sp_matrix_bytes(p, s)
    return {"naive_bwd_dv": (SP + o, k), "naive_bwd_dp": (o + k, SP), "naive_bwd_ds": (2 * SP, SP),
            "naive_bwd_dq": (SP + k, q), "naive_bwd_dk": (SP + q, k)}


def _naive_defaults():
    return _defaults("gpu", ("fp32",), None, {16: (64, 64, 8, 3), 32: (64, 64, 8, 3), 64: (64, 64, 8, 3),
                                              128: (64, 64, 8, 3), 256: (32, 32, 4, 2)}, _HALVED) + \
        _defaults("gpu", _TWO_BYTE, None, {16: (128, 128, 8, 3), 32: (128, 128, 8, 3), 64: (128, 128, 8, 3),
                                           128: (128, 128, 8, 3), 256: (64, 64, 4, 2)},
                  "a plain GEMM tile that fits the H100 (not tuned: naive is the baseline)") + _INTERPRETER


def _naive_spec(phase, launches, contract, compulsory, description) -> AlgorithmSpec:
    """naive's two phases share their SRAM (the matmul tiles), their extra memory (two matrices in the S/P
    dtype: S and P forward, P and dP backward) and their default tiles."""
    return AlgorithmSpec(
        algorithm="naive", phase=phase, problem_type=AttentionProblem, launches=launches,
        sram_bytes_per_cta=_naive_sram, contract=contract, compulsory_dram_bytes=compulsory,
        extra_device_bytes=lambda p, s: 2 * _sp_matrix_bytes(p, s), default_schedules=_naive_defaults(),
        description=description)


NAIVE_FWD = _naive_spec("fwd", _naive_fwd_launches, _naive_fwd_contract, _naive_fwd_compulsory, """\
naive, fwd -- three launches, S and P materialised in HBM (dtype ``sp_dtype``):
    ``naive_qk`` one CTA per (Q block, K block, batch*head_q): Q_i, K_j read,
    S_ij = scale * Q_i K_j^T (rows x cols x s) written.
    ``naive_softmax`` one CTA per (block_m rows, batch*head_q): the full rows of
    S read once, causal mask applied, P written once (masked entries are 0).
    ``naive_pv`` one CTA per (Q block, batch*head_q): for each j: P_ij, V_j read;
    O_i written.  Naive attention computes every tile, causal or not: the mask
    is applied in the softmax, as standard attention does.
    Extra memory: S and P, 2*B*Hq*Nq*Nkv*s.
    SRAM: the matmul tiles, stages x (A tile + B tile) with the d-deep (or block_n-deep) operand.""")

NAIVE_BWD = _naive_spec("bwd", _naive_bwd_launches, _naive_bwd_contract, _naive_bwd_compulsory, """\
naive, bwd -- five launches, P kept from the forward pass:
    ``naive_bwd_dv``  one CTA per (K block, batch*head_kv): for each q head of
    the group and each i: P_ij, dO_i read; dV_j written.
    ``naive_bwd_dp``  one CTA per (Q block, K block, batch*head_q): dO_i, V_j
    read; dP_ij (s) written.
    ``naive_bwd_ds``  one CTA per (block_m rows, batch*head_q): rows of P and dP
    read, dS = P*(dP - rowsum(P*dP)) written over dP.
    ``naive_bwd_dq``  one CTA per (Q block, batch*head_q): for each j: dS_ij,
    K_j read; dQ_i = scale * dS K written.
    ``naive_bwd_dk``  one CTA per (K block, batch*head_kv): for each q head of
    the group and each i: dS_ij, Q_i read; dK_j = scale * dS^T Q written.
    Extra memory: S/P from fwd plus the dP/dS buffer, B*Hq*Nq*Nkv*s.
    SRAM: as the forward pass.""")

# registration order = the order of ALGORITHMS and PHASES in memsim.schedule
for _spec in (NAIVE_FWD, NAIVE_BWD, FLASH1_FWD, FLASH2_FWD, FLASH2_BWD):
    register(_spec)
