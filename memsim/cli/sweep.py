"""Sweep one parameter for one or more algorithms; writes PREFIX.csv, PREFIX.json and PREFIX.png atomically
(never over existing files unless --force). Points whose tiles do not fit the SRAM are recorded as refused."""
# The arguments become a `memsim.sweep.SweepSpec` (`sweep_spec`); the engine (`memsim.sweep.run_sweep`: streaming,
# resume, local or Dask workers) runs and publishes it.
from __future__ import annotations

from ..schedule import ALGORITHMS, ScheduleError
from . import common as C

NAME = "sweep"
SUMMARY = "sweep seq, head_dim, block_m or block_n; write CSV, JSON and PNG"
EPILOG = ("examples:\n  python -m memsim sweep --param seq --values 1024,2048,4096,8192 --out sweeps/seq\n"
          "  python -m memsim sweep --param block_n --values 16,32,64,128,256 --algorithms flash1 --out "
          "sweeps/flash1_bn   # paper Fig. 2 middle")
#: options whose value may start with '-' (so `--values -64,0,64` reaches the check below)
DASH_VALUE_OPTIONS = ("--values", "--axis")
PARAMS = ("seq", "head_dim", "block_m", "block_n")


def add_arguments(p) -> None:
    p.add_argument("--param", choices=PARAMS, help="what to vary (or give --axis)")
    p.add_argument("--values", help="comma-separated integers for --param, e.g. 1024,2048,4096")
    p.add_argument("--axis", action="append", default=[], metavar="NAME=V1,V2",
                    help="another axis (repeatable): any hardware key (l2_bytes, smem_per_sm_bytes, dram_bw_Bps, "
                         "...), problem or schedule field, e.g. --axis l2_bytes=26214400,52428800")
    p.add_argument("--backend", choices=("local", "dask"), default="local",
                    help="local processes (default) or Dask (the cluster extra)")
    p.add_argument("--address", "--scheduler", dest="scheduler", default=None, metavar="ADDRESS",
                    help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: start a local cluster; "
                         "alias --scheduler)")
    p.add_argument("--workers", type=int, default=None, help="processes / local Dask workers (default: CPU count)")
    p.add_argument("--resume", action="store_true",
                    help="continue an interrupted sweep from PREFIX.partial.jsonl (finished points are kept)")
    p.add_argument("--algorithms", "--algorithm", "--alg", "-a", dest="algorithms", default="naive,flash1,flash2",
                    help="comma-separated (default all three; aliases --algorithm, --alg as in simulate and kernels)")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.csv, PREFIX.json, PREFIX.png")
    p.add_argument("--force", action="store_true", help="replace an existing set (and restart an unfinished one)")
    C.add_all_args(p, algorithm=False)


def parse_algorithms(text: str) -> list[str]:
    algs = [x.strip() for x in text.split(",") if x.strip()]
    for x in algs:
        if x not in ALGORITHMS:
            raise ScheduleError(f"unknown algorithm {x!r} in --algorithms; choose from {', '.join(ALGORITHMS)}")
    if not algs:
        raise ScheduleError(f"--algorithms is empty; choose from {', '.join(ALGORITHMS)}")
    return algs


def _axis_value(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def sweep_spec(a):
    """The memsim.sweep.SweepSpec of the arguments: the problem/schedule options as the base, then
    --param/--values, the --axis options, and the algorithms (fastest)."""
    from ..sweep import SweepSpec
    if not a.param and not a.axis:
        raise ScheduleError("give --param and --values, or at least one --axis NAME=V1,V2")
    if bool(a.param) != bool(a.values):
        raise ScheduleError("--param and --values go together")
    C.resolve_shape(a)
    base = {"batch": a.batch, "heads": a.heads, "seq": a.seq, "head_dim": a.head_dim, "dtype": a.dtype,
            "causal": a.causal, "phase": a.phase, "block_m": a.block_m,
            "block_n": a.block_n, "num_warps": a.num_warps, "num_stages": a.num_stages,
            "grid_order": a.grid_order, "sp_dtype": a.sp_dtype}
    if a.heads_kv is not None:
        base["heads_kv"] = a.heads_kv
    if a.seq_kv is not None:
        base["seq_kv"] = a.seq_kv
    axes = {a.param: C.positive_ints(a.values, "--values")} if a.param else {}
    for text in a.axis:
        name, eq, vals = text.partition("=")
        if not eq or not name.strip() or not vals.strip():
            raise ScheduleError(f"--axis must be NAME=V1,V2,..., got {text!r}")
        if name.strip() in axes or name.strip() == "algorithm":
            raise ScheduleError(f"axis {name.strip()!r} is given twice (algorithms come from --algorithms)")
        axes[name.strip()] = [_axis_value(v.strip()) for v in vals.split(",") if v.strip()]
    base["causal_align"] = C.causal_align(a, causal_axis="causal" in axes)
    axes["algorithm"] = parse_algorithms(a.algorithms)
    C.refuse_sp_dtype_without_naive(a, axes["algorithm"], "add naive to --algorithms")  # naive points only
    options = {"grain": a.grain, "run_blocks": a.run_blocks, "flush_l2": not a.no_flush_l2}
    return SweepSpec(axes=axes, base=base, hardware=a.hw, options=options)


def _png(rows, spec, a):
    from ..plots import png_bytes, sweep_figure
    names = [n for n in spec.axes if n != "algorithm"]
    x, others = names[0], names[1:]
    first = {n: spec.axes[n][0] for n in others}
    shown = [r for r in rows if all(r.get(n) == v for n, v in first.items())]
    at = "".join(f", {n}={v}" for n, v in first.items())
    n = "" if "seq" in spec.axes else f" N={a.seq}"
    title = f"memsim sweep on {spec.hardware}: {a.phase}, B={a.batch} H={a.heads} d={a.head_dim}{n} {a.dtype}{at}"
    return png_bytes(sweep_figure(shown, x=x, hue="algorithm", title=title))


def run(a) -> int:
    from ..io import base_provenance
    from ..sweep import run_sweep
    spec = sweep_spec(a)
    if a.workers is not None and a.workers < 1:  # refused before the journal is opened (it would be left behind)
        raise ScheduleError(f"--workers must be a positive number of processes, got {a.workers}")
    try:
        result = run_sweep(spec, a.out, backend=a.backend, workers=a.workers, scheduler=a.scheduler,
                           resume=a.resume, force=a.force, extra_files=lambda rows: {"png": _png(rows, spec, a)},
                           provenance=base_provenance())
    except ImportError as e:  # the dask backend without the cluster extra
        raise ScheduleError(str(e)) from None
    c = result.counts()
    names = ", ".join(str(p) for p in result.files.values())
    print(f"{c['ok']}/{len(result.rows)} points simulated ({c['refused']} refused, {c['error']} errors"
          f"{f', {result.resumed_points} from the journal' if result.resumed_points else ''}); wrote {names}")
    bad = [r for r in result.rows if r["status"] != "ok"]
    for row in bad[:10]:
        where = " ".join(f"{n}={row[n]}" for n in spec.axes)
        print(f"  {row['status']} {where}: {row['error']}")
    if len(bad) > 10:
        print(f"  ... and {len(bad) - 10} more (see the status and error columns)")
    return 0
