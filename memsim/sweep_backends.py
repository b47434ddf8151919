"""Where sweep points run: this process, local processes, or a Dask cluster.

Every backend has `workers` and `run(spec_dict, batches) -> iterator of row lists` that yields each
batch's rows as soon as that batch finishes (in any order), keeping only a few batches per worker in
flight so a sweep of 10^6 points never holds 10^6 futures.  The task is always
`memsim.sweep.run_batch`, a plain function of plain data, so a remote worker needs only this package
installed (`pip install io-aware-attention[cluster]` on every node).

- "local" (default): `concurrent.futures.ProcessPoolExecutor` with `workers` processes (default:
  the CPU count); `workers=1` runs the points in this process (no pool).
- "dask": `distributed.Client` on `scheduler` (an address such as tcp://10.0.0.5:8786, unchanged
  from a laptop to a multi-node cluster), or, with no address, a `LocalCluster` of `workers`
  single-threaded worker processes started for the sweep and stopped after it.  Needs the
  `cluster` extra: ``pip install 'io-aware-attention[cluster]'`` (dask[distributed]).
"""
from __future__ import annotations

import os

BACKENDS = ("local", "dask")
#: batches kept in flight per worker (enough to hide the round trip, few enough to stop promptly)
IN_FLIGHT_PER_WORKER = 2


def _check_workers(workers):
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return workers


def make_backend(name: str, *, workers: int | None = None, scheduler: str | None = None):
    if name not in BACKENDS:
        raise ValueError(f"unknown sweep backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name == "local":
        if scheduler is not None:
            raise ValueError("--address (--scheduler) names a Dask scheduler; use it with --backend dask")
        n = _check_workers(workers)
        return SerialBackend() if n == 1 else LocalBackend(n)
    return DaskBackend(scheduler=scheduler, workers=workers)


class SerialBackend:
    """Every point in this process, one after another (the baseline; tests; workers=1)."""

    workers = 1

    def run(self, spec_dict, batches):
        from .sweep import run_batch, warm
        warm(spec_dict)
        for b in batches:
            yield run_batch(spec_dict, b)

    def close(self):
        pass


def _bounded(submit, batches, limit, wait_any):
    """Submit batches keeping at most `limit` in flight; yield each finished future's result."""
    pending = set()
    it = iter(batches)
    for b in it:
        pending.add(submit(b))
        if len(pending) >= limit:
            break
    while pending:
        finished, pending = wait_any(pending)
        for fut in finished:
            yield fut.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.add(submit(nxt))


class LocalBackend:
    """A pool of `workers` processes on this machine, each warmed once (`memsim.sweep.warm`) as it starts."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = None

    def run(self, spec_dict, batches):
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        from .sweep import run_batch, start_worker
        if self.pool is None:
            self.pool = ProcessPoolExecutor(max_workers=self.workers, initializer=start_worker,
                                            initargs=(spec_dict,))

        def wait_any(pending):
            done, rest = wait(pending, return_when=FIRST_COMPLETED)
            return done, rest

        yield from _bounded(lambda b: self.pool.submit(run_batch, spec_dict, b), batches,
                            IN_FLIGHT_PER_WORKER * self.workers, wait_any)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class DaskBackend:
    """Points as Dask tasks on an existing cluster (`scheduler`) or on a local one started here."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None):
        try:
            import distributed
        except ImportError:
            raise ImportError("the dask backend needs dask[distributed]: pip install 'io-aware-attention[cluster]' "
                              "(or pip install 'dask[distributed]'), or use --backend local") from None
        import logging
        self.cluster = None
        if scheduler is not None:
            if not isinstance(scheduler, str) or not scheduler.strip():
                raise ValueError(f"scheduler must be a Dask scheduler address such as tcp://host:8786, got {scheduler!r}")
            if workers is not None:
                raise ValueError("workers is for a local cluster; an existing cluster (--address) has its own")
            self.client = distributed.Client(scheduler, timeout="30s")
        else:
            n = _check_workers(workers)
            try:
                self.cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                        dashboard_address=None, silence_logs=logging.ERROR)
            except Exception as e:  # noqa: BLE001 -- e.g. a __main__ the worker processes cannot re-import
                from .sweep import SweepError
                raise SweepError(f"could not start a local Dask cluster of {n} workers ({type(e).__name__}: {e}); "
                                 f"run from a script file, a notebook or `python -m memsim sweep` (not from stdin), "
                                 f"or use --backend local") from None
            self.client = distributed.Client(self.cluster)
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})) or (workers or 1))

    def run(self, spec_dict, batches):
        from distributed import wait

        from .sweep import run_batch, warm
        spec_future = self.client.scatter(spec_dict, broadcast=True)
        try:  # warm every worker once (imports, preset, calibration); later workers warm on their first point
            self.client.run(warm, spec_dict)
        except Exception:  # noqa: BLE001 -- an optimisation only
            pass

        def wait_any(pending):
            res = wait(pending, return_when="FIRST_COMPLETED")
            return res.done, res.not_done

        yield from _bounded(lambda b: self.client.submit(run_batch, spec_future, b, pure=False), batches,
                            IN_FLIGHT_PER_WORKER * self.workers, wait_any)

    def close(self):
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
