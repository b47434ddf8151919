"""Parallel efficiency of `memsim.sweep` on this machine: the same hardware what-if points run serially, on
local processes and on a local Dask cluster; writes JSON (never asserts a time).

    python benchmarks/sweep_scaling.py --points 1000 --workers 2 --out benchmarks/results/sweep_scaling-vm.json

efficiency = (serial seconds / parallel seconds) / workers.  The points: flash2 forward on small problems over
an L2-size x DRAM-bandwidth x sequence-length grid (hardware keys as axes), so each point is a real simulation.
The machine may be shared: every run also records the CPU seconds other processes took meanwhile (/proc/stat)
and the load average, and serial and parallel runs alternate (--repeats) so both see the same load.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spec_for(points: int):
    from memsim.sweep import SweepSpec
    l2 = [int(m * (1 << 20)) for m in (2, 4, 8, 16, 25, 32, 40, 50, 64, 80)]
    bw = [x * 1e12 for x in (1.5, 2.0, 2.5, 3.0, 3.35, 4.0, 4.8, 6.0, 8.0, 10.0)]
    seq = [256, 384, 512, 640, 768, 896, 1024, 1280, 1536, 2048]
    n = 0
    axes = {"l2_bytes": [], "dram_bw_Bps": bw, "seq": seq}
    for v in l2:  # as many L2 sizes as make `points` points
        axes["l2_bytes"].append(v)
        n = len(axes["l2_bytes"]) * len(bw) * len(seq)
        if n >= points:
            break
    return SweepSpec(axes=axes, base={"batch": 1, "heads": 4, "head_dim": 64, "algorithm": "flash2"},
                     hardware="h100-sxm"), n


def _proc_stat() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat; (0, 0) where there is none)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(v) - v[3] - v[4]) / hz, sum(v) / hz  # busy = all but idle and iowait


def _our_cpu() -> dict:
    import resource
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"user_s": a.ru_utime + b.ru_utime, "sys_s": a.ru_stime + b.ru_stime}


def _traced_batch(spec_dict, batch):
    """memsim.sweep.run_batch that also notes (worker pid, start, end, CPU seconds) on its first row."""
    from memsim.sweep import evaluate
    t0, c0 = time.monotonic(), time.process_time()
    rows = [evaluate(spec_dict, i, v) for i, v in batch]
    if rows:
        rows[0]["_trace"] = (os.getpid(), t0, time.monotonic(), time.process_time() - c0)
    return rows


def busy_fractions(rows, t_start: float, t_end: float, workers: int) -> dict:
    """From the batch traces: how much of the run each worker spent inside tasks (the rest is start-up,
    waiting for a task, or idling at the end while another worker finishes)."""
    per: dict = {}
    for r in rows:
        tr = r.pop("_trace", None)
        if tr:
            pid, a, b, cpu = tr
            w = per.setdefault(pid, {"busy_s": 0.0, "cpu_s": 0.0, "first_s": a - t_start, "last_end_s": b - t_start,
                                     "tasks": 0})
            w["busy_s"] += b - a
            w["cpu_s"] += cpu
            w["tasks"] += 1
            w["first_s"] = min(w["first_s"], a - t_start)
            w["last_end_s"] = max(w["last_end_s"], b - t_start)
    wall = t_end - t_start
    return {"wall_s": wall, "workers": per,
            "busy_fraction": sum(w["busy_s"] for w in per.values()) / (workers * wall) if per else None,
            "start_gap_s": max((w["first_s"] for w in per.values()), default=None),
            "end_gap_s": wall - min((w["last_end_s"] for w in per.values()), default=wall)}


class RayProbe:
    """Benchmark-only: the same bounded batch loop as memsim's backends, on Ray tasks, to choose between
    Ray and Dask by measurement (issue 10).  memsim has no Ray backend; `--backends ray` needs `pip install ray`."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        import ray
        from memsim.sweep import run_batch
        self.ray = ray
        ray.init(address=scheduler, num_cpus=None if scheduler else workers, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
        self.workers = workers or int(ray.cluster_resources().get("CPU", 1))
        self.task = ray.remote(num_cpus=1)(run_batch)

    def run(self, spec_dict, batches):
        from memsim.sweep_backends import IN_FLIGHT_PER_WORKER, _bounded
        spec_ref = self.ray.put(spec_dict)

        def wait_any(pending):
            done, rest = self.ray.wait(list(pending), num_returns=1)
            return [_Done(self.ray, d) for d in done], set(rest)

        yield from _bounded(lambda b: self.task.remote(spec_ref, b), batches, IN_FLIGHT_PER_WORKER * self.workers,
                            wait_any)

    def close(self):
        self.ray.shutdown()


class _Done:
    def __init__(self, ray, ref):
        self.ray, self.ref = ray, ref

    def result(self):
        return self.ray.get(self.ref)


def _with_ray(name, *, workers=None, scheduler=None):
    from memsim.sweep_backends import make_backend
    return RayProbe(workers, scheduler) if name == "ray" else make_backend(name, workers=workers, scheduler=scheduler)


def timed(spec, trace=False, **kw) -> dict:
    """One run: wall seconds, rows, and the CPU it took (ours: this process and its finished children;
    others': the machine's busy CPU over the run minus ours, i.e. what other users took meanwhile)."""
    from memsim.sweep import run_sweep
    busy0, _ = _proc_stat()
    c0 = _our_cpu()
    load0 = os.getloadavg()[0]
    import memsim.sweep as MS
    import memsim.sweep_backends as MB
    real, real_make = MS.run_batch, MB.make_backend
    if kw.get("backend") == "ray":
        MB.make_backend = _with_ray
    if trace:  # local pool workers are forked: they see the traced task function
        MS.run_batch = _traced_batch
    t, tm = time.perf_counter(), time.monotonic()
    try:
        r = run_sweep(spec, None, progress=False, **kw)
    finally:
        MS.run_batch, MB.make_backend = real, real_make
    wall = time.perf_counter() - t
    trace_info = busy_fractions(r.rows, tm, time.monotonic(), kw.get("workers") or 1) if trace else None
    busy1, _ = _proc_stat()
    c1 = _our_cpu()
    ours = {k: c1[k] - c0[k] for k in c0}
    our_cpu = ours["user_s"] + ours["sys_s"]
    return {"seconds": wall, "rows": len(r.rows), "points_per_s": len(r.rows) / wall,
            "our_cpu_s": our_cpu, "our_user_s": ours["user_s"], "our_sys_s": ours["sys_s"],
            "others_cpu_s": max(0.0, (busy1 - busy0) - our_cpu), "load_avg_1min_before": load0,
            "load_avg_1min_after": os.getloadavg()[0], "sum_point_s": sum(x["sim_wall_s"] for x in r.rows),
            "trace": trace_info, "_rows": r.rows}


def _same_results(a, b) -> bool:
    strip = lambda rows: [{k: v for k, v in r.items() if k != "sim_wall_s"} for r in rows]  # noqa: E731
    return strip(a) == strip(b)


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])


def startup_s(backend: str, workers: int) -> float | None:
    """Seconds to start the backend's workers and warm them (the fixed cost a sweep pays once)."""
    t = time.perf_counter()
    try:
        be = _with_ray(backend, workers=workers)
        from memsim.sweep import SweepSpec
        list(be.run(SweepSpec(axes={"seq": [256]}, base={"batch": 1, "heads": 1, "head_dim": 64}).to_dict(),
                    [[(0, {"seq": 256})]]))
    except Exception:  # noqa: BLE001
        return None
    be.close()
    return time.perf_counter() - t


def _noop(x):
    return x


def per_task_s(backend: str, workers: int, n: int = 2000) -> dict | None:
    """Engine overhead per task: wall seconds for n no-op tasks submitted at once on `workers` workers,
    divided by n (after 50 warm-up tasks), and the start-up seconds of the engine."""
    import logging
    try:
        t = time.perf_counter()
        if backend == "local":
            from concurrent.futures import ProcessPoolExecutor
            ex = ProcessPoolExecutor(workers)
            run, close = (lambda k: list(ex.map(_noop, range(k)))), ex.shutdown
        elif backend == "dask":
            import distributed
            cl = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                          dashboard_address=None, silence_logs=logging.ERROR)
            c = distributed.Client(cl)
            run = lambda k: c.gather(c.map(_noop, range(k), pure=False))  # noqa: E731
            close = lambda: (c.close(), cl.close())  # noqa: E731
        elif backend == "ray":
            import ray
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            f = ray.remote(num_cpus=1)(_noop)
            run, close = (lambda k: ray.get([f.remote(i) for i in range(k)])), ray.shutdown
        else:
            return None
        run(50)
        start = time.perf_counter() - t
        t = time.perf_counter()
        run(n)
        el = time.perf_counter() - t
        close()
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}
    return {"tasks": n, "seconds": el, "per_task_s": el / n, "startup_s": start, "load_avg_1min": os.getloadavg()[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--backends", default="local,dask")
    ap.add_argument("--repeats", type=int, default=3,
                    help="serial and parallel runs alternate this many times (the machine is shared: medians)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from memsim.io import base_provenance, write_json
    if os.path.exists(a.out):  # before minutes of measuring, not after
        ap.error(f"{a.out} already exists; choose another --out (results are never overwritten)")
    spec, n = spec_for(a.points)
    versions = {}
    for mod in ("dask", "distributed", "ray"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    out = {"points": n, "engine_versions": versions, "python_executable": sys.executable, "workers": a.workers, "cpu_count": os.cpu_count(), "python": platform.python_version(),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": "python " + " ".join(sys.argv), "provenance": base_provenance("python " + " ".join(sys.argv)),
           "definitions": {
               "efficiency": "(serial seconds / parallel seconds) / workers, serial and parallel runs alternating; "
                             "per repeat with the serial run just before",
               "cpu_efficiency": "serial CPU seconds / parallel CPU seconds (ours, incl. workers): the work the "
                                 "parallel run adds (start-up, pickling, dispatch, cache misses), whatever the load",
               "others_cpu_s": "CPU seconds other users' processes took during the run (machine busy - ours): on "
                               "2 shared cores, wall-clock efficiency cannot exceed (2 x wall - others) / (2 x wall)",
               "ray": "Ray's raylet, GCS and worker processes are not children of this process: their CPU shows "
                      "under others_cpu_s, not our_cpu_s (so ray's cpu_efficiency is meaningless)",
               "per_task": "engine overhead: n no-op tasks submitted at once to `workers` workers, wall / n; "
                           "startup_s there = engine start + 50 warm-up tasks (no memsim)",
               "trace": "local backend: per worker, the time inside tasks (batch start..end, monotonic clock), the "
                        "first task's start and the last task's end relative to the run",
               "idle_machine_efficiency_estimate": "busy_fraction x cpu_efficiency: what the wall efficiency would be "
                                                   "if no one else used the cores; an estimate, not a measurement",
           },
           "runs": {}, "startup_s": {}}
    out["per_task"] = {}
    for b in a.backends.split(","):
        out["startup_s"][b] = startup_s(b, a.workers)
        out["per_task"][b] = per_task_s(b, a.workers)
        print(f"{b}: start-up {out['startup_s'][b]} s, no-op task {out['per_task'][b]}", flush=True)
    reps = {"serial": [], **{b: [] for b in a.backends.split(",")}}
    serial_rows = None
    for i in range(a.repeats):
        s = timed(spec, backend="local", workers=1)
        serial_rows = s.pop("_rows")
        reps["serial"].append(s)
        print(f"[{i + 1}/{a.repeats}] serial: {s['rows']} points in {s['seconds']:.1f} s "
              f"(cpu {s['our_cpu_s']:.1f} s, others {s['others_cpu_s']:.1f} s, load {s['load_avg_1min_after']:.2f})",
              flush=True)
        for b in a.backends.split(","):
            try:
                r = timed(spec, backend=b, workers=a.workers, trace=(b == "local"))
            except Exception as e:  # an engine that cannot start here is reported, not fatal
                reps[b].append({"error": f"{type(e).__name__}: {e}"})
                print(f"{b}: {e}", flush=True)
                continue
            r["same_results_as_serial"] = _same_results(serial_rows, r.pop("_rows"))
            r["efficiency"] = s["seconds"] / r["seconds"] / a.workers
            r["cpu_efficiency"] = s["our_cpu_s"] / r["our_cpu_s"] if r["our_cpu_s"] else None
            # what the other users left us: at most (workers x wall - others) CPU seconds were ours to take
            r["cpu_left_to_us_fraction"] = max(0.0, a.workers * r["seconds"] - r["others_cpu_s"]) / (a.workers * r["seconds"])
            if r.get("trace") and r["trace"]["busy_fraction"] is not None:
                # on an idle machine, wall efficiency ~ (share of the run the workers were inside tasks) x
                # (serial CPU / parallel CPU): an ESTIMATE from this run's traces, not a measurement
                # (a CPU ratio above 1 is the serial run's own contention, so it counts as 1)
                r["idle_machine_efficiency_estimate"] = r["trace"]["busy_fraction"] * min(1.0, r["cpu_efficiency"] or 0)
            reps[b].append(r)
            print(f"[{i + 1}/{a.repeats}] {b} x{a.workers}: {r['seconds']:.1f} s, efficiency {100 * r['efficiency']:.0f} %, "
                  f"cpu efficiency {100 * (r['cpu_efficiency'] or 0):.0f} %, others took {r['others_cpu_s']:.1f} cpu-s "
                  f"({100 * (1 - r['cpu_left_to_us_fraction']):.0f} % of the {a.workers} cores), same rows: "
                  f"{r['same_results_as_serial']}"
                  + (f"; workers busy {100 * r['trace']['busy_fraction']:.0f} % of the run (start gap "
                     f"{r['trace']['start_gap_s']:.2f} s, end gap {r['trace']['end_gap_s']:.2f} s)"
                     if r.get("trace") else ""), flush=True)
    for name, rs in reps.items():
        ok = [r for r in rs if "error" not in r]
        summ = {"repeats": rs}
        if ok:
            summ.update({k: _median([r[k] for r in ok]) for k in ("seconds", "points_per_s", "our_cpu_s", "others_cpu_s")})
            if name != "serial":
                summ["efficiency_median"] = _median([r["efficiency"] for r in ok])
                summ["efficiency_best"] = max(r["efficiency"] for r in ok)
                summ["cpu_efficiency_median"] = _median([r["cpu_efficiency"] for r in ok])
                est = [r["idle_machine_efficiency_estimate"] for r in ok if "idle_machine_efficiency_estimate" in r]
                if est:
                    summ["idle_machine_efficiency_estimate_median"] = _median(est)
        out["runs"][name] = summ
    write_json(a.out, out)
    for name, r in out["runs"].items():
        if name != "serial" and "efficiency_median" in r:
            print(f"{name}: efficiency median {100 * r['efficiency_median']:.0f} % (best {100 * r['efficiency_best']:.0f} %), "
                  f"cpu efficiency {100 * r['cpu_efficiency_median']:.0f} %, start-up {out['startup_s'][name]:.2f} s"
                  + (f", idle-machine estimate {100 * r['idle_machine_efficiency_estimate_median']:.0f} %"
                     if "idle_machine_efficiency_estimate_median" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
