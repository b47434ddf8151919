"""Why a GPU-bound pass runs slower back to back than from a cold L2 (notes/fidelity.md, fifteenth session, item 3).

`verification.caserunner.pass_time` times every pass two ways: do_bench's median with the L2 cleared before each run
(cold) and CUDA events around batches of n passes with nothing between them (back to back).  On held-out set X (H100
80GB HBM3, 2026-11-27) back to back ran 0.1-13 % slower on every GPU-bound pass.  This script separates the
candidate causes, each mode on the same pass in one process:

* ``cold``       do_bench, L2 cleared before each run (the record's time_cold_s);
* ``b2b``        `back_to_back_s` (the record's time_b2b_s): the mean over a batch, median over batches;
* ``each``       every pass between its own two events, back to back (no clear): the median of single passes --
                 b2b vs each is mean-vs-median within a batch (a few slow passes) and the events' own cost;
* ``each_clear`` as ``each`` with do_bench's 256 MB clear between passes, outside the events: each_clear vs each is
                 the L2 state the pass finds (the previous pass's lines, dirty or not);
* ``each_idle``  as ``each`` with the GPU idle for as long as a pass between passes (a host sleep after a
                 synchronise): each_idle vs each is the clock under continuous load.

SM clock and power are sampled with ``nvidia-smi -lms 20`` during every mode (median per mode), where the tool
exists.  Output: one JSON (``--out``) with the per-mode medians, the per-pass samples and the clock samples; a table
on stdout.  Usage on the device (GPU only):

    PYTHONPATH=. python3 benchmarks/b2b_cold_gpu.py --cases flash2_fwd_d64_n512 flash2_bwd_d64_n1024 \\
        naive_fwd_d64_n2048 --out $OUT/b2b_cold.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("cold", "b2b", "each", "each_clear", "each_idle")


class ClockSampler:
    """SM clock (MHz) and board power (W) from `nvidia-smi -lms`, while the `with` block runs; empty without it."""

    def __init__(self, period_ms: int = 20):
        self.period_ms, self.samples, self._p = period_ms, [], None

    def __enter__(self):
        exe = shutil.which("nvidia-smi")
        if exe:
            self._f = tempfile.TemporaryFile(mode="w+")
            self._p = subprocess.Popen([exe, "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits",
                                        f"-lms={self.period_ms}"], stdout=self._f, stderr=subprocess.DEVNULL)
            time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.terminate()
            self._p.wait(timeout=5)
            self._f.seek(0)
            for ln in self._f.read().splitlines():
                try:
                    mhz, watts = (float(x) for x in ln.split(","))
                    self.samples.append((mhz, watts))
                except ValueError:
                    continue
        return False

    def medians(self) -> dict:
        if not self.samples:
            return {"sm_mhz": None, "power_w": None, "clock_samples": 0}
        return {"sm_mhz": statistics.median(s[0] for s in self.samples),
                "power_w": statistics.median(s[1] for s in self.samples), "clock_samples": len(self.samples)}


def each_s(fn, n: int, between=None) -> list[float]:
    """Seconds of n single passes, each between its own two CUDA events, issued back to back; `between()` runs
    between passes, outside the events (`run_file.event_times_s`)."""
    from run_file import event_times_s
    return event_times_s(fn, n, between, wait_each=False)


def measure(spec: dict, seconds: float) -> dict:
    import torch
    from triton.testing import do_bench

    from verification.caserunner import back_to_back_s, prepare
    fn, _keep = prepare(spec)
    fn()
    torch.cuda.synchronize()
    cold = do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3
    n = max(20, min(2000, int(seconds / max(cold, 1e-6))))
    cache = torch.empty(256 * 1024 * 1024 // 4, dtype=torch.int32, device="cuda")  # do_bench's clear
    out = {"case": spec["name"], "passes": n}

    def idle():
        torch.cuda.synchronize()
        time.sleep(cold)

    runs = {
        "cold": lambda: [do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3],
        "b2b": lambda: [back_to_back_s(fn, cold)],
        "each": lambda: each_s(fn, n),
        "each_clear": lambda: each_s(fn, n, between=cache.zero_),
        "each_idle": lambda: each_s(fn, max(20, n // 4), between=idle),
    }
    for mode in MODES:
        with ClockSampler() as clk:
            t = runs[mode]()
        out[mode] = {"median_s": statistics.median(t), "mean_s": statistics.fmean(t), "n": len(t),
                     "p90_s": sorted(t)[int(0.9 * (len(t) - 1))], **clk.medians()}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", required=True, help="suite case names (python -m verification cases)")
    ap.add_argument("--seconds", type=float, default=1.0, help="about how long each 'each' mode runs per case")
    ap.add_argument("--out", required=True, help="JSON to write (refused if it exists)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if out.exists():
        print(f"b2b_cold_gpu: {out} exists; choose another --out", file=sys.stderr)
        return 2
    from verification.suite import UnknownCaseError, select
    try:
        known = {c.name: c.to_spec() for c in select(a.cases)}
    except UnknownCaseError as e:
        print(f"b2b_cold_gpu: {e}", file=sys.stderr)
        return 2
    import torch
    import triton
    rows = [measure(spec, a.seconds) for spec in known.values()]
    doc = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv),
           "modes": {m: MODES_DOC[m] for m in MODES}, "rows": rows}
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out)
    print(f"{'case':28s} " + " ".join(f"{m:>16s}" for m in MODES))
    for r in rows:
        print(f"{r['case']:28s} " + " ".join(f"{r[m]['median_s'] * 1e6:9.1f}us {r[m]['sm_mhz'] or 0:5.0f}" for m in MODES))
    return 0


MODES_DOC = {
    "cold": "triton.testing.do_bench median, L2 cleared before each run (time_cold_s)",
    "b2b": "verification.caserunner.back_to_back_s: mean over a batch of n passes, median over batches (time_b2b_s)",
    "each": "single passes, each between its own events, back to back: median",
    "each_clear": "single passes with do_bench's 256 MB clear between them, outside the events: median",
    "each_idle": "single passes with the GPU idle a pass's time between them (synchronise + sleep): median",
}

if __name__ == "__main__":
    sys.exit(main())
