"""How well the model steers tuning: its ranking of candidate schedules against measured times.

    python benchmarks/tune_rank.py facts   --plan P.json --out F.json       # CPU: compile facts of every candidate
    python benchmarks/tune_rank.py plan    --out P.json [--facts F.json]    # CPU: the problems, candidates, model ranking
    python benchmarks/tune_rank.py old     --tune T.json --out R [--facts F.json]  # CPU: rank an earlier tuning run
    python3 benchmarks/tune_rank.py measure --plan P.json --out M.json       # GPU: time every candidate (no simpy)
    python benchmarks/tune_rank.py report  --plan P.json --measured M.json --out R [--table K.json]

`plan` is made BEFORE the device measures anything: the model's ranking is frozen in the plan (with the git
commit of the model), the device times every candidate of every problem (exhaustive, medians of
triton.testing.do_bench, each candidate first checked against the float64 reference on a row slice: the
rule of DESIGN.md, `kernels.testing.check_rule`), and `report` computes, per problem, Spearman's rank
correlation of predicted against measured time over all candidates that passed, and the regret of
measuring only the model's top 3 against the exhaustive winner.  `--table` writes the exhaustive winners
as the committed default table of `kernels.autotune`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: the device problem set: (phase, dtype, head_dim, causal, seq); B*N = 16k tokens, H*d = 2048 (issue 9)
PROBLEMS = (
    ("fwd", "bf16", 64, False, 1024), ("fwd", "bf16", 64, False, 16384),
    ("fwd", "bf16", 128, True, 4096), ("fwd", "bf16", 128, True, 16384),
    ("fwd", "fp16", 128, False, 1024), ("fwd", "fp16", 128, False, 4096),
    ("fwd", "fp16", 64, True, 2048), ("fwd", "fp16", 64, True, 16384),
    ("bwd", "bf16", 64, True, 1024), ("bwd", "bf16", 64, True, 16384),
    ("bwd", "bf16", 128, False, 4096), ("bwd", "bf16", 128, False, 16384),
    ("bwd", "fp16", 64, False, 4096), ("bwd", "fp16", 64, False, 16384),
    ("bwd", "fp16", 128, True, 2048), ("bwd", "fp16", 128, True, 8192),
)
#: the algorithms whose candidates compete, per phase
ALGORITHMS = {"fwd": ("flash2", "hopper"), "bwd": ("flash2",)}
TOKENS, HIDDEN = 16384, 2048
TOP = 3


def _problem(dtype, d, causal, n):
    from memsim.schedule import AttentionProblem
    h = HIDDEN // d
    return AttentionProblem(max(1, TOKENS // n), h, h, n, n, d, dtype, causal=causal)


def _sched_t(s) -> str:
    return f"{s['algorithm']} {s['block_m']}x{s['block_n']} w{s['num_warps']} s{s['num_stages']}"


def _load_facts(paths) -> dict:
    from memsim.io import read_json  # plain or gzipped (tune-rank-compiled-sm90.json.gz)
    out = {}
    for p in paths or []:
        d = read_json(p)
        out.update(d.get("entries", d))
    return out


def _ranked_dicts(problem, scheds, facts, hw):
    from memsim.tuning import rank
    return [r.to_dict() for r in rank(problem, scheds, hw, facts=facts)]


# --- CPU: the plan ------------------------------------------------------------------------------------------
def cmd_plan(a) -> int:
    import memsim
    from memsim.io import base_provenance, write_json
    from memsim.tuning import candidates
    hw = memsim.load_hardware(a.hw)
    facts = _load_facts(a.facts)
    cases = []
    i, k = (int(x) for x in a.shard.split("/"))
    for phase, dt, d, causal, n in PROBLEMS[i::k]:
        p = _problem(dt, d, causal, n)
        scheds = [s for alg in ALGORITHMS[phase] for s in candidates(p, alg, phase, hw)]
        t0 = time.time()
        ranked = _ranked_dicts(p, scheds, facts, hw) if not a.no_rank else [
            {"rank": None, "schedule": s.to_dict()} for s in scheds]
        cases.append({"name": f"{phase}_{dt}_d{d}_{'causal' if causal else 'full'}_N{n}", "phase": phase,
                      "problem": p.to_dict(), "ranking": ranked})
        print(f"{cases[-1]['name']}: {len(scheds)} candidates ranked in {time.time() - t0:.1f} s; model top 3: "
              + "; ".join(_sched_t(r["schedule"]) for r in ranked[:3]), flush=True)
    prov = base_provenance(" ".join(["python benchmarks/tune_rank.py", *sys.argv[1:]]))
    prov["hardware"] = hw.name
    prov["facts_files"] = list(a.facts or [])
    write_json(a.out, {"format": "tune_rank.plan/1", "provenance": prov, "top": TOP, "cases": cases},
               overwrite=a.force)
    print(f"wrote {a.out}")
    return 0


def cmd_merge(a) -> int:
    """Join the plans of --shard processes into one, in PROBLEMS order."""
    from memsim.io import read_json, write_json
    plans = [read_json(p) for p in a.plans]
    by = {c["name"]: c for pl in plans for c in pl["cases"]}
    order = [f"{ph}_{dt}_d{d}_{'causal' if c else 'full'}_N{n}" for ph, dt, d, c, n in PROBLEMS]
    prov = dict(plans[0]["provenance"], shards=[pl["provenance"]["command"] for pl in plans])
    write_json(a.out, {"format": "tune_rank.plan/1", "provenance": prov, "top": TOP,
                       "cases": [by[n] for n in order if n in by]}, overwrite=a.force)
    print(f"wrote {a.out}: {sum(n in by for n in order)} problems")
    return 0


def cmd_facts(a) -> int:
    """Compile (sm_90a, on the CPU) every candidate launch of the plan (or of an earlier tune.json) that neither
    the committed table nor --out has; --out grows incrementally (atomic rewrites)."""
    os.environ.pop("TRITON_INTERPRET", None)
    from kernels.compiled_facts import facts_for_case
    from memsim.compiled import FORMAT, load_table
    from memsim.io import read_json, write_json
    from memsim.schedule import problem_from_dict, schedule_from_dict
    out = Path(a.out)
    have = json.loads(out.read_text())["entries"] if out.is_file() else {}
    todo = []
    for path in a.plan or []:
        for c in read_json(path)["cases"]:
            p = problem_from_dict(c["problem"])
            todo += [(c["name"], p, schedule_from_dict(r["schedule"])) for r in c["ranking"]]
    for path in a.tune or []:
        for r in json.loads(Path(path).read_text())["records"]:
            todo.append(("tune", _old_problem(r), schedule_from_dict(r["schedule"])))
    if a.reverse:  # a second process from the other end (stop both where they meet)
        todo.reverse()
    table = load_table()
    t0, done = time.time(), 0
    for i, (name, p, s) in enumerate(todo):
        new = facts_for_case(p, s, have={**table, **have}, case_name=name)
        if new:
            have.update(new)
            done += len(new)
            write_json(out, {"format": FORMAT, "arch": "sm90", "entries": have,
                             "command": "python benchmarks/tune_rank.py " + " ".join(sys.argv[2:])}, overwrite=True)
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(todo)} cases, {done} launches compiled, {time.time() - t0:.0f} s", flush=True)
    print(f"{len(todo)} cases, {done} launches compiled in {time.time() - t0:.0f} s -> {out}")
    return 0


# --- CPU: an earlier tuning run (benchmarks/results/<gpu>.tune.json) -----------------------------------------
def _old_problem(r):
    from memsim.schedule import AttentionProblem
    return AttentionProblem(r["batch"], r["heads"], r["heads"], r["seq"], r["seq"], r["head_dim"], r["dtype"],
                            causal=r["causal"])


def cmd_old(a) -> int:
    import memsim
    from memsim.io import base_provenance, write_json
    from memsim.schedule import schedule_from_dict
    hw = memsim.load_hardware(a.hw)
    facts = _load_facts(a.facts)
    src = json.loads(Path(a.tune).read_text())
    groups: dict = {}
    for r in src["records"]:
        key = (r["pass"], r["dtype"], r["head_dim"], r["causal"], r["seq"], r["batch"], r["heads"])
        groups.setdefault(key, []).append(r)
    cases = []
    for key, recs in groups.items():
        p = _old_problem(recs[0])
        scheds = [schedule_from_dict(r["schedule"]) for r in recs]
        ranked = _ranked_dicts(p, scheds, facts, hw)
        meas = {json.dumps(r["schedule"], sort_keys=True): r.get("ms") for r in recs}
        for r in ranked:
            r["measured_ms"] = meas[json.dumps(r["schedule"], sort_keys=True)]
        cases.append({"name": f"{key[0]}_{key[1]}_d{key[2]}_{'causal' if key[3] else 'full'}_N{key[4]}",
                      "phase": key[0], "problem": p.to_dict(), "ranking": ranked})
    prov = base_provenance(" ".join(["python benchmarks/tune_rank.py", *sys.argv[1:]]))
    prov.update(hardware=hw.name, facts_files=list(a.facts or []), measured=str(a.tune),
                measured_provenance=src["provenance"])
    return _write_report(a.out, prov, cases, title="Model ranking vs the earlier tuning run "
                         f"({Path(a.tune).name}: flash2 candidates, {src['provenance'].get('gpu')})", force=a.force,
                         facts=facts)


# --- the report ---------------------------------------------------------------------------------------------
def case_stats(ranking, top=TOP) -> dict:
    """Spearman and top-k regret of one problem's ranking (rows with predicted_s and measured_ms)."""
    from memsim.tuning import regret, spearman
    ok = [r for r in ranking if r.get("measured_ms") is not None and r.get("predicted_s") is not None]
    out = {"candidates": len(ranking), "measured": len(ok)}
    if len(ok) < 2:
        return {**out, "spearman": None, "regret_top": None}
    pred, meas = [r["predicted_s"] for r in ok], [r["measured_ms"] for r in ok]
    best = min(ok, key=lambda r: r["measured_ms"])
    out.update(spearman=spearman(pred, meas), regret_top=regret(pred, meas, top=top), regret_top1=regret(pred, meas, 1),
               best_measured=best["schedule"], best_measured_ms=best["measured_ms"],
               best_measured_model_rank=sorted(r["rank"] for r in ok).index(best["rank"]) + 1,
               model_top=[r["schedule"] for r in ok[:top]], model_top_ms=[r["measured_ms"] for r in ok[:top]])
    return out


def _flops_per_iteration(launch: str, s, d: int) -> int:
    """Dot FLOPs of one tile-loop iteration of one CTA: fwd QK^T + PV; bwd dK/dV pass S^T, dP^T, dV, dK; dQ pass
    S, dP, dQ."""
    per = 2 * s.block_m * s.block_n * d
    return per * (4 if launch.endswith("dkdv") else 3 if launch.endswith("dq") else 2)


def _mma_warps(problem, schedule) -> int:
    """Warps that issue the dots: the warp-specialised hopper loop's two consumer warpgroups (8 warps) per 4 warps
    of the schedule (kernels/hopper.py), else the schedule's warps."""
    from memsim.algorithms_hopper import warp_specialised
    ws = schedule.algorithm == "hopper" and warp_specialised(problem, schedule)
    return 2 * schedule.num_warps if ws else schedule.num_warps


def mma_kind(problem, schedule, facts: dict) -> str:
    """'HGMMA' (Hopper warpgroup MMA), 'HMMA' (mma.sync) or a mix, per the tile loops' SASS in the compiled
    facts: FLOPs per MMA instruction = FLOPs per iteration / (MMA instructions per warp x warps); an m16n8k16
    mma.sync does 4096, a wgmma m64nNk16 2048 x N >= 16384."""
    from memsim.compiled import key, load_table
    from memsim.schedule import kernel_launches
    table = load_table()
    kinds = set()
    for L in kernel_launches(problem, schedule):
        if L.name.endswith("preprocess"):
            continue
        e = facts.get(key(L.name, problem, schedule)) or table.get(key(L.name, problem, schedule)) or {}
        loop = e.get("loop") or {}
        if not loop.get("mma"):
            kinds.add("?")
            continue
        fpi = _flops_per_iteration(L.name, schedule, problem.head_dim) / (loop["mma"] * _mma_warps(problem, schedule))
        kinds.add("HGMMA" if fpi >= 16384 else "HMMA")
    return "+".join(sorted(kinds))


def mechanism_rows(cases, facts) -> list:
    """measured / predicted time per (phase, loop variant, MMA kind): where the model's one dot rate is wrong."""
    import statistics

    from memsim.algorithms_hopper import warp_specialised
    from memsim.schedule import problem_from_dict, schedule_from_dict
    groups: dict = {}
    for c in cases:
        p = problem_from_dict(c["problem"])
        for r in c["ranking"]:
            if r.get("measured_ms") is None or r.get("predicted_s") is None:
                continue
            s = schedule_from_dict(r["schedule"])
            variant = s.algorithm + (" warp-specialised" if s.algorithm == "hopper" and warp_specialised(p, s) else "")
            groups.setdefault((c["phase"], variant, mma_kind(p, s, facts)), []).append(
                r["measured_ms"] / (r["predicted_s"] * 1e3))
    return [(k, len(v), statistics.median(v), min(v), max(v)) for k, v in sorted(groups.items())]


def _write_report(out, prov, cases, *, title, force, table=None, facts=None) -> int:
    from memsim.io import write_atomic, write_json
    for c in cases:
        c["stats"] = case_stats(c["ranking"])
    rhos = [c["stats"]["spearman"] for c in cases if c["stats"].get("spearman") is not None
            and not math.isnan(c["stats"]["spearman"])]
    regs = [c["stats"]["regret_top"] for c in cases if c["stats"].get("regret_top") is not None]
    summary = {"problems": len(cases), "spearman_median": _median(rhos), "spearman_min": min(rhos, default=None),
               "spearman_mean": sum(rhos) / len(rhos) if rhos else None,
               "regret_top3_median": _median(regs), "regret_top3_max": max(regs, default=None),
               "regret_top3_mean": sum(regs) / len(regs) if regs else None,
               "goal": {"spearman": 0.8, "regret_top3": 0.03}}
    write_json(f"{out}.json", {"format": "tune_rank.report/1", "provenance": prov, "summary": summary,
                               "cases": cases}, overwrite=force)
    lines = [f"# {title}", ""]
    if "plan_command" in prov:
        lines += [f"Ranking: the model at commit {prov.get('git_commit')} (preset {prov.get('hardware')}), frozen in the "
                  f"plan on {prov['date']} by `{prov['plan_command']}`; this report by `{prov['command']}`.", ""]
    else:
        lines += [f"Made by `{prov['command']}` on {prov['date']} (model at commit {prov.get('git_commit')}, preset "
                  f"{prov.get('hardware')}).", ""]
    if "measured_provenance" in prov:
        mp = prov["measured_provenance"]
        lines += [f"Measured: {mp.get('gpu')}, torch {mp.get('torch')}, triton {mp.get('triton')}, {mp.get('date')}, "
                  f"`{mp.get('command')}`" + (f" ({mp['device_call']}; {mp['git_commit_note']})"
                                              if mp.get("device_call") else "") + ".", ""]
    lines += [f"Over {len(cases)} problems: Spearman median {_f(summary['spearman_median'])} (min "
              f"{_f(summary['spearman_min'])}, mean {_f(summary['spearman_mean'])}); regret of measuring the model's "
              f"top {TOP}: median {_pct(summary['regret_top3_median'])}, worst {_pct(summary['regret_top3_max'])}. "
              f"Goal: Spearman >= 0.8, regret <= 3 %.", "",
              "| problem | candidates (measured) | Spearman | top-3 regret | top-1 regret | measured best | its model rank "
              "| model's top 3 (ms) | best ms |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in cases:
        s = c["stats"]
        if s.get("spearman") is None:
            lines.append(f"| {c['name']} | {s['candidates']} ({s['measured']}) | - | - | - | - | - | - | - |")
            continue
        lines.append(f"| {c['name']} | {s['candidates']} ({s['measured']}) | {_f(s['spearman'])} | "
                     f"{_pct(s['regret_top'])} | {_pct(s['regret_top1'])} | {_sched_t(s['best_measured'])} | "
                     f"{s['best_measured_model_rank']} | "
                     + ", ".join(f"{_sched_t(x)} ({m:.3f})" for x, m in zip(s["model_top"], s["model_top_ms"]))
                     + f" | {s['best_measured_ms']:.3f} |")
    if facts is not None:
        lines += ["", "Measured / predicted time by loop variant and MMA instruction kind (from each candidate's compiled "
                  "tile loop: FLOPs per MMA instruction; HGMMA = Hopper warpgroup MMA, HMMA = mma.sync):", "",
                  "| phase | variant | MMA | candidates | median | min | max |", "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {k[0]} | {k[1]} | {k[2]} | {n} | {med:.2f} | {lo:.2f} | {hi:.2f} |"
                  for k, n, med, lo, hi in mechanism_rows(cases, facts)]
    lines += ["", "Per problem, every candidate (predicted ms, measured ms, the model's bound) is in the JSON beside "
              "this file."]
    if table:
        lines += ["", f"Default table written from the exhaustive winners: `{table}`."]
    write_atomic(f"{out}.md", "\n".join(lines) + "\n", overwrite=force)
    print("\n".join(lines[4:]))
    return 0


def _median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _f(x):
    return "-" if x is None else f"{x:.2f}"


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f} %"


def cmd_report(a) -> int:
    from memsim.io import read_json  # plans and measurements may be committed gzipped
    plan = read_json(a.plan)
    meas = read_json(a.measured)
    by_case = {m["name"]: m for m in meas["cases"]}
    cases = []
    for c in plan["cases"]:
        m = by_case.get(c["name"])
        if m is None:
            continue
        t = {json.dumps(x["schedule"], sort_keys=True): x for x in m["candidates"]}
        for r in c["ranking"]:
            x = t.get(json.dumps(r["schedule"], sort_keys=True), {})
            r["measured_ms"] = x.get("ms") if x.get("exact") else None
            r["exact"], r["gate"], r["error"] = x.get("exact"), x.get("gate"), x.get("error") or r.get("error")
        cases.append(c)
    prov = dict(plan["provenance"], measured=str(a.measured), measured_provenance=meas["provenance"],
                report_command=" ".join(["python benchmarks/tune_rank.py", *sys.argv[1:]]))
    prov["command"] = prov["report_command"]
    prov["plan_command"] = plan["provenance"]["command"]
    if a.table:
        _write_table(a.table, cases, meas["provenance"], force=a.force)
    return _write_report(a.out, prov, cases, title=f"Model-steered tuning on {meas['provenance'].get('gpu')}: "
                         "ranking vs exhaustive measurement", force=a.force, table=a.table,
                         facts=_load_facts(a.facts) if a.facts else None)


def _write_table(path, cases, mprov, *, force):
    """kernels/tuned/<gpu>.json: per (problem key, phase) the exhaustive winner, with the model's ranking."""
    from memsim.io import write_json
    from memsim.schedule import problem_from_dict
    from memsim.tuning import problem_key
    entries = {}
    for c in cases:
        ok = [r for r in c["ranking"] if r.get("measured_ms") is not None]
        if not ok:
            continue
        best = min(ok, key=lambda r: r["measured_ms"])
        p = problem_from_dict(c["problem"])
        entries[f"{problem_key(p)}|{c['phase']}"] = {
            "schedule": best["schedule"], "ms": best["measured_ms"], "problem": c["problem"],
            "source": f"exhaustive: fastest exact of {len(ok)} measured candidates (model rank {best['rank']})",
            "by_algorithm": {alg: {"schedule": b["schedule"], "ms": b["measured_ms"]} for alg, b in (
                (alg, min((r for r in ok if r["schedule"]["algorithm"] == alg), key=lambda r: r["measured_ms"]))
                for alg in sorted({r["schedule"]["algorithm"] for r in ok}))},
            "model_ranking": [r["schedule"] for r in c["ranking"][:8]]}
    write_json(path, {"format": "kernels.tuned/1", "gpu": mprov.get("gpu"), "torch": mprov.get("torch"),
                      "triton": mprov.get("triton"), "date": mprov.get("date"), "command": mprov.get("command"),
                      "entries": entries}, overwrite=force)


# --- GPU: measure every candidate (torch + triton + memsim.schedule only) ------------------------------------
def _time(fn, a, device) -> float:
    if device == "cpu":
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    import triton
    return triton.testing.do_bench(fn, warmup=a.warmup_ms, rep=a.rep_ms, return_mode="median")


def cmd_measure(a) -> int:
    import torch
    import triton

    import kernels
    from kernels.autotune import gate_check, gate_reference, gate_slice
    from memsim.io import base_provenance, write_json
    from memsim.schedule import problem_from_dict, schedule_from_dict
    plan = json.loads(Path(a.plan).read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke run in the interpreter
    prov = base_provenance(" ".join(["python3 benchmarks/tune_rank.py", *sys.argv[1:]]))
    if device == "cuda":
        dev = torch.cuda.get_device_properties(0)
        prov.update(gpu=dev.name, sm_count=dev.multi_processor_count, cuda=torch.version.cuda)
    else:
        prov.update(gpu="cpu (TRITON_INTERPRET smoke run: times are not GPU times)")
    prov.update(torch=torch.__version__, triton=triton.__version__, plan=str(a.plan),
                plan_commit=plan["provenance"].get("git_commit"), warmup_ms=a.warmup_ms, rep_ms=a.rep_ms,
                timing="triton.testing.do_bench median" if device == "cuda" else "one perf_counter call")
    out = {"format": "tune_rank.measured/1", "provenance": prov, "cases": []}
    t_start = time.time()
    for c in plan["cases"]:
        if a.only and c["name"] not in a.only:
            continue
        if time.time() - t_start > a.budget_s:
            print(f"-- {c['name']}: skipped, over the {a.budget_s} s budget", flush=True)
            continue
        p = problem_from_dict(c["problem"])
        g = torch.Generator(device=device).manual_seed(0)
        dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[p.dtype]
        q, k, v, do = (torch.randn(p.batch, p.heads_q, p.seq_q, p.head_dim, device=device, generator=g).to(dt)
                       for _ in range(4))
        want_bwd = c["phase"] == "bwd"
        sub, qs, ks, vs, dos = gate_slice(p, q, k, v, do if want_bwd else None)
        ref, ys = gate_reference(sub, qs, ks, vs, dos)
        fwd_s = kernels.default_schedule(p, "flash2", "fwd", device)
        f = kernels.forward(p, fwd_s, q, k, v) if want_bwd else None
        rows = []
        t0 = time.time()
        for r in c["ranking"]:
            s = schedule_from_dict(r["schedule"])
            row = {"schedule": r["schedule"]}
            try:
                ok, msg = gate_check(sub, s, qs, ks, vs, dos, ref, ys)
                row.update(exact=ok, gate=msg)
                if ok:
                    fn = (lambda: kernels.forward(p, s, q, k, v)) if not want_bwd else (
                        lambda: kernels.backward(p, s, q, k, v, f.o, do, f))
                    row["ms"] = _time(fn, a, device)
            except Exception as e:  # noqa: BLE001 -- a candidate that does not compile or launch
                row.update(exact=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            rows.append(row)
        if device == "cuda":
            torch.cuda.synchronize()
        out["cases"].append({"name": c["name"], "phase": c["phase"], "problem": c["problem"], "candidates": rows,
                             "wall_s": round(time.time() - t0, 1)})
        good = [x for x in rows if x.get("ms") is not None]
        best = min(good, key=lambda x: x["ms"]) if good else None
        top = [x.get("ms") for x in rows[:TOP]]
        best_t = f"{_sched_t(best['schedule'])} {best['ms']:.3f} ms" if best else "-"
        print(f"-- {c['name']}: {len(good)}/{len(rows)} exact+timed in {time.time() - t0:.1f} s; best {best_t}; "
              f"model top 3 ms {[round(x, 3) if x else None for x in top]}", flush=True)
        del q, k, v, do, f
        if device == "cuda":
            torch.cuda.empty_cache()
        prov["wall_s"] = round(time.time() - t_start, 1)
        write_json(a.out, out, overwrite=True)  # after every problem: a run stopped part-way keeps what it did
    return 0


def cmd_warm(a) -> int:
    """Compile every candidate of the plan once on small inputs of the same specialisation (fills Triton's disk
    cache; run several shards in parallel processes before `measure`)."""
    import torch

    import kernels
    from memsim.schedule import problem_from_dict, schedule_from_dict
    from dataclasses import replace
    plan = json.loads(Path(a.plan).read_text())
    i, n = (int(x) for x in a.shard.split("/"))
    seen, todo = set(), []
    for c in plan["cases"]:
        p = problem_from_dict(c["problem"])
        # the measured problem's specialisation (heads as measured) and the gate slice's (2 heads)
        for small in (replace(p, batch=1, seq_q=256, seq_kv=256), replace(p, batch=1, heads_q=2, heads_kv=2,
                                                                          seq_q=256, seq_kv=256)):
            for r in c["ranking"]:
                key = (small, json.dumps(r["schedule"], sort_keys=True))
                if key not in seen:
                    seen.add(key)
                    todo.append((small, schedule_from_dict(r["schedule"])))
    t0, fails = time.time(), 0
    for p, s in todo[i::n]:
        dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[p.dtype]
        q, k, v, do = (torch.randn(p.batch, p.heads_q, p.seq_q, p.head_dim, device="cuda", dtype=dt)
                       for _ in range(4))
        try:
            if s.phase == "fwd":
                kernels.forward(p, s, q, k, v)
            else:
                f = kernels.forward(p, kernels.default_schedule(p, "flash2", "fwd", "cuda"), q, k, v)
                kernels.backward(p, s, q, k, v, f.o, do, f)
        except Exception:  # noqa: BLE001 -- measure records the error
            fails += 1
    torch.cuda.synchronize()
    print(f"warm shard {a.shard}: {len(todo[i::n])} candidates compiled in {time.time() - t0:.0f} s ({fails} failed)",
          flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/tune_rank.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("plan", help="the problems, every candidate, and the model's ranking (CPU, simpy)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--facts", action="append", help="extra compiled-facts file (python -m kernels.compiled_facts "
                                                     "format); repeatable")
    sp.add_argument("--hw", default="h100-sxm")
    sp.add_argument("--no-rank", action="store_true", help="candidates only (to compile their facts first)")
    sp.add_argument("--shard", default="0/1", metavar="I/K", help="every K-th problem from the I-th (parallel "
                                                                  "processes; `merge` joins their plans)")
    sp.add_argument("--force", action="store_true")
    sp.set_defaults(fn=cmd_plan)
    sp = sub.add_parser("merge", help="join the plans of --shard processes")
    sp.add_argument("plans", nargs="+")
    sp.add_argument("--out", required=True)
    sp.add_argument("--force", action="store_true")
    sp.set_defaults(fn=cmd_merge)
    sp = sub.add_parser("facts", help="compile the candidates' launches for sm_90a on the CPU")
    sp.add_argument("--plan", action="append")
    sp.add_argument("--tune", action="append", help="an earlier tune.json: its measured candidates")
    sp.add_argument("--out", required=True)
    sp.add_argument("--reverse", action="store_true", help="last case first")
    sp.set_defaults(fn=cmd_facts)
    sp = sub.add_parser("old", help="rank the candidates of an earlier tune.json and compare (CPU, simpy)")
    sp.add_argument("--tune", required=True)
    sp.add_argument("--out", required=True, help="output stem: writes STEM.json and STEM.md")
    sp.add_argument("--facts", action="append")
    sp.add_argument("--hw", default="h100-sxm")
    sp.add_argument("--force", action="store_true")
    sp.set_defaults(fn=cmd_old)
    sp = sub.add_parser("measure", help="time every candidate of the plan on the GPU (no simpy needed)")
    sp.add_argument("--plan", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--only", action="append", help="case name (repeatable)")
    sp.add_argument("--warmup-ms", type=float, default=5)
    sp.add_argument("--rep-ms", type=float, default=20)
    sp.add_argument("--budget-s", type=float, default=1e9, help="skip the remaining problems after this long")
    sp.set_defaults(fn=cmd_measure)
    sp = sub.add_parser("warm", help="compile the plan's candidates (GPU; shard I/K for parallel processes)")
    sp.add_argument("--plan", required=True)
    sp.add_argument("--shard", default="0/1")
    sp.set_defaults(fn=cmd_warm)
    sp = sub.add_parser("report", help="Spearman and top-3 regret per problem from a plan and its measurement (CPU)")
    sp.add_argument("--plan", required=True)
    sp.add_argument("--measured", required=True)
    sp.add_argument("--out", required=True, help="output stem: writes STEM.json and STEM.md")
    sp.add_argument("--table", help="also write the exhaustive winners as kernels.autotune's default table here")
    sp.add_argument("--facts", action="append", help="compiled-facts file(s): adds the measured/predicted table by "
                                                     "MMA instruction kind")
    sp.add_argument("--force", action="store_true")
    sp.set_defaults(fn=cmd_report)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
