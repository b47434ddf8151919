"""How the attention benchmark measures: do_bench medians and peak extra device memory."""
from __future__ import annotations

import time


def bench(fn, args):
    """Median milliseconds of fn() (triton.testing.do_bench); on CPU one untimed + one timed call (smoke)."""
    if args.device == "cpu":
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    import triton
    return triton.testing.do_bench(fn, warmup=args.warmup_ms, rep=args.rep_ms, return_mode="median")


def peak_extra(fn, device):
    """Bytes allocated at peak by fn() beyond what was allocated before it (outputs included)."""
    import torch
    if device == "cpu":
        fn()
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return int(peak)
