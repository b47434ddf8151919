"""The GPU side of `python -m verification calibrate`: run a plan's points, one JSON line each.

    python -m verification.microbench.runner --plan PLAN.json --mode time --out TIMED.jsonl --repeats 5
    python -m verification.microbench.runner --plan PLAN.json --mode ncu  --out DONE.jsonl

mode time: every timed point is measured `repeats` times (programs.measure_timed).
mode ncu: point by point, the buffers are made and the kernel is compiled and run once (warm-up,
outside the profiled region), then launched exactly once inside cudaProfilerStart/Stop and
synchronised, then the buffers are freed; ncu (--profile-from-start off) profiles those launches
only, in plan order.  Each line records the launched kernel names and the compiled kernel's
facts (registers, local bytes, shared memory) so rows map back to points by order and name.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

from verification.caserunner import free_memory, run_items, runner_parser


def run(plan: list[dict], mode: str, out, *, repeats: int = 5, allow_cpu: bool = False, log=sys.stderr):
    if allow_cpu:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
    import torch

    from verification.caserunner import LaunchRecorder
    from . import programs as PR
    cpu = allow_cpu and not torch.cuda.is_available()
    if not torch.cuda.is_available() and not cpu:
        raise SystemExit("microbench runner: no CUDA GPU visible to torch; run this on the GPU machine")
    device = "cpu" if cpu else "cuda"
    n = len(plan)
    if mode == "time":
        for i, pt in enumerate(plan, 1):
            t0 = time.time()
            line = {"id": pt["id"], "fact": pt["fact"]}
            try:
                line.update(PR.measure_timed(pt, device, repeats))
                line["ok"] = True
            except Exception as e:
                line.update(ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=6))
            line["wall_s"] = round(time.time() - t0, 3)
            out.write(json.dumps(line) + "\n")
            out.flush()
            free_memory()
            med = sorted(line.get("times_s") or [0])[len(line.get("times_s") or [0]) // 2]
            print(f"[time {i}/{n}] {pt['id']}: {'ok %.4g s' % med if line['ok'] else 'FAILED ' + line['error'][:200]}"
                  f" ({line['wall_s']:.1f} s)", file=log, flush=True)
        return
    # ncu mode, point by point: set up and warm up (compilation, first touch) outside the profiled
    # region, launch once inside it, then free the buffers (so ncu's replay saves little memory)
    for i, pt in enumerate(plan, 1):
        line = {"id": pt["id"], "fact": pt["fact"], "kernel": pt["kernel"]}
        t0 = time.time()
        try:
            fn, keep = PR.prepare(pt, device)
            with LaunchRecorder() as lr0:
                fn()
            if not cpu:
                torch.cuda.synchronize()
            with LaunchRecorder() as lr:
                if not cpu:
                    torch.cuda.profiler.start()
                fn()
                if not cpu:
                    torch.cuda.synchronize()
                    torch.cuda.profiler.stop()
            line["launched"] = lr.names
            if isinstance(keep, dict) and callable(keep.get("describe")):
                line["observed"] = keep["describe"]()  # what the launch really did (e.g. which SMs read)
            line["compiled"] = (lr.compiled or lr0.compiled or [None])[0]
            line["ok"] = True
            del fn, keep
        except Exception as e:
            if not cpu:
                try:
                    torch.cuda.profiler.stop()
                except Exception:
                    pass
            line.update(ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=6))
        free_memory()
        line["wall_s"] = round(time.time() - t0, 3)
        out.write(json.dumps(line) + "\n")
        out.flush()
        print(f"[ncu {i}/{n}] {pt['id']}: {'ok' if line['ok'] else 'FAILED ' + line['error'][:200]} "
              f"({line['wall_s']:.1f} s)", file=log, flush=True)


def main(argv=None):
    ap = runner_parser("python -m verification.microbench.runner", __doc__, items="--plan",
                       items_help="JSON list of points (verification.calibrate.build_plan)",
                       out_help="JSON-lines file, one line per point")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    run_items(a.plan, a.out, run, a.mode, repeats=a.repeats, allow_cpu=a.allow_cpu)


if __name__ == "__main__":
    main()
