"""What the memsim subcommands share: the problem/schedule/model options, building the objects
from them, running the model, and the plain-text table."""
from __future__ import annotations

import argparse

from ..schedule import (ALGORITHMS, CAUSAL_ALIGNMENTS, DTYPE_BYTES, GRID_ORDERS, PHASES, AttentionProblem,
                        Schedule, ScheduleError)

GB = 1e9
RAW = argparse.RawDescriptionHelpFormatter


# --- the problem's shape: one vocabulary for memsim, kernels (and the verification cases' fields) --------
#: (dest, option strings, help, default) of the six shape flags; --heads-q / --seq-q are the
#: AttentionProblem field names, kept as aliases
SHAPE_FLAGS = (
    ("batch", ("--batch", "-B"), "batch size", 4),
    ("heads", ("--heads", "--heads-q", "-H"), "query heads", 16),
    ("heads_kv", ("--heads-kv",), "key/value heads for GQA/MQA", None),
    ("seq", ("--seq", "--seq-q", "-N"), "query sequence length", 4096),
    ("seq_kv", ("--seq-kv",), "key/value sequence length", None),
    ("head_dim", ("--head-dim", "-d"), "head dimension", 64),
)
SHAPE_FIELDS = "B,Hq,Hkv,Nq,Nkv,d"
DEFAULT_SHAPE = {dest: default for dest, _, _, default in SHAPE_FLAGS}


class _Given(argparse.Action):
    """Stores the value and notes that the flag was given (so --shape can refuse a second spelling)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        given = getattr(namespace, "shape_flags_given", None) or []
        setattr(namespace, "shape_flags_given", [*given, option_string])


def add_shape_args(g) -> None:
    """--batch/--heads/--heads-kv/--seq/--seq-kv/--head-dim, or all six at once as --shape B,Hq,Hkv,Nq,Nkv,d
    (kernels' spelling); `resolve_shape(a)` turns either into the six fields."""
    for dest, flags, text, default in SHAPE_FLAGS:
        dflt = {"heads_kv": "--heads", "seq_kv": "--seq"}.get(dest, default)
        aliases = [f for f in flags[1:] if f.startswith("--")]
        g.add_argument(*flags, dest=dest, type=int, default=None, action=_Given,
                       help=f"{text} (default {dflt}" + (f"; alias {', '.join(aliases)})" if aliases else ")"))
    g.add_argument("--shape", default=None, metavar=SHAPE_FIELDS,
                   help=f"all six at once, comma-separated {SHAPE_FIELDS} (instead of the six flags above)")


def parse_shape(text: str) -> dict:
    parts = str(text).split(",")
    try:
        vals = [int(x) for x in parts]
    except ValueError:
        vals = []
    if len(parts) != 6 or len(vals) != 6:
        from .errors import UsageError
        raise UsageError(f"--shape must be six comma-separated integers {SHAPE_FIELDS}, got {text!r}")
    return dict(zip(("batch", "heads", "heads_kv", "seq", "seq_kv", "head_dim"), vals))


def resolve_shape(a, *, required: bool = False) -> None:
    """Fill a.batch .. a.head_dim from --shape or the six flags (defaults for the ones not given; heads_kv and
    seq_kv stay None = same as heads / seq).  --shape together with any of the six flags is refused;
    `required`: refuse when the problem is given neither way (kernels, whose --shape was required)."""
    from .errors import UsageError
    given = getattr(a, "shape_flags_given", None) or []
    if getattr(a, "shape", None) is not None:
        if given:
            raise UsageError(f"--shape gives all six sizes; drop {', '.join(given)} (or drop --shape and give "
                             f"--batch/--heads/--heads-kv/--seq/--seq-kv/--head-dim)")
        for k, v in parse_shape(a.shape).items():
            setattr(a, k, v)
        a.shape = None
        a.shape_flags_given = ["--shape"]
        return
    if required and not given:
        raise UsageError(f"give the problem: --batch B --heads H --seq N --head-dim d (and --heads-kv, --seq-kv), "
                         f"or --shape {SHAPE_FIELDS}")
    for k, v in DEFAULT_SHAPE.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)


def add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem (softmax(scale*QK^T)V on (batch, heads, seq, head_dim) tensors)")
    add_shape_args(g)
    g.add_argument("--dtype", choices=tuple(DTYPE_BYTES), default="fp16", help="element type (default fp16)")
    g.add_argument("--causal", action="store_true", help="causal mask (fully masked tiles are skipped by flash)")
    g.add_argument("--causal-align", "--align", choices=CAUSAL_ALIGNMENTS, default=None, dest="causal_align",
                   help="causal alignment when seq != seq-kv (with --causal; default top_left, like SDPA is_causal; "
                        "alias --align)")


def add_schedule_args(p: argparse.ArgumentParser, algorithm: bool = True) -> None:
    g = p.add_argument_group("schedule (how the kernels run it)")
    if algorithm:
        g.add_argument("--algorithm", "--alg", "-a", choices=ALGORITHMS, default="flash2", dest="algorithm",
                       help="naive (S, P in HBM), flash1 (2022 loop order), flash2 (default) (alias --alg)")
    g.add_argument("--phase", choices=PHASES, default="fwd", help="forward or backward pass (default fwd)")
    g.add_argument("--block-m", type=int, default=128, help="Q rows per tile (power of two >= 16, default 128)")
    g.add_argument("--block-n", type=int, default=64, help="K/V rows per tile (power of two >= 16, default 64)")
    g.add_argument("--num-warps", type=int, default=4, help="warps per CTA (default 4)")
    g.add_argument("--num-stages", type=int, default=2, help="pipeline stages: 1 = no load/compute overlap (default 2)")
    g.add_argument("--grid-order", choices=GRID_ORDERS, default="q_fastest",
                   help="which grid axis varies fastest: Q blocks of a head (default) or heads")
    g.add_argument("--sp-dtype", choices=tuple(DTYPE_BYTES), default=None,
                   help="element type of naive's S and P in HBM (default: the problem dtype)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--hw", default="h100-sxm", help="hardware preset name or .toml path (default h100-sxm)")
    g.add_argument("--grain", choices=("auto", "tile", "run", "cta"), default="auto",
                   help="events per tile, per run of tiles, or per CTA loop; bytes are exact at every grain "
                        "(default auto: tile for small cases, run for big ones, coarser -- longer runs, CTA "
                        "batches, folded heads -- where that is estimated over 1 s; see memsim/grain.py)")
    g.add_argument("--run-blocks", type=int, default=None, help="tiles per event at --grain run (default 16)")
    g.add_argument("--ctas-per-event", type=int, default=None,
                   help="consecutive CTAs walked as one event, steps merged (default: auto's choice, else 1)")
    g.add_argument("--heads-per-event", type=int, default=None,
                   help="identical heads one simulated CTA stands for; divides batch*heads-kv (default: auto's "
                        "choice, else 1)")
    g.add_argument("--allow-slow", action="store_true",
                   help="simulate even when the estimate is over 10 s of CPU: the coarsest grain's, or that of "
                        "the grain asked for with --grain/--run-blocks/--ctas-per-event/--heads-per-event "
                        "(default: refuse, with the estimate)")
    g.add_argument("--no-flush-l2", action="store_true",
                   help="keep L2 contents between launches (default: flush before each launch, as ncu does)")


def add_all_args(p: argparse.ArgumentParser, algorithm: bool = True) -> None:
    add_problem_args(p)
    add_schedule_args(p, algorithm)
    add_model_args(p)


def positive_ints(text: str, option: str) -> list[int]:
    """'1024,2048' -> [1024, 2048] for a comma-separated option; ScheduleError (one line, naming the
    option) for a non-integer, an empty list or a value <= 0.  Empty entries ('1,,2', '1,') are skipped."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ScheduleError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ScheduleError(f"{option} is empty; give comma-separated positive integers, e.g. {option} 1,8")
    bad = [v for v in values if v <= 0]
    if bad:
        raise ScheduleError(f"{option} must be positive integers; {', '.join(map(str, bad))} "
                            f"{'is' if len(bad) == 1 else 'are'} not")
    return values


def causal_align(a, causal_axis: bool = False) -> str:
    """--causal-align's value (default top_left); refused without --causal (or a causal sweep axis), where it
    would be silently ignored."""
    if a.causal_align is not None and not a.causal and not causal_axis:
        raise ScheduleError(f"--causal-align {a.causal_align} sets where a causal mask starts; add --causal, or "
                            f"drop --causal-align (a full mask has no alignment)")
    return a.causal_align or "top_left"


def problem(a) -> AttentionProblem:
    # an explicit 0 is the user's value (and refused by AttentionProblem), never "the default"
    resolve_shape(a)
    return AttentionProblem(batch=a.batch, heads_q=a.heads, heads_kv=a.heads if a.heads_kv is None else a.heads_kv,
                            seq_q=a.seq, seq_kv=a.seq if a.seq_kv is None else a.seq_kv, head_dim=a.head_dim,
                            dtype=a.dtype, causal=a.causal, causal_align=causal_align(a))


def schedule(a, algorithm=None) -> Schedule:
    """The schedule of the options; --sp-dtype (naive's S and P in HBM) goes to naive only."""
    alg = algorithm or a.algorithm
    return Schedule(algorithm=alg, phase=a.phase, block_m=a.block_m, block_n=a.block_n, num_warps=a.num_warps,
                    num_stages=a.num_stages, grid_order=a.grid_order, sp_dtype=a.sp_dtype if alg == "naive" else None)


def refuse_sp_dtype_without_naive(a, algorithms, hint: str = "use --algorithm naive") -> None:
    """--sp-dtype given but no naive algorithm to apply it to: refused, never silently ignored."""
    if a.sp_dtype is not None and "naive" not in algorithms:
        from ..schedule import ScheduleError
        raise ScheduleError(f"--sp-dtype sets naive's S and P element type; {', '.join(algorithms)} keep S and P "
                            f"on chip (drop --sp-dtype or {hint})")


def simulate(a, problem, schedule, hw):
    from ..grain import SLOW_LIMIT_S, stderr_progress
    from ..sim import simulate as _simulate
    # runs estimated over 2 s report progress on stderr (memsim.grain.PROGRESS_AFTER_S)
    return _simulate(problem, schedule, hw, grain=a.grain, run_blocks=a.run_blocks, flush_l2=not a.no_flush_l2,
                     ctas_per_event=getattr(a, "ctas_per_event", None),
                     heads_per_event=getattr(a, "heads_per_event", None), progress=stderr_progress("memsim"),
                     max_seconds=None if getattr(a, "allow_slow", False) else SLOW_LIMIT_S)


def fmt_table(headers, rows) -> str:
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(headers), line(["-" * x for x in w]), *map(line, rows)])


def describe(problem, hw) -> str:
    p = problem
    gqa = f" (kv heads {p.heads_kv})" if p.heads_kv != p.heads_q else ""
    sk = f", seq_kv={p.seq_kv}" if p.seq_kv != p.seq_q else ""
    return (f"{hw.name} ({hw.description}); B={p.batch} H={p.heads_q}{gqa} N={p.seq_q}{sk} d={p.head_dim} "
            f"{p.dtype}{' causal ' + p.causal_align if p.causal else ''}")
