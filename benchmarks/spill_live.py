"""The live sets' spilling launches under the model, with and without a candidate spill rule (issue 8, CPU only).

    python benchmarks/spill_live.py --out /tmp/base.json [--only-spilling] [DATA_DIR ...]
    python benchmarks/spill_live.py --local /tmp/base.json [/tmp/variant.json] [-v]
    python benchmarks/spill_live.py --compare /tmp/base.json /tmp/variant.json

Predicts every case of the given random-set folders (default: every set under
verification/data/nvidia-h100-80gb-hbm3/random) as `python -m verification fidelity` does (the set's own host
floor), and writes per case the error of each level and per launch the measured and predicted bytes and times, with
the model's spill placement and ncu's bounds on it: ``reach_lo`` = (L2 reads - global loads) / the model's local
loads reaching L1 (a lower bound on the reload L1-miss fraction: global loads that hit L1 count in the global bytes
only) and ``wb_meas`` = (DRAM writes - global writes) / the model's spill stores (the stores written back, if the
global stores are all written back, an upper bound otherwise).

``--only-spilling`` predicts only the cases with a launch the compiled table says spills; `--compare` then merges the
variant into the baseline case by case (cases the variant did not predict keep the baseline's rows: exact for a
rule that touches only spilling launches) and prints the medians and worst errors per level over the whole set,
and the spilling launches that moved by more than 3 points of gpu_time.

``--local BASE [VARIANT]`` compares each spilling launch's local-memory bytes at L1 with ncu's (every record keeps
``l1tex__t_bytes_pipe_lsu_mem_local_op_st/ld`` per launch in ``repeats[i].metrics``) and its reload L1-miss fraction
with ncu's lower bound.

A candidate rule is tried by running this script from a worktree whose memsim carries it (notes/spills.md,
session 11: env-switched patches of memsim.costs / memsim.engine in a clean worktree).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "random"
LEVELS = ("global", "l2", "dram_read", "dram_write", "time", "gpu_time")

def run(dirs, out, only_spilling: bool, only_cases=None) -> None:
    sys.path.insert(0, str(ROOT))
    from verification import fidelity as F
    from verification import records as R
    from verification.cli.fidelity import HOST_PASS_FILE, rehost
    from verification.compare import matched_launches
    from verification.report import memsim_predictor
    from verification.suite import case_from_record
    goals = F.load_goals()
    live = memsim_predictor("h100-sxm", max_seconds=None)
    cases, launches = {}, []
    for d in dirs:
        d = Path(d)
        host = d / HOST_PASS_FILE
        for rec in R.load_records(d):
            if only_cases and not rec["case"].startswith(tuple(only_cases)):
                continue
            pred = live(case_from_record(rec))
            if only_spilling and not any((k.get("spill_l2_write_bytes") or 0) > 0 for k in pred["kernels"]):
                continue
            if host.is_file():
                pred = rehost({rec["case"]: pred}, host)[rec["case"]]
            cases[rec["case"]] = {r.level: r.signed for r in F.case_levels(rec["case"], rec, pred, goals)}
            for i, m, p in matched_launches(rec, pred):
                if p is None:
                    continue
                row = {"case": rec["case"], "set": d.name, "launch": m["name"], "index": i}
                for k in ("time_s", "l2_read_bytes", "l2_write_bytes", "dram_read_bytes", "dram_write_bytes",
                          "global_read_bytes", "global_write_bytes"):
                    row["m_" + k], row["p_" + k] = m.get(k), p.get(k)
                for k in ("spill_l2_read_bytes", "spill_l2_write_bytes", "spill_dram_read_bytes",
                          "spill_dram_write_bytes", "ctas_per_sm", "num_ctas", "binding_limit", "compiled_facts",
                          "regs_per_thread"):
                    row[k] = p.get(k)
                mt, pt = m.get("time_s"), p.get("time_s")
                row["signed"] = (pt - mt) / max(mt, 5e-6) if mt and pt is not None else None
                launches.append(row)
    Path(out).write_text(json.dumps({"root": str(ROOT), "dirs": [str(d) for d in dirs],
                                     "only_spilling": only_spilling, "cases": cases, "launches": launches}))
    print(f"{len(cases)} cases, {len(launches)} launches -> {out}")


def _summ(cases: dict) -> dict:
    out = {}
    for lv in LEVELS:
        v = [abs(c[lv]) for c in cases.values() if c.get(lv) is not None]
        out[lv] = (statistics.median(v), max(v), len(v)) if v else None
    return out


def compare(base_path, var_path, moved: float = 0.03) -> None:
    base, var = json.loads(Path(base_path).read_text()), json.loads(Path(var_path).read_text())
    merged = dict(base["cases"])
    merged.update({k: v for k, v in var["cases"].items() if k in merged})
    sb, sv = _summ(base["cases"]), _summ(merged)
    print(f"variant {var_path} over {len(merged)} cases ({len(var['cases'])} re-predicted)")
    print("| level | median before -> after | worst before -> after | cases closer / farther by > 1 point |")
    print("| --- | --- | --- | --- |")
    for lv in LEVELS:
        if sb[lv] and sv[lv]:
            pairs = [(abs(base["cases"][c][lv]), abs(merged[c][lv])) for c in merged
                     if base["cases"][c].get(lv) is not None and merged[c].get(lv) is not None]
            better = sum(1 for b, v in pairs if v < b - 0.01)
            worse = sum(1 for b, v in pairs if v > b + 0.01)
            print(f"| {lv} | {sb[lv][0]:.1%} -> {sv[lv][0]:.1%} | {sb[lv][1]:.1%} -> {sv[lv][1]:.1%} | "
                  f"{better} / {worse} |")
    bl = {(r["case"], r["index"]): r for r in base["launches"]}
    rows = []
    for r in var["launches"]:
        b = bl.get((r["case"], r["index"]))
        if b is None or b["signed"] is None or r["signed"] is None or not (b.get("spill_l2_write_bytes") or 0):
            continue
        rows.append((b["signed"], r["signed"], r))
    closer = sum(abs(v) < abs(s) - moved for s, v, _ in rows)
    farther = sum(abs(v) > abs(s) + moved for s, v, _ in rows)
    sp_b = [abs(s) for s, _, _ in rows]
    sp_v = [abs(v) for _, v, _ in rows]
    if rows:
        print(f"spilling launches: {len(rows)}; gpu_time |error| median {statistics.median(sp_b):.1%} -> "
              f"{statistics.median(sp_v):.1%}, worst {max(sp_b):.1%} -> {max(sp_v):.1%}; "
              f"closer / farther by > {moved:.0%}: {closer} / {farther}")
    for s, v, r in sorted(rows, key=lambda x: -abs(abs(x[1]) - abs(x[0]))):
        if abs(v - s) > moved:
            print(f"  {r['case'][:40]:40s} {r['launch']:24s} {s:+.1%} -> {v:+.1%}")


_NCU_LOCAL = ("l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum", "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum",
              "lts__t_sectors_srcunit_tex_op_read.sum", "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum",
              "l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum")


def _measured_local(rec: dict, index: int) -> dict:
    """ncu's local and L2 read counters of launch `index`, median over the record's repeats (the random sets'
    `measure` keeps every metric per launch in ``repeats[i].metrics``)."""
    vals: dict = {}
    for rp in rec.get("repeats", []):
        ms = rp.get("metrics")
        if not ms or index >= len(ms):
            continue
        for k in _NCU_LOCAL:
            if ms[index].get(k) is not None:
                vals.setdefault(k, []).append(ms[index][k])
    return {k: statistics.median(v) for k, v in vals.items()}


def local_report(base_path, var_path=None, dirs=None, verbose: bool = False) -> list[dict]:
    """The model's local-memory bytes at L1 against ncu's, per spilling launch (stores: the model's spill L2 writes,
    every store reaches the L2; reloads: its spill L2 reads over its L1-miss fraction), and its reload L1-miss
    fraction against ncu's lower bound (L2 reads from L1TEX less every global load, over the local loads; exact for
    TMA loads, which bypass L1)."""
    import math
    import re
    sys.path.insert(0, str(ROOT))
    from verification import records as R
    base = json.loads(Path(base_path).read_text())
    var = json.loads(Path(var_path).read_text()) if var_path else None
    recs = {}
    for d in dirs or sorted(p for p in DATA.iterdir() if p.is_dir()):
        for rec in R.load_records(Path(d)):
            recs[rec["case"]] = rec
    vl = {(r["case"], r["index"]): r for r in var["launches"]} if var else {}
    rows = []
    for r in base["launches"]:
        if not (r["spill_l2_write_bytes"] or 0) or r["case"] not in recs:
            continue
        m = _measured_local(recs[r["case"]], r["index"])
        ld, st = m.get(_NCU_LOCAL[0]), m.get(_NCU_LOCAL[1])
        if not ld or not st:
            continue
        mm = re.search(r"(\d+)% of reloads miss L1", r["compiled_facts"] or "")
        pm = int(mm.group(1)) / 100 if mm else None
        glob_ld = (m.get(_NCU_LOCAL[3]) or 0.0) + (m.get(_NCU_LOCAL[4]) or 0.0)
        reach = max(0.0, (m.get(_NCU_LOCAL[2]) or 0.0) * 32 - glob_ld)
        v = vl.get((r["case"], r["index"]), r)
        rows.append({"case": r["case"], "launch": r["launch"], "ncu_st": st, "ncu_ld": ld, "m_model": pm,
                     "m_ncu_lo": reach / ld, "st_ratio": r["spill_l2_write_bytes"] / st,
                     "st_ratio_var": v["spill_l2_write_bytes"] / st,
                     "ld_ratio": r["spill_l2_read_bytes"] / pm / ld if pm else None,
                     "ld_ratio_var": v["spill_l2_read_bytes"] / pm / ld if pm else None,
                     "signed": r["signed"], "signed_var": v["signed"]})
    print(f"{len(rows)} spilling launches with ncu's local bytes")
    for k in ("st_ratio", "st_ratio_var", "ld_ratio", "ld_ratio_var"):
        xs = [abs(math.log(x[k])) for x in rows if x[k]]
        if xs:
            print(f"  model / ncu {k}: median |log| {statistics.median(xs):.3f}; within 10 %: "
                  f"{sum(1 for v_ in xs if v_ < math.log(1.1))} of {len(xs)}")
    tma = [x for x in rows if x["launch"].startswith("hopper") and x["m_model"] is not None]
    off = [x for x in tma if abs(x["m_model"] - x["m_ncu_lo"]) > 0.1]
    print(f"  TMA-loading (hopper*) launches: reload L1-miss fraction, model vs ncu, off by > 0.1 on {len(off)} of "
          f"{len(tma)}")
    if verbose:
        for x in sorted(rows, key=lambda x: x["st_ratio"]):
            f = lambda v_: f"{v_:.2f}" if v_ is not None else "-"  # noqa: E731
            print(f"  {x['case'][:34]:34s} {x['launch'][:22]:22s} st {f(x['st_ratio'])} -> {f(x['st_ratio_var'])} "
                  f"ld {f(x['ld_ratio'])} -> {f(x['ld_ratio_var'])} m {f(x['m_model'])} vs >= {x['m_ncu_lo']:.2f} "
                  f"gpu_time {x['signed']:+.0%} -> {x['signed_var']:+.0%}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="*")
    ap.add_argument("--out")
    ap.add_argument("--only-spilling", action="store_true")
    ap.add_argument("--cases", nargs="+", help="only the cases whose names start so (e.g. r26112617_003)")
    ap.add_argument("--compare", nargs=2, metavar=("BASE", "VARIANT"))
    ap.add_argument("--local", nargs="+", metavar="RUN", help="BASE [VARIANT]: the model's local bytes and reload "
                    "L1-miss fractions against ncu's (the records' local-memory counters)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if a.compare:
        compare(*a.compare)
        return 0
    if a.local:
        local_report(a.local[0], a.local[1] if len(a.local) > 1 else None, a.dirs or None, a.verbose)
        return 0
    if not a.out:
        ap.error("give --out FILE (or --compare BASE VARIANT)")
    dirs = a.dirs or sorted(p for p in DATA.iterdir() if p.is_dir())
    run(dirs, a.out, a.only_spilling, a.cases)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
