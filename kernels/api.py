"""Drop-in entry points: `attention` (torch SDPA's call) and `flash_attn_func` (flash-attn's call).

    o = kernels.attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                          enable_gqa=False)                      # q, k, v: (B, H, N, d), like SDPA
    o = kernels.flash_attn_func(q, k, v, softmax_scale=None, causal=False)   # (B, N, H, d), like flash-attn

Both are autograd-enabled and run the project's schedules (`schedule=` picks one; None = the fastest
exact schedules for the device, `default_choice`: this machine's tuning cache (`kernels.autotune`), else the GPU's
committed tuned table `kernels/tuned/<gpu>.json` where it covers the problem, else the registry default of the
fastest algorithm (`fastest_forward_algorithm` / `fastest_backward_algorithm`); on the CPU interpreter flash2.
`kernels.last_schedule()` gives the (forward, backward) Schedules that ran -- `memsim.simulate` takes them --
and `kernels.last_choice()` where each came from).  What the kernels do not compute raises `NotImplementedError` naming
what is supported, before anything launches: `attn_mask` tensors, `dropout_p > 0`, and flash-attn's
sliding windows, ALiBi, softcap and returned probabilities.

Semantics, kept from the originals:
- SDPA: `is_causal` masks top-left (query i sees keys j <= i, also when seq_q != seq_kv); GQA/MQA
  (fewer k/v heads) only with `enable_gqa=True`, else head counts must match; flags are real bools.
  `causal=` is the project's older spelling of `is_causal` and still works.
- flash-attn: causal is aligned bottom-right (the last query sees the last key) when seq_q != seq_kv,
  as flash-attn >= 2.1 does; GQA is implicit (k/v heads divide q heads).

Layout: SDPA takes (batch, heads, seq, head_dim); flash-attn (batch, seq, heads, head_dim).  A 4-D
tensor does not say which it is, so a flash-attn-layout tensor given to `attention` (or the reverse)
can be caught only where it makes the shapes inconsistent: q and k/v "head" counts that differ
without `enable_gqa`, or do not divide with it (that is, different query and key lengths in the
swapped reading).  Those errors name the other entry point.  Self-attention with equal head counts
is valid in both readings and runs: it cannot be told apart from a genuine (B, H, N, d) call by
shape or strides (both layouts are commonly contiguous, and both are common as transposed views).
"""
from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass, replace

import torch

from memsim.schedule import Schedule, ScheduleError, require_bool

from ._common import check_schedule, default_schedule, problem_for

_LAYOUT_HINT = ("attention() takes SDPA's (batch, heads, seq, head_dim) layout; for flash-attn's "
                "(batch, seq, heads, head_dim) use kernels.flash_attn_func or .transpose(1, 2)")


def _check_flag(name: str, value) -> bool:
    return require_bool(name, value)


def _check_scale(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float or None (default 1/sqrt(head_dim)), got {value!r} "
                        f"({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive float or None (default 1/sqrt(head_dim)), got {value!r}")
    return float(value)


def _check_dropout(name: str, p) -> None:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a float in [0, 1], got {p!r}")
    if p > 0:
        raise NotImplementedError(
            f"{name}={p} is not supported: the kernels have no attention dropout; supported: {name}=0.0 "
            f"(e.g. `{name}=p if self.training else 0.0`), or torch SDPA for training with dropout")


def _check_heads(q, k, gqa: bool, hint: str) -> None:
    """SDPA's head rule: equal heads, or (with GQA enabled) k/v heads dividing q heads."""
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (q, k)):
        return  # problem_for() names the bad argument
    hq, hkv = q.shape[1], k.shape[1]
    if not gqa and hq != hkv:
        raise ValueError(f"q has {hq} heads and k/v {hkv} (dim 1 of {tuple(q.shape)} and {tuple(k.shape)}): "
                         f"head counts must match unless enable_gqa=True (then q heads must be a multiple of k/v heads); "
                         f"{hint}")
    if gqa and (hkv == 0 or hq % hkv):
        raise ValueError(f"q has {hq} heads and k/v {hkv} (dim 1 of {tuple(q.shape)} and {tuple(k.shape)}): "
                         f"with GQA the q heads must be a multiple of the k/v heads; {hint}")


#: where the Hopper forward beat flash2 on the H100, same run, every candidate exact first
#: (benchmarks/results/hopper-h100-2026-11-25.md, bf16, B*N = 16k, N 4096 and 16384, causal or not: d=128 1.02-1.36x;
#: at d=64 flash2 was as fast or faster; d=256 and fp32 were not timed).  fp16 runs the same instructions as bf16.
#: Used where the tuned table does not cover the problem (`default_choice`).  Causal from N_q = 4096 on only: at causal
#: N=1024 flash2 was faster (run4, benchmarks/results/hopper-h100-2026-11-26-run4.json, bf16 317 vs 278 TFLOP/s, fp16 301
#: vs 273; spreads <= 4 %); N=4096 hopper (412 vs 378); 2048 was not timed.
HOPPER_FASTEST = {"head_dims": (128,), "dtypes": ("fp16", "bf16"), "min_capability": (9, 0), "causal_min_seq_q": 4096}
#: where the fused-dQ backward (hopper bwd, 64x128 w8 s3) beat flash2 in the same run, on two H100 runs: d=128 causal
#: N=16384 (bf16: 382 vs 360 and 381 vs 360 TFLOP/s, benchmarks/results/hopper-h100-2026-11-26-run{1,2}.json).  Elsewhere
#: it was within +-3 % of flash2 (a tie: flash2 stays, it is deterministic) or slower (d=64, N=4096).
HOPPER_BWD_FASTEST = {"head_dims": (128,), "dtypes": ("fp16", "bf16"), "causal": True, "min_seq_q": 16384}


#: where hopper_ws (a registry entry since session 5: memsim/algorithms_hopper.py) beat what the default ran, on the H100,
#: in the same process, beyond the spreads, in run5 and in the same direction in run4 (bf16; run4 also fp16, which runs
#: the same instructions): benchmarks/results/hopper-h100-2026-11-26-run{4,5}.md, B*N = 16k, H*d = 2048, TFLOP/s as
#: medians of 3 (run5 numbers, spreads in %).  Neither variant was among the committed table's candidates, so these
#: rules are applied after the table (and the registry fallback), never over this machine's own tuning cache
#: (source "rule").
#: forward, the persistent grid (128x128 w4 s2), per (head_dim, causal): the seq_q and seq_kv range it won in --
#:   d=128 non-causal N 1024 / 4096: 531 (1) vs the per-tile grid's 410 (5) / 558 (4) vs 512 (12);
#:   d=64 non-causal N 1024 / 4096: 414 (3) vs flash2 370 (2) / 446 (5) vs 407 (5);
#:   d=128 causal N 4096: 457 (6) vs 417 (6) (run4 437 vs 412, session 3 +11.7 %).
#: Left out: N=16384 (ties: 563 vs 567, 463 vs 440 +-16 %), causal N=1024 and 16384 at d=128 (flash2 / the per-tile
#: grid faster), d=64 causal (flash2 faster).  One CTA per SM of a 132-SM card; contiguous tensors whose lengths the
#: 128-row tiles divide (its 2-D descriptors).
HOPPER_WS_FWD_FASTEST = {"dtypes": ("fp16", "bf16"), "sms": 132,
                         "seq_range": {(128, False): (1024, 4096), (64, False): (1024, 4096), (128, True): (4096, 4096)}}
#: backward, the warp-specialised dK/dV pass + flash2's dQ pass (64x128 w4 s2), per (head_dim, causal): the shortest
#: seq_q and seq_kv it won from --
#:   d=128 N >= 4096: 1.09-1.15x flash2 (412/358, 417/374, causal 349/307, 386/353), and the fused hopper bwd that the
#:   registry rule picks at causal N=16384 ties (386 vs 385); ncu at N=16384: its dK/dV pass keeps the tensor pipe 76 %
#:   busy with 168 registers and no spills (flash2's: 54 %, 255 registers, 109 M spill instructions);
#:   d=128 non-causal N=1024: 339 vs 302 (run4 318 vs 301);
#:   d=64 N >= 4096: 1.05-1.15x, non-causal N=4096 a tie (339 vs 343; run4 1.03x).
#: Left out: d=128 causal N=1024 (a tie: 238 vs 234, run4 0.97x), d=64 N=1024 (0.87-0.94x).  Deterministic (no atomics).
HOPPER_WS_BWD_FASTEST = {"dtypes": ("fp16", "bf16"),
                         "min_seq": {(128, False): 1024, (128, True): 4096, (64, False): 4096, (64, True): 4096}}


#: where hopper_fa3 (session 9: FlashAttention-3's structure in Gluon -- a producer warp, two ping-pong consumer
#: warpgroups; memsim/algorithms_hopper.py) beat what the default ran, on the H100, in the same process, run9b
#: (benchmarks/results/hopper-h100-2026-11-26-run9b.md; B*N = 16k, H*d = 2048, TFLOP/s medians of 2, bf16 / fp16), with
#: the registry's variant (128x128 w4 s2; non-causal: the persistent walk, causal: one CTA per tile) -- per
#: (head_dim, causal), the seq_q and seq_kv range it won in:
#:   d=128 non-causal N 1024 / 4096 / 16384: bf16 592 / 640 / 663 vs the default's 525 (hopper_ws) / 563 (hopper_ws) /
#:     530 (hopper); fp16 572 / 613 / 637 vs 515 / 544 / 545;
#:   d=128 causal N 1024 / 4096 / 16384: bf16 360 / 537 / 629 vs 317 (flash2) / 443 (hopper_ws) / 522 (hopper); fp16
#:     351 / 519 / 611 vs 311 / 415 / 495 (run9a, bf16 alone, agrees: 366 / 532 / 610);
#:   d=64 non-causal N 4096 / 16384: bf16 448 / 463 vs 432 (hopper_ws) / 405 (hopper); fp16 441 / 453 vs 408 / 378;
#:   d=64 causal N 4096 / 16384: bf16 384 / 447 vs 356 (flash2) / 414 (hopper) (fp16 not timed in run9b: same
#:     instructions).
#: Session 10 (run10b, benchmarks/results/hopper-h100-2026-11-26-run10b.md, medians of 4; causal now the persistent
#: walk `fa3_walk`, 9-17 % faster than one CTA per tile at N <= 8192) added:
#:   d=64 non-causal N 1024 / 2048: bf16 413 / 442 vs hopper_ws 416 / 397, fp16 N=1024 415 vs 389;
#:   d=64 causal N 2048: bf16 380 vs flash2 323.
#: Left out: d=64 causal N=1024 (flash2 294 / 291 vs the walk's 285 / 285, run10c; with BLOCK0_UNMASKED 298 vs
#: flash2 296, run10e: a tie).  Contiguous tensors, lengths the 128-row tiles divide (its [B*H*N, d] descriptors;
#: `fa3_applies`), a 132-SM sm_90 card (the persistent grid is 132 CTAs; measured there), Triton with Gluon.  Checked
#: before hopper_ws's.
HOPPER_FA3_FWD_FASTEST = {"dtypes": ("fp16", "bf16"), "sms": 132,
                          "seq_range": {(128, False): (1024, 16384), (128, True): (1024, 16384),
                                        (64, False): (1024, 16384), (64, True): (2048, 16384)}}
#: where hopper_fa3 bwd (session 11: FlashAttention-3's backward structure in Gluon, dQ by TMA reduce-adds; run11d:
#: lse/delta through the stages, `memsim.algorithms_hopper.FA3_BWD_STAT_SMEM`) beat what the default ran, on the H100,
#: in the same process (benchmarks/results/hopper-h100-2026-11-26-run11d.md; B*N = 16k, H*d = 2048, bf16 TFLOP/s of two
#: alternating rounds) -- per (head_dim, causal), the seq_q and seq_kv range it won in:
#:   d=128 non-causal N 1024 / 4096 / 16384: 371/363 / 480/477 / 524/493 vs hopper_ws 330/330 / 418/425 / 425/416;
#:   d=128 causal N 1024 / 4096 / 16384: 256/255 / 396/408 / 500/486 vs flash2 235/233 / hopper_ws 351/348 / 413/404;
#:   d=64 non-causal N 4096 / 16384: 372/372 / 396/396 vs hopper_ws 341/343 / 357/357;
#:   fp16 (one round) the same way: d=128 N=16384 501 vs 437, causal N 1024 / 4096 257 / 394 vs 229 / 336, d=64
#:   N=16384 396 vs 361.  run11e (the rule on the card; d=64 now with the double-buffered dQ staging): d=64 N=16384
#:   445/442 vs hopper_ws 357/353.
#: Session 13 (run13b; d=64 with the double-buffered dQ staging and 128-row Q blocks, the registry's d=64 tiles
#: since): d=64 non-causal N 1024 / 4096 / 16384 355/348 / 460/424 / 434/488 vs flash2 302/295 / hopper_fa3 64-row
#: 418/408 / 446/428; causal N 1024 / 4096 / 16384 231/231 / 371/334 / 453/438 vs flash2 205/207 / hopper_ws 291/306
#: / 345/346 -- the d=64 cells left out before (a tie with 64-row blocks and single-buffered dQ) join.  run13c (the
#: rule and tiles on the card, 3 rounds): the default's medians 349 / 454 / 462, causal 232 / 374 / 450 vs the old
#: default's flash2 300 / hopper_fa3 64-row 411 / 427, causal flash2 208 / hopper_ws 303 / 341 (SDPA cuDNN 345 / 412 /
#: 435, causal 233 / 363 / 428: benchmarks/results/hopper-h100-2026-11-26-run13.md).
#: Session 14 (run15, run16; the d=128 kernel without the per-step lockstep -- memsim.algorithms_hopper
#: FA3_BWD_DQ_LAG, FA3_BWD_DQ_STAGE1 -- the rule's cells unchanged): d=128 N 1024 / 4096 / 16384 382 / 491 / 546,
#: causal 273 / 434 / 534 vs SDPA cuDNN 404 / 518 / 543, causal 286 / 461 / 526 (run16 medians of 3;
#: benchmarks/results/hopper-h100-2026-11-27-run16.md).
#: Not bitwise deterministic (the order of dQ's reduce-adds): never when determinism is asked for.  Contiguous
#: tensors, lengths its tiles divide (`fa3_bwd_applies`), a 132-SM card, Triton with Gluon.
HOPPER_FA3_BWD_FASTEST = {"dtypes": ("fp16", "bf16"), "sms": 132,
                          "seq_range": {(128, False): (1024, 16384), (128, True): (1024, 16384),
                                        (64, False): (1024, 16384), (64, True): (1024, 16384)}}
#: the algorithm each measured rule makes the default
RULE_ALGORITHMS = {"HOPPER_FA3_FWD_FASTEST": "hopper_fa3", "HOPPER_WS_FWD_FASTEST": "hopper_ws",
                   "HOPPER_FA3_BWD_FASTEST": "hopper_fa3", "HOPPER_WS_BWD_FASTEST": "hopper_ws"}


def _fa3_rule(p, q, k, v) -> bool:
    """HOPPER_FA3_FWD_FASTEST applies to this problem and these tensors (2-byte dtypes and TMA layouts checked by the
    caller)."""
    r = HOPPER_FA3_FWD_FASTEST
    lo, hi = r["seq_range"].get((p.head_dim, p.causal), (1, 0))
    if not (p.dtype in r["dtypes"] and lo <= p.seq_q <= hi and lo <= p.seq_kv <= hi and _sm_count(q.device) == r["sms"]
            and all(t.is_contiguous() for t in (q, k, v))):
        return False
    from memsim.algorithms import spec_for
    from memsim.algorithms_hopper import fa3_applies

    from .hopper_gluon import gluon
    s = Schedule("hopper_fa3", "fwd", **spec_for("hopper_fa3", "fwd").default_tiles(p, "gpu"))
    return gluon is not None and fa3_applies(p, s)


def _fa3_bwd_rule(p, q, k, v) -> bool:
    """HOPPER_FA3_BWD_FASTEST applies to this problem and these tensors (2-byte dtypes and TMA layouts checked by the
    caller, determinism too)."""
    r = HOPPER_FA3_BWD_FASTEST
    lo, hi = r["seq_range"].get((p.head_dim, p.causal), (1, 0))
    if not (p.dtype in r["dtypes"] and lo <= p.seq_q <= hi and lo <= p.seq_kv <= hi and _sm_count(q.device) == r["sms"]
            and all(t.is_contiguous() for t in (q, k, v))):
        return False
    from memsim.algorithms import spec_for
    from memsim.algorithms_hopper import fa3_bwd_applies

    from .hopper_gluon import gluon
    s = Schedule("hopper_fa3", "bwd", **spec_for("hopper_fa3", "bwd").default_tiles(p, "gpu"))
    return gluon is not None and fa3_bwd_applies(p, s)


def _sm_count(dev) -> int | None:
    """The GPU's SM count (None off a GPU): the persistent forward's grid is one CTA per SM of a 132-SM card."""
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(dev).multi_processor_count


def measured_rule(problem, phase: str, q, k, v, deterministic: bool = False) -> str | None:
    """The name of the measured rule that makes hopper_fa3 or hopper_ws the default for this problem and these tensors
    ("HOPPER_FA3_FWD_FASTEST", "HOPPER_WS_FWD_FASTEST" / "HOPPER_FA3_BWD_FASTEST", "HOPPER_WS_BWD_FASTEST";
    RULE_ALGORITHMS says which algorithm), or None.  deterministic: no rule whose backward is not bitwise
    deterministic (hopper_fa3 bwd)."""
    p, dev = problem, q.device
    if p.dtype not in ("fp16", "bf16") or not _hopper_capable(dev) or not _tma_ok(q, k, v):
        return None
    if phase == "fwd":
        if _fa3_rule(p, q, k, v):
            return "HOPPER_FA3_FWD_FASTEST"
        r = HOPPER_WS_FWD_FASTEST
        lo, hi = r["seq_range"].get((p.head_dim, p.causal), (1, 0))
        if (p.dtype in r["dtypes"] and lo <= p.seq_q <= hi and lo <= p.seq_kv <= hi
                and _sm_count(dev) == r["sms"] and all(t.is_contiguous() for t in (q, k, v))):
            from memsim.algorithms import spec_for
            from memsim.algorithms_hopper import persistent
            s = Schedule("hopper_ws", "fwd", **spec_for("hopper_ws", "fwd").default_tiles(p, "gpu"))
            if persistent(p, s):
                return "HOPPER_WS_FWD_FASTEST"
        return None
    if not _deterministic_wanted(deterministic) and _fa3_bwd_rule(p, q, k, v):
        return "HOPPER_FA3_BWD_FASTEST"
    r = HOPPER_WS_BWD_FASTEST
    lo = r["min_seq"].get((p.head_dim, p.causal))
    if p.dtype in r["dtypes"] and lo is not None and min(p.seq_q, p.seq_kv) >= lo:
        return "HOPPER_WS_BWD_FASTEST"
    return None


def _tma_ok(q, k, v) -> bool:
    """TMA's layout rules: 16-byte aligned base and strides (hopper fwd's descriptors)."""
    for t in (q, k, v):
        e = t.element_size()
        if t.data_ptr() % 16 or any((t.stride(i) * e) % 16 and t.shape[i] > 1 for i in range(3)):
            return False
    return True


def _hopper_capable(dev) -> bool:
    return (dev.type == "cuda" and torch.cuda.is_available()
            and tuple(torch.cuda.get_device_capability(dev)) >= HOPPER_FASTEST["min_capability"])


def fastest_forward_algorithm(problem, q, k, v) -> str:
    """The registry fallback's forward (where the tuned table does not cover the problem): "hopper" where it was
    measured faster (see HOPPER_FASTEST) and its TMA layout rules hold (16-byte aligned base and strides), else
    "flash2"."""
    if problem.head_dim not in HOPPER_FASTEST["head_dims"] or problem.dtype not in HOPPER_FASTEST["dtypes"]:
        return "flash2"
    if problem.causal and problem.seq_q < HOPPER_FASTEST["causal_min_seq_q"]:
        return "flash2"
    if not _hopper_capable(q.device) or not _tma_ok(q, k, v):
        return "flash2"
    return "hopper"


def _deterministic_wanted(deterministic: bool) -> bool:
    return deterministic or torch.are_deterministic_algorithms_enabled()


def fastest_backward_algorithm(problem, device, deterministic: bool = False) -> str:
    """The registry fallback's backward: "hopper" (dQ by fp32 atomic adds: not bitwise deterministic) where it was
    measured faster (HOPPER_BWD_FASTEST) on a GPU, unless determinism is asked for
    (`torch.use_deterministic_algorithms(True)` or flash_attn_func(deterministic=True)); else "flash2"."""
    r = HOPPER_BWD_FASTEST
    if (device.type != "cuda" or _deterministic_wanted(deterministic) or problem.head_dim not in r["head_dims"]
            or problem.dtype not in r["dtypes"] or problem.causal != r["causal"] or problem.seq_q < r["min_seq_q"]):
        return "flash2"
    return "hopper"


@dataclass(frozen=True)
class DefaultChoice:
    """The (forward, backward) schedules `attention` runs and where each came from: "cache" (this machine's
    tuning cache, `kernels.autotune`), "table" / "table-nearest" (the GPU's committed tuned table: the problem's
    class, or the nearest class inside the span it measured), "registry" (the registry's default of the fastest
    algorithm rule: `fastest_forward_algorithm` / `fastest_backward_algorithm`), "rule" (hopper_ws where it measured
    faster than those: `measured_rule`) or "given" (schedule=...).  `forward_key` / `backward_key` name the cache or
    table entry, or the rule (None for registry / given)."""

    forward: Schedule
    backward: Schedule
    forward_source: str
    backward_source: str
    forward_key: str | None = None
    backward_key: str | None = None

    @property
    def schedules(self) -> tuple:
        return (self.forward, self.backward)


def _tuned_ok(problem, s: Schedule, q, k, v, phase: str, deterministic: bool) -> bool:
    """A tuned schedule is used only where it runs and stays exact on these tensors: it fits the device, hopper's
    forward has sm_90 and its TMA layout, and an atomics backward is not used when determinism is asked for."""
    try:
        check_schedule(problem, s, q.device, phase)
    except ScheduleError:
        return False
    if s.algorithm in ("hopper", "hopper_ws") and not (_hopper_capable(q.device) and _tma_ok(q, k, v)):
        return False
    if s.algorithm == "hopper_ws" and phase == "fwd" and not all(t.is_contiguous() for t in (q, k, v)):
        return False
    if s.algorithm == "hopper" and phase == "bwd" and _deterministic_wanted(deterministic):
        return False
    return True


def _gpu_of(dev) -> str | None:
    """The GPU name the tuning cache and tables are keyed by, or None off a GPU (the interpreter)."""
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(dev)


def _registry_device(dev):
    """The device whose registry defaults apply (the tensors' own; a hook for the CPU tests)."""
    return dev


def default_choice(problem, q, k, v, *, deterministic: bool = False) -> DefaultChoice:
    """The fastest exact schedules for this device and problem, without running anything.

    On a GPU: the tuning cache, else the GPU's committed tuned table (kernels/tuned/<gpu>.json: the exact problem
    class, or the nearest class when the problem lies inside the span the table measured), per phase, where the
    schedule runs on these tensors (`_tuned_ok`); else the registry default of the fastest algorithm; then, unless the
    cache answered, hopper_fa3's or hopper_ws's registry default where a measured rule says it is faster
    (`measured_rule`).  On the CPU interpreter: the registry's interpreter defaults of flash2 (the interpreter-tested
    reference)."""
    from .autotune import DEFAULT_ALGORITHMS, default_lookup
    dev = q.device
    gpu = _gpu_of(dev)
    picked = {}
    for phase in ("fwd", "bwd"):
        hit = None
        if gpu is not None:
            import triton
            algs = tuple(a for a in DEFAULT_ALGORITHMS[phase] if not (
                phase == "bwd" and a == "hopper" and _deterministic_wanted(deterministic)))
            hit = default_lookup(problem, phase, algs, gpu=gpu, versions=(torch.__version__, triton.__version__))
            if hit is not None and not _tuned_ok(problem, hit.schedule, q, k, v, phase, deterministic):
                hit = None
        rdev = _registry_device(dev)
        if hit is not None:
            picked[phase] = (hit.schedule, hit.source, hit.key)
        elif rdev.type != "cuda":
            picked[phase] = (default_schedule(problem, "flash2", phase, rdev), "registry", None)
        else:
            alg = (fastest_forward_algorithm(problem, q, k, v) if phase == "fwd"
                   else fastest_backward_algorithm(problem, rdev, deterministic))
            picked[phase] = (default_schedule(problem, alg, phase, rdev), "registry", None)
        rule = measured_rule(problem, phase, q, k, v, deterministic) if picked[phase][1] != "cache" else None
        if rule is not None:  # hopper_fa3 / hopper_ws where it measured faster than what the table / registry pick ran
            picked[phase] = (default_schedule(problem, RULE_ALGORITHMS[rule], phase, rdev), "rule", rule)
    (fs, fsrc, fkey), (bs, bsrc, bkey) = picked["fwd"], picked["bwd"]
    return DefaultChoice(fs, bs, fsrc, bsrc, fkey, bkey)


_LAST = threading.local()


def last_schedule():
    """The (forward, backward) Schedules the last `attention` / `flash_attn_func` call of this thread ran
    (None before any): what the default picked, to print, reuse (`schedule=`) or simulate with memsim
    (`memsim.simulate(problem, last_schedule()[0], memsim.load_hardware("h100-sxm"))`)."""
    c = getattr(_LAST, "choice", None)
    return c.schedules if c is not None else None


def last_choice():
    """The `DefaultChoice` of the last `attention` / `flash_attn_func` call of this thread (None before any): the
    schedules with where each came from (cache, table, table-nearest, registry, given)."""
    return getattr(_LAST, "choice", None)


def _schedules(problem, schedule, device, q=None, k=None, v=None, deterministic: bool = False) -> DefaultChoice:
    """The DefaultChoice for schedule=None, a Schedule, or a (fwd, bwd) pair."""
    if schedule is None:
        if q is None:
            return DefaultChoice(default_schedule(problem, "flash2", "fwd", device),
                                 default_schedule(problem, "flash2", "bwd", device), "registry", "registry")
        return default_choice(problem, q, k, v, deterministic=deterministic)
    if isinstance(schedule, (tuple, list)):
        if len(schedule) != 2:
            raise ValueError("schedule must be a Schedule or a (forward, backward) pair of Schedules")
        return DefaultChoice(schedule[0], schedule[1], "given", "given")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a memsim.schedule.Schedule, got {type(schedule).__name__}")
    if schedule.phase == "bwd":
        return DefaultChoice(default_schedule(problem, "flash2" if schedule.algorithm != "naive" else "naive", "fwd",
                                              device), schedule, "registry", "given")
    if schedule.algorithm == "naive":
        bwd = replace(default_schedule(problem, "naive", "bwd", device), sp_dtype=schedule.sp_dtype)
    else:
        bwd = default_schedule(problem, "flash2", "bwd", device)
    return DefaultChoice(schedule, bwd, "given", "registry")


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, problem, fwd_schedule, bwd_schedule):
        from . import forward
        res = forward(problem, fwd_schedule, q, k, v)
        ctx.problem, ctx.bwd_schedule, ctx.fwd_schedule = problem, bwd_schedule, fwd_schedule
        extra = res.saved.get("P") if res.lse is None else res.lse
        ctx.save_for_backward(q, k, v, res.o, extra)
        return res.o

    @staticmethod
    def backward(ctx, do):
        from . import ForwardResult, backward
        q, k, v, o, extra = ctx.saved_tensors
        if do.stride(-1) != 1:
            do = do.contiguous()  # the incoming gradient, not an input: a copy here is harmless
        saved = {"lse": extra} if ctx.fwd_schedule.algorithm != "naive" else {"P": extra}
        fwd = ForwardResult(o, saved.get("lse"), saved, ctx.fwd_schedule)
        dq, dk, dv = backward(ctx.problem, ctx.bwd_schedule, q, k, v, o, do, fwd)
        return dq, dk, dv, None, None, None


def _run(q, k, v, causal: bool, scale, align: str, schedule, deterministic: bool = False):
    problem = problem_for(q, k, v, causal=causal, scale=scale, causal_align=align)
    choice = _schedules(problem, schedule, q.device, q, k, v, deterministic)
    fwd_s, bwd_s = choice.schedules
    check_schedule(problem, fwd_s, q.device, "fwd")
    if any(t.requires_grad for t in (q, k, v)) and torch.is_grad_enabled():
        check_schedule(problem, bwd_s, q.device, "bwd")
        if (fwd_s.algorithm == "naive") != (bwd_s.algorithm == "naive"):
            raise ScheduleError("a naive forward pairs with a naive backward (it keeps P, not the logsumexp), "
                                "and a flash forward with a flash2 backward")
    _LAST.choice = choice
    return _Attention.apply(q, k, v, problem, fwd_s, bwd_s)


def attention(q, k, v, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False, scale=None,
              enable_gqa: bool = False, *, schedule=None, causal: bool | None = None,
              causal_align: str = "top_left"):
    """softmax(scale * q k^T [causal]) v for (B, H, N, d) tensors: torch SDPA's call, autograd-enabled.

    attn_mask: None only (a causal mask: is_causal=True).  dropout_p: 0.0 only.  scale: None =
    1/sqrt(head_dim).  enable_gqa: allow fewer k/v heads (dividing the q heads), as SDPA.
    schedule: None (a default for the device and problem), a forward Schedule (the backward gets a
    default flash2 or naive one), or a (forward, backward) pair.  causal: alias of is_causal.
    causal_align: "top_left" (SDPA's is_causal) or "bottom_right" (flash-attn's) when seq_q != seq_kv."""
    if attn_mask is not None:
        raise NotImplementedError(
            f"attn_mask ({type(attn_mask).__name__}) is not supported: the kernels take no mask tensor; "
            f"supported: attn_mask=None with is_causal=True for a causal mask (top-left; "
            f"causal_align='bottom_right' for flash-attn's), or torch SDPA for arbitrary masks")
    _check_dropout("dropout_p", dropout_p)
    is_causal = _check_flag("is_causal", is_causal)
    if causal is not None:
        causal = _check_flag("causal", causal)
        if is_causal and not causal:
            raise ValueError("is_causal=True and causal=False contradict each other; pass one of them")
        is_causal = causal
    enable_gqa = _check_flag("enable_gqa", enable_gqa)
    scale = _check_scale("scale", scale)
    _check_heads(q, k, enable_gqa, _LAYOUT_HINT)
    return _run(q, k, v, is_causal, scale, causal_align, schedule)


def flash_attn_func(q, k, v, dropout_p: float = 0.0, softmax_scale=None, causal: bool = False, *,
                    window_size=(-1, -1), softcap: float = 0.0, alibi_slopes=None, deterministic: bool = False,
                    return_attn_probs: bool = False, schedule=None):
    """flash-attn's `flash_attn_func` on (batch, seq, heads, head_dim) tensors, autograd-enabled.

    Returns o in the same (B, N, H, d) layout (a transposed view of a (B, H, N, d) result: same values;
    `.contiguous()` if you need flash-attn's contiguous memory).  causal is bottom-right aligned when
    seq_q != seq_kv, like flash-attn; GQA/MQA is implicit.  Supported: dropout_p=0.0, no window, no
    softcap, no ALiBi, no returned probabilities.  deterministic=True keeps the backward bitwise
    reproducible (flash2's; the default may pick hopper's, whose dQ sums by atomic adds in no fixed order)."""
    _check_dropout("dropout_p", dropout_p)
    causal = _check_flag("causal", causal)
    deterministic = _check_flag("deterministic", deterministic)
    _check_flag("return_attn_probs", return_attn_probs)
    softmax_scale = _check_scale("softmax_scale", softmax_scale)
    if not isinstance(window_size, (tuple, list)) or len(window_size) != 2:
        raise TypeError(f"window_size must be a (left, right) pair like flash-attn's, got {window_size!r}; "
                        f"supported: (-1, -1) (no window)")
    if tuple(window_size) != (-1, -1):
        raise NotImplementedError(f"window_size={window_size} (sliding-window attention) is not supported; "
                                  f"supported: window_size=(-1, -1) with causal True or False")
    if softcap != 0.0:
        raise NotImplementedError(f"softcap={softcap} is not supported; supported: softcap=0.0")
    if alibi_slopes is not None:
        raise NotImplementedError("alibi_slopes is not supported; supported: alibi_slopes=None")
    if return_attn_probs:
        raise NotImplementedError("return_attn_probs=True is not supported (the kernels never form P); "
                                  "supported: return_attn_probs=False")
    t = []
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a 4-D (batch, seq, heads, head_dim) tensor like flash-attn's, "
                             f"got {shape}")
        t.append(x.transpose(1, 2))
    _check_heads(t[0], t[1], True, "flash_attn_func takes flash-attn's (batch, seq, heads, head_dim) layout; "
                                   "for SDPA's (batch, heads, seq, head_dim) use kernels.attention")
    o = _run(*t, causal, softmax_scale, "bottom_right", schedule, deterministic)
    return o.transpose(1, 2)
