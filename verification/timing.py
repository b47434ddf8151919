"""What a pass's measured time is (one home: the case runner writes it, the fidelity report reads old and new
records through it).  No torch, no triton.

A pass is timed two ways in the same process (`verification.caserunner.pass_time`):

* cold: triton.testing.do_bench's median with the L2 cleared before each run -- the GPU time of the pass from a
  cold L2.  For a pass the host launches slower than the GPU runs it, this is the host's time LESS the ~85 us
  L2-clearing memset that runs while the host launches (notes/fidelity.md, fourteenth session, item 8): a small
  difference of two large numbers that swung 2-3x between processes.
* back to back (b2b): the time per pass with nothing in between -- for such a pass, the host's time per pass.
  For a GPU-bound pass it is NOT its cold time: on held-out set X (H100 80GB HBM3, 2026-11-27) back to back ran
  0.1-13 % slower than cold on every GPU-bound pass (e.g. 1009 vs 895 us).  `benchmarks/b2b_cold_gpu.py` (H100,
  07:42 UTC, five suite passes of 0.24-4.4 ms) split it: single passes back to back, each between its own events,
  time as cold (-2.5..+1 %), and do_bench's L2 clear between them changes nothing (<= 0.5 %) -- so neither the L2
  state the previous pass leaves nor the clock under continuous load; the batch's mean is 6-9 % above both, i.e. the
  time between passes inside a batch (the host issuing them), which single-pass events leave out.

and the host floor of its launch path (the same launches on a 1 x 1 x 16 x 16 problem) back to back beside it:
the host's time to issue the pass's launches.  The pass waits for the host when that floor exceeds the GPU's time to
run them (ncu's kernel durations, measured in the ncu passes); then its time is the back-to-back one, else the cold
one.  The floor and the GPU time only classify; the time is always one of the case's own timings.  (A first rule,
the larger of cold and back to back, mismeasured every GPU-bound pass of set X by 0.1-13 %; a second, "the floor
exceeds the cold time", called set X's r26112705_013 GPU-bound -- its cold time is the host's less the memset, 176
us, its kernels 43 us, its floor 155 us.)
"""
from __future__ import annotations

#: what a record's timing says of its time_s
TIME_METHOD = ("the cold-L2 triton.testing.do_bench median (time_cold_s), or the time per pass run back to back "
               "(time_b2b_s) where the host floor beside it (host_pass_b2b_s: the same launches on a tiny problem, "
               "back to back) exceeds the pass's kernel time under ncu -- verification.timing; the case runner "
               "writes the cold median as time_s, the record the pass's time")


def pass_time_s(cold_s: float, b2b_s: float | None, floor_s: float | None, gpu_s: float | None) -> float:
    """The pass's time from its two timings, the host floor beside it and its kernel time (module doc)."""
    if b2b_s is None or floor_s is None or gpu_s is None or floor_s <= gpu_s:
        return cold_s
    return b2b_s


def record_time_s(total: dict) -> float | None:
    """A record total's measured time: by `pass_time_s` where the record has the timings, the floor and ncu's
    kernel time (records since 2026-11-27), else its time_s as measured then (the cold median alone)."""
    cold = total.get("time_cold_s")
    if cold is None or total.get("time_b2b_s") is None or total.get("host_pass_b2b_s") is None:
        return total.get("time_s")
    return pass_time_s(cold, total["time_b2b_s"], total["host_pass_b2b_s"], total.get("ncu_time_s"))
