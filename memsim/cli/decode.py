"""The decode study (issue 12): KV read bandwidth against context and batch, one split vs the model's split
choice, contiguous vs paged, on any preset; `--explain` ranks split counts."""
from __future__ import annotations

import json

from . import common as C

NAME = "decode"
SUMMARY = "decode study: KV read bandwidth vs context and batch, split choice, paged cache"
#: values that may start with '-' (a negative entry reaches the one-line check instead of argparse's
#: "expected one argument")
DASH_VALUE_OPTIONS = ("--batches", "--contexts", "--pages")


def add_arguments(p) -> None:
    p.add_argument("--hw", default="h100-sxm", help="preset name or .toml path (default h100-sxm)")
    p.add_argument("--batches", default="1,8,64", help="comma-separated batch sizes (default 1,8,64)")
    p.add_argument("--contexts", default="1024,8192,32768,131072",
                   help="comma-separated context lengths (default 1024,8192,32768,131072)")
    p.add_argument("--heads", "--heads-q", dest="heads_q", type=int, default=32,
                   help="query heads (--heads as in every other command; --heads-q kept)")
    p.add_argument("--heads-kv", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--dtype", default="bf16", choices=("fp16", "bf16", "fp32"))
    p.add_argument("--pages", default="16", help="comma-separated page sizes compared with the contiguous cache "
                                                 "(default 16)")
    p.add_argument("--explain", default=None, metavar="BxN",
                   help="rank every split count for one shape (e.g. 1x8192) and say why the best wins")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def _explain_shape(text: str) -> tuple[int, int]:
    """'1x8192' -> (1, 8192); ScheduleError naming --explain otherwise."""
    from ..schedule import ScheduleError
    parts = text.lower().split("x")
    try:
        B, N = (int(x) for x in parts)
    except ValueError:
        raise ScheduleError(f"--explain must be BATCHxCONTEXT, e.g. --explain 1x8192, got {text!r}") from None
    if B <= 0 or N <= 0:
        raise ScheduleError(f"--explain needs a positive batch and context, e.g. --explain 1x8192, got {text!r}")
    return B, N


def run(a) -> int:
    from dataclasses import replace

    from ..inference import DecodeProblem, DecodeSchedule
    from ..workloads_decode import choose_num_splits, rank_num_splits, simulate_decode
    s0 = DecodeSchedule()

    def prob(B, N, page=None):
        return DecodeProblem.uniform(B, a.heads_q, a.heads_kv, a.head_dim, N, dtype=a.dtype, page_size=page)

    batches, contexts = C.positive_ints(a.batches, "--batches"), C.positive_ints(a.contexts, "--contexts")
    pages = C.positive_ints(a.pages, "--pages")
    if a.explain is not None:
        B, N = _explain_shape(a.explain)
        p = prob(B, N)
        ranked = rank_num_splits(p, s0, a.hw)
        rows = [[c, f"{t * 1e6:.1f}", r["kernels"][0]["num_ctas"], f"{p.kv_bytes() / t / 1e12:.2f}",
                 f"{(r['kernels'][1]['time_s'] * 1e6) if len(r['kernels']) > 1 else 0:.1f}"] for c, t, r in ranked]
        print(C.fmt_table(["splits", "predicted us", "split CTAs", "KV TB/s", "combine us"], rows))
        print(choose_num_splits(p, s0, a.hw)[1])
        return 0
    out = []
    for B in batches:
        for N in contexts:
            p = prob(B, N)
            c, why = choose_num_splits(p, s0, a.hw)
            one = simulate_decode(p, s0, a.hw, flush_l2=False)["total"]
            best = simulate_decode(p, replace(s0, num_splits=c), a.hw, flush_l2=False)["total"]
            row = {"batch": B, "context": N, "kv_MB": p.kv_bytes() / 1e6, "splits": c,
                   "one_split_TBps": one["kv_read_Bps"] / 1e12, "auto_TBps": best["kv_read_Bps"] / 1e12,
                   "auto_us": best["gpu_time_s"] * 1e6, "why": why}
            for ps in pages:
                pp = prob(B, N, ps)
                cp, _ = choose_num_splits(pp, s0, a.hw)
                tp = simulate_decode(pp, replace(s0, num_splits=cp), a.hw, flush_l2=False)["total"]
                row[f"paged{ps}_TBps"], row[f"paged{ps}_splits"] = tp["kv_read_Bps"] / 1e12, cp
            out.append(row)
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    heads = ["B", "context", "KV MB", "1 split TB/s", "auto TB/s", "splits"] + [f"paged{ps} TB/s (splits)" for ps in pages]
    rows = [[r["batch"], r["context"], f"{r['kv_MB']:.0f}", f"{r['one_split_TBps']:.2f}", f"{r['auto_TBps']:.2f}",
             r["splits"]] + [f"{r[f'paged{ps}_TBps']:.2f} ({r[f'paged{ps}_splits']})" for ps in pages] for r in out]
    print(C.fmt_table(heads, rows))
    print("predicted GPU time (kernels back to back, L2 not flushed); paged without page_prefetch; "
          "`--explain BxN` ranks the split counts of one shape")
    return 0
