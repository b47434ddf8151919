"""Run suite cases' kernels on the GPU: the program `ncu` profiles, and the timing pass.

    python -m verification.caserunner --spec SPECS.json --mode ncu  --out DONE.jsonl
    python -m verification.caserunner --spec SPECS.json --mode time --out TIMES.jsonl

SPECS.json is a list of `Case.to_spec()` dicts (written by `python -m verification measure`).
For every case, in order:
  1. inputs (fixed seed) are made and the case's pass is run once untimed: Triton compiles
     and autotunes here, outside any measurement;
  2. mode ncu: `torch.cuda.profiler.start()`, the measured pass once, synchronise, `stop()`
     (ncu runs with --profile-from-start off, so only these launches are profiled);
     mode time: no profiler attached, the cold-L2 do_bench median and the back-to-back time per pass, and
     the host floor beside them (`verification.timing`: the record takes the back-to-back time where the
     floor exceeds the pass's kernel time under ncu, else the cold median);
  3. one JSON line is appended to --out and flushed (so a crash keeps the finished cases);
  4. memory is freed and the caching allocator emptied, so ncu's replay saves little.

The measured pass of a `bwd` case is the backward launches only; its forward runs before.
Needs torch, triton, kernels; no simpy.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import traceback

from verification.timing import TIME_METHOD

TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def make_inputs(problem, device, seed=0):
    import torch
    g = torch.Generator(device="cpu").manual_seed(seed)
    dt = getattr(torch, TORCH_DTYPES[problem.dtype])
    p = problem

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float32).to(device=device, dtype=dt)

    q = rnd(p.batch, p.heads_q, p.seq_q, p.head_dim)
    k = rnd(p.batch, p.heads_kv, p.seq_kv, p.head_dim)
    v = rnd(p.batch, p.heads_kv, p.seq_kv, p.head_dim)
    return q, k, v, rnd


def prepare(spec: dict, device="cuda"):
    """(fn, keepalive): fn() runs the case's measured pass once."""
    import kernels
    from memsim.schedule import problem_from_dict, schedule_from_dict
    prob = problem_from_dict(spec["problem"])
    sched = schedule_from_dict(spec["schedule"])
    q, k, v, rnd = make_inputs(prob, device)
    if sched.phase == "fwd":
        def fn():
            return kernels.forward(prob, sched, q, k, v)
        return fn, (q, k, v)
    fsched = dataclasses.replace(sched, phase="fwd")
    fwd = kernels.forward(prob, fsched, q, k, v)
    do = rnd(*fwd.o.shape)

    def fn():
        return kernels.backward(prob, sched, q, k, v, fwd.o, do, fwd)
    return fn, (q, k, v, fwd, do)


class LaunchRecorder:
    """Records the Triton kernels launched inside the `with` block: `names` (through
    triton.knobs.runtime.launch_enter_hook) and `compiled`, per launch, the compiled kernel's facts
    (registers per thread, local/spill bytes per thread, shared memory; `compiled_facts`).
    Both stay None where the hook is unavailable (older Triton, or the interpreter, which calls no
    hook)."""

    def __enter__(self):
        self.names = []
        self.compiled = []
        self._knobs = None
        self._ck = None
        try:
            from triton import knobs
            self._knobs = knobs.runtime
            self._old = knobs.runtime.launch_enter_hook
            knobs.runtime.launch_enter_hook = self._hook
        except Exception:
            self.names = None
        try:  # CompiledKernel.launch_metadata runs for every launch while a hook is set
            from triton.compiler.compiler import CompiledKernel
            self._ck, self._old_lm = CompiledKernel, CompiledKernel.launch_metadata
            rec = self

            def launch_metadata(ck, grid, stream, *args):
                ret = rec._old_lm(ck, grid, stream, *args)
                try:
                    rec.compiled.append(compiled_facts(ck))
                except Exception as e:  # never let bookkeeping break a launch
                    rec.compiled.append({"name": getattr(ck, "name", "?"), "error": f"{type(e).__name__}: {e}"})
                return ret
            CompiledKernel.launch_metadata = launch_metadata
        except Exception:
            self._ck = None
        return self

    def _hook(self, metadata):
        data = getattr(metadata, "data", None) or {}
        self.names.append(data.get("name", "?"))
        if self._old is not None:
            self._old(metadata)

    def __exit__(self, *exc):
        if self._knobs is not None:
            self._knobs.launch_enter_hook = self._old
        if self._ck is not None:
            self._ck.launch_metadata = self._old_lm
        if self.names == []:
            self.names = None
        if not self.compiled:
            self.compiled = None
        return False


def compiled_facts(ck) -> dict:
    """What the compiled Triton kernel (triton.compiler.CompiledKernel, loaded) says about one launch:
    registers per thread (CU_FUNC_ATTRIBUTE_NUM_REGS), local memory per thread (Triton's n_spills is
    CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES / 4: spill slots plus any stack frame), shared memory per CTA,
    warps, stages."""
    md = ck.metadata
    n_spills = getattr(ck, "n_spills", None)
    return {
        "name": ck.name,
        "regs_per_thread": getattr(ck, "n_regs", None),
        "n_spills": n_spills,
        "local_bytes_per_thread": None if n_spills is None else 4 * n_spills,
        "shared_bytes": getattr(md, "shared", None),
        "num_warps": getattr(md, "num_warps", None),
        "num_stages": getattr(md, "num_stages", None),
        "max_threads": getattr(ck, "n_max_threads", None),
        "arch": str(getattr(getattr(md, "target", None), "arch", "")) or None,
        "source": "triton CompiledKernel on the GPU (n_regs, n_spills, metadata.shared)",
    }


def free_memory():
    """Drop what the last case or point left allocated (both runners call it between items)."""
    import gc

    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


#: back_to_back_s: batches of passes each lasting about this long (enough passes that the host's launch rate, not
#: the first pass's start, sets a host-bound batch), this many batches, at least / at most this many passes a batch;
#: a pass longer than a batch is timed alone, in B2B_LONG_BATCHES batches (a 2.6 s pass: 8 s, not 55)
B2B_BATCH_S = 2e-3
B2B_BATCHES = 7
B2B_LONG_BATCHES = 3
B2B_PASSES = (3, 200)


def b2b_plan(est_s: float) -> tuple[int, int]:
    """(passes a batch, batches) for a pass of about `est_s` seconds (`back_to_back_s`)."""
    import math
    if est_s > B2B_BATCH_S:  # GPU time far above any host floor (those are 0.1-1 ms): one pass a batch suffices
        return 1, B2B_LONG_BATCHES
    lo, hi = B2B_PASSES
    return max(lo, min(hi, math.ceil(B2B_BATCH_S / max(est_s, 1e-7)))), B2B_BATCHES


def back_to_back_s(fn, est_s: float) -> float:
    """Seconds per pass when `fn` runs back to back, nothing between passes (no cache clear, no synchronise): the
    median over batches of n passes (`b2b_plan`: n from `est_s`, a pass's time, so a batch lasts ~B2B_BATCH_S),
    each batch between two CUDA events.  A pass the host launches slower than the GPU runs it measures the host's
    time per pass; any other its GPU time with the L2 warm from the pass before."""
    import statistics

    import torch
    n, batches = b2b_plan(est_s)
    fn()
    torch.cuda.synchronize()
    per = []
    for _ in range(batches):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(n):
            fn()
        b.record()
        b.synchronize()
        per.append(a.elapsed_time(b) * 1e-3 / n)
    return statistics.median(per)


def pass_time(fn, *, warmup_ms: float, rep_ms: float) -> dict:
    """{"time_cold_s": do_bench's median with the L2 cleared before each run, "time_b2b_s": `back_to_back_s`} of a
    pass on the GPU (verification.timing says which is the pass's time)."""
    from triton.testing import do_bench
    cold = do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median") * 1e-3
    return {"time_cold_s": cold, "time_b2b_s": back_to_back_s(fn, cold)}


def host_floor_beside(spec: dict, device, *, cpu: bool = False, warmup_ms: float = 25.0, rep_ms: float = 100.0) -> dict:
    """The host floor of the case's launch path, timed in the same process right after the case: the `host_pass`
    problem that makes the case's launches (`verification.calibrate.host_pass_point`; the spec's "launches"),
    timed as the case is.  A separate
    calibrate process measured it 2-3x the cases' own host-bound times on set Q's machine (notes/fidelity.md,
    eleventh session): the floor that applies to a case is the host's speed in the process and moment that timed it.
    On the GPU: back to back (`pass_time`'s b2b: for this tiny problem the host's time to issue the launches),
    with the cold-L2 median beside it for the record.
    {"host_pass_s", "host_pass_id"} (+ "host_pass_cold_s", "host_pass_b2b_s" on the GPU), {"host_pass_error"} if
    it could not run, {} for a problem without one."""
    from verification.calibrate import host_pass_point, host_pass_spec
    sch = spec.get("schedule") or {}
    pt = host_pass_point(sch.get("algorithm"), sch.get("phase"), spec.get("launches"))
    if pt is None:
        return {}
    try:
        fn, keep = prepare(host_pass_spec(pt["params"]), device)
        fn()
        if cpu:
            ts = []
            for _ in range(3):
                t1 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t1)
            got = {"host_pass_s": sorted(ts)[1]}
        else:
            tm = pass_time(fn, warmup_ms=warmup_ms, rep_ms=rep_ms)
            got = {"host_pass_s": tm["time_b2b_s"], "host_pass_cold_s": tm["time_cold_s"],
                   "host_pass_b2b_s": tm["time_b2b_s"]}
        del fn, keep
        return {**got, "host_pass_id": pt["id"]}
    except Exception as e:  # the case's own time stands; the report then uses the set's host_pass file
        return {"host_pass_error": f"{type(e).__name__}: {e}"[:300]}


def run(specs: list[dict], mode: str, out, *, rep_ms: float = 100.0, warmup_ms: float = 25.0, log=sys.stderr,
        allow_cpu: bool = False):
    import os
    if allow_cpu:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
    import torch
    cpu = allow_cpu and not torch.cuda.is_available()
    if not torch.cuda.is_available() and not cpu:
        raise SystemExit("caserunner: no CUDA GPU visible to torch (torch.cuda.is_available() is False); "
                         "run this on the GPU machine")
    device = "cpu" if cpu else "cuda"
    n = len(specs)
    for i, spec in enumerate(specs, 1):
        t0 = time.time()
        rec = {"case": spec["name"], "launches": spec["launches"]}
        try:
            fn, keep = prepare(spec, device)
            fn()  # warm-up: compile / autotune outside the measurement
            if cpu:  # dry run through the Triton interpreter: no profiler, wall-clock timing
                if mode == "time":
                    ts = []
                    for _ in range(3):
                        t1 = time.perf_counter()
                        fn()
                        ts.append(time.perf_counter() - t1)
                    rec["time_s"] = sorted(ts)[1]
                    rec["timing"] = {"method": "CPU interpreter dry run, median of 3 (not a GPU time)"}
                    rec.update(host_floor_beside(spec, device, cpu=True))
                else:
                    with LaunchRecorder() as lr:
                        fn()
                    rec["launched"] = lr.names
            elif mode == "ncu":
                torch.cuda.synchronize()
                with LaunchRecorder() as lr:
                    torch.cuda.profiler.start()
                    fn()
                    torch.cuda.synchronize()
                    torch.cuda.profiler.stop()
                rec["launched"] = lr.names  # what ncu should have profiled, in order
                rec["compiled"] = lr.compiled  # per launch: registers, local (spill) bytes, shared memory
            else:
                torch.cuda.synchronize()
                rec.update(pass_time(fn, warmup_ms=warmup_ms, rep_ms=rep_ms))
                rec["timing"] = {"method": TIME_METHOD, "warmup_ms": warmup_ms, "rep_ms": rep_ms}
                rec.update(host_floor_beside(spec, device, warmup_ms=warmup_ms, rep_ms=rep_ms))
                rec["time_s"] = rec["time_cold_s"]  # the record decides with ncu's kernel time (verification.timing)
            rec["ok"] = True
            del fn, keep
        except Exception as e:  # keep going: one broken case must not lose the others
            try:
                torch.cuda.profiler.stop()
            except Exception:
                pass
            rec["ok"] = False
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback"] = traceback.format_exc(limit=8)
        free_memory()
        rec["wall_s"] = round(time.time() - t0, 3)
        out.write(json.dumps(rec) + "\n")
        out.flush()
        status = "ok" if rec["ok"] else "FAILED " + rec["error"].splitlines()[0][:200]
        extra = f" {rec['time_s'] * 1e3:.3f} ms" if rec.get("time_s") else ""
        print(f"[{mode} {i}/{n}] {spec['name']}: {status}{extra} ({rec['wall_s']:.1f} s)", file=log, flush=True)


def runner_parser(prog: str, doc: str, *, items: str, items_help: str, out_help: str) -> argparse.ArgumentParser:
    """The command line this runner and verification.microbench.runner share: a JSON list of items to run
    (`items`: the flag that names the file), --mode ncu|time, --out (JSON lines, appended), --allow-cpu."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(items, required=True, help=items_help)
    ap.add_argument("--mode", choices=("ncu", "time"), required=True)
    ap.add_argument("--out", required=True, help=out_help)
    ap.add_argument("--allow-cpu", action="store_true",
                    help="dry run without a GPU: Triton interpreter on CPU, no profiler calls (tests only)")
    return ap


def run_items(items_file, out_file, run_fn, *args, **kwargs) -> None:
    """run_fn(items, *args, out, **kwargs) over the JSON list in items_file, appending to out_file."""
    with open(items_file) as f:
        items = json.load(f)
    with open(out_file, "a") as out:
        run_fn(items, *args, out, **kwargs)


def main(argv=None):
    ap = runner_parser("python -m verification.caserunner", __doc__, items="--spec",
                       items_help="JSON list of case specs (Case.to_spec())",
                       out_help="JSON-lines file, one line per finished case")
    ap.add_argument("--rep-ms", type=float, default=100.0, help="timing: total time of the timed repeats")
    ap.add_argument("--warmup-ms", type=float, default=25.0)
    a = ap.parse_args(argv)
    run_items(a.spec, a.out, run, a.mode, rep_ms=a.rep_ms, warmup_ms=a.warmup_ms, allow_cpu=a.allow_cpu)


if __name__ == "__main__":
    main()
