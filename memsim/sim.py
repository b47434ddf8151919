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
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .calibration import calibration_for, cleaned_fraction
from .costs import launch_cost
from .engine import L2Cache, LaunchModel
from .limits import binding, launch_bounds, pass_binding
from .hardware import Hardware, load_hardware
from .schedule import AttentionProblem, Schedule, ScheduleError, cdiv, check_fits, kernel_launches
from .workloads import build_launches, extra_device_bytes, max_loop_blocks

LEVEL_KEYS = ("global_read_bytes", "global_write_bytes", "l2_read_bytes", "l2_write_bytes",
              "dram_read_bytes", "dram_write_bytes")
SUM_KEYS = LEVEL_KEYS + ("time_s", "flops", "exp_count")
GRAINS = ("auto", "tile", "run", "cta")
#: default run length of the "run" grain (blocks per step), and the "auto" switch point
DEFAULT_RUN_BLOCKS = 16
AUTO_TILE_LIMIT = 50_000


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
            "kernels": [dict(k) for k in self.kernels],
            "total": dict(self.total),
            "peak_sram_per_cta_bytes": self.peak_sram_per_cta_bytes,
            "extra_device_bytes": self.extra_device_bytes,
            "nominal_flops": self.nominal_flops,
        }


def _rates(d: dict) -> dict:
    t = d["time_s"]
    d["achieved_dram_Bps"] = (d["dram_read_bytes"] + d["dram_write_bytes"]) / t if t > 0 else 0.0
    d["achieved_global_Bps"] = (d["global_read_bytes"] + d["global_write_bytes"]) / t if t > 0 else 0.0
    d["achieved_flops_per_s"] = d["flops"] / t if t > 0 else 0.0
    return d


def estimate_tiles(problem: AttentionProblem, schedule: Schedule) -> int:
    """Rough count of tile operations (loop iterations over all CTAs and launches)."""
    mb, nb = cdiv(problem.seq_q, schedule.block_m), cdiv(problem.seq_kv, schedule.block_n)
    per_pass = problem.batch * problem.heads_q * mb * nb
    return per_pass * len(kernel_launches(problem, schedule))


def resolve_grain(problem: AttentionProblem, schedule: Schedule, grain: str = "auto",
                  run_blocks: int | None = None) -> tuple[str, int]:
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {', '.join(GRAINS)}, got {grain!r}")
    if run_blocks is not None and (isinstance(run_blocks, bool) or not isinstance(run_blocks, int) or run_blocks < 1):
        raise ValueError(f"run_blocks must be a positive integer, got {run_blocks!r}")
    if grain == "auto":
        if run_blocks is not None:
            grain = "run"
        else:
            grain = "tile" if estimate_tiles(problem, schedule) <= AUTO_TILE_LIMIT else "run"
    if grain == "tile":
        return grain, 1
    if grain == "cta":
        return grain, max_loop_blocks(problem, schedule)
    if run_blocks is None and schedule.algorithm == "flash1":
        # flash1 revisits its workspace block i one inner loop (all Q blocks) later: a run must be a small
        # part of that loop, or write-then-read of the workspace becomes adjacent in the LRU and the L2
        # seems to hold what really thrashes (gpt2m flash1: DRAM read 2.4 GB at one run per loop,
        # 6.57 GB at tile grain and measured)
        return grain, max(1, min(DEFAULT_RUN_BLOCKS, cdiv(problem.seq_q, schedule.block_m) // 4))
    return grain, run_blocks or DEFAULT_RUN_BLOCKS


def simulate(problem: AttentionProblem, schedule: Schedule, hardware="h100-sxm", *, grain: str = "auto",
             run_blocks: int | None = None, flush_l2: bool = True, compiled_facts: dict | None = None) -> SimResult:
    """Simulate every launch of `schedule` on `problem` (see module doc).

    grain: "tile" (one event per tile), "run" (one per `run_blocks` tiles, default 16), "cta" (one per
    CTA loop), "auto" (tile for small cases, run above %d tiles, or run when run_blocks is given).  Bytes are exact at every grain.
    flush_l2: empty the L2 before each launch, as ncu does (False: later launches find earlier data).
    compiled_facts: {launch name: facts with regs_per_thread, spill_store_bytes, spill_load_bytes} to use
    instead of the compiled-facts table (e.g. the facts a measurement recorded on the GPU).
    """
    import time as _time

    if not isinstance(problem, AttentionProblem):
        raise TypeError(f"problem must be an AttentionProblem, got {type(problem).__name__}")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    cal = calibration_for(hw)
    smem = check_fits(problem, schedule, hw.smem_per_block_bytes, hw.name)
    grain, R = resolve_grain(problem, schedule, grain, run_blocks)
    t0 = _time.perf_counter()
    l2 = L2Cache(hw.l2_effective_bytes)
    kernels = []
    steps = 0
    dot_unit = "fma" if problem.dtype == "fp32" else "tensor"
    for work in build_launches(problem, schedule, R):
        cost = launch_cost(hw, cal, work.name, problem, schedule, smem, facts=(compiled_facts or {}).get(work.name))
        if cost.ctas_per_sm < 1:
            raise ScheduleError(
                f"{schedule.algorithm} {schedule.phase}: a CTA of {work.name} cannot be resident on {hw.name}: "
                f"limited by {cost.occupancy_limit} (needs {smem} + {hw.smem_reserved_per_block_bytes} reserved "
                f"bytes of shared memory of {hw.smem_per_sm_bytes} available per SM, {schedule.num_warps} warps of "
                f"{hw.max_warps_per_sm}, {schedule.num_warps * 32 * cost.regs_per_thread} registers of "
                f"{hw.regs_per_sm})")
        if flush_l2:
            l2.flush()
        l2.dram_read = l2.dram_write = 0
        model = LaunchModel(hw, work, l2, cost, num_stages=schedule.num_stages, dram_Bps=cal.dram_Bps,
                            launch_overhead_s=cal.launch_overhead_s, merge_window_s=cal.l2_merge_window_s,
                            sm_l2_Bps=cal.sm_l2_Bps, dependent_latency_s=cal.l2_roundtrip_s)
        st = model.run()
        # the L2 cleans dirty lines in the background: part of what is still dirty at the end is already in DRAM
        dirty = l2.dirty_bytes()
        st.dram_write_bytes += int(round(cleaned_fraction(hw, cal, dirty) * dirty))
        steps += st.steps
        k = {"name": st.name}
        for key in SUM_KEYS:
            k[key] = getattr(st, key)
        k["l1_reread_bytes"] = st.l1_reread_bytes
        bounds = launch_bounds(st, num_sms=hw.num_sms, sec_per_flop=cost.sec_per_flop, sec_per_exp=cost.sec_per_exp,
                               dram_Bps=cal.dram_Bps, l2_Bps=hw.l2_bw_Bps, dot_unit=dot_unit)
        limit, share = binding(bounds, st.time_s)
        k.update(num_ctas=st.num_ctas, grid=list(work.launch.grid), ctas_per_sm=st.ctas_per_sm,
                 occupancy_limit=st.occupancy_limit, regs_per_thread=cost.regs_per_thread,
                 spill_l2_read_bytes=st.spill_l2_read_bytes, spill_l2_write_bytes=st.spill_l2_write_bytes,
                 compiled_facts=cost.facts_source, l2_dirty_at_end_bytes=dirty,
                 bounds_s=bounds, binding_limit=limit, binding_share=share,
                 tiles=st.tiles, sim_steps=st.steps)
        kernels.append(_rates(k))
    total = {key: sum(k[key] for k in kernels) for key in SUM_KEYS}
    # kernels run back to back on the GPU, but the host must issue each launch: short passes are host-bound
    total["gpu_time_s"] = float(total["time_s"])
    total["host_time_s"] = len(kernels) * cal.host_launch_s
    total["time_s"] = max(total["gpu_time_s"], total["host_time_s"])
    total["binding_limit"] = pass_binding(kernels, total["gpu_time_s"], total["host_time_s"])
    total["l1_reread_bytes"] = sum(k["l1_reread_bytes"] for k in kernels)
    wall = _time.perf_counter() - t0
    return SimResult(hardware=hw.name, problem=problem, schedule=schedule, grain=grain, run_blocks=R,
                     kernels=tuple(kernels), total=_rates(total), peak_sram_per_cta_bytes=smem,
                     extra_device_bytes=extra_device_bytes(problem, schedule),
                     nominal_flops=problem.nominal_flops(schedule.phase), sim_steps=steps, sim_wall_s=wall)


simulate.__doc__ = simulate.__doc__.replace("%d", str(AUTO_TILE_LIMIT))
