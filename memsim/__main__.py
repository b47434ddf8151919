"""Command line of memsim: ``python -m memsim {simulate,compare,sweep,presets} ...`` (see --help)."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys

from .schedule import (ALGORITHMS, CAUSAL_ALIGNMENTS, DTYPE_BYTES, GRID_ORDERS, PHASES, AttentionProblem,
                       Schedule, ScheduleError)

EPILOG_MAIN = """\
examples:
  python -m memsim compare                      # naive vs flash1 vs flash2, B=4 H=16 N=4096 d=64 fp16, H100 SXM
  python -m memsim simulate --seq 16384 --batch 1 --heads 32 --grid-order heads_fastest
  python -m memsim simulate --algorithm naive --phase bwd --json
  python -m memsim sweep --param block_n --values 16,32,64,128 --algorithms flash1 --out results/flash1_bn
  python -m memsim presets

Levels: "global" = requests SMs send to memory (the FlashAttention paper's "HBM accesses", ncu
l1tex__t_bytes); "l2" = requests that reach L2 (ncu lts__t_sectors_srcunit_tex x 32); "dram" = bytes
between L2 and DRAM (ncu dram__bytes).  Hardware: --hw takes a preset name or a path to a .toml file
(a file may say extends = "h100-sxm" and override a few keys).
"""


def _add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem (softmax(scale*QK^T)V on (batch, heads, seq, head_dim) tensors)")
    g.add_argument("--batch", "-B", type=int, default=4, help="batch size (default 4)")
    g.add_argument("--heads", "-H", type=int, default=16, help="query heads (default 16)")
    g.add_argument("--heads-kv", type=int, default=None, help="key/value heads for GQA/MQA (default = --heads)")
    g.add_argument("--seq", "-N", type=int, default=4096, help="query sequence length (default 4096)")
    g.add_argument("--seq-kv", type=int, default=None, help="key/value sequence length (default = --seq)")
    g.add_argument("--head-dim", "-d", type=int, default=64, help="head dimension (default 64)")
    g.add_argument("--dtype", choices=tuple(DTYPE_BYTES), default="fp16", help="element type (default fp16)")
    g.add_argument("--causal", action="store_true", help="causal mask (fully masked tiles are skipped by flash)")
    g.add_argument("--causal-align", choices=CAUSAL_ALIGNMENTS, default="top_left",
                   help="causal alignment when seq != seq-kv (default top_left, like SDPA is_causal)")


def _add_schedule_args(p: argparse.ArgumentParser, algorithm: bool = True) -> None:
    g = p.add_argument_group("schedule (how the kernels run it)")
    if algorithm:
        g.add_argument("--algorithm", "-a", choices=ALGORITHMS, default="flash2",
                       help="naive (S, P in HBM), flash1 (2022 loop order), flash2 (default)")
    g.add_argument("--phase", choices=PHASES, default="fwd", help="forward or backward pass (default fwd)")
    g.add_argument("--block-m", type=int, default=128, help="Q rows per tile (power of two >= 16, default 128)")
    g.add_argument("--block-n", type=int, default=64, help="K/V rows per tile (power of two >= 16, default 64)")
    g.add_argument("--num-warps", type=int, default=4, help="warps per CTA (default 4)")
    g.add_argument("--num-stages", type=int, default=2, help="pipeline stages: 1 = no load/compute overlap (default 2)")
    g.add_argument("--grid-order", choices=GRID_ORDERS, default="q_fastest",
                   help="which grid axis varies fastest: Q blocks of a head (default) or heads")
    g.add_argument("--sp-dtype", choices=tuple(DTYPE_BYTES), default=None,
                   help="element type of naive's S and P in HBM (default: the problem dtype)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--hw", default="h100-sxm", help="hardware preset name or .toml path (default h100-sxm)")
    g.add_argument("--grain", choices=("auto", "tile", "run", "cta"), default="auto",
                   help="events per tile, per run of tiles, or per CTA loop; bytes are exact at every grain "
                        "(default auto: tile for small cases, run for big ones)")
    g.add_argument("--run-blocks", type=int, default=None, help="tiles per event at --grain run (default 16)")
    g.add_argument("--no-flush-l2", action="store_true",
                   help="keep L2 contents between launches (default: flush before each launch, as ncu does)")


def _problem(a) -> AttentionProblem:
    return AttentionProblem(batch=a.batch, heads_q=a.heads, heads_kv=a.heads_kv or a.heads, seq_q=a.seq,
                            seq_kv=a.seq_kv or a.seq, head_dim=a.head_dim, dtype=a.dtype, causal=a.causal,
                            causal_align=a.causal_align)


def _schedule(a, algorithm=None) -> Schedule:
    return Schedule(algorithm=algorithm or a.algorithm, phase=a.phase, block_m=a.block_m, block_n=a.block_n,
                    num_warps=a.num_warps, num_stages=a.num_stages, grid_order=a.grid_order, sp_dtype=a.sp_dtype)


def _sim(a, problem, schedule, hw):
    from .sim import simulate
    return simulate(problem, schedule, hw, grain=a.grain, run_blocks=a.run_blocks, flush_l2=not a.no_flush_l2)


def _fmt_table(headers, rows) -> str:
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(headers), line(["-" * x for x in w]), *map(line, rows)])


def _describe(problem, hw) -> str:
    p = problem
    gqa = f" (kv heads {p.heads_kv})" if p.heads_kv != p.heads_q else ""
    sk = f", seq_kv={p.seq_kv}" if p.seq_kv != p.seq_q else ""
    return (f"{hw.name} ({hw.description}); B={p.batch} H={p.heads_q}{gqa} N={p.seq_q}{sk} d={p.head_dim} "
            f"{p.dtype}{' causal ' + p.causal_align if p.causal else ''}")


GB = 1e9


def cmd_simulate(a) -> int:
    from .hardware import load_hardware
    from . import analytic
    hw = load_hardware(a.hw)
    p, s = _problem(a), _schedule(a)
    r = _sim(a, p, s, hw)
    if a.json:
        d = r.to_dict()
        d["closed_form"] = analytic.launch_counts(p, s)
        d["roofline_time_s"] = analytic.roofline_time(p, s, hw)
        print(json.dumps(d, indent=1))
        return 0
    print(_describe(p, hw))
    print(f"schedule: {s.algorithm} {s.phase}, tiles {s.block_m}x{s.block_n}, {s.num_warps} warps, "
          f"{s.num_stages} stages, {s.grid_order}; SRAM per CTA {r.peak_sram_per_cta_bytes / 1024:.1f} KiB; "
          f"grain {r.grain} ({r.run_blocks} tiles/event)")
    rows = []
    for k in list(r.kernels) + [dict(r.total, name="total", ctas_per_sm="", num_ctas="")]:
        rows.append([k["name"], k["num_ctas"], k["ctas_per_sm"],
                     f"{k['global_read_bytes'] / GB:.4f}", f"{k['global_write_bytes'] / GB:.4f}",
                     f"{k['l2_read_bytes'] / GB:.4f}", f"{k['l2_write_bytes'] / GB:.4f}",
                     f"{k['dram_read_bytes'] / GB:.4f}", f"{k['dram_write_bytes'] / GB:.4f}",
                     f"{k['flops'] / 1e9:.1f}", f"{k['time_s'] * 1e3:.3f}", f"{k['achieved_flops_per_s'] / 1e12:.0f}"])
    print(_fmt_table(["launch", "CTAs", "CTA/SM", "glob rd GB", "glob wr GB", "L2 rd GB", "L2 wr GB", "DRAM rd GB",
                      "DRAM wr GB", "GFLOP", "time ms", "TFLOP/s"], rows))
    cf = analytic.global_bytes(p, s)
    print(f"closed-form global: {(cf['global_read_bytes'] + cf['global_write_bytes']) / GB:.4f} GB; roofline time "
          f"{analytic.roofline_time(p, s, hw) * 1e3:.3f} ms; nominal {r.nominal_flops / 1e9:.1f} GFLOP -> "
          f"{r.nominal_flops / r.time_s / 1e12:.0f} TFLOP/s; extra device memory {r.extra_device_bytes / 1e6:.1f} MB")
    return 0


def cmd_compare(a) -> int:
    from .hardware import load_hardware
    from . import analytic
    hw = load_hardware(a.hw)
    p = _problem(a)
    phases = ("fwd", "bwd") if a.phase == "both" else (a.phase,)
    algs = [x for x in ALGORITHMS if not (x == "flash1" and "bwd" in phases)]  # flash1 has no backward
    results = []  # (alg, [(schedule, SimResult) per phase])
    for alg in algs:
        runs = []
        for ph in phases:
            s = _schedule(argparse.Namespace(**{**vars(a), "phase": ph}), alg)
            runs.append((s, _sim(a, p, s, hw)))
        results.append((alg, runs))
    if a.json:
        print(json.dumps([r.to_dict() for _, runs in results for _, r in runs], indent=1))
        return 0
    print(f"{_describe(p, hw)}; {' + '.join(phases)}, tiles {a.block_m}x{a.block_n}")
    if "bwd" in phases:
        print("(flash1 has a forward pass only and is left out)")

    def tot(runs, key):
        return sum(r.total[key] for _, r in runs)

    def glob(runs):
        return tot(runs, "global_read_bytes") + tot(runs, "global_write_bytes")

    base = glob(results[-1][1])  # flash2
    rows = []
    for alg, runs in results:
        cf = sum(v["global_read_bytes"] + v["global_write_bytes"]
                 for s, _ in runs for v in [analytic.global_bytes(p, s)])
        t = tot(runs, "time_s")
        nominal = sum(r.nominal_flops for _, r in runs)
        rows.append([alg, sum(len(r.kernels) for _, r in runs), f"{tot(runs, 'flops') / 1e9:.0f}",
                     f"{glob(runs) / GB:.2f}", f"{cf / GB:.2f}",
                     f"{(tot(runs, 'dram_read_bytes') + tot(runs, 'dram_write_bytes')) / GB:.3f}",
                     f"{t * 1e3:.3f}", f"{nominal / t / 1e12:.0f}",
                     f"{max(r.extra_device_bytes for _, r in runs) / 1e6:.1f}", f"{glob(runs) / base:.1f}x"])
    print(_fmt_table(["algorithm", "launches", "GFLOP", "global GB", "closed form GB", "DRAM GB", "time ms",
                      "TFLOP/s", "extra MB", "global vs flash2"], rows))
    print("GFLOP = tensor-core FLOPs executed (flash2 bwd recomputes S twice); TFLOP/s uses the nominal "
          "4*B*H*N^2*d (x2.5 bwd) count; DRAM = L2<->HBM with the L2 flushed before each launch (as ncu does)")
    print("closed form = the byte contract of memsim/schedule.py; flash1's global level adds the O-workspace "
          "re-read that L1 serves (measured on the H100: see memsim/MODEL.md)")
    return 0


SWEEP_PARAMS = ("seq", "head_dim", "block_m", "block_n")
SWEEP_FIELDS = ["param", "value", "algorithm", "phase", "status", "global_read_bytes", "global_write_bytes",
                "l2_read_bytes", "l2_write_bytes", "dram_read_bytes", "dram_write_bytes", "flops", "exp_count",
                "time_s", "tflops_nominal", "closed_form_global_bytes", "peak_sram_per_cta_bytes",
                "extra_device_bytes", "error"]


def _progress(i, n, label, stream=None):
    stream = stream or sys.stderr
    width = 30
    done = int(width * i / n) if n else width
    stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {label:<40.40}")
    if i == n:
        stream.write("\n")
    stream.flush()


def cmd_sweep(a) -> int:
    from pathlib import Path
    from .hardware import load_hardware
    from . import analytic
    from .io import OutputExistsError, base_provenance, write_atomic, write_json
    hw = load_hardware(a.hw)
    try:
        values = [int(v) for v in a.values.split(",") if v.strip()]
    except ValueError:
        raise ScheduleError(f"--values must be comma-separated integers, got {a.values!r}") from None
    if not values:
        raise ScheduleError("--values is empty")
    algs = [x.strip() for x in a.algorithms.split(",") if x.strip()]
    for x in algs:
        if x not in ALGORITHMS:
            raise ScheduleError(f"unknown algorithm {x!r} in --algorithms; choose from {', '.join(ALGORITHMS)}")
    outs = {ext: Path(f"{a.out}.{ext}") for ext in ("csv", "json", "png")}
    if not a.force:
        for path in outs.values():
            if path.exists():
                raise OutputExistsError(f"{path} already exists; pass --force to replace it, or choose another --out")
    jobs = [(v, alg) for v in values for alg in algs]
    rows = []
    for n, (v, alg) in enumerate(jobs):
        _progress(n, len(jobs), f"{a.param}={v} {alg}")
        args = argparse.Namespace(**vars(a))
        if a.param == "seq":
            args.seq, args.seq_kv = v, None
        else:
            setattr(args, a.param, v)
        row = {"param": a.param, "value": v, "algorithm": alg, "phase": a.phase}
        try:
            p, s = _problem(args), _schedule(args, alg)
            r = _sim(args, p, s, hw)
            cf = analytic.global_bytes(p, s)
            row.update({k: r.total[k] for k in SWEEP_FIELDS if k in r.total}, status="ok",
                       tflops_nominal=r.nominal_flops / r.time_s / 1e12,
                       closed_form_global_bytes=cf["global_read_bytes"] + cf["global_write_bytes"],
                       peak_sram_per_cta_bytes=r.peak_sram_per_cta_bytes, extra_device_bytes=r.extra_device_bytes)
        except ScheduleError as e:  # a point that cannot run (e.g. tiles too big for SRAM) is recorded, not fatal
            row.update(status="refused", error=str(e))
        rows.append(row)
    _progress(len(jobs), len(jobs), "done")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SWEEP_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: row.get(k, "") for k in SWEEP_FIELDS})
    write_atomic(outs["csv"], buf.getvalue(), overwrite=a.force)
    write_json(outs["json"], {"hardware": hw.name, "param": a.param, "rows": rows,
                              "provenance": base_provenance()}, overwrite=a.force)
    write_atomic(outs["png"], _sweep_png(rows, a, hw), overwrite=a.force)
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"{ok}/{len(rows)} points simulated ({len(rows) - ok} refused); wrote {outs['csv']}, {outs['json']}, {outs['png']}")
    for row in rows:
        if row["status"] != "ok":
            print(f"  refused {a.param}={row['value']} {row['algorithm']}: {row['error']}")
    return 0


def _sweep_png(rows, a, hw) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for alg in dict.fromkeys(r["algorithm"] for r in rows):
        pts = [r for r in rows if r["algorithm"] == alg and r["status"] == "ok"]
        if not pts:
            continue
        x = [r["value"] for r in pts]
        axes[0].plot(x, [(r["global_read_bytes"] + r["global_write_bytes"]) / GB for r in pts], "o-", label=alg)
        axes[1].plot(x, [(r["dram_read_bytes"] + r["dram_write_bytes"]) / GB for r in pts], "o-", label=alg)
        axes[2].plot(x, [r["time_s"] * 1e3 for r in pts], "o-", label=alg)
    for ax, t in zip(axes, ("global traffic (GB)", "DRAM traffic (GB)", "predicted time (ms)")):
        ax.set_xlabel(a.param)
        ax.set_title(t)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"memsim sweep on {hw.name}: {a.phase}, B={a.batch} H={a.heads} d={a.head_dim} N={a.seq} {a.dtype}",
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def cmd_presets(a) -> int:
    from .hardware import load_hardware, preset_names
    rows = []
    for n in preset_names():
        h = load_hardware(n)
        rows.append([n, h.num_sms, f"{h.clock_Hz / 1e9:.2f}", f"{h.dram_bw_Bps / 1e12:.2f}", f"{h.l2_bytes / 2**20:.0f}",
                     f"{h.smem_per_block_bytes / 1024:.0f}", f"{h.tensor_flops_per_s('fp16') / 1e12:.0f}",
                     h.description])
    print(_fmt_table(["preset", "SMs", "GHz", "DRAM TB/s", "L2 MiB", "smem/CTA KiB", "fp16 TFLOP/s", "card"], rows))
    print("every figure's source: the [sources] table of memsim/presets/<name>.toml")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m memsim",
        description="memsim: a SimPy model of GPU memory traffic and time for attention schedules "
                    "(naive, FlashAttention-1 loop order, FlashAttention-2) on presets like h100-sxm.",
        epilog=EPILOG_MAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", metavar="{simulate,compare,sweep,presets}")
    sp = sub.add_parser("simulate", help="one case: bytes per level per launch, FLOPs, time",
                        description="Simulate one (problem, schedule) on a hardware preset.",
                        epilog="example: python -m memsim simulate --algorithm flash1 --block-n 128 --seq 2048",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_problem_args(sp)
    _add_schedule_args(sp)
    _add_model_args(sp)
    sp.add_argument("--json", action="store_true", help="print SimResult.to_dict() (plus closed forms) as JSON")
    sp.set_defaults(fn=cmd_simulate)
    cp = sub.add_parser("compare", help="naive vs flash1 vs flash2 side by side (FlashAttention paper, Fig. 2 left)",
                        description="naive vs flash1 vs flash2 on one problem: FLOPs, global GB, DRAM GB, time.",
                        epilog="examples:\n  python -m memsim compare\n"
                               "  python -m memsim compare --seq 1024 --batch 64 --heads 16 --phase both   # GPT-2 medium, "
                               "the paper's Fig. 2 left",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_problem_args(cp)
    _add_schedule_args(cp, algorithm=False)
    for act in cp._actions:  # compare also takes --phase both (forward + backward, as the paper's Fig. 2)
        if act.dest == "phase":
            act.choices = PHASES + ("both",)
            act.help = "fwd, bwd or both (fwd + bwd summed; default fwd)"
    _add_model_args(cp)
    cp.add_argument("--json", action="store_true", help="print the three SimResult dicts as JSON")
    cp.set_defaults(fn=cmd_compare)
    wp = sub.add_parser("sweep", help="sweep seq, head_dim, block_m or block_n; write CSV, JSON and PNG",
                        description="Sweep one parameter for one or more algorithms; writes PREFIX.csv, PREFIX.json "
                                    "and PREFIX.png atomically (never over existing files unless --force). Points "
                                    "whose tiles do not fit the SRAM are recorded as refused.",
                        epilog="examples:\n  python -m memsim sweep --param seq --values 1024,2048,4096,8192 --out sweeps/seq\n"
                               "  python -m memsim sweep --param block_n --values 16,32,64,128,256 --algorithms flash1 "
                               "--out sweeps/flash1_bn   # paper Fig. 2 middle",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    wp.add_argument("--param", required=True, choices=SWEEP_PARAMS, help="what to vary")
    wp.add_argument("--values", required=True, help="comma-separated integers, e.g. 1024,2048,4096")
    wp.add_argument("--algorithms", default="naive,flash1,flash2", help="comma-separated (default all three)")
    wp.add_argument("--out", required=True, help="output prefix: writes PREFIX.csv, PREFIX.json, PREFIX.png")
    wp.add_argument("--force", action="store_true", help="replace existing output files")
    _add_problem_args(wp)
    _add_schedule_args(wp, algorithm=False)
    _add_model_args(wp)
    wp.set_defaults(fn=cmd_sweep)
    pp = sub.add_parser("presets", help="list the hardware presets and their main figures")
    pp.set_defaults(fn=cmd_presets)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not getattr(a, "fn", None):
        ap.print_help()
        return 2
    from .hardware import HardwareError
    from .io import OutputExistsError
    try:
        return a.fn(a)
    except (ScheduleError, HardwareError, OutputExistsError, ValueError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"memsim: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
