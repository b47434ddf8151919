"""Simulate one (problem, schedule) on a hardware preset."""
from __future__ import annotations

import json

from . import common as C

NAME = "simulate"
SUMMARY = "one case: bytes per level per launch, FLOPs, time"
EPILOG = "example: python -m memsim simulate --algorithm flash1 --block-n 128 --seq 2048"


def add_arguments(p) -> None:
    C.add_all_args(p)
    p.add_argument("--json", action="store_true", help="print SimResult.to_dict() (plus closed forms) as JSON")


def run(a) -> int:
    from ..hardware import load_hardware
    from .. import analytic
    C.refuse_sp_dtype_without_naive(a, [a.algorithm])
    hw = load_hardware(a.hw)
    p, s = C.problem(a), C.schedule(a)
    r = C.simulate(a, p, s, hw)
    if a.json:
        d = r.to_dict()
        d["closed_form"] = analytic.launch_counts(p, s)
        d["roofline_time_s"] = analytic.roofline_time(p, s, hw)
        print(json.dumps(d, indent=1))
        return 0
    GB = C.GB
    print(C.describe(p, hw))
    print(f"schedule: {s.algorithm} {s.phase}, tiles {s.block_m}x{s.block_n}, {s.num_warps} warps, "
          f"{s.num_stages} stages, {s.grid_order}; SRAM per CTA {r.peak_sram_per_cta_bytes / 1024:.1f} KiB; "
          f"grain {r.grain} ({r.run_blocks} tiles/event"
          + (f", {'/'.join(map(str, sorted(set(r.ctas_per_event.values()))))} CTAs/event" if any(
              v > 1 for v in r.ctas_per_event.values()) else "")
          + (f", {r.heads_per_event} heads/event" if r.heads_per_event > 1 else "") + ")")
    rows = []
    for k in list(r.kernels) + [dict(r.total, name="total", ctas_per_sm="", num_ctas="")]:
        rows.append([k["name"], k["num_ctas"], k["ctas_per_sm"],
                     f"{k['global_read_bytes'] / GB:.4f}", f"{k['global_write_bytes'] / GB:.4f}",
                     f"{k['l2_read_bytes'] / GB:.4f}", f"{k['l2_write_bytes'] / GB:.4f}",
                     f"{k['dram_read_bytes'] / GB:.4f}", f"{k['dram_write_bytes'] / GB:.4f}",
                     f"{k['flops'] / 1e9:.1f}", f"{k['time_s'] * 1e3:.3f}", f"{k['achieved_flops_per_s'] / 1e12:.0f}"])
    print(C.fmt_table(["launch", "CTAs", "CTA/SM", "glob rd GB", "glob wr GB", "L2 rd GB", "L2 wr GB", "DRAM rd GB",
                       "DRAM wr GB", "GFLOP", "time ms", "TFLOP/s"], rows))
    cf = analytic.global_bytes(p, s)
    print(f"closed-form global: {(cf['global_read_bytes'] + cf['global_write_bytes']) / GB:.4f} GB; roofline time "
          f"{analytic.roofline_time(p, s, hw) * 1e3:.3f} ms; nominal {r.nominal_flops / 1e9:.1f} GFLOP -> "
          f"{r.nominal_flops / r.time_s / 1e12:.0f} TFLOP/s; extra device memory {r.extra_device_bytes / 1e6:.1f} MB")
    return 0
