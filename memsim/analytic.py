"""Closed forms beside the simulation: global traffic, FLOPs and exps per launch, and a roofline time.

Derived from the byte contract in `memsim.schedule` independently of
`memsim.workloads` (sums over block indices only, never over tiles), so that
"simulated global traffic == closed form" is a real check.  Notation: B·Hq
heads, N = seq_q, N' = seq_kv, d = head_dim, e = element bytes, s = S/P bytes,
M = SRAM, Mb / Nb = number of Q / K-V blocks, V_i = K/V blocks Q block i sees.

* naive fwd, Θ(Nd + N²):  Q,K read Nb/Mb times in ``naive_qk`` (block re-reads),
  S written, S read, P written, P read, O written: ≈ B·H·(4·N·N'·s + ...).
* flash2 fwd: B·H·(N·d·e (Q) + 2·d·e·Σ_i cols seen by block i (K,V) + N·(d·e + 4) (O, lse));
  without a mask 2·Mb·N'·d·e: K and V once per Q block, Θ(N²d/block_m).
* flash1 fwd (2022 Algorithm 1): B·H·(2·N'·d·e + d·e·Σ_i rows_i·V_i
  + 2·4·(d+2)·Σ_i rows_i·(V_i - 1) + N·(d·e + 4)); with block_n ≈ M/(4d·e) the
  workspace term is Θ(N²d²/M), as the paper's Theorem 2 says.
"""
from __future__ import annotations

from .schedule import STAT_BYTES, AttentionProblem, Schedule, cdiv, kernel_launches

__all__ = ["launch_counts", "l1_reread_bytes", "global_bytes", "roofline_time", "flash1_global_asymptotic", "visible_blocks"]


def visible_blocks(problem: AttentionProblem, schedule: Schedule) -> list[int]:
    """V_i: how many K/V blocks Q block i computes (its last row's visible columns, in blocks)."""
    p, bm, bn = problem, schedule.block_m, schedule.block_n
    out = []
    for i in range(cdiv(p.seq_q, bm)):
        last_row = min((i + 1) * bm, p.seq_q) - 1
        out.append(cdiv(p.visible_cols(last_row), bn))
    return out


def _rows(n: int, b: int, i: int) -> int:
    return min(b, n - i * b)


def launch_counts(problem: AttentionProblem, schedule: Schedule) -> dict:
    """{launch name: {"global_read_bytes", "global_write_bytes", "flops", "exp_count"}} from closed forms."""
    p, s = problem, schedule
    d, e, sp, ST = p.head_dim, p.element_bytes, s.sp_bytes(p), STAT_BYTES
    N, Nk, bm, bn = p.seq_q, p.seq_kv, s.block_m, s.block_n
    Mb, Nb = cdiv(N, bm), cdiv(Nk, bn)
    BH, BHkv, G = p.batch * p.heads_q, p.batch * p.heads_kv, p.group_size
    V = visible_blocks(p, s)
    rows = [_rows(N, bm, i) for i in range(Mb)]
    # columns that exist in the first V_i blocks; and (for dK/dV) rows of the Q blocks that see block j
    cols_seen = [min(Nk, v * bn) for v in V]
    sum_rc = sum(r * c for r, c in zip(rows, cols_seen))          # computed score elements per head
    sum_cols = sum(cols_seen)
    qrows_for_j = [sum(r for r, v in zip(rows, V) if v > j) for j in range(Nb)]
    SP = N * Nk * sp  # one S-like matrix per head

    def c(gr, gw, fl=0, ex=0):
        return {"global_read_bytes": gr, "global_write_bytes": gw, "flops": fl, "exp_count": ex}

    out = {}
    if s.algorithm == "flash2" and s.phase == "fwd":
        out["flash2_fwd"] = c(BH * (N * d * e + 2 * d * e * sum_cols), BH * N * (d * e + ST),
                              BH * 4 * d * sum_rc, BH * (sum_rc + sum(r * v for r, v in zip(rows, V))))
    elif s.algorithm == "flash2":
        out["flash2_bwd_preprocess"] = c(BH * 2 * N * d * e, BH * N * ST)
        out["flash2_bwd_dkdv"] = c(BHkv * (2 * Nk * d * e + G * (2 * d * e + 2 * ST) * sum(qrows_for_j)),
                                   BHkv * 2 * Nk * d * e, BH * 8 * d * sum_rc, BH * sum_rc)
        out["flash2_bwd_dq"] = c(BH * (N * (2 * d * e + 2 * ST) + 2 * d * e * sum_cols), BH * N * d * e,
                                 BH * 6 * d * sum_rc, BH * sum_rc)
    elif s.algorithm == "flash1":
        ws = (d + 2) * ST
        revisits = sum(r * max(v - 1, 0) for r, v in zip(rows, V))
        out["flash1_fwd"] = c(BH * (2 * Nk * d * e + d * e * sum(r * v for r, v in zip(rows, V)) + ws * revisits),
                              BH * (ws * revisits + N * (d * e + ST)),
                              BH * 4 * d * sum_rc, BH * (sum_rc + sum(r * v for r, v in zip(rows, V))))
    elif s.phase == "fwd":
        out["naive_qk"] = c(BH * (Nb * N * d * e + Mb * Nk * d * e), BH * SP, BH * 2 * N * Nk * d)
        out["naive_softmax"] = c(BH * SP, BH * SP, 0, BH * N * Nk)
        out["naive_pv"] = c(BH * (SP + Mb * Nk * d * e), BH * N * d * e, BH * 2 * N * Nk * d)
    else:
        out["naive_bwd_dv"] = c(BH * (SP + Nb * N * d * e), BHkv * Nk * d * e, BH * 2 * N * Nk * d)
        out["naive_bwd_dp"] = c(BH * (Nb * N * d * e + Mb * Nk * d * e), BH * SP, BH * 2 * N * Nk * d)
        out["naive_bwd_ds"] = c(BH * 2 * SP, BH * SP)
        out["naive_bwd_dq"] = c(BH * (SP + Mb * Nk * d * e), BH * N * d * e, BH * 2 * N * Nk * d)
        out["naive_bwd_dk"] = c(BH * (SP + Nb * N * d * e), BHkv * Nk * d * e, BH * 2 * N * Nk * d)
    names = [L.name for L in kernel_launches(p, s)]
    assert list(out) == names, (list(out), names)
    return out


def l1_reread_bytes(problem: AttentionProblem, schedule: Schedule) -> dict:
    """{launch name: global-load bytes the compiled kernel issues beyond the contract, served by L1}.

    The simulated ``global_read_bytes`` = ``launch_counts`` (the contract) + this; L2 and DRAM never see it.
    Non-zero only for flash1: per workspace row per revisit, `memsim.workloads.flash1_l1_reread_bytes_per_row`
    (the Triton 3.6 kernel re-reads the fp32 O workspace tile at the L1 t-stage; the H100 measured it)."""
    from .workloads import flash1_l1_reread_bytes_per_row
    p, s = problem, schedule
    out = {L.name: 0 for L in kernel_launches(p, s)}
    if s.algorithm == "flash1":
        V = visible_blocks(p, s)
        revisits = sum(_rows(p.seq_q, s.block_m, i) * max(v - 1, 0) for i, v in enumerate(V))
        out["flash1_fwd"] = p.batch * p.heads_q * revisits * flash1_l1_reread_bytes_per_row(p, s)
    return out


def global_bytes(problem: AttentionProblem, schedule: Schedule) -> dict:
    """Total closed-form global traffic: {"global_read_bytes", "global_write_bytes", "flops", "exp_count"}."""
    tot = {"global_read_bytes": 0, "global_write_bytes": 0, "flops": 0, "exp_count": 0}
    for v in launch_counts(problem, schedule).values():
        for k in tot:
            tot[k] += v[k]
    return tot


def compulsory_dram_bytes(problem: AttentionProblem, schedule: Schedule) -> dict:
    """Per launch: (bytes of every distinct tensor it reads that exists before it starts, bytes of every
    tensor it writes), each once -- the DRAM lower bound with the L2 flushed before the launch."""
    p, s = problem, schedule
    BH, d, e, sp, ST = p.batch * p.heads_q, p.head_dim, p.element_bytes, s.sp_bytes(p), STAT_BYTES
    q, kv, o, stat, SP = p.q_bytes(), p.kv_bytes(), p.o_bytes(), BH * p.seq_q * ST, BH * p.seq_q * p.seq_kv * sp
    ws = BH * p.seq_q * (d + 2) * ST
    table = {
        "flash2_fwd": (q + kv, o + stat), "flash2_bwd_preprocess": (2 * o, stat),
        "flash2_bwd_dkdv": (kv + 2 * q + 2 * stat, kv), "flash2_bwd_dq": (q + o + 2 * stat + kv, q),
        "flash1_fwd": (q + kv, ws + o + stat),  # the workspace is produced inside the launch
        "naive_qk": (q + kv // 2, SP), "naive_softmax": (SP, SP), "naive_pv": (SP + kv // 2, o),
        "naive_bwd_dv": (SP + o, kv // 2), "naive_bwd_dp": (o + kv // 2, SP), "naive_bwd_ds": (2 * SP, SP),
        "naive_bwd_dq": (SP + kv // 2, q), "naive_bwd_dk": (SP + q, kv // 2),
    }
    return {L.name: table[L.name] for L in kernel_launches(p, s)}


def roofline_time(problem: AttentionProblem, schedule: Schedule, hw) -> float:
    """Sum over launches of max(compute, global bytes / L2 bandwidth, compulsory bytes / DRAM bandwidth).

    Compulsory DRAM bytes: every distinct tensor the launch reads, once, plus the written bytes that do not
    fit in the L2's effective capacity (the rest is written back after the launch ends).

    Compute is tensor FLOPs at the achievable matmul rate plus exps at the SFU rate (the two are
    serialised within a warp in these kernels), over all SMs."""
    from .hardware import load_hardware
    hw = load_hardware(hw)
    counts = launch_counts(problem, schedule)
    comp = compulsory_dram_bytes(problem, schedule)
    tensor = hw.tensor_flops_per_s(problem.dtype) * hw.tensor_efficiency
    t = 0.0
    for name, c in counts.items():
        t_c = c["flops"] / tensor + c["exp_count"] / hw.exp_per_s()
        t_g = (c["global_read_bytes"] + c["global_write_bytes"]) / hw.l2_bw_Bps
        rd, wr = comp[name]
        # writes that still fit in L2 when the launch ends leave no DRAM traffic inside the launch
        t_d = (rd + max(0, wr - hw.l2_effective_bytes)) / hw.dram_achievable_Bps
        t += max(t_c, t_g, t_d) + hw.launch_overhead_s
    return t


def flash1_global_asymptotic(seq: int, head_dim: int, sram_bytes: int, elem_bytes: int = 2) -> float:
    """Θ(N²d²/M) leading term of flash1's global traffic per head (the 2022 paper, Theorem 2)."""
    return seq * seq * head_dim * head_dim * elem_bytes / sram_bytes
