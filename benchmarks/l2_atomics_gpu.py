"""One device call: the rate at which the L2 takes fp32 reduce-adds (issue 8; held-out set W).

hopper's backward adds each step's dS K_j into dQacc with fp32 atomic adds (`tl.atomic_add`: SASS RED.E.ADD.F32,
one 4-byte reduction per element, done in the L2).  The model books those bytes as stores (the L2's write link,
4.1 TB/s, `l2_bandwidth`); set W's three hopper / hopper_fa3 backward cases whose dK/dV/dQ pass moves most of its
bytes as reduce-adds ran 1.9-2.0x slower than predicted (003: 322 MB of reduce-adds in 708 us).

The isolating program: 132 x 8 CTAs of 4 warps each make ITERS passes over a BLOCK-element fp32 tile of `dst`:
`add` reduce-adds a value to every element (tl.atomic_add, relaxed), `store` stores it (the reference: the store
rate), on `private` tiles (each CTA its own: no two CTAs add to the same line) or `shared` ones (GROUP CTAs add to the
same tile, as the K/V blocks of one head add to the same dQacc rows).  Bytes / time of the whole launch (CUDA
events, median of REPEATS, dst in the L2: 132 x 8 x 8 KB = 8.4 MB).  G = 1, 2, 8, 64 ... 1056.

    run(command="python3 benchmarks/l2_atomics_gpu.py --out $OUT/l2_atomics.json", timeout_s=200)
    python benchmarks/l2_atomics_gpu.py --analyse FILE
    python benchmarks/l2_atomics_gpu.py --merge RUN...     (here: the l2_atomics fact, memsim.calibration.l2_atomics_from)

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BLOCK = 2048  # fp32 elements: 8 KB a tile
NUM_WARPS = 4
CTAS_PER_SM = 8
ITERS = 64
REPEATS = 15
#: (op, CTAs adding to one tile): private tiles, then sharing as the K/V blocks of a head share dQacc rows
VARIANTS = (("store", 1), ("add", 1), ("store", 8), ("add", 2), ("add", 8), ("add", 64), ("add", 128), ("add", 264),
            ("add", 528), ("add", 1056))


def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def _mb_l2_atomics(dst, ADD: tl.constexpr, GROUP: tl.constexpr, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        # registers only: the value tile; each pass adds (or stores) BLOCK fp32 to the CTA's tile of dst
        pid = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        ptr = dst + (pid // GROUP).to(tl.int64) * BLOCK + offs
        v = (offs % 7).to(tl.float32) + 1.0
        for _ in range(ITERS):
            if ADD:
                tl.atomic_add(ptr, v, sem="relaxed")
            else:
                tl.store(ptr, v)
    return _mb_l2_atomics


def run(out: str) -> int:
    import torch
    sys.path.insert(0, HERE)
    from run_file import event_times_s, write_run
    t0 = time.time()
    k = _kernel()
    dev = torch.cuda.current_device()
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    ctas = sms * CTAS_PER_SM
    rows = []
    for op, group in VARIANTS:
        dst = torch.zeros(((ctas + group - 1) // group) * BLOCK, device="cuda")

        def launch():
            k[(ctas,)](dst, ADD=(op == "add"), GROUP=group, ITERS=ITERS, BLOCK=BLOCK, num_warps=NUM_WARPS)
        launch()
        torch.cuda.synchronize()
        dst.zero_()
        launch()
        torch.cuda.synchronize()
        want = (torch.arange(BLOCK, device="cuda") % 7 + 1.0).float()
        got = dst.view(-1, BLOCK)
        per = torch.tensor([min(group, ctas - i * group) for i in range(got.shape[0])], device="cuda").float()
        exact = bool(torch.equal(got, (want[None, :] * (ITERS * per[:, None] if op == "add" else 1.0)).expand_as(got)))
        ts = event_times_s(launch, REPEATS)
        nbytes = ctas * ITERS * BLOCK * 4
        t = statistics.median(ts)
        rows.append({"op": op, "group": group, "ctas": ctas, "iters": ITERS, "block": BLOCK, "num_warps": NUM_WARPS,
                     "bytes": nbytes, "time_s": t, "times_s": ts, "exact": exact})
        print(f"{op:5s} group {group:3d}: {t * 1e6:9.2f} us  {nbytes / t / 1e12:6.3f} TB/s"
              f"{'' if exact else '  WRONG RESULT'}", flush=True)
    write_run(out, "l2_atomics/1", rows, script="l2_atomics_gpu.py", argv=["--out", out], t0=t0,
              method=f"CUDA events, median of {REPEATS} launches (dst L2-resident); {ctas} CTAs of "
                     f"{NUM_WARPS} warps, {ITERS} passes over {BLOCK} fp32 each")
    return 0


def analyse(path: str) -> int:
    doc = json.load(open(path))
    print(f"{doc['provenance']['gpu']}, {doc['provenance']['date']}")
    for r in doc["points"]:
        print(f"{r['op']:5s} group {r['group']:3d}: {r['bytes'] / r['time_s'] / 1e12:6.3f} TB/s "
              f"({r['time_s'] * 1e6:.1f} us, exact {r['exact']})")
    return 0


def merge(run_paths: list, into: str, *, replace: bool = False) -> int:
    """Add the runs' points to `into` as the `l2_atomics` fact and show the curve
    `memsim.calibration.l2_atomics_from` derives from them."""
    sys.path.insert(0, HERE)
    from run_file import load_runs, merge_fact

    from memsim.calibration import l2_atomics_from
    runs = load_runs(run_paths, "l2_atomics")
    pts = [p | {"date": run["provenance"]["date"]} for run in runs for p in run["points"]]
    curve = l2_atomics_from(pts).get("reduce_add_curve")
    if not curve:
        raise SystemExit("--merge: the runs hold no exact add points")
    print("reduce-add rate: " + ", ".join(f"G={g}: {r / 1e12:.2f} TB/s" for g, r in curve))
    merge_fact(into, "l2_atomics", pts, run=runs[0], run_path=run_paths[0], replace=replace, also=run_paths[1:],
               note="1056 CTAs add (tl.atomic_add, fp32, relaxed) or store 8 KB tiles 64 times, each tile shared by "
               "G CTAs: the L2's reduce-add rate against the CTAs adding into the same lines")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--analyse")
    ap.add_argument("--merge", nargs="+", metavar="RUN", help="add runs to --into as the l2_atomics fact")
    ap.add_argument("--into", default=os.path.join(ROOT, "memsim", "presets", "h100-sxm.calibration.json"))
    ap.add_argument("--replace", action="store_true")
    a = ap.parse_args(argv)
    if a.merge:
        return merge(a.merge, a.into, replace=a.replace)
    if a.analyse:
        return analyse(a.analyse)
    if not a.out:
        ap.error("one of --out, --analyse")
    return run(a.out)


if __name__ == "__main__":
    sys.exit(main())
