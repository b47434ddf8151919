"""Measure suite cases on the GPU: a timing pass, then an ncu pass over all cases in groups.

Stdlib only in this process (torch runs in the subprocesses), so `python -m verification
measure` needs neither simpy nor memsim's model.

1. timing pass: `python -m verification.caserunner --mode time` (no profiler), median of
   repeats per case; it also fills Triton's on-disk cache so the ncu pass compiles nothing;
2. ncu pass: one `ncu ... python -m verification.caserunner --mode ncu` per group of
   NCU_GROUP_SIZE cases, so an interrupted or timed-out run keeps every finished group
   (--ncu-per-case: one ncu process per case, slower but a crash loses one case);
3. rows are mapped back to cases by order and kernel name, and each case's record is
   written at once to <data dir>/<case>.json (never over an existing file); the raw ncu
   log and the timing lines are kept in <data dir>/raw/.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import ncu as N
from .timing import record_time_s
from . import records as R


def _progress(msg):
    print(msg, file=sys.stderr, flush=True)


#: extra arguments for the case runner (tests set ["--allow-cpu"] for a dry run without a GPU)
RUNNER_EXTRA: list[str] = []


def _runner_cmd(spec_file, mode, out_file, python=None):
    return [python or sys.executable, "-m", "verification.caserunner", "--spec", str(spec_file), "--mode", mode,
            "--out", str(out_file), *RUNNER_EXTRA]


def read_jsonl(path) -> list[dict]:
    """The JSON lines of a runner's output file ([] when there is none); blank lines and a line cut by a
    kill are skipped.  The runners (verification.caserunner, verification.microbench.runner) append one
    line per finished item."""
    out = []
    p = Path(path)
    if p.exists():
        for line in p.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut by a kill
    return out


def run_runner(cmd, out_file, *, env=None, timeout_s=None, echo=_progress, what="the timing pass",
               kept="the cases it finished") -> list[dict]:
    """Run a runner command that appends one JSON line per finished item to out_file; its lines.  A run
    past timeout_s is killed and what it finished is kept (echoed as a warning)."""
    echo("$ " + " ".join(map(shlex.quote, cmd)))
    try:
        subprocess.run(cmd, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        echo(f"warning: {what} ran past {timeout_s} s; keeping {kept}")
    return read_jsonl(out_file)


#: what a case the runner stopped in gets: a CUDA fault (a misaligned address, an illegal access) surfaces at the next
#: synchronize, outside the runner's per-case `try`, and ends the process
STOPPED_IN = "the program stopped during this case (a CUDA fault ends the runner; the later cases ran in a new one)"


def _stopped_in(specs, have) -> tuple[str | None, list]:
    """(the case the runner stopped in, the cases after it) when it stopped before the end: the runner goes through
    `specs` in order, so the first case without a result is the one it was running."""
    names = [s["name"] for s in specs]
    missing = [k for k, n in enumerate(names) if n not in have]
    if not missing:
        return None, []
    return names[missing[0]], [s for s in specs[missing[0] + 1:] if s["name"] not in have]


def timing_pass(specs, workdir, *, timeout_s=None, env=None, echo=_progress) -> dict[str, dict]:
    """{case: runner line}; a case the runner stopped in gets {"ok": False, "error": STOPPED_IN} and the cases after
    it are timed again in a new process (in a sub-folder `resume<k>`)."""
    out: dict[str, dict] = {}
    todo, k, wd = list(specs), 0, Path(workdir)
    while todo:
        spec_file = wd / "specs.json"
        spec_file.write_text(json.dumps(todo))
        res = wd / "timing.jsonl"
        lines = run_runner(_runner_cmd(spec_file, "time", res), res, env=env, timeout_s=timeout_s, echo=echo)
        out.update({r["case"]: r for r in lines})
        crashed, todo = _stopped_in(todo, out)
        if crashed is None:
            break
        out[crashed] = {"case": crashed, "ok": False, "error": STOPPED_IN}
        if todo:
            k += 1
            wd = Path(workdir) / f"resume{k}"
            wd.mkdir(exist_ok=True)
            echo(f"timing: the runner stopped in {crashed}; {len(todo)} later case(s) in a new process")
    return out


#: where ncu_pass(report=True) leaves ncu's own report in its work folder
REPORT_NAME = "ncu" + N.REPORT_SUFFIX


def ncu_pass(specs, workdir, *, metrics=None, timeout_s=None, env=None, echo=_progress, options=None,
             report=False, report_reader="csv"):
    """Returns ({case: [KernelRow, ...]}, {case: runner line}, ncu log text).
    report=True: ncu also saves its .ncu-rep report as <workdir>/ncu.ncu-rep and the rows are read from
    it with `report_reader` ("csv" or "module", see ncu.read_report)."""
    spec_file = Path(workdir) / "specs_ncu.json"
    spec_file.write_text(json.dumps(specs))
    done_file = Path(workdir) / "ncu_done.jsonl"
    log_file = str(Path(workdir) / "ncu.log")
    rows, text = N.run_ncu(_runner_cmd(spec_file, "ncu", done_file), log_file=log_file, metrics=metrics,
                           timeout_s=timeout_s, env=env, echo=echo, options=options,
                           report=str(Path(workdir) / REPORT_NAME) if report else None, report_reader=report_reader)
    by_case, done = pass_rows_by_case(rows, done_file)
    return by_case, done, text


def pass_rows_by_case(rows, done_file) -> tuple[dict, dict]:
    """({case: [KernelRow, ...]}, {case: runner line}) of one ncu pass: its rows assigned to the cases its runner
    finished (`ncu_done.jsonl`), a case whose launches do not match its rows marked failed.  Also how
    verification.recover reads a stopped measure's passes."""
    done = read_jsonl(done_file) if Path(done_file).exists() else []
    by_case, mismatched = N.assign_rows_by_launches(rows, done) if rows else ({}, {})
    for d in done:
        if d["case"] in mismatched:
            d["ok"], d["error"] = False, mismatched[d["case"]]
    return by_case, {d["case"]: d for d in done}


def _repeat_levels(rows, timing: dict | None) -> tuple[list[dict], dict]:
    """One ncu pass of a case: (per-launch records, totals) with total.time_s from the timing pass."""
    kernels = [N.launch_record(r) for r in rows]
    total = N.sum_records(kernels)
    total["ncu_time_s"] = total.pop("time_s")
    t = (timing or {}).get("time_s")
    total["time_s"] = t if t is not None else total["ncu_time_s"]
    for key in ("time_cold_s", "time_b2b_s", "host_pass_s", "host_pass_cold_s", "host_pass_b2b_s"):
        # the two timings and the entry point's host floor timed beside the case; absent from records timed before
        if (timing or {}).get(key) is not None:
            total[key] = timing[key]
    if "time_b2b_s" in total:  # the pass's time: cold, or back to back where the host is slower than its kernels
        total["time_s"] = record_time_s(total)
    return kernels, total


def _median(vals):
    vals = sorted(float(v) for v in vals if v is not None)
    if not vals:
        return None
    n = len(vals)
    return vals[n // 2] if n % 2 else 0.5 * (vals[n // 2 - 1] + vals[n // 2])


def _spread(vals):
    """(max - min) / median over the repeats; None with fewer than two values."""
    vals = [float(v) for v in vals if v is not None]
    if len(vals) < 2:
        return None
    med = _median(vals)
    return (max(vals) - min(vals)) / med if med else (0.0 if max(vals) == min(vals) else None)


SPREAD_KEYS = N.LEVEL_KEYS + ("ncu_time_s",)


def _attach_compiled(kernels: list[dict], compiled):
    """Per-launch compiled-kernel facts (registers, local bytes, shared memory) from the case runner."""
    if not compiled:
        return
    for k, c in zip(kernels, compiled):
        if c and c.get("name") in (k.get("kernel"), N.KERNEL_PREFIX + k.get("name", "")):
            k["compiled"] = c


def build_record(spec: dict, rows, timing: dict | None, provenance: dict, tags=(), *, repeats=None,
                 compiled=None, extra=None) -> dict:
    """A measurement record (DESIGN.md "One record shape").

    One pass: `rows` (ncu rows of the case) and `timing` (its timing line).  Several passes:
    `repeats` = [(rows, timing), ...] from separate ncu processes; then every repeat is kept under
    "repeats", "kernels" and "total" hold the per-launch / per-level MEDIAN over the repeats, and
    "spread" the (max - min) / median per level (also per launch under kernels[i]["spread"])."""
    reps = repeats if repeats is not None else [(rows, timing)]
    per = [_repeat_levels(r, t) for r, t in reps]
    if len(per) == 1:
        kernels, total = per[0]
    else:
        n_launch = len(per[0][0])
        if any(len(k) != n_launch for k, _ in per):
            raise N.NcuError(f"case {spec['name']}: the repeats profiled different numbers of launches "
                             f"{[len(k) for k, _ in per]}")
        kernels = []
        for j in range(n_launch):
            ks = [k[j] for k, _ in per]
            med = {key: v for key, v in ks[0].items() if key not in N.LEVEL_KEYS + ("global_bytes_l1tex_t", "metrics")}
            for key in N.LEVEL_KEYS + ("global_bytes_l1tex_t",):
                med[key] = _median(k.get(key) for k in ks)
            med["metrics"] = {m: _median(k["metrics"].get(m) for k in ks) for m in ks[0].get("metrics", {})}
            med["spread"] = {key: _spread(k.get(key) for k in ks) for key in N.LEVEL_KEYS}
            kernels.append(med)
        total = {key: _median(t.get(key) for _, t in per) for key in per[0][1]}
    _attach_compiled(kernels, compiled)
    t = reps[0][1].get("time_s") if reps[0][1] else None
    rec = {
        "format": R.FORMAT,
        "case": spec["name"],
        "hardware": spec["hardware"],
        "problem": spec["problem"],
        "schedule": spec["schedule"],
        "tags": list(tags),
        "kernels": kernels,
        "total": total,
        "timing": {
            "time_s": "total.time_s: the whole pass's time without the profiler (since 2026-11-27 06:30 UTC "
                      "verification.timing: the cold-L2 median total.time_cold_s, or the back-to-back time "
                      "total.time_b2b_s where the host floor beside it exceeds the pass's ncu kernel time; "
                      "before, the cold-L2 median alone)"
                      + ("" if t is not None else " (NOT measured: this is the sum of ncu's per-launch durations)")
                      + ("; with several repeats, the median over the repeats' timing passes (separate processes)"
                         if len(reps) > 1 else ""),
            "ncu_time_s": "per launch kernels[].time_s and total.ncu_time_s: gpu__time_duration under ncu, "
                          "caches flushed before each kernel, clocks not locked",
            **({k: v for k, v in (reps[0][1] or {}).items() if k in ("timing",)}),
            **({"host_pass_s": "total.host_pass_s: the host floor of the case's launch path (the host_pass problem "
                               "that makes its launches: host_pass_id), timed in the same timing process right after the case; "
                               "median over the repeats"} if "host_pass_s" in total else {}),
        },
        "provenance": provenance,
    }
    if (reps[0][1] or {}).get("host_pass_id"):  # which host_pass point was timed beside the case
        rec["host_pass_id"] = reps[0][1]["host_pass_id"]
    if len(reps) > 1:
        rec["total_is"] = f"median over {len(reps)} repeats (separate ncu and timing processes), per level"
        rec["spread"] = {key: _spread(t.get(key) for _, t in per) for key in SPREAD_KEYS}
        rec["repeats"] = [{"kernels": [{kk: vv for kk, vv in k.items() if kk != "metrics"} for k in ks],
                           "total": tot, "metrics": [k.get("metrics") for k in ks]} for ks, tot in per]
    if extra:
        rec.update(extra)
    return rec


#: cases per ncu process: each group's records are written as soon as its process ends, so an
#: interrupted or timed-out run keeps every finished group (one process per case with per_case)
NCU_GROUP_SIZE = 8


def measure_cases(cases, data_dir, *, command: str, archive_old=False, per_case=False, metrics=None,
                  ncu_timeout_s=330, time_timeout_s=240, skip_timing=False, bundle_to=None,
                  echo=_progress, check_gpu=True, group_size=NCU_GROUP_SIZE, repeats=1, extra=None,
                  keep_report=False, report_reader="csv") -> dict:
    """Measure `cases` (suite.Case) into data_dir; returns a summary dict.

    `ncu_timeout_s` is the budget of one whole ncu pass over the cases, shared by its groups of
    `group_size` cases.  With `repeats` > 1 every case is timed and profiled `repeats` times, each
    time in separate processes (timing passes first, then the ncu passes); the records are written
    during the last ncu pass, group by group, holding every repeat (see `build_record`).  A case
    whose later repeats failed keeps the repeats that worked (its "repeats" says how many).
    `extra`: fields added to every record (e.g. {"set": "A-seed1", "seed": 1}); a callable
    extra(case name) -> dict is accepted too.
    `keep_report`: keep ncu's own report of every group (and repeat) as
    raw/ncu_<stamp>_r<repeat>g<group>.ncu-rep; each record names its reports under "ncu_reports"
    (paths relative to data_dir, one per repeat that measured the case); `report_reader` ("csv" or
    "module") is how the rows are read back from the report (ncu prints none while exporting)."""
    if report_reader not in N.REPORT_READERS:
        raise ValueError(f"report_reader must be one of {N.REPORT_READERS}, got {report_reader!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    specs = [c.to_spec() for c in cases]
    names = [c.name for c in cases]
    tags = {c.name: c.tags for c in cases}
    exe = N.ncu_path()  # fail early and clearly when ncu is missing
    if check_gpu:
        _check_gpu()
    moved = R.check_free(data_dir, names, archive_old=archive_old)
    if moved:
        echo(f"moved the older records of these cases to {moved}")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    ver = N.ncu_version(exe)
    options = N.supported_options(exe)
    if set(N.OPTIONAL_OPTIONS) - options:
        echo(f"warning: this ncu lacks {sorted(set(N.OPTIONAL_OPTIONS) - options)}; measuring without them")
    if metrics is None:
        metrics = gpu_metrics(N.METRICS, echo)
    prov = R.gpu_provenance(command, ver)
    prov["ncu_metrics"] = metrics
    prov["ncu_command"] = " ".join(N.build_command(
        [*(N.export_options("<group>" + N.REPORT_SUFFIX) if keep_report else []), "<program>"], metrics=metrics,
        exe="ncu", options=options))
    prov["repeats"] = repeats
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    raw = Path(data_dir) / R.RAW_DIR
    stamp = R.utc_stamp()
    written, failed = [], {}
    t0 = time.time()

    reports: dict[str, list[str]] = {}  # case -> raw/<report> per repeat that measured it (keep_report)

    def extra_for(name):
        e = extra(name) if callable(extra) else (dict(extra) if extra else None)
        if keep_report and reports.get(name):
            e = {**(e or {}), "ncu_reports": list(reports[name])}
        return e

    def keep(gwd, r, gi, group, by_case):
        """Copy the group's report into raw/ and note it for the cases it measured."""
        src = Path(gwd) / REPORT_NAME
        if not keep_report or not src.is_file():
            return
        from memsim.io import write_atomic
        name = f"ncu_{stamp}_r{r}g{gi}{N.REPORT_SUFFIX}"
        write_atomic(raw / name, src.read_bytes())
        for s in group:
            if s["name"] in by_case:
                reports.setdefault(s["name"], []).append(f"{R.RAW_DIR}/{name}")

    with tempfile.TemporaryDirectory(prefix="vmeasure-") as wd:
        timings: list[dict] = []  # one {case: line} per timing pass
        if not skip_timing:
            for r in range(repeats):
                echo(f"timing pass{f' {r + 1}/{repeats}' if repeats > 1 else ''}: {len(specs)} case(s)")
                twd = Path(wd) / f"t{r}"
                twd.mkdir()
                tm = timing_pass(specs, twd, timeout_s=time_timeout_s, env=env, echo=echo)
                timings.append(tm)
                for c, rr in tm.items():
                    if not rr.get("ok") and r == 0:
                        failed[c] = "timing: " + rr.get("error", "?")
        timing = timings[0] if timings else {}
        todo = [s for s in specs if s["name"] not in failed]
        size = 1 if per_case else max(1, group_size)
        groups = [todo[i:i + size] for i in range(0, len(todo), size)]
        logs = []
        got: dict[str, list] = {s["name"]: [] for s in todo}       # case -> [(rows, timing line)] per repeat
        compiled: dict[str, list] = {}
        last_err: dict[str, str] = {}

        def finish(group):  # the group's last repeat is in: its records are written (or its cases failed)
            _finish_group(group, got, compiled, last_err, failed, written, data_dir, timings, prov, tags, extra_for,
                          echo)

        def give_up(group, why, last):  # no rows for this group in this repeat
            for s in group:
                last_err[s["name"]] = why
            if last:
                finish(group)

        for r in range(repeats):
            last = r == repeats - 1
            t_ncu = time.time()
            for gi, group in enumerate(groups):
                left_s = None if ncu_timeout_s is None else ncu_timeout_s - (time.time() - t_ncu)
                if left_s is not None and left_s <= 0:
                    give_up(group, f"ncu: not reached within the ncu budget of {ncu_timeout_s} s", last)
                    continue
                echo(f"ncu pass {r + 1}/{repeats}, group {gi + 1}/{len(groups)}: {len(group)} case(s)" if repeats > 1
                     else f"ncu pass {gi + 1}/{len(groups)}: {len(group)} case(s)")
                gwd = Path(wd) / f"r{r}g{gi}"
                gwd.mkdir()
                try:
                    by_case, done, text = ncu_pass(group, gwd, metrics=metrics, timeout_s=left_s, env=env,
                                                   echo=echo, options=options, report=keep_report,
                                                   report_reader=report_reader)
                except N.NcuError as e:
                    keep(gwd, r, gi, group, {})  # a partial report still helps the diagnosis
                    logf = gwd / "ncu.log.all"
                    logs.append(logf.read_text(errors="replace") if logf.exists() else "")
                    logs.append(f"NcuError: {e}")
                    if not per_case and repeats == 1:
                        _save_raw(raw, stamp, logs, timing)
                        if bundle_to:  # carry the logs back for the diagnosis
                            R.bundle(data_dir, bundle_to)
                        raise
                    give_up(group, f"ncu: {e}", last)
                    continue
                logs.append(text)
                # a CUDA fault ends the runner at the case it hits: that case failed, the later ones run again
                crashed, rest = _stopped_in(group, {**by_case, **done})
                k_ = 0
                while crashed is not None:
                    done[crashed] = {"case": crashed, "ok": False, "error": STOPPED_IN}
                    if not rest:
                        break
                    k_ += 1
                    rwd = gwd / f"resume{k_}"
                    rwd.mkdir()
                    echo(f"ncu: the runner stopped in {crashed}; {len(rest)} later case(s) in a new process")
                    left_s = None if ncu_timeout_s is None else ncu_timeout_s - (time.time() - t_ncu)
                    if left_s is not None and left_s <= 0:
                        break
                    try:
                        b2, d2, t2 = ncu_pass(rest, rwd, metrics=metrics, timeout_s=left_s, env=env, echo=echo,
                                              options=options, report=keep_report, report_reader=report_reader)
                    except N.NcuError as e:
                        logs.append(f"NcuError (resumed after {crashed}): {e}")
                        break
                    by_case.update(b2)
                    done.update(d2)
                    logs.append(t2)
                    crashed, rest = _stopped_in(rest, {**by_case, **done})
                keep(gwd, r, gi, group, by_case)
                for s in group:
                    n = s["name"]
                    if n in by_case:
                        got[n].append((by_case[n], r))
                        if done.get(n, {}).get("compiled") and n not in compiled:
                            compiled[n] = done[n]["compiled"]
                    elif n in done:
                        last_err[n] = "ncu run: " + done[n].get("error", "?")
                    else:
                        last_err[n] = "ncu run: not reached (the program stopped before this case)"
                if last:
                    finish(group)
                    if bundle_to:
                        _save_raw(raw, stamp, logs, timing)
                        R.bundle(data_dir, bundle_to)
        _save_raw(raw, stamp, logs, timing)
    if bundle_to:
        R.bundle(data_dir, bundle_to)
        echo(f"bundle: {bundle_to}")
    summary = {"data_dir": str(data_dir), "written": written, "failed": failed, "seconds": round(time.time() - t0, 1),
               "ncu": ver, "gpu": prov.get("gpu"), "repeats": repeats}
    for c, why in failed.items():
        echo(f"FAILED {c}: {why.splitlines()[0][:300]}")
    echo(f"measured {len(written)}/{len(specs)} case(s) in {summary['seconds']} s -> {data_dir}")
    return summary


def _finish_group(group, got, compiled, last_err, failed, written, data_dir, timings, prov, tags, extra_for, echo):
    """Write the records of a group's cases from every repeat that measured them."""
    for s in group:
        n = s["name"]
        reps = got.get(n) or []
        if not reps:
            failed[n] = last_err.get(n, "ncu: not measured")
            continue
        pairs = [(rows, (timings[r] if r < len(timings) else {}).get(n)) for rows, r in reps]
        if len(timings) > 1:  # time_s: the median over every timing pass, not only the matching one
            ts = [tm.get(n, {}).get("time_s") for tm in timings if tm.get(n, {}).get("ok")]
            med = _median(ts)
            pairs = [(rows, {**(t or {}), "time_s": med}) if med is not None else (rows, t) for rows, t in pairs]
        try:
            if len(pairs) == 1 and len(timings) <= 1:
                rec = build_record(s, pairs[0][0], pairs[0][1], prov, tags[n], compiled=compiled.get(n),
                                   extra=extra_for(n))
            else:
                rec = build_record(s, None, None, prov, tags[n], repeats=pairs, compiled=compiled.get(n),
                                   extra=extra_for(n))
                if len(timings) > 1:
                    ts = [tm.get(n, {}).get("time_s") for tm in timings]
                    rec["timing"]["time_s_repeats"] = ts
                    # (one ncu repeat beside several timing passes has no per-level spread but the time's)
                    rec.setdefault("spread", {})["time_s"] = _spread(ts)
                    for rep, tt in zip(rec.get("repeats", ()),
                                       [(timings[r] if r < len(timings) else {}).get(n) for _, r in reps]):
                        rep["timing_time_s"] = (tt or {}).get("time_s")
        except N.NcuError as e:
            failed[n] = str(e)
            continue
        if len(reps) < max(1, len(timings)) and n in last_err:
            rec["missing_repeats"] = last_err[n]
        try:
            written.append(str(R.save_record(data_dir, rec)))
        except R.DataError as e:  # keep it for the diagnosis, never sink the other cases
            failed[n] = f"record refused: {e}"
            from memsim.io import write_json
            write_json(Path(data_dir) / R.RAW_DIR / f"{n}.refused.json", rec, overwrite=True)
            echo(f"  REFUSED {n}: {e}")
            continue
        echo(f"  wrote {written[-1]}")


def _save_raw(raw: Path, stamp, logs, timing):
    raw.mkdir(parents=True, exist_ok=True)
    from memsim.io import write_atomic
    if logs:
        write_atomic(raw / f"ncu_{stamp}.log", "\n".join(logs), overwrite=True)
    if timing:
        write_atomic(raw / f"timing_{stamp}.jsonl", "".join(json.dumps(v) + "\n" for v in timing.values()),
                     overwrite=True)


def _chip() -> str:
    """ncu's chip name for GPU 0 (gh100 for compute capability 9.0); '' if unknown."""
    from memsim.io import nvidia_smi
    return {"9.0": "gh100", "8.0": "ga100", "8.6": "ga102", "8.9": "ad102", "10.0": "gb100"}.get(
        nvidia_smi("compute_cap") or "", "")


def gpu_metrics(metrics, echo=_progress) -> list[str]:
    """`metrics` less those ncu does not list for this GPU's chip (a warning names them)."""
    chip = _chip()
    known = N.available_metrics(chip) if chip else None
    metrics, dropped = N.filter_metrics(list(metrics), known)
    if dropped:
        echo(f"warning: ncu does not list {dropped} for this GPU; measuring without them")
    return metrics


def _check_gpu():
    gpu_name()


def gpu_name() -> str:
    from memsim.io import nvidia_smi
    name = nvidia_smi("name")
    if name:
        return name
    raise N.NcuError("no NVIDIA GPU here (nvidia-smi gives no name): run `measure` on the GPU machine "
                     "(verification/DEVICE.md), then `python -m verification report` here")
