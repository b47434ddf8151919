"""One device call: how long a warp waits for a global load it depends on (an L1 hit, an L2 hit, a DRAM miss).

`memsim.warp_issue` replays a tile loop's SASS with its scoreboards; until now every global load (LDG) released its
scoreboard at once, because the engine books transfers and one latency per tile.  Kernels whose loops wait on
many loads in turn -- the naive softmax streams a row in 256 chunks of 32 values, each loaded and used before the
next (255 registers, nothing left to prefetch with) -- pay one load latency per wait, and only the replay can see
how many waits a trip has and how much of them other warps hide.

`_mb_chase` is a pointer chase: each CTA (one warp) loads ``n_dep`` int64 values, each load's address the value
the previous one returned, timed in the kernel with ``%clock64`` (SM cycles, independent of the clock's speed)
and with CUDA events.  Where the chain lives:

* ``l1``: a 4 KB ring walked many times (L1 hits after the first round; the slope between two chain lengths
  drops the first round);
* ``l2``: a random permutation of 128-byte lines in a 16 MB region per run, warmed by an identical launch
  (L1 misses that hit the L2);
* ``dram_seq``: each CTA walks its own fresh region line after line (256-byte steps: the next line but one, as a
  kernel streaming rows does), the L2 flushed before the launch by writing 256 MB elsewhere;
* ``dram_rand``: random lines in a 1 GB region (DRAM page and TLB misses too), flushed the same way.

1 CTA on the GPU, then 1, 4 and 16 one-warp CTAs per SM each with its own chain: whether the latency holds when
many warps wait at once (the replay assumes it does; the engine books bandwidth separately).

    run(command="python3 benchmarks/load_latency_gpu.py --out $OUT/load_latency.json", timeout_s=300)

Then, here (no GPU): ``python benchmarks/load_latency_gpu.py --merge RUN.json`` adds the points to the preset's
calibration file as the ``load_latency`` fact, with the chase loop's SASS body decoded (kernels.sass.instructions)
so memsim.issue_fit can replay it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import triton
import triton.language as tl

MB = 1 << 20
LINE = 128
WHERE = ("l1", "l2", "dram_seq", "dram_rand")
N_DEP = (256, 1024)
CTAS_PER_SM = (0, 1, 4, 16)  # 0: one CTA on the whole GPU


@triton.jit
def _clock():
    return tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)


@triton.jit
def _mb_chase(buf_ptr, start_ptr, out_ptr, cyc_ptr, n_dep):
    """One warp per CTA.  In registers: the chain's current index.  Each iteration reads one int64 (the next
    index) from global memory, through L1 (default caching, as the attention kernels' loads)."""
    pid = tl.program_id(0)
    idx = tl.load(start_ptr + pid)
    t0 = _clock()
    for i in range(n_dep):
        idx = tl.load(buf_ptr + idx)
    t1 = _clock()
    tl.store(out_ptr + pid, idx)
    tl.store(cyc_ptr + pid, t1 - t0)


def _chains(where: str, n_ctas: int, n_dep: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(buffer of int64 next-indices, start index per CTA)."""
    step = LINE // 8  # int64 elements per line
    g = torch.Generator(device="cpu").manual_seed(1126)
    if where == "l1":
        n_lines = 4 * 1024 // LINE
        perm = torch.randperm(n_lines, generator=g)
        buf = torch.zeros(n_lines * step, dtype=torch.int64)
        buf[perm * step] = torch.roll(perm, -1) * step
        return buf.to(device), (perm[:1] * step).repeat(n_ctas).to(device)
    if where in ("l2", "dram_rand"):
        n_lines = (16 * MB if where == "l2" else 1024 * MB) // LINE
        perm = torch.randperm(n_lines, generator=g)
        buf = torch.zeros(n_lines * step, dtype=torch.int64)
        buf[perm * step] = torch.roll(perm, -1) * step
        # CTA c starts n_lines / n_ctas positions along the one cycle: the chains do not meet within n_dep loads
        starts = perm[(torch.arange(n_ctas) * (n_lines // max(n_ctas, 1))) % n_lines] * step
        return buf.to(device), starts.to(device)
    # dram_seq: CTA c walks its own region, 2 lines per step
    per = (n_dep + 2) * 2 * step
    buf = torch.arange(n_ctas * per, dtype=torch.int64, device=device) + 2 * step
    return buf, torch.arange(n_ctas, dtype=torch.int64, device=device) * per


CALIBRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "memsim", "presets",
                           "h100-sxm.calibration.json")


def merge(run_path: str, into: str, *, replace: bool = False) -> int:
    """Add a run's points to calibration file `into` as the ``load_latency`` fact (atomically; an existing fact is
    kept unless `replace`), the chase loop's SASS decoded into the replay's instruction list."""
    import json
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from kernels.sass import instructions
    run = json.load(open(run_path, encoding="utf-8"))
    if run.get("format") != "load_latency/1":
        raise SystemExit(f"--merge: {run_path} is not a load_latency run (format {run.get('format')!r})")
    pts = [p for p in run["points"] if p.get("kind") == "load_latency"]
    sass = next((p["sass"] for p in run["points"] if p.get("kind") == "load_latency_sass"), "")
    ins, loops = instructions(sass)
    chase = [(a, b) for _, a, b in loops if any(x.op == "LDG" for x in ins[a:b + 1])]
    if not chase:
        raise SystemExit(f"--merge: no loop with a global load in the run's SASS ({run_path})")
    a, b = max(chase, key=lambda ab: ab[1] - ab[0])
    body = ins[a:b + 1]
    pts.append({"kind": "load_latency", "where": "chase_loop", "body": [x.to_list() for x in body],
                "loads_per_trip": sum(x.op == "LDG" for x in body)})
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import merge_fact
    merge_fact(into, "load_latency", pts, run=run, run_path=run_path, replace=replace,
               note="benchmarks/load_latency_gpu.py: one-warp pointer chases (L1 ring, warm L2, fresh DRAM lines "
                    "streamed or random), 1 CTA and 1/4/16 CTAs per SM, %clock64 in the kernel; the chase loop's "
                    "SASS body added by --merge; memsim.issue_fit.load_latency_from derives the replay's figures")
    print(f"load_latency: {len(pts)} points merged into {into}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="run file to write (on the GPU machine)")
    g.add_argument("--merge", metavar="RUN", help="merge a run file into the calibration (no GPU needed)")
    ap.add_argument("--into", default=CALIBRATION, help="with --merge: the calibration file (default: h100-sxm's)")
    ap.add_argument("--replace", action="store_true", help="with --merge: overwrite an existing load_latency fact")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=240)
    a = ap.parse_args(argv)
    if a.merge:
        return merge(a.merge, os.path.normpath(a.into), replace=a.replace)
    dev = torch.device("cuda")
    n_sms = torch.cuda.get_device_properties(0).multi_processor_count
    scratch = torch.empty(256 * MB // 4, dtype=torch.float32, device=dev)
    t0 = time.time()
    rows = []
    for where in WHERE:
        for cps in CTAS_PER_SM:
            if where == "l1" and cps > 1:
                continue
            n_ctas = 1 if cps == 0 else cps * n_sms
            for n_dep in N_DEP:
                if time.time() - t0 > a.budget_s:
                    break
                buf, starts = _chains(where, n_ctas, n_dep, dev)
                out = torch.empty(n_ctas, dtype=torch.int64, device=dev)
                cyc = torch.empty(n_ctas, dtype=torch.int64, device=dev)
                times, cycles = [], []
                for r in range(a.repeats + 1):
                    if where.startswith("dram"):
                        scratch.fill_(float(r))  # evicts the chain's lines from the L2
                    elif where == "l2" and r == 0:
                        pass  # the first launch warms the L2 (dropped below)
                    torch.cuda.synchronize()
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    e0.record()
                    _mb_chase[(n_ctas,)](buf, starts, out, cyc, n_dep, num_warps=1, num_stages=1)
                    e1.record()
                    torch.cuda.synchronize()
                    if r == 0:
                        continue
                    times.append(e0.elapsed_time(e1) * 1e-3)
                    c = cyc.cpu().tolist()
                    cycles.append(statistics.median(c) / n_dep)
                rows.append({"kind": "load_latency", "where": where, "ctas_per_sm": cps, "ctas": n_ctas,
                             "num_warps": 1, "n_dep": n_dep, "time_s_repeats": times,
                             "time_s_median": statistics.median(times),
                             "cycles_per_load_repeats": cycles,
                             "cycles_per_load_median": statistics.median(cycles),
                             "buffer_bytes": buf.numel() * 8})
                r_ = rows[-1]
                print(f"{where:9s} ctas/SM {cps:2d} n_dep {n_dep:5d}: {r_['cycles_per_load_median']:7.1f} cycles/load, "
                      f"{r_['time_s_median'] * 1e6:9.1f} us", flush=True)
                del buf, starts
    ck = _mb_chase.warmup(torch.empty(1, dtype=torch.int64, device=dev), torch.zeros(1, dtype=torch.int64, device=dev),
                          torch.empty(1, dtype=torch.int64, device=dev), torch.empty(1, dtype=torch.int64, device=dev),
                          16, num_warps=1, num_stages=1, grid=(1,))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import write_run
    sass = ""
    try:
        from kernels.sass import disassemble
        sass = disassemble(ck.asm["cubin"])
    except Exception as e:  # noqa: BLE001 -- the SASS is a record, not needed for the figures
        sass = f"unavailable: {type(e).__name__}: {e}"[:200]
    rows.append({"kind": "load_latency_sass", "sass": sass})
    write_run(a.out, "load_latency/1", rows, script="load_latency_gpu.py", argv=argv, t0=t0,
              method="%clock64 around the dependent-load loop in the kernel (median over CTAs, per load), CUDA "
                     "events around the launch; median over repeats after one dropped launch; clocks not locked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
