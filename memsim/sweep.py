"""Design-space sweeps: hardware figures x problem shapes x schedules, run as independent points.

    >>> from memsim.sweep import SweepSpec, run_sweep
    >>> spec = SweepSpec(base={"batch": 1, "heads": 2, "head_dim": 64},
    ...                  axes={"l2_bytes": [25 << 20, 50 << 20], "seq": [512, 1024],
    ...                        "algorithm": ["naive", "flash2"]})
    >>> spec.n_points
    8
    >>> result = run_sweep(spec, progress=False, workers=1)   # in memory; out="sweeps/l2" streams to disk
    >>> sorted({r["status"] for r in result.rows})
    ['ok']

Axes and base settings name any field of `Hardware` (a preset key such as `l2_bytes`,
`smem_per_sm_bytes`, `dram_bw_Bps`), of `AttentionProblem` or of `Schedule`, plus two aliases:
`seq` (seq_q and seq_kv) and `heads` (heads_q and heads_kv).  A name may be qualified
(`hw.`, `problem.`, `schedule.`) where it would be ambiguous.  Settings apply in order: base, then
axes, so an axis overrides a base setting.  Points are the cartesian product of the axes, the last
axis varying fastest; each is simulated on its own, so any backend may run them in any order and
the set is the same (rows are sorted by point index).

A point the model refuses (tiles that do not fit, an invalid hardware figure) is recorded with
status "refused" and its reason; any other exception is recorded as status "error" with its type:
one bad point never ends the sweep.

On disk (`out="PREFIX"`), see `memsim.sweep_store`: finished points stream to
PREFIX.partial.jsonl as they arrive (one writer: this process; the file is locked); an
interrupted sweep resumes from it (`resume=True`) without recomputing finished points; when every
point is done the set -- PREFIX.csv, PREFIX.json, PREFIX.parquet (when pandas and a Parquet engine
are installed) and any extra files (the CLI's PREFIX.png) -- is published as a whole, or not at all.
Backends (`memsim.sweep_backends`): "local" (processes on this machine, the default) and "dask"
(a local Dask cluster, or an existing one with `scheduler="tcp://host:8786"`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field

from .schedule import AttentionProblem, Schedule, ScheduleError, require_bool

#: result columns of every ok point (the same names as SimResult.total / the CLI sweep CSV)
RESULT_FIELDS = ("global_read_bytes", "global_write_bytes", "l2_read_bytes", "l2_write_bytes",
                 "dram_read_bytes", "dram_write_bytes", "flops", "exp_count", "time_s", "gpu_time_s",
                 "tflops_nominal", "closed_form_global_bytes", "peak_sram_per_cta_bytes", "extra_device_bytes")
STATUSES = ("ok", "refused", "error")
#: problem settings when neither base nor axes give them (the CLI's defaults: B=4 H=16 N=4096 d=64)
DEFAULT_BASE = {"batch": 4, "heads": 16, "seq": 4096, "head_dim": 64}
ALIASES = {"seq": ("seq_q", "seq_kv"), "heads": ("heads_q", "heads_kv")}
SIM_OPTIONS = ("grain", "run_blocks", "flush_l2")


class SweepError(ValueError):
    """A sweep that cannot start: a bad axis, a journal of another sweep, outputs in the way."""


def _field_names(cls, skip=()) -> tuple:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in skip)


@functools.lru_cache(maxsize=None)
def _sections() -> dict:
    from .hardware import Hardware
    return {"hw": _field_names(Hardware, skip=("name", "description", "sources")),
            "problem": _field_names(AttentionProblem) + tuple(ALIASES),
            "schedule": _field_names(Schedule)}


def resolve_name(name: str) -> tuple[str, tuple[str, ...]]:
    """(section, fields) that an axis or base name sets: ("hw", ("l2_bytes",)), ("problem", ("seq_q", "seq_kv"))."""
    if not isinstance(name, str) or not name:
        raise SweepError(f"an axis name must be a non-empty string, got {name!r}")
    secs = _sections()
    if "." in name:
        sec, _, fld = name.partition(".")
        if sec not in secs or fld not in secs[sec]:
            raise SweepError(f"unknown sweep name {name!r}; qualified names are hw.<key>, problem.<field>, "
                             f"schedule.<field> with the fields listed by `python -m memsim sweep --help`")
        return sec, ALIASES.get(fld, (fld,))
    hits = [s for s, fields in secs.items() if name in fields]
    if not hits:
        raise SweepError(f"unknown sweep name {name!r}; choose a hardware key ({', '.join(secs['hw'][:6])}, ...), "
                         f"a problem field ({', '.join(secs['problem'])}) or a schedule field "
                         f"({', '.join(secs['schedule'])})")
    if len(hits) > 1:
        raise SweepError(f"sweep name {name!r} is ambiguous; write {' or '.join(f'{s}.{name}' for s in hits)}")
    return hits[0], ALIASES.get(name, (name,))


def _json_value(name, v):
    if isinstance(v, float) and not math.isfinite(v):
        raise SweepError(f"{name}: value {v!r} is not finite")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if hasattr(v, "item"):  # numpy scalars
        return _json_value(name, v.item())
    raise SweepError(f"{name}: values must be numbers, strings, booleans or None, got {v!r} ({type(v).__name__})")


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep: a hardware preset (name or .toml path), fixed `base` settings, ordered `axes`
    (name -> values), and simulate() options (`grain`, `run_blocks`, `flush_l2`)."""

    axes: dict
    base: dict = field(default_factory=dict)
    hardware: str = "h100-sxm"
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.axes, dict) or not self.axes:
            raise SweepError("a sweep needs at least one axis, e.g. axes={'seq': [1024, 2048]}")
        if not isinstance(self.hardware, str) or not self.hardware:
            raise SweepError(f"hardware must be a preset name or a .toml path, got {self.hardware!r}")
        axes = {}
        for name, values in self.axes.items():
            resolve_name(name)
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise SweepError(f"axis {name!r}: values must be a list, got {values!r}")
            vals = tuple(_json_value(name, v) for v in values)
            if not vals:
                raise SweepError(f"axis {name!r} has no values")
            if len(set(map(repr, vals))) != len(vals):
                raise SweepError(f"axis {name!r} repeats a value: {list(vals)}")
            axes[name] = vals
        base = {}
        for name, v in self.base.items():
            resolve_name(name)
            base[name] = _json_value(name, v)
        for k in self.options:
            if k not in SIM_OPTIONS:
                raise SweepError(f"unknown simulate option {k!r}; choose from {', '.join(SIM_OPTIONS)}")
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "options", dict(self.options))

    @property
    def n_points(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def points(self):
        """(index, {axis: value}) for every point, the last axis varying fastest."""
        names = list(self.axes)
        for i, combo in enumerate(itertools.product(*self.axes.values())):
            yield i, dict(zip(names, combo))

    def to_dict(self) -> dict:
        return {"hardware": self.hardware, "base": dict(self.base),
                "axes": {k: list(v) for k, v in self.axes.items()}, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepSpec":
        return cls(axes=d["axes"], base=d.get("base", {}), hardware=d.get("hardware", "h100-sxm"),
                   options=d.get("options", {}))

    def fingerprint(self) -> str:
        """A hash of what the sweep computes (a journal is resumed only by the same sweep)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


# --- one point ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _base_hardware(name: str):
    from .hardware import load_hardware
    return load_hardware(name)


def settings_for(spec_dict: dict, values: dict) -> tuple[dict, dict, dict]:
    """(hardware overrides, problem kwargs, schedule kwargs) of one point (base, then its axis values).

    An sp_dtype of the base (`memsim sweep --sp-dtype`) is naive's S and P element type: it goes to the naive
    points only, as `memsim simulate`/`compare` do (the other algorithms keep S and P on chip and refuse one).
    An sp_dtype given as an axis is kept on every point it names."""
    hw, prob, sched = {}, {}, {}
    target = {"hw": hw, "problem": prob, "schedule": sched}
    from_axis = set()
    for name, v in itertools.chain(DEFAULT_BASE.items(), spec_dict["base"].items(), values.items()):
        sec, fields = resolve_name(name)
        for f in fields:
            target[sec][f] = v
            if name in values:
                from_axis.add((sec, f))
    if (sched.get("sp_dtype") is not None and ("schedule", "sp_dtype") not in from_axis
            and sched.get("algorithm", _SCHEDULE_DEFAULT_ALGORITHM) != "naive"):
        del sched["sp_dtype"]
    return hw, prob, sched


_SCHEDULE_DEFAULT_ALGORITHM = Schedule.__dataclass_fields__["algorithm"].default


@functools.lru_cache(maxsize=1024)
def _point_hardware(name: str, overrides: tuple):
    """The preset with a point's hardware overrides, one object per distinct override set: the model's
    per-hardware caches (calibration, derived tables) then hit for every point on the same hardware."""
    hw = _base_hardware(name)
    return hw.with_overrides(**dict(overrides)) if overrides else hw


def warm(spec_dict: dict) -> None:
    """Do once per worker what every point needs: import the model, read the preset and its calibration.
    Backends call it when a worker starts, so no point pays for it and the serial baseline is comparable."""
    from . import analytic  # noqa: F401
    from .calibration import calibration_for
    from .sim import simulate  # noqa: F401
    try:
        calibration_for(_base_hardware(spec_dict["hardware"]))
    except Exception:  # noqa: BLE001 -- a bad preset is reported by the points themselves
        pass


def start_worker(spec_dict: dict) -> None:
    """A local pool process's initializer: `warm`, after freezing what it inherited from the parent by fork
    (the parent's objects are then never traversed by this worker's GC, so their pages are never copied)."""
    import gc
    gc.freeze()
    warm(spec_dict)


def evaluate(spec_dict: dict, index: int, values: dict) -> dict:
    """Simulate one point; returns its row (never raises for a bad point: status refused/error)."""
    from . import analytic
    from .hardware import HardwareError
    from .sim import simulate
    row = {"point": index, **values, "status": "ok"}
    t0 = time.perf_counter()
    try:
        hw_over, prob, sched = settings_for(spec_dict, values)
        try:
            hw = _point_hardware(spec_dict["hardware"], tuple(sorted(hw_over.items())))
        except TypeError:  # an unhashable override value: let with_overrides say what is wrong
            hw = _base_hardware(spec_dict["hardware"]).with_overrides(**hw_over)
        p, s = AttentionProblem(**prob), Schedule(**sched)
        r = simulate(p, s, hw, **spec_dict.get("options", {}))
        cf = analytic.global_bytes(p, s)
        row.update({k: r.total[k] for k in RESULT_FIELDS if k in r.total},
                   tflops_nominal=r.nominal_flops / r.time_s / 1e12 if r.time_s > 0 else 0.0,
                   closed_form_global_bytes=cf["global_read_bytes"] + cf["global_write_bytes"],
                   peak_sram_per_cta_bytes=r.peak_sram_per_cta_bytes, extra_device_bytes=r.extra_device_bytes)
    except (ScheduleError, HardwareError, SweepError, TypeError) as e:
        row.update(status="refused", error=f"{type(e).__name__}: {e}".splitlines()[0])
    except Exception as e:  # noqa: BLE001 -- a bug in one point is recorded, the sweep goes on
        row.update(status="error", error=f"{type(e).__name__}: {e}".splitlines()[0])
    row["sim_wall_s"] = time.perf_counter() - t0
    return row


def run_batch(spec_dict: dict, batch: list) -> list[dict]:
    """The task every backend runs: a list of (index, values) -> their rows."""
    return [evaluate(spec_dict, i, v) for i, v in batch]


# --- progress -----------------------------------------------------------------------------------
class Progress:
    """One self-rewriting line on stderr: done/total, points per second, ETA, refused and errors."""

    def __init__(self, total: int, done: int = 0, stream=None, enabled: bool = True, min_interval_s: float = 0.5):
        self.total, self.done, self.start_done = total, done, done
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self.t0 = self.t_last = time.monotonic()
        self.bad = {"refused": 0, "error": 0}

    def update(self, rows) -> None:
        for r in rows:
            self.done += 1
            if r["status"] in self.bad:
                self.bad[r["status"]] += 1
        now = time.monotonic()
        if self.enabled and (now - self.t_last >= self.min_interval_s or self.done == self.total):
            self.t_last = now
            self._draw(now)

    def _draw(self, now, end=False) -> None:
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = f"{left:.0f} s" if math.isfinite(left) else "?"
        width = 30
        n = int(width * self.done / self.total) if self.total else width
        self.stream.write(f"\r[{'#' * n}{'.' * (width - n)}] {self.done}/{self.total} points, {rate:.1f}/s, "
                          f"ETA {eta}, {self.bad['refused']} refused, {self.bad['error']} errors ")
        if self.done == self.total or end:
            self.stream.write("\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done != self.total:
            self._draw(time.monotonic(), end=True)


class TqdmProgress:
    """The same progress as `Progress`, drawn by tqdm (used when tqdm is installed: the `progress` extra)."""

    def __init__(self, total: int, done: int = 0, stream=None, tqdm_cls=None):
        self.bar = tqdm_cls(total=total, initial=done, file=stream or sys.stderr, unit="point", dynamic_ncols=True,
                            smoothing=0.1, desc="sweep")
        self.bad = {"refused": 0, "error": 0}

    def update(self, rows) -> None:
        rows = list(rows)
        n_bad = sum(self.bad.values())
        for r in rows:
            if r["status"] in self.bad:
                self.bad[r["status"]] += 1
        if sum(self.bad.values()) != n_bad:
            self.bar.set_postfix(refused=self.bad["refused"], errors=self.bad["error"], refresh=False)
        self.bar.update(len(rows))

    def close(self) -> None:
        self.bar.close()


def make_progress(total: int, done: int = 0, *, stream=None, enabled: bool = True, use_tqdm: bool | None = None):
    """tqdm's bar when tqdm is installed (use_tqdm=None: if importable), else the plain self-rewriting line."""
    if enabled and use_tqdm is not False:
        try:
            from tqdm import tqdm
        except ImportError:
            if use_tqdm:
                raise ImportError("tqdm is not installed: pip install tqdm (or 'io-aware-attention[progress]')") from None
        else:
            return TqdmProgress(total, done, stream=stream, tqdm_cls=tqdm)
    return Progress(total, done, stream=stream, enabled=enabled)


# --- the whole sweep ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    """Every point's row, sorted by point index, and where the set was published (if on disk)."""

    spec: SweepSpec
    rows: tuple
    files: dict = field(default_factory=dict)
    backend: str = "local"
    wall_s: float = 0.0
    resumed_points: int = 0

    def counts(self) -> dict:
        return {s: sum(r["status"] == s for r in self.rows) for s in STATUSES}

    def to_frame(self):
        """The rows as a pandas DataFrame (needs the `study` extra: pandas)."""
        from .frames import rows_frame
        return rows_frame(self.rows, columns=columns(self.spec))


def columns(spec: SweepSpec) -> list[str]:
    """Column order of a sweep's rows: point, the axes, status, results, error, sim_wall_s."""
    return ["point", *spec.axes, "status", *RESULT_FIELDS, "error", "sim_wall_s"]


def batches(points, size: int, *, workers: int | None = None):
    """Lists of points to run as one task.  With `workers`, sizes shrink towards the end ("guided"
    scheduling): each batch is at most `size` and at most 1/(4 workers) of the points still to hand out,
    so the last tasks are single points and no worker idles long while another finishes a big batch."""
    pts = list(points) if workers else points
    if not workers:
        batch = []
        for p in pts:
            batch.append(p)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    i = 0
    while i < len(pts):
        n = max(1, min(size, -(-(len(pts) - i) // (4 * workers))))
        yield pts[i:i + n]
        i += n


#: the most points in one task: big enough that the per-task cost (~1 ms) is < 1 % of its work
#: (points take 10 ms - 3 s), small enough that results stream to disk promptly
MAX_BATCH = 32


def default_batch_size(n_points: int, workers: int) -> int:
    """Points per task before the end of the sweep (see `batches`: the last tasks are smaller)."""
    return max(1, min(MAX_BATCH, n_points // max(1, 8 * workers)))


def run_sweep(spec: SweepSpec, out=None, *, backend: str = "local", workers: int | None = None,
              scheduler: str | None = None, resume: bool = False, force: bool = False,
              progress: bool = True, batch_size: int | None = None, extra_files=None,
              stream=None, provenance: dict | None = None) -> SweepResult:
    """Run every point of `spec` on `backend` ("local" or "dask"); see the module doc.

    out: None (rows in memory only) or an output prefix (stream, resume, publish as a set).
    workers: processes (local) or workers of a started local Dask cluster (default: the CPU count);
    1 runs in this process.  scheduler: an existing Dask scheduler's address (backend "dask").
    resume: continue PREFIX.partial.jsonl.  force: replace a published set (and restart an unfinished
    journal instead of resuming it).  extra_files: rows -> {suffix: bytes or str} published with the set.
    """
    from .sweep_backends import make_backend
    from .sweep_store import Journal, publish_set, recover_publish, set_paths
    if not isinstance(spec, SweepSpec):
        raise TypeError(f"spec must be a memsim.sweep.SweepSpec, got {type(spec).__name__}")
    for flag, v in (("resume", resume), ("force", force), ("progress", progress)):
        require_bool(flag, v)
    _base_hardware(spec.hardware)  # a bad preset fails here, not once per point
    t0 = time.perf_counter()
    spec_dict = spec.to_dict()
    done: dict[int, dict] = {}
    journal = None
    if out is not None:
        paths = set_paths(out)
        recover_publish(out)
        journal = Journal.open(paths["journal"], spec, resume=resume, force=force, outputs=paths)
        done = journal.rows
    resumed = len(done)
    todo = [(i, v) for i, v in spec.points() if i not in done]
    be = make_backend(backend, workers=workers, scheduler=scheduler)
    size = batch_size or default_batch_size(len(todo), be.workers)
    bar = make_progress(spec.n_points, resumed, stream=stream, enabled=progress)
    try:
        with _sigterm_as_interrupt():
            for rows in be.run(spec_dict, batches(todo, size, workers=be.workers if be.workers > 1 else None)):
                if journal is not None:
                    journal.append(rows)
                for r in rows:
                    done[r["point"]] = r
                bar.update(rows)
        bar.close()
    except KeyboardInterrupt:
        bar.close()
        if journal is not None:
            journal.close()
            print(f"sweep interrupted: {len(done)} of {spec.n_points} points kept in {journal.path}; "
                  f"run again with --resume (resume=True) to finish it", file=stream or sys.stderr)
        raise
    finally:
        be.close()
    rows = tuple(done[i] for i in sorted(done))
    if len(rows) != spec.n_points:  # a backend lost points: never publish an incomplete set
        raise SweepError(f"{spec.n_points - len(rows)} points came back from no worker; the journal keeps the "
                         f"{len(rows)} finished ones: rerun with --resume")
    result = SweepResult(spec, rows, backend=backend, wall_s=time.perf_counter() - t0, resumed_points=resumed)
    if journal is not None:
        files = publish_set(out, spec, result, extra=extra_files(rows) if extra_files else {},
                            overwrite=force, journal=journal, provenance=provenance)
        result = dataclasses.replace(result, files=files)
    return result


class _sigterm_as_interrupt:
    """Within the block, SIGTERM ends the sweep like Ctrl-C (finished points stay in the journal)."""

    def __enter__(self):
        import signal
        import threading
        self.old = None
        if threading.current_thread() is threading.main_thread():
            def _raise(signum, frame):
                raise KeyboardInterrupt("SIGTERM")
            self.old = signal.signal(signal.SIGTERM, _raise)
        return self

    def __exit__(self, *exc):
        import signal
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False
