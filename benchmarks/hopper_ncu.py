"""Launches of each implementation named on the command line, for ncu (issue 9's "what limits speed"): B*N = 16k,
H*d = 2048, forward or (--bwd) backward; and the summary of what ncu measured.

Profile (old style, by kernel name):

    ncu ... -k regex:'_hopper_bwd_dkdvdq|_flash2_bwd_dk|_flash2_bwd_dq' python benchmarks/hopper_ncu.py --bwd \
        --d 128 --n 16384 --impls hopper:64,128,8,2 flash2:64,64,4,2 hopper:64,128,4,2@ws

Profile by range (--range: only each implementation's last call sits between cudaProfilerStart/Stop, so
`ncu --profile-from-start off` sees exactly those kernels, SDPA's cuDNN and flash kernels included; several head
dims and both passes in one process):

    ncu --profile-from-start off --clock-control none --page raw --csv ... python benchmarks/hopper_ncu.py --range \
        --d 128,64 --n 16384 --impls fwd:hopper:128,128,4,2 fwd:sdpa_cudnn bwd:flash2 bwd:sdpa_cudnn

An impl is [fwd:|bwd:]alg[:tiles][@switch]: alg hopper, hopper_ws, flash2 (tiles = block_m,block_n,warps,stages; the
registry's schedule without), hopper_fa3, gluon (the Gluon forward experiment, 128x128 w8 by default), sdpa_cudnn or
sdpa_flash; switch: the backward LOOP "ws" of kernels.hopper_bwd (allowed on the GPU here, WS_ON_GPU), or "persistent"
(hopper_fa3's persistent walk, whatever the registry's rule picks).  The phase prefix overrides --bwd.  With --facts
FILE the registers, spills and shared memory of every Triton kernel compiled in the process go to FILE (JSON).

Summary (no GPU): `python benchmarks/hopper_ncu.py --summarize RAW.csv [--label-file LABELS.txt]` reads ncu's
`--page raw --csv` export and prints one row per kernel: time, tensor-pipe (gmma) and XU (exp) utilisation, issue
slots, achieved occupancy, registers, local-memory (spill) instructions and the top warp stall reasons.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys

#: the metrics asked of ncu beside its sections (Hopper names; benchmarks/hopper_gpu.sh keeps those the device's
#: `ncu --query-metrics` lists).  In run4 (ncu 2025.3.1) the profile with them left no report and the retry with the
#: sections alone ran (the first try's error was not kept; hopper_gpu.sh keeps it now): every figure of run4's summary
#: comes from the sections (FIELDS below names those metrics).
EXTRA_METRICS = (
    "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__inst_executed_pipe_tensor_op_gmma.sum",
    "sm__pipe_xu_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__inst_executed_pipe_xu.sum",
    "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__inst_executed_pipe_lsu.sum",
    "smsp__issue_active.avg.pct_of_peak_sustained_active",
    "smsp__inst_executed.sum",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "smsp__sass_inst_executed_op_local_ld.sum",
    "smsp__sass_inst_executed_op_local_st.sum",
    "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
    "sm__ops_path_tensor_src_fp16_dst_fp32.sum",
    "gpu__time_duration.sum",
    "sm__cycles_elapsed.avg.per_second",
)


def parse_impl(spec: str, bwd_default: bool):
    """"[fwd:|bwd:]alg[:tiles][@switch]" -> (phase, alg, tiles or None, switch or "")."""
    spec, _, switch = spec.partition("@")
    phase = "bwd" if bwd_default else "fwd"
    if spec.startswith(("fwd:", "bwd:")):
        phase, spec = spec[:3], spec[4:]
    alg, _, tiles = spec.partition(":")
    return phase, alg, tuple(int(x) for x in tiles.split(",")) if tiles else None, switch


def _facts(path):
    """Registers, spills, shared memory of every Triton kernel compiled in this process (kernels.hopper,
    kernels.hopper_bwd, kernels.flash2)."""
    import kernels.flash2
    import kernels.hopper
    import kernels.hopper_bwd
    import kernels.hopper_gluon
    out, seen = [], set()
    for mod in (kernels.hopper, kernels.hopper_bwd, kernels.flash2, kernels.hopper_gluon):
        for name in dir(mod):
            fn = getattr(mod, name)
            caches = getattr(fn, "device_caches", None)
            if not name.startswith("_") or not caches or id(fn) in seen:
                continue
            seen.add(id(fn))
            for cache in caches.values():
                for key, k in cache[0].items():
                    md = getattr(k, "metadata", None)
                    out.append(dict(kernel=name, n_regs=int(k.n_regs), n_spills=int(k.n_spills),
                                    spill_bytes_per_thread=4 * int(k.n_spills),
                                    shared=getattr(md, "shared", None), num_warps=getattr(md, "num_warps", None),
                                    key=str(key)[:300]))
    from memsim.io import write_json
    write_json(path, {"compiled": out}, overwrite=True)
    for r in out:
        print("facts", r["kernel"], "regs", r["n_regs"], "spill B/thread", r["spill_bytes_per_thread"], "smem", r["shared"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", default="128", help="head dims, comma-separated (each its own inputs)")
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--impls", nargs="+", default=["hopper:128,128,4,2", "flash2"])
    ap.add_argument("--bwd", action="store_true", help="backward launches (after one flash2 forward)")
    ap.add_argument("--range", action="store_true", help="only each impl's last call between cudaProfilerStart/Stop")
    ap.add_argument("--facts", default=None, help="write the compiled kernels' registers/spills here (JSON)")
    ap.add_argument("--summarize", default=None, help="an ncu --page raw --csv export: print the summary, no GPU")
    ap.add_argument("--label-file", default=None, help="with --summarize: this script's stdout (the range labels)")
    a = ap.parse_args(argv)
    if a.summarize:
        return summarize(a.summarize, a.label_file)
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import kernels
    import kernels.hopper_bwd as hb
    from kernels.testing import make_inputs
    from memsim.schedule import Schedule
    backends = {"sdpa_cudnn": SDPBackend.CUDNN_ATTENTION, "sdpa_flash": SDPBackend.FLASH_ATTENTION}
    cudart = torch.cuda.cudart()
    for d in (int(x) for x in a.d.split(",")):
        B, H = 16384 // a.n, 2048 // d
        q, k, v, do = make_inputs(B, H, H, a.n, a.n, d, a.dtype, "cuda", 1)
        p = kernels.problem_for(q, k, v, causal=a.causal)
        f = kernels.forward(p, kernels.default_schedule(p, "flash2", "fwd", q.device), q, k, v)
        for spec in a.impls:
            phase, alg, tiles, switch = parse_impl(spec, a.bwd)
            if switch not in ("", "ws", "persistent"):
                raise SystemExit(f"{spec}: the switches are @ws (kernels.hopper_bwd.LOOP) and @persistent "
                                 f"(hopper_fa3's walk); hopper_ws' persistent "
                                 f"forward and ws+f2dq are the algorithm hopper_ws (fwd:hopper_ws:..., bwd:hopper_ws:...)")
            walk = {"persistent": True}.get(switch)  # hopper_fa3: the walk whatever the registry's rule says
            if switch == "persistent":
                switch = ""
            hb.LOOP = switch or "split"
            hb.WS_ON_GPU = hb.LOOP != "split"
            if alg in backends:
                qq, kk, vv = (t.detach().requires_grad_(phase == "bwd") for t in (q, k, v))

                def call(be=backends[alg], qq=qq, kk=kk, vv=vv):
                    with sdpa_kernel(be):
                        return torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=a.causal)
                if phase == "bwd":  # the forward stays outside the range: grad of a stored graph
                    o = call()
                    run = lambda o=o, qq=qq, kk=kk, vv=vv: torch.autograd.grad(  # noqa: E731
                        o, (qq, kk, vv), do, retain_graph=True)
                else:
                    run = call
                s = None
            elif alg == "gluon":  # the Gluon forward experiment (kernels.hopper.gluon_forward), forward only
                import kernels.hopper as kh
                s = Schedule("hopper", "fwd", *(tiles or (128, 128, 8, 2)))
                run = lambda s=s: kh.gluon_forward(p, s, q, k, v)  # noqa: E731
            elif alg == "hopper_fa3" and walk is not None:
                import kernels.hopper_gluon as kg
                s = Schedule(alg, phase, *tiles) if tiles else kernels.default_schedule(p, alg, phase, q.device)
                run = lambda s=s: kg.fa3_forward(p, s, q, k, v, persistent=walk)  # noqa: E731
            else:
                s = Schedule(alg, phase, *tiles) if tiles else kernels.default_schedule(p, alg, phase, q.device)
                run = ((lambda s=s: kernels.backward(p, s, q, k, v, f.o, do, f)) if phase == "bwd"
                       else (lambda s=s: kernels.forward(p, s, q, k, v)))
            run()  # the first call compiles (or finds Triton's cache)
            torch.cuda.synchronize()
            if a.range:
                print(f"range d={d} N={a.n} {a.dtype} causal={a.causal} {phase} {spec}", flush=True)
                cudart.cudaProfilerStart()
            run()
            torch.cuda.synchronize()
            if a.range:
                cudart.cudaProfilerStop()
            else:
                print(spec, s, flush=True)
        del q, k, v, do, f
        torch.cuda.empty_cache()
    if a.facts:
        _facts(a.facts)
    return 0


def _read_raw(path):
    """(rows, units) of an ncu `--page raw --csv` export: {metric: value} per kernel, {metric: unit}."""
    text = open(path, errors="replace").read().splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith('"ID"'))
    rows = list(csv.DictReader(io.StringIO("\n".join(text[start:]))))
    units = rows[0] if rows and not rows[0].get("ID", "").strip().isdigit() else {}
    return [r for r in rows if r.get("ID", "").strip().isdigit()], units


def _num(x):
    try:
        return float(str(x).replace(",", ""))
    except (TypeError, ValueError):
        return None


def _stall_reason(metric: str):
    """"barrier" of smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio (cycles per issued instruction,
    WarpStateStats) or of smsp__average_warp_latency_issue_stalled_barrier.ratio; None for other metrics and for the
    "selected" pseudo-reason (the issue cycle itself)."""
    if not metric.startswith("smsp__average_warp") or "issue_stalled_" not in metric or not metric.endswith(".ratio"):
        return None
    reason = metric.split("issue_stalled_", 1)[1].removesuffix(".ratio").removesuffix("_per_issue_active")
    return None if reason.endswith("not_issued") or reason == "selected" else reason


#: the last kernel of one profiled range (a forward is one kernel; our backward and cuDNN's end with these)
_RANGE_ENDS = ("_hopper_fwd", "_flash2_fwd", "fprop", "_flash2_bwd_dq", "_hopper_bwd_dq_convert", "convert_dq")
_TIME_UNIT = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6,
              "second": 1e6}
_CLOCK_UNIT = {"hz": 1e-6, "khz": 1e-3, "mhz": 1.0, "ghz": 1e3}
#: (summary field, ncu raw metrics in order of preference); percentages of the peak sustained over active cycles
FIELDS = (
    ("tensor_pct", ("sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
                    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active")),
    ("gmma_inst_pct", ("sm__inst_executed_pipe_tensor_op_gmma.avg.pct_of_peak_sustained_active",)),
    ("xu_pct", ("sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active",
                "sm__pipe_xu_cycles_active.avg.pct_of_peak_sustained_active")),
    ("fma_pct", ("sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",)),
    ("alu_pct", ("sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active",)),
    ("occupancy_pct", ("sm__warps_active.avg.pct_of_peak_sustained_active",)),
    ("regs", ("launch__registers_per_thread",)),
    ("spill_insts", ("sass__inst_executed_register_spilling", "smsp__sass_inst_executed_op_local_ld.sum")),
    ("warp_cycles_per_issue", ("smsp__average_warps_active_per_issue_active.ratio",
                               "smsp__average_warps_active_per_inst_executed.ratio")),
)


def summarize(path, label_file=None):
    """One line per profiled kernel, labelled with its range (this script's stdout) when --label-file is given and
    the kernels split into as many ranges as there are labels: duration, SM clock, tensor pipe, gmma instruction
    rate, XU (exp) pipe, FMA/ALU pipes, issue slots, achieved occupancy, registers, spill instructions, top stalls."""
    rows, units = _read_raw(path)
    labels = []
    if label_file:
        labels = [line.strip()[6:] for line in open(label_file, errors="replace") if line.startswith("range ")]
    pick = lambda r, names: next((_num(r[n]) for n in names if _num(r.get(n)) is not None), None)  # noqa: E731
    out, rng = [], 0
    for r in rows:
        name = r.get("Kernel Name", "")
        stalls = {_stall_reason(k): _num(v) for k, v in r.items() if _stall_reason(k) and _num(v) is not None}
        t = _num(r.get("gpu__time_duration.sum"))
        clock = next(((_num(r[m]), units.get(m, "")) for m in ("sm__cycles_elapsed.avg.per_second",
                                                                "gpc__cycles_elapsed.avg.per_second")
                      if _num(r.get(m)) is not None), (None, ""))
        issue = _num(r.get("smsp__issue_active.avg.per_cycle_active"))
        o = dict(id=int(r["ID"]), range=labels[rng] if rng < len(labels) else None, kernel=name[:110],
                 grid=r.get("launch__grid_size", r.get("Grid Size", "")), block=r.get("launch__block_size", ""),
                 time_us=None if t is None else t * _TIME_UNIT.get(units.get("gpu__time_duration.sum", "ns").lower(), 1),
                 sm_clock_MHz=None if clock[0] is None else clock[0] * _CLOCK_UNIT.get(clock[1].lower(), 1),
                 issue_pct=None if issue is None else 100 * issue,
                 top_stalls=[(k, round(v, 2)) for k, v in sorted(stalls.items(), key=lambda kv: -kv[1])[:4]])
        o.update({f: pick(r, names) for f, names in FIELDS})
        out.append(o)
        if any(e in name for e in _RANGE_ENDS):
            rng += 1
    if labels and rng != len(labels):  # the kernels did not split as expected: no labels rather than wrong ones
        for o in out:
            o["range"] = None
    print(json.dumps({"source": path, "labels": labels, "kernels": out}, indent=1))
    print("\n| range | kernel | us | MHz | tensor % | gmma inst % | xu % | fma % | issue % | occ % | regs | spill inst |"
          " top stalls (cycles per issued inst) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    f = lambda x, fmt="{:.0f}": "-" if x is None else fmt.format(x)  # noqa: E731
    for o in out:
        print(f"| {o['range'] or '-'} | {o['kernel'][:48]} | {f(o['time_us'])} | {f(o['sm_clock_MHz'])} | "
              f"{f(o['tensor_pct'], '{:.1f}')} | {f(o['gmma_inst_pct'], '{:.1f}')} | {f(o['xu_pct'], '{:.1f}')} | "
              f"{f(o['fma_pct'], '{:.1f}')} | {f(o['issue_pct'], '{:.1f}')} | {f(o['occupancy_pct'], '{:.1f}')} | "
              f"{f(o['regs'])} | {f(o['spill_insts'])} | {', '.join(f'{k} {v}' for k, v in o['top_stalls'][:3])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
