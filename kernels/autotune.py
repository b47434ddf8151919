"""Autotuning that does not make users wait: the model ranks, the device measures only its top few.

    tuned = kernels.autotune(q, k, v, causal=True)                     # or autotune(problem, q, k, v)
    tuned.schedule, tuned.source, tuned.ms                              # source: cache, table, measured, ...
    kernels.tuned_schedule(problem, phase="fwd")                        # lookup only, never measures

Where the answer comes from, first hit wins:

1. **the disk cache** (`cache_path()`: ``$KERNELS_TUNE_CACHE``, else ``~/.cache/io-attention/tuned.json``):
   winners measured on this machine, keyed by GPU name, torch and triton versions, the problem class
   (`memsim.tuning.problem_key`), the algorithm(s) and the phase;
2. **the committed default table** of the GPU (``kernels/tuned/<gpu slug>.json``, made by
   ``benchmarks/tune_rank.py report --table`` from an exhaustive measurement): the same problem class,
   else (``nearest=True``) the closest class of the same head dim, mask and GQA group, same dtype first
   (fp16 and bf16 next: the same tile code) -- sequence lengths and batch x heads differ -- so the first call
   is fast;
3. **measure**: the model's ranking of the candidates (`memsim.tuning.rank`, which needs simpy; without
   it the table's stored model ranking of the nearest class, or ``ranking=`` given by the caller), then
   the top ``top`` candidates that compile and pass the exactness gate (DESIGN.md's rule on a row slice,
   `default_gate`) are timed (`triton.testing.do_bench` medians) and the fastest is written to the cache.

The cache is one JSON file, rewritten atomically under a lock (several processes may tune at once);
an entry is never silently replaced by a different schedule: `AutotuneError`, unless ``overwrite=True``.
This module imports torch and triton only where it measures; the cache, keys and table are plain Python.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from memsim.schedule import AttentionProblem, Schedule, ScheduleError, require_bool, schedule_from_dict

__all__ = ["autotune", "tuned_schedule", "Tuned", "AutotuneError", "cache_path", "cache_key", "table_path",
           "load_table", "table_lookup", "CACHE_ENV", "TABLE_DIR", "default_gate", "gate_slice", "gate_reference",
           "gate_check", "default_lookup"]

CACHE_ENV = "KERNELS_TUNE_CACHE"
TABLE_DIR = Path(__file__).resolve().parent / "tuned"
CACHE_FORMAT = "kernels.autotune_cache/1"
TABLE_FORMAT = "kernels.tuned/1"
#: the algorithms whose candidates compete when autotune is not given one, per phase
DEFAULT_ALGORITHMS = {"fwd": ("flash2", "hopper"), "bwd": ("flash2",)}
TWO_BYTE = ("fp16", "bf16")


class AutotuneError(ValueError):
    """Tuning cannot answer: no ranking, no candidate passed, or a cache entry would be replaced."""


@dataclass(frozen=True)
class Tuned:
    """A tuned schedule and where it came from."""

    schedule: Schedule
    #: "cache", "table", "table-nearest" or "measured"
    source: str
    #: the key it is kept under (cache key for cache/measured, table key for the table)
    key: str
    #: measured median milliseconds (None where the source recorded none)
    ms: float | None = None
    #: for "measured": every candidate tried, in the model's order: {"schedule", "ms" | "error" | "gate"}
    tried: tuple = ()


# --- keys and paths (plain Python) ------------------------------------------------------------------------
def _algs_text(algorithms) -> str:
    return "+".join(algorithms)


def cache_key(problem: AttentionProblem, algorithms, phase: str, *, gpu: str, torch_version: str,
              triton_version: str) -> str:
    """GPU | torch | triton | problem class | algorithms | phase."""
    from memsim.tuning import problem_key
    return f"{gpu}|torch {torch_version}|triton {triton_version}|{problem_key(problem)}|{_algs_text(algorithms)}|{phase}"


def cache_path() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "io-attention" / "tuned.json"


def table_path(gpu: str) -> Path:
    from memsim.io import gpu_slug
    return TABLE_DIR / f"{gpu_slug(gpu)}.json"


def _read_json(path: Path, fmt: str) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AutotuneError(f"{path}: not valid JSON ({e}); remove or fix it") from e
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise AutotuneError(f"{path}: not a {fmt} file (format {d.get('format') if isinstance(d, dict) else None!r})")
    return d


def load_cache(path: Path | None = None) -> dict:
    """{key: entry} of the cache file ({} when there is none)."""
    path = Path(path) if path is not None else cache_path()
    return _read_json(path, CACHE_FORMAT)["entries"] if path.is_file() else {}


def load_table(gpu: str, path: Path | None = None) -> dict:
    """The committed default table of `gpu` ({} when there is none)."""
    path = Path(path) if path is not None else table_path(gpu)
    return _read_json(path, TABLE_FORMAT) if path.is_file() else {}


def _class_parts(key: str) -> dict:
    # dtype|dD|mask|gG|sqN|skvN|bhN|phase
    parts = key.split("|")
    return {"head": tuple(parts[:4]), "sq": int(parts[4][2:]), "skv": int(parts[5][3:]), "bh": int(parts[6][2:]),
            "phase": parts[7]}


def table_lookup(table: dict, problem: AttentionProblem, phase: str, algorithms, *, nearest: bool = True,
                 inside: bool = False):
    """(schedule, entry, table key, exact?) of the table's winner for the problem class, or None.
    With several algorithms the entry's overall winner is taken when its algorithm is among them, else the
    best of `by_algorithm` that is; nearest: the closest class with the same head dim, mask and GQA group and
    the same dtype (else the other 2-byte dtype: fp16 and bf16 run the same tile code), by log2 distance of the
    sequence lengths, then of batch x heads.  inside: a nearest class only when the problem's class lies inside
    the span the table measured for that family (seq_q, seq_kv and batch x heads each between the family's
    smallest and largest class): an interpolation, never an extrapolation (what `kernels.attention` uses)."""
    require_bool("nearest", nearest)
    require_bool("inside", inside)
    from memsim.tuning import problem_key
    entries = table.get("entries", {})
    want = f"{problem_key(problem)}|{phase}"

    def pick(e):
        s = e["schedule"]
        if s["algorithm"] in algorithms:
            return s
        best = [(v["ms"], v["schedule"]) for a, v in e.get("by_algorithm", {}).items() if a in algorithms]
        return min(best, key=lambda x: x[0])[1] if best else None

    if want in entries and pick(entries[want]) is not None:
        return schedule_from_dict(pick(entries[want])), entries[want], want, True
    if not nearest:
        return None
    w = _class_parts(want)
    scored = []
    for k, e in entries.items():
        c = _class_parts(k)
        # fp16 and bf16 compile to the same tile code: the other 2-byte type is near, after every same-type class
        other_dtype = c["head"][0] != w["head"][0]
        same_code = not other_dtype or {c["head"][0], w["head"][0]} <= set(TWO_BYTE)
        if not same_code or c["head"][1:] != w["head"][1:] or c["phase"] != phase or pick(e) is None:
            continue
        dist = (other_dtype,
                abs(math.log2(c["sq"]) - math.log2(w["sq"])) + abs(math.log2(c["skv"]) - math.log2(w["skv"])),
                abs(math.log2(c["bh"]) - math.log2(w["bh"])), k)
        scored.append((dist, k, e))
    if not scored:
        return None
    if inside:
        fam = [_class_parts(k) for _, k, _ in scored]
        for ax in ("sq", "skv", "bh"):
            if not min(c[ax] for c in fam) <= w[ax] <= max(c[ax] for c in fam):
                return None
    _, k, e = min(scored)
    return schedule_from_dict(pick(e)), e, k, False


# --- the cache file ---------------------------------------------------------------------------------------
def _store(path: Path, key: str, entry: dict, *, overwrite: bool) -> dict:
    """Merge one entry into the cache under an exclusive lock, atomically; refuse to replace a different
    schedule unless `overwrite`.  Returns the entry kept."""
    import fcntl

    from memsim.io import write_json
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        d = _read_json(path, CACHE_FORMAT) if path.is_file() else {"format": CACHE_FORMAT, "entries": {}}
        old = d["entries"].get(key)
        if old is not None and old["schedule"] != entry["schedule"] and not overwrite:
            raise AutotuneError(f"{path} already holds a different winner for {key}: {old['schedule']} "
                                f"({old.get('ms')} ms, {old.get('date')}) vs the new {entry['schedule']} "
                                f"({entry.get('ms')} ms); pass overwrite=True to replace it")
        if old is not None and old["schedule"] != entry["schedule"]:
            entry = dict(entry, replaced=old)
        d["entries"][key] = entry
        write_json(path, d, overwrite=True)
    return entry


# --- measuring (torch + triton) ---------------------------------------------------------------------------
def _versions():
    import torch
    import triton
    return torch.__version__, triton.__version__


def _gpu_name(device) -> str:
    import torch
    if device.type != "cuda":
        return "cpu"
    return torch.cuda.get_device_name(device)


def default_timer(fn) -> float:
    """Median milliseconds of fn() (triton.testing.do_bench; on the CPU interpreter one timed call)."""
    import torch
    if not torch.cuda.is_available():
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    import triton
    return triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median")


def gate_slice(problem: AttentionProblem, q, k, v, do=None):
    """(sub-problem, q, k, v, do) of the gate: batch 0 and the first two q heads (whole GQA groups), contiguous."""
    from dataclasses import replace
    p = problem
    hkv = 1 if p.group_size > 1 else min(2, p.heads_kv)
    hq = hkv * p.group_size  # whole GQA groups
    qs, ks, vs = (t.contiguous() for t in (q[:1, :hq], k[:1, :hkv], v[:1, :hkv]))
    dos = do[:1, :hq].contiguous() if do is not None else None
    return replace(p, batch=1, heads_q=hq, heads_kv=hkv), qs, ks, vs, dos


def gate_reference(sub: AttentionProblem, qs, ks, vs, dos=None):
    """(float64 reference, the rule's yardsticks) of a gate slice: compute once per problem, check every candidate."""
    import kernels
    from kernels.testing import yardsticks
    kw = dict(causal=sub.causal, scale=sub.scale, causal_align=sub.causal_align)
    return kernels.reference(qs, ks, vs, do=dos, **kw), yardsticks(qs, ks, vs, do=dos, **kw)


def gate_check(sub: AttentionProblem, schedule: Schedule, qs, ks, vs, dos, ref, ys) -> tuple[bool, str]:
    """DESIGN.md's rule (kernels.testing.check_rule) for one candidate on a gate slice: the forward's O, or the
    backward's dQ, dK, dV (after flash2's default forward)."""
    import kernels
    from kernels.testing import check_rule
    try:
        if schedule.phase == "fwd":
            f = kernels.forward(sub, schedule, qs, ks, vs)
            check_rule("o", f.o, ref[0], dtype=sub.dtype, verbose=False, **ys["o"])
        else:
            f = kernels.forward(sub, kernels.default_schedule(sub, "flash2", "fwd", qs.device), qs, ks, vs)
            grads = kernels.backward(sub, schedule, qs, ks, vs, f.o, dos, f)
            for name, g, gr in zip(("dq", "dk", "dv"), grads, ref[2:]):
                check_rule(name, g, gr, dtype=sub.dtype, verbose=False, **ys[name])
        return True, "ok"
    except AssertionError as e:
        return False, str(e)[:300]


def default_gate(problem: AttentionProblem, schedule: Schedule, q, k, v, do=None) -> tuple[bool, str]:
    """The exactness gate on the row slice of `gate_slice` (the reference is computed per call)."""
    sub, qs, ks, vs, dos = gate_slice(problem, q, k, v, do)
    return gate_check(sub, schedule, qs, ks, vs, dos, *gate_reference(sub, qs, ks, vs, dos))


def _model_ranking(problem, algorithms, phase, table, hardware):
    """The model's candidate order: memsim.tuning.rank where simpy is installed, else the table's stored
    ranking of the nearest class (None when neither)."""
    import importlib.util
    if importlib.util.find_spec("simpy") is not None:
        from memsim.tuning import candidates, rank
        cands = [s for a in algorithms for s in candidates(problem, a, phase, hardware)]
        return [r.schedule for r in rank(problem, cands, hardware)], "memsim.tuning.rank"
    hit = table_lookup(table, problem, phase, algorithms)
    if hit is not None and hit[1].get("model_ranking"):
        return ([schedule_from_dict(s) for s in hit[1]["model_ranking"] if s["algorithm"] in algorithms],
                f"the default table's model ranking of {hit[2]} (simpy is not installed here)")
    return None, None


def autotune(problem_or_q, *tensors, causal: bool = False, scale=None, phase: str = "fwd", algorithms=None,
             top: int = 3, ranking=None, retune: bool = False, overwrite: bool = False, nearest: bool = True,
             hardware: str = "h100-sxm", timer=None, gate=None, cache: Path | str | None = None,
             table: Path | str | None = None) -> Tuned:
    """The tuned schedule of a problem: ``autotune(q, k, v, causal=...)`` or ``autotune(problem, q, k, v)``
    (``do`` may follow v for the backward; random when absent).

    Lookup first (cache, then the GPU's default table; `retune=True` skips both), else measure the model's
    `top` candidates and cache the fastest.  ranking: candidate Schedules in the order to try (instead of the
    model's).  timer(fn) -> ms and gate(problem, schedule, q, k, v, do) -> (ok, message) replace the device's
    do_bench and the exactness rule (tests use fake ones).  cache / table: file paths instead of
    `cache_path()` / ``kernels/tuned/<gpu>.json``."""
    import kernels
    for name, flag in (("retune", retune), ("overwrite", overwrite), ("nearest", nearest)):
        require_bool(name, flag)
    if isinstance(problem_or_q, AttentionProblem):
        problem = problem_or_q
        if len(tensors) < 3:
            raise AutotuneError("autotune(problem, q, k, v[, do]): the problem needs its q, k and v tensors to measure on")
        q, k, v, *rest = tensors
        from ._common import check_matches
        check_matches(problem, q, k, v)
    else:
        q = problem_or_q
        if len(tensors) < 2:
            raise AutotuneError("autotune(q, k, v[, do], causal=...): give q, k and v (or an AttentionProblem first)")
        k, v, *rest = tensors
        problem = kernels.problem_for(q, k, v, causal=causal, scale=scale)
    do = rest[0] if rest else None
    if phase not in ("fwd", "bwd"):
        raise AutotuneError(f"phase must be 'fwd' or 'bwd', got {phase!r}")
    if not (isinstance(top, int) and top >= 1):
        raise AutotuneError(f"top must be a positive int, got {top!r}")
    algorithms = tuple(algorithms or DEFAULT_ALGORITHMS[phase])
    gpu = _gpu_name(q.device)
    tv, trv = _versions()
    key = cache_key(problem, algorithms, phase, gpu=gpu, torch_version=tv, triton_version=trv)
    cpath = Path(cache) if cache is not None else cache_path()
    tab = load_table(gpu, Path(table) if table is not None else None)
    if not retune:
        hit = lookup(problem, phase, algorithms, gpu=gpu, versions=(tv, trv), cache=cpath, table=tab, nearest=nearest)
        if hit is not None:
            return hit
    if ranking is None:
        ranking, why = _model_ranking(problem, algorithms, phase, tab, hardware)
        if ranking is None:
            raise AutotuneError(f"no model ranking for {key}: memsim.tuning.rank needs simpy (pip install simpy), and "
                                f"the default table {table_path(gpu)} has no class like it; install simpy or pass "
                                f"ranking=[Schedule, ...]")
    else:
        why = "ranking given by the caller"
        ranking = list(ranking)
        for s in ranking:
            if not isinstance(s, Schedule) or s.phase != phase:
                raise AutotuneError(f"ranking must hold {phase} Schedules, got {s!r}")
    timer = timer or default_timer
    gate = gate or default_gate
    if do is None and phase == "bwd":
        import torch
        do = torch.randn_like(q)
    f = None
    if phase == "bwd":
        f = kernels.forward(problem, kernels.default_schedule(problem, "flash2", "fwd", q.device), q, k, v)
    tried, timed = [], []
    for s in ranking:
        if len(timed) >= top:
            break
        row = {"schedule": s.to_dict()}
        try:
            ok, msg = gate(problem, s, q, k, v, do)
            if not ok:
                row["gate"] = msg
            else:
                fn = (lambda s=s: kernels.forward(problem, s, q, k, v)) if phase == "fwd" else (
                    lambda s=s: kernels.backward(problem, s, q, k, v, f.o, do, f))
                row["ms"] = float(timer(fn))
                timed.append((row["ms"], s))
        except (ScheduleError, RuntimeError, ValueError) as e:  # does not fit, does not compile, bad launch
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        tried.append(row)
    if not timed:
        raise AutotuneError(f"no candidate of {key} compiled and passed the exactness gate ({len(tried)} tried: "
                            + "; ".join(r.get("error") or r.get("gate", "")[:80] for r in tried[:3]) + ")")
    ms, best = min(timed, key=lambda x: x[0])
    entry = {"schedule": best.to_dict(), "ms": ms, "top": top, "ranking_from": why, "tried": tried,
             "problem": problem.to_dict(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _store(cpath, key, entry, overwrite=overwrite)
    return Tuned(schedule=best, source="measured", key=key, ms=ms, tried=tuple(tried))


def lookup(problem: AttentionProblem, phase: str = "fwd", algorithms=None, *, gpu: str, versions: tuple,
           cache: Path | None = None, table: dict | None = None, nearest: bool = True) -> Tuned | None:
    """The cache's entry for the problem class, else the default table's (exact, then nearest), else None."""
    require_bool("nearest", nearest)
    algorithms = tuple(algorithms or DEFAULT_ALGORITHMS[phase])
    key = cache_key(problem, algorithms, phase, gpu=gpu, torch_version=versions[0], triton_version=versions[1])
    e = load_cache(cache).get(key)
    if e is not None:
        return Tuned(schedule=schedule_from_dict(e["schedule"]), source="cache", key=key, ms=e.get("ms"))
    tab = load_table(gpu) if table is None else table
    hit = table_lookup(tab, problem, phase, algorithms, nearest=nearest) if tab else None
    if hit is None:
        return None
    s, e, tkey, exact = hit
    return Tuned(schedule=s, source="table" if exact else "table-nearest", key=tkey,
                 ms=e.get("ms") if exact and s.to_dict() == e["schedule"] else None)


def _mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


_TABLES: dict = {}
_DEFAULTS: dict = {}


def _table_cached(gpu: str) -> dict:
    """load_table(gpu), read again only when the file changes (mtime)."""
    path = table_path(gpu)
    stamp = (str(path), _mtime(path))
    hit = _TABLES.get(gpu)
    if hit is None or hit[0] != stamp:
        hit = _TABLES[gpu] = (stamp, load_table(gpu, path))
    return hit[1]


def default_lookup(problem: AttentionProblem, phase: str, algorithms=None, *, gpu: str, versions: tuple,
                   cache: Path | None = None) -> Tuned | None:
    """What `kernels.attention`'s default reads: the cache's entry for the problem class, else the GPU's default
    table -- the exact class, or the nearest class only when the problem lies inside the span the table measured
    (`table_lookup(..., inside=True)`) -- else None (then the registry's defaults).  Memoised per problem class
    until the cache or table file changes (a stat per call; the JSON is read again only after a change).
    A cache file that cannot be read is ignored here (the default must not fail on it; `autotune` reports it)."""
    algorithms = tuple(algorithms or DEFAULT_ALGORITHMS[phase])
    cpath = Path(cache) if cache is not None else cache_path()
    from memsim.tuning import problem_key
    memo = (gpu, versions, problem_key(problem), phase, algorithms, str(cpath), _mtime(cpath),
            str(table_path(gpu)), _mtime(table_path(gpu)))
    if memo in _DEFAULTS:
        return _DEFAULTS[memo]
    key = cache_key(problem, algorithms, phase, gpu=gpu, torch_version=versions[0], triton_version=versions[1])
    try:
        e = load_cache(cpath).get(key)
    except AutotuneError:
        e = None
    if e is not None:
        out = Tuned(schedule=schedule_from_dict(e["schedule"]), source="cache", key=key, ms=e.get("ms"))
    else:
        hit = table_lookup(_table_cached(gpu), problem, phase, algorithms, inside=True)
        if hit is None:
            out = None
        else:
            s, e, tkey, exact = hit
            out = Tuned(schedule=s, source="table" if exact else "table-nearest", key=tkey,
                        ms=e.get("ms") if exact and s.to_dict() == e["schedule"] else None)
    if len(_DEFAULTS) > 4096:
        _DEFAULTS.clear()
    _DEFAULTS[memo] = out
    return out


def tuned_schedule(problem: AttentionProblem, phase: str = "fwd", algorithms=None, *, device=None,
                   nearest: bool = True) -> Tuned | None:
    """Lookup only (cache, then the default table), never measures: None when neither knows the class."""
    require_bool("nearest", nearest)
    import torch
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return lookup(problem, phase, algorithms, gpu=_gpu_name(dev), versions=_versions(), nearest=nearest)
