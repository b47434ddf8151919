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

An impl is [fwd:|bwd:]alg[:tiles][@switch]: alg hopper, flash2 (tiles = block_m,block_n,warps,stages; the registry's
schedule without), sdpa_cudnn or sdpa_flash; switch "persistent" (kernels.hopper.PERSISTENT) or a backward LOOP of
kernels.hopper_bwd ("ws+f2dq": allowed on the GPU here, WS_ON_GPU).  The phase prefix overrides --bwd.  With --facts
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
#: `ncu --query-metrics` lists)
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
    out, seen = [], set()
    for mod in (kernels.hopper, kernels.hopper_bwd, kernels.flash2):
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
    import kernels.hopper as kh
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
            kh.PERSISTENT = switch == "persistent"
            hb.LOOP = switch if switch and switch != "persistent" else "split"
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
    """Rows of an ncu `--page raw --csv` export: {metric: value} per kernel (units row dropped)."""
    text = open(path, errors="replace").read().splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith('"ID"'))
    rows = list(csv.DictReader(io.StringIO("\n".join(text[start:]))))
    return [r for r in rows if r.get("ID", "").strip().isdigit()]


def _num(x):
    try:
        return float(str(x).replace(",", ""))
    except (TypeError, ValueError):
        return None


def _stall_reason(metric: str):
    """"barrier" of smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio (cycles per issued instruction,
    WarpStateStats) or of smsp__average_warp_latency_issue_stalled_barrier.ratio; None for other metrics."""
    if not metric.startswith("smsp__average_warp") or "issue_stalled_" not in metric or not metric.endswith(".ratio"):
        return None
    reason = metric.split("issue_stalled_", 1)[1].removesuffix(".ratio").removesuffix("_per_issue_active")
    return None if reason.endswith("not_issued") else reason


def summarize(path, label_file=None):
    """One line per profiled kernel (the range label before it when --label-file names the profiled run's stdout):
    duration, tensor pipe, XU, issue, occupancy, registers, local memory instructions, top 3 stall reasons."""
    rows = _read_raw(path)
    labels = []
    if label_file:
        labels = [line.strip()[6:] for line in open(label_file, errors="replace") if line.startswith("range ")]
    pick = lambda r, *names: next((_num(r[n]) for n in names if n in r and _num(r[n]) is not None), None)  # noqa: E731
    out = []
    for r in rows:
        stalls = {_stall_reason(k): _num(v) for k, v in r.items() if _stall_reason(k)}
        stalls = {k: v for k, v in stalls.items() if v is not None}
        top = sorted(stalls.items(), key=lambda kv: -kv[1])[:4]
        out.append(dict(
            kernel=r.get("Kernel Name", "")[:60], grid=r.get("Grid Size", r.get("launch__grid_size", "")),
            block=r.get("Block Size", r.get("launch__block_size", "")),
            time_us=(pick(r, "gpu__time_duration.sum") or 0) / 1e3,
            sm_clock_MHz=(pick(r, "sm__cycles_elapsed.avg.per_second") or 0) / 1e6,
            tensor_gmma_pct=pick(r, "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"),
            tensor_pct=pick(r, "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
                            "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"),
            xu_pct=pick(r, "sm__pipe_xu_cycles_active.avg.pct_of_peak_sustained_active"),
            fma_pct=pick(r, "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active"),
            alu_pct=pick(r, "sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active"),
            issue_pct=pick(r, "smsp__issue_active.avg.pct_of_peak_sustained_active"),
            occupancy_pct=pick(r, "sm__warps_active.avg.pct_of_peak_sustained_active"),
            regs=pick(r, "launch__registers_per_thread"),
            local_ld=pick(r, "smsp__sass_inst_executed_op_local_ld.sum"),
            local_st=pick(r, "smsp__sass_inst_executed_op_local_st.sum"),
            top_stalls=[(k, round(v, 2)) for k, v in top]))
    print(json.dumps({"labels": labels, "kernels": out}, indent=1))
    print("\n| kernel | us | MHz | gmma % | tensor % | xu % | fma % | issue % | occ % | regs | local ld/st | top stalls"
          " (cycles per issue) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    f = lambda x, fmt="{:.0f}": "-" if x is None else fmt.format(x)  # noqa: E731
    for o in out:
        print(f"| {o['kernel'][:40]} | {f(o['time_us'])} | {f(o['sm_clock_MHz'])} | {f(o['tensor_gmma_pct'], '{:.1f}')} | "
              f"{f(o['tensor_pct'], '{:.1f}')} | {f(o['xu_pct'], '{:.1f}')} | {f(o['fma_pct'], '{:.1f}')} | "
              f"{f(o['issue_pct'], '{:.1f}')} | {f(o['occupancy_pct'], '{:.1f}')} | {f(o['regs'])} | "
              f"{f(o['local_ld'])}/{f(o['local_st'])} | "
              f"{', '.join(f'{k} {v}' for k, v in o['top_stalls'][:3])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
