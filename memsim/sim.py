"""`simulate(problem, schedule, hardware)`: run the SimPy model over every launch of a schedule.

    >>> from memsim import AttentionProblem, Schedule, simulate, load_hardware
    >>> p = AttentionProblem(batch=4, heads_q=16, heads_kv=16, seq_q=4096, seq_kv=4096, head_dim=64)
    >>> r = simulate(p, Schedule("flash2"), load_hardware("h100-sxm"))
    >>> r.total["dram_read_bytes"] == p.q_bytes() + p.kv_bytes()
    True

Levels: ``global`` = requests the SMs make to memory (the paper's "HBM
accesses", ncu ``l1tex__t_bytes``); ``l2`` = requests that reach L2 (loads
merged in L1 never do; ncu ``lts__t_sectors_srcunit_tex_op_read/write`` x 32);
``dram`` = L2 <-> DRAM (ncu ``dram__bytes_read/write``).  By default the L2 is
flushed before each launch, as ncu does; of the dirty lines still in L2 when a
launch ends only ``l2_eager_writeback_fraction`` (cleaned in the background
while it ran) count as its DRAM writes.  A flash1 launch also reports
``l1_reread_bytes``: global loads beyond the byte contract that L1 serves
(included in ``global_read_bytes``; see `memsim.analytic.l1_reread_bytes`).
``code_dram_read_bytes``: the kernel's code, read from DRAM once per launch after an L2 flush (included in
``dram_read_bytes``, not in the L2 level: instruction fetches are not TEX-unit requests).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .calibration import (calibration_for, cleaned_fraction, dram_queue_latency, host_time_s, l2_link_Bps,
                          ncu_dirty_residue_bytes)
from .costs import launch_cost
from .engine import CtaBatches, L2Cache, LaunchModel
from .grain import (SLOW_LIMIT_S, AUTO_TILE_LIMIT, DEFAULT_RUN_BLOCKS, GRAINS, PROGRESS_AFTER_S, Progress, SimulationTooLarge,
                    _base_grain, check_max_seconds, fold_l2_scale, fold_model, fold_scale, folded_problem, plan_grain)
from .limits import binding, launch_bounds, pass_binding
from .hardware import Hardware, load_hardware
from .schedule import AttentionProblem, Schedule, ScheduleError, cdiv, check_fits, kernel_launches, require_bool
from .sectors import split_load_count, stat_load_count
from .workloads import build_launches, extra_device_bytes, max_loop_blocks

LEVEL_KEYS = ("global_read_bytes", "global_write_bytes", "l2_read_bytes", "l2_write_bytes",
              "dram_read_bytes", "dram_write_bytes")
SUM_KEYS = LEVEL_KEYS + ("time_s", "flops", "exp_count")
# GRAINS, DEFAULT_RUN_BLOCKS, AUTO_TILE_LIMIT: see memsim.grain (re-exported here)
__all__ = ["SimResult", "simulate", "resolve_grain", "estimate_tiles", "SimulationTooLarge", "GRAINS",
           "DEFAULT_RUN_BLOCKS", "AUTO_TILE_LIMIT"]


@dataclass(frozen=True)
class SimResult:
    hardware: str
    problem: AttentionProblem
    schedule: Schedule
    grain: str
    run_blocks: int
    #: one dict per launch: name, the level byte counts, time_s, flops, exp_count, and model details
    kernels: tuple
    #: the SUM_KEYS summed over launches, plus achieved rates
    total: dict
    peak_sram_per_cta_bytes: int
    extra_device_bytes: int
    nominal_flops: float
    sim_steps: int = 0
    sim_wall_s: float = field(default=0.0, compare=False)
    #: CTAs walked as one event, per launch name (memsim.grain); 1 = one CTA per event
    ctas_per_event: dict = field(default_factory=dict)
    #: identical heads one simulated CTA stands for (memsim.grain); 1 = none folded
    heads_per_event: int = 1
    #: the grain plan with its cost estimate (memsim.grain.GrainPlan.to_dict())
    grain_plan: dict = field(default_factory=dict, compare=False)

    @property
    def time_s(self) -> float:
        return self.total["time_s"]

    def kernel(self, name: str) -> dict:
        for k in self.kernels:
            if k["name"] == name:
                return k
        raise KeyError(f"no launch named {name!r}; launches: {[k['name'] for k in self.kernels]}")

    def to_frame(self):
        """One row per launch plus "total", as a pandas DataFrame (the `study` extra; memsim.frames)."""
        from .frames import simresult_frame
        return simresult_frame(self)

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware,
            "problem": self.problem.to_dict(),
            "schedule": self.schedule.to_dict(),
            "grain": self.grain,
            "run_blocks": self.run_blocks,
            "ctas_per_event": dict(self.ctas_per_event),
            "heads_per_event": self.heads_per_event,
            "kernels": [dict(k) for k in self.kernels],
            "total": dict(self.total),
            "peak_sram_per_cta_bytes": self.peak_sram_per_cta_bytes,
            "extra_device_bytes": self.extra_device_bytes,
            "nominal_flops": self.nominal_flops,
        }


def l1_tag_extra_bytes(cost, work, st) -> int:
    """Bytes L1's tag stage counts for a launch's register loads beyond the bytes the model booked for them (the
    global level only; L1 serves them).  Loads split into element-wide pieces count their chunk once per piece
    (kernels.sass.l1_split_factor), over the bytes the launch read of its split tensors (rows past the problem's are
    predicated off and count nothing); per-row statistics count the sectors every warp's instructions touch
    (kernels.stat_loads; memsim.sectors.stat_load_count).  Where the loop splits chunks but the workload names
    neither, the full tile's mix over all the launch's reads, as before 2026-11-27 (LaunchCost.l1_load_factor)."""
    split, stat = work.split_load_tensors or {}, work.stat_load_tensors or {}
    read = st.split_read_bytes or {}
    extra = 0.0
    if cost.l1_split_factor > 1.0 and split:
        for n, geom in split.items():  # (pitch, segment, element[, tile row, valid rows]) of the split tensor
            f = split_load_count(*geom[:3], cost.l1_split_factor, cost.l1_split_piece_bytes, *geom[3:])
            extra += (f - 1.0) * read.get(n, 0)
    if cost.stat_loads is not None and stat:
        for n, (pitch, rows) in stat.items():
            extra += (stat_load_count(pitch, rows, cost.stat_loads) - 1.0) * read.get(n, 0)
    elif cost.l1_split_factor > 1.0 and cost.l1_load_factor > 1.0 and not split:
        extra += (cost.l1_load_factor - 1.0) * (st.global_read_bytes - st.l1_reread_bytes)
    return int(round(extra))


def _rates(d: dict) -> dict:
    t = d["time_s"]
    d["achieved_dram_Bps"] = (d["dram_read_bytes"] + d["dram_write_bytes"]) / t if t > 0 else 0.0
    d["achieved_global_Bps"] = (d["global_read_bytes"] + d["global_write_bytes"]) / t if t > 0 else 0.0
    d["achieved_flops_per_s"] = d["flops"] / t if t > 0 else 0.0
    return d


def fill_latency_s(hw: Hardware, cal) -> float | None:
    """How long a DRAM fill is in flight (the pointer chase's DRAM latency, memsim.issue_fit.load_latency_from):
    reads of those lines meanwhile wait for it (LaunchModel); None where the calibration has no load latency."""
    lat = getattr(cal, "issue", None)
    if lat is None or not lat.load_dram_cycles:
        return None
    return lat.load_dram_cycles / (cal.sm_clock_Hz or hw.clock_Hz)


def estimate_tiles(problem: AttentionProblem, schedule: Schedule) -> int:
    """Rough count of tile operations (loop iterations over all CTAs and launches)."""
    mb, nb = cdiv(problem.seq_q, schedule.block_m), cdiv(problem.seq_kv, schedule.block_n)
    per_pass = problem.batch * problem.heads_q * mb * nb
    return per_pass * len(kernel_launches(problem, schedule))


def resolve_grain(problem: AttentionProblem, schedule: Schedule, grain: str = "auto",
                  run_blocks: int | None = None) -> tuple[str, int]:
    """Today's rule without a cost budget: (grain, run length).  `simulate` uses `memsim.grain.plan_grain`,
    which starts from this and coarsens what would cost more than its budget."""
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {', '.join(GRAINS)}, got {grain!r}")
    if run_blocks is not None and (isinstance(run_blocks, bool) or not isinstance(run_blocks, int) or run_blocks < 1):
        raise ValueError(f"run_blocks must be a positive integer, got {run_blocks!r}")
    return _base_grain(problem, schedule, grain, run_blocks, max_loop_blocks(problem, schedule))


def simulate(problem: AttentionProblem, schedule: Schedule, hardware="h100-sxm", *, grain: str = "auto",
             run_blocks: int | None = None, flush_l2: bool = True, compiled_facts: dict | None = None,
             ctas_per_event: int | None = None, heads_per_event: int | None = None, progress=None,
             progress_after_s: float = PROGRESS_AFTER_S, max_seconds: float | None = SLOW_LIMIT_S,
             sectors: bool = True) -> SimResult:
    """Simulate every launch of `schedule` on `problem` (see module doc).

    grain: "tile" (one event per tile), "run" (one per `run_blocks` tiles, default 16), "cta" (one per
    CTA loop), "auto" (tile for small cases, run above %d tiles, or run when run_blocks is given; coarser
    -- longer runs, CTA batches, folded heads -- when that is estimated over memsim.grain.AUTO_BUDGET_S).
    Bytes are exact at every grain.  A problem estimated at more than memsim.grain.REFUSE_EVENTS events even
    at the coarsest grain raises SimulationTooLarge (a ValueError) with the estimate.
    ctas_per_event: a CTA slot walks this many consecutive CTAs (dispatch order) as one event chain, their
    steps merged (None: auto's choice, else 1).  heads_per_event: one simulated CTA stands for this many
    identical CTAs of as many heads, bytes and FLOPs multiplied (must divide batch*heads_kv; None: auto's
    choice, else 1).  `memsim.grain.estimate(...)` gives the plan and its cost without simulating.
    progress: callable(done_ctas, total_ctas), called about twice a second and at the end when the plan is
    estimated over `progress_after_s` seconds.
    flush_l2: empty the L2 before each launch, as ncu does (False: later launches find earlier data).
    max_seconds: refuse (SimulationTooLarge, with the estimate) a plan estimated above this many CPU seconds
    (default 10): with grain="auto" its coarsest plan, with a grain or event option given the plan asked for
    (the message says what auto would take); None runs it anyway.  A finite positive number or None.
    sectors: count global and L2 traffic in the units the card moves (32-byte sectors of misaligned rows,
    memsim.sectors; whole TMA boxes of ragged tiles, memsim.workloads_hopper), as ncu counts them; False gives
    the byte contract itself at the global level.
    compiled_facts: {launch name: facts with regs_per_thread, spill_store_bytes, spill_load_bytes} to use
    instead of the compiled-facts table (e.g. the facts a measurement recorded on the GPU).
    """
    import time as _time

    if not isinstance(problem, AttentionProblem):
        raise TypeError(f"problem must be an AttentionProblem, got {type(problem).__name__}")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    require_bool("flush_l2", flush_l2)
    require_bool("sectors", sectors)
    check_max_seconds(max_seconds)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    cal = calibration_for(hw)
    smem = check_fits(problem, schedule, hw.smem_per_block_bytes, hw.name)
    resolve_grain(problem, schedule, grain, run_blocks)  # argument errors first, in today's words
    from .costs import ctas_per_sm as _ctas_per_sm
    plan = plan_grain(problem, schedule, hw, grain, run_blocks, ctas_per_event, heads_per_event, max_seconds=max_seconds,
                      ctas_per_sm=_ctas_per_sm(hw, smem, schedule.num_warps, hw.regs_per_thread)[0])
    grain, R, fold = plan.grain, plan.run_blocks, plan.heads_per_event
    real_launches = kernel_launches(problem, schedule)
    prog = None
    if progress is not None and plan.estimated_s > progress_after_s:
        prog = Progress(progress, sum(L.num_ctas for L in real_launches))
    t0 = _time.perf_counter()
    # reads use the whole L2 where calibrated (what stays dirty is limited separately: memsim.engine.L2Cache),
    # the preset's effective fraction otherwise
    l2 = L2Cache(hw.l2_bytes if cal.l2_dirty_bytes else hw.l2_effective_bytes, cal.l2_dirty_bytes,
                 clean_age=cal.l2_clean_age, share_extra=cal.l2_shared_copy_extra)
    # ncu's own dirty lines at a kernel's start (its multi-pass replay: benchmarks/ncu_residue_gpu.py), written back
    # under the age law as ours come in
    residue = (ncu_dirty_residue_bytes(cal, hw.l2_bytes) or 0) if flush_l2 and cal.l2_clean_age else 0
    kernels = []
    steps = 0
    dot_unit = "fma" if problem.dtype == "fp32" else "tensor"
    for li, work in enumerate(build_launches(folded_problem(problem, fold), schedule, R, sectors=sectors)):
        k_ev = plan.ctas_per_event.get(work.name, 1)
        if k_ev > 1 or fold > 1:
            work = CtaBatches(work, k_ev, fold, launch=real_launches[li], true_num_ctas=real_launches[li].num_ctas,
                              head_scale=fold_scale(problem, fold, work.launch) if fold > 1 else None)
        cost = launch_cost(hw, cal, work.name, problem, schedule, smem, facts=(compiled_facts or {}).get(work.name),
                           num_ctas=real_launches[li].num_ctas)
        if cost.ctas_per_sm < 1:
            raise ScheduleError(
                f"{schedule.algorithm} {schedule.phase}: a CTA of {work.name} cannot be resident on {hw.name}: "
                f"limited by {cost.occupancy_limit} (needs {smem} + {hw.smem_reserved_per_block_bytes} reserved "
                f"bytes of shared memory of {hw.smem_per_sm_bytes} available per SM, {schedule.num_warps} warps of "
                f"{hw.max_warps_per_sm}, {schedule.num_warps * 32 * cost.regs_per_thread} registers of "
                f"{hw.regs_per_sm})")
        if flush_l2:
            l2.flush()
            if residue:
                l2.seed_dirty(residue)
        l2.dram_read = l2.dram_write = 0
        # folded heads: a GPU of ceil(num_sms / f) SMs, each f heads wide (memsim.grain.fold_model)
        run_hw, run_cost, port_x = fold_model(hw, cost, fold)
        model = LaunchModel(run_hw, work, l2, run_cost, num_stages=schedule.num_stages, dram_Bps=cal.dram_Bps,
                            launch_overhead_s=cal.launch_overhead_s, merge_window_s=cal.l2_merge_window_s,
                            merge_group_sms=cal.merge_group_sms, dependent_Bps=cal.dependent_Bps,
                            dependent_latency_s=cal.l2_roundtrip_s,
                            cta_dispatch_s=cal.cta_dispatch_s, fill_latency_s=fill_latency_s(hw, cal),
                            tma_coalesce_min_row_bytes=cal.tma_coalesce_min_row_bytes, l2_Bps=l2_link_Bps(hw, cal),
                            l2_write_Bps=cal.l2_write_Bps, partial_store_cost=cal.partial_store_cost,
                            dram_queue_latency=dram_queue_latency(cal, cal.dram_Bps), round_trip_s=cal.round_trip_s,
                            reduce_add_curve=cal.reduce_add_curve, round_trip_l2_s=cal.round_trip_l2_s)
        model.progress = prog
        if fold > 1:
            model.dep_lat /= fold  # a folded step's tiles are f CTAs' tiles walked side by side, not in turn
            if model.dep_Bps:
                model.dep_Bps *= fold  # ... and f CTAs move their bytes side by side
            model.l2_scale = fold_l2_scale(real_launches[li], hw.num_sms * cost.ctas_per_sm, fold)
        st = model.run()
        extra = l1_tag_extra_bytes(cost, work, st)
        st.global_read_bytes += extra  # counted by L1's tag stage, served by L1: the global level only
        st.l1_reread_bytes += extra
        code = cost.code_bytes if flush_l2 else 0
        # the SMs fetch the kernel's instructions through the L2, which the flush left empty: its code once from
        # DRAM (instruction fetches are not TEX-unit requests, so not in the L2 level we count); kept explicit
        st.dram_read_bytes += code
        # the L2 cleans dirty lines in the background: part of what is still dirty at the end is already in DRAM
        dirty = l2.dirty_bytes()
        st.dram_write_bytes += int(round(cleaned_fraction(hw, cal, dirty) * dirty))
        steps += st.steps
        k = {"name": st.name}
        for key in SUM_KEYS:
            k[key] = getattr(st, key)
        k["l1_reread_bytes"] = st.l1_reread_bytes
        k["code_dram_read_bytes"] = code
        bounds = launch_bounds(st, num_sms=hw.num_sms, sec_per_flop=cost.sec_per_flop, sec_per_exp=cost.sec_per_exp,
                               dram_Bps=cal.dram_Bps, l2_Bps=l2_link_Bps(hw, cal), dot_unit=dot_unit,
                               l2_write_Bps=cal.l2_write_Bps)
        limit, share = binding(bounds, st.time_s)
        k.update(num_ctas=st.num_ctas, grid=list(work.launch.grid), ctas_per_sm=st.ctas_per_sm,
                 occupancy_limit=st.occupancy_limit, regs_per_thread=cost.regs_per_thread,
                 spill_l2_read_bytes=st.spill_l2_read_bytes, spill_l2_write_bytes=st.spill_l2_write_bytes,
                 spill_dram_read_bytes=st.spill_dram_read_bytes, spill_dram_write_bytes=st.spill_dram_write_bytes,
                 compiled_facts=cost.facts_source, l2_dirty_at_end_bytes=dirty,
                 bounds_s=bounds, binding_limit=limit, binding_share=share,
                 tiles=st.tiles, sim_steps=st.steps)
        kernels.append(_rates(k))
    total = {key: sum(k[key] for k in kernels) for key in SUM_KEYS}
    # kernels run back to back on the GPU, but the host must issue each launch: short passes are host-bound
    total["gpu_time_s"] = float(total["time_s"])
    total["host_time_s"] = host_time_s(cal, schedule.algorithm, schedule.phase, len(kernels),
                                       names=[k["name"] for k in kernels])
    total["time_s"] = max(total["gpu_time_s"], total["host_time_s"])
    total["binding_limit"] = pass_binding(kernels, total["gpu_time_s"], total["host_time_s"])
    total["l1_reread_bytes"] = sum(k["l1_reread_bytes"] for k in kernels)
    total["code_dram_read_bytes"] = sum(k["code_dram_read_bytes"] for k in kernels)
    if prog is not None:
        prog.finish()
    wall = _time.perf_counter() - t0
    return SimResult(hardware=hw.name, problem=problem, schedule=schedule, grain=grain, run_blocks=R,
                     kernels=tuple(kernels), total=_rates(total), peak_sram_per_cta_bytes=smem,
                     extra_device_bytes=extra_device_bytes(problem, schedule),
                     nominal_flops=problem.nominal_flops(schedule.phase), sim_steps=steps, sim_wall_s=wall,
                     ctas_per_event=dict(plan.ctas_per_event), heads_per_event=fold, grain_plan=plan.to_dict())


simulate.__doc__ = simulate.__doc__.replace("%d", str(AUTO_TILE_LIMIT))
