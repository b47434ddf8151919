"""Closed forms beside the simulation: global traffic, FLOPs and exps per launch, and a roofline time.

The closed forms of each launch live in its algorithm's registry entry
(`memsim.algorithms`, `AlgorithmSpec.contract` and `.compulsory_dram_bytes`; the
built-in five in `memsim/algorithms_builtin.py`).  They are derived from the byte
contract independently of `memsim.workloads` (sums over block indices only, never
over tiles, and they never read the model's builders), so that "simulated global
traffic == closed form" is a real check.  Notation: B·Hq
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

from .algorithms import spec_for
from .algorithms_builtin import visible_blocks
from .schedule import AttentionProblem, Schedule, kernel_launches

__all__ = ["launch_counts", "compulsory_dram_bytes", "l1_reread_bytes", "global_bytes", "roofline_time",
           "flash1_global_asymptotic", "visible_blocks"]


def launch_counts(problem: AttentionProblem, schedule: Schedule) -> dict:
    """{launch name: {"global_read_bytes", "global_write_bytes", "flops", "exp_count"}} from closed forms
    (the algorithm's registry entry, `AlgorithmSpec.contract`)."""
    out = spec_for(schedule.algorithm, schedule.phase).contract(problem, schedule)
    names = [L.name for L in kernel_launches(problem, schedule)]
    if list(out) != names:
        raise AssertionError(f"{schedule.algorithm} {schedule.phase}: the contract names launches {list(out)}, "
                             f"its launches are {names}")
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
        revisits = sum(min(s.block_m, p.seq_q - i * s.block_m) * max(v - 1, 0) for i, v in enumerate(V))
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
    tensor it writes), each once -- the DRAM lower bound with the L2 flushed before the launch
    (the algorithm's registry entry, `AlgorithmSpec.compulsory_dram_bytes`)."""
    table = spec_for(schedule.algorithm, schedule.phase).compulsory_dram_bytes(problem, schedule)
    return {L.name: table[L.name] for L in kernel_launches(problem, schedule)}


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
