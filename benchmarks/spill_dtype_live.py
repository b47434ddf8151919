"""The live report's spilling launches by dtype, reload placement and write-back: which spilling loops the model
runs too fast (issue 8, spills session 18; CPU only, seconds).

    python benchmarks/spill_dtype_live.py [--report reports/h100-sxm/random/live/fidelity.json] [-v]

Per launch of the report (`python -m verification fidelity ... --launches`: predicted and measured time per
launch) whose compiled-table entry spills and has a replayed tile loop: the signed error, and from memsim.costs'
figures for that launch the reload L1-miss fraction m and the expected reload wait (cycles: the L1 / L2 / DRAM mix
the replay charges), the tile loop's code size and its fetch over the replay's trip, and ncu's write-back share of
the spill stores (DRAM writes less global stores, over local stores; the records' per-launch metrics).  Launches
of >= 30 us bound by latency/occupancy only (the replay's trips are what binds them).

Session 18's reading: the fp32 spilling launches are ~13 % too fast whatever m or the expected wait (L1 hits,
L2 hits, DRAM), the 16-bit ones are not -- so not an L2-hit reload cost (benchmarks/spill_l2hit_gpu.py: the
replay's L2 wait is right within 4 %).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "random"


def launches(report: Path) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    import memsim
    from memsim.calibration import load_calibration
    from memsim.costs import _lookup_facts, launch_cost
    from memsim.issue_fit import fetch_cycles
    from memsim.schedule import check_fits, kernel_launches
    from verification import records as R
    from verification.suite import case_from_record
    hw = memsim.load_hardware("h100-sxm")
    cal = load_calibration(hw)
    rep = json.loads(report.read_text())
    by = {(x["case"], x["index"]): x for s in rep["sets"].values() for x in s.get("launches", [])}
    hit, l2 = cal.issue.cycles.get("LDL", cal.issue.cycles.get("LDS", 0.0)), cal.issue.load_l2_cycles
    rows = []
    for d in sorted(p for p in DATA.iterdir() if p.is_dir()):
        for rec in R.load_records(d):
            c = case_from_record(rec)
            try:
                smem = check_fits(c.problem, c.schedule, hw.smem_per_block_bytes, hw.name)
                kl = kernel_launches(c.problem, c.schedule)
            except Exception:  # noqa: BLE001 -- a case the registry no longer builds
                continue
            for i, la in enumerate(kl):
                x = by.get((rec["case"], i))
                f = _lookup_facts(la.name, c.problem, c.schedule)
                if x is None or f is None or not f.local_bytes_per_thread or not (f.issue or {}).get(
                        "tile_cycles_local_l2"):
                    continue
                if x["measured_s"] < 30e-6 or x.get("binding") != "latency/occupancy":
                    continue
                cost = launch_cost(hw, cal, la.name, c.problem, c.schedule, smem, num_ctas=la.num_ctas)
                iss = f.issue
                mm = re.search(r"at (\d+) cycles each", cost.facts_source)
                expect = float(mm.group(1)) if mm else hit
                mix = iss["tile_cycles"][0] + (expect - hit) / (l2 - hit) * (
                    iss["tile_cycles_local_l2"][0] - iss["tile_cycles"][0])
                ms = [rp["metrics"][i] for rp in rec.get("repeats", []) if rp.get("metrics") and i < len(rp["metrics"])]

                def med(k):
                    v = [m[k] for m in ms if m.get(k) is not None]
                    return statistics.median(v) if v else None
                lst, dw = med("l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum"), med("dram__bytes_write.sum")
                gw = med("l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum") or 0.0
                rows.append({"case": rec["case"], "launch": la.name, "dtype": c.problem.dtype, "signed": x["signed"],
                             "m": cost.local.l1_miss_fraction if cost.local else 0.0, "expect": expect,
                             "code_kb": iss.get("tile_instructions", 0) * 16 / 1024,
                             "fetch_over_trip": fetch_cycles(cal.icache_loop_curve or cal.icache_curve,
                                                             iss.get("tile_instructions", 0)) / mix if mix else None,
                             "wb": max(0.0, dw - gw) / lst if lst and dw is not None else None})
    return rows


def table(rows: list) -> None:
    def line(name, sel):
        v = [r["signed"] for r in rows if sel(r)]
        if v:
            print(f"| {name} | {len(v)} | {statistics.median(v):+.1%} |")
    print("| spilling launches | n | median signed time error |")
    print("| --- | --- | --- |")
    for dt, isdt in (("fp32", lambda r: r["dtype"] == "fp32"), ("fp16 / bf16", lambda r: r["dtype"] != "fp32")):
        line(f"{dt}, all", isdt)
        for lo, hi, what in ((0, 150, "mostly L1 hits"), (150, 300, "mostly L2 hits"), (300, 1e9, "L2 + DRAM")):
            line(f"{dt}, expected reload wait {lo}-{hi if hi < 1e9 else ''} cycles ({what})",
                 lambda r: isdt(r) and lo <= r["expect"] < hi)
        for lo, hi in ((0, 0.1), (0.1, 0.4), (0.4, 1e9)):
            line(f"{dt}, stores written back {lo}-{hi if hi < 1e9 else ''} (ncu)",
                 lambda r: isdt(r) and r["wb"] is not None and lo <= r["wb"] < hi)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", default=str(ROOT / "reports" / "h100-sxm" / "random" / "live" / "fidelity.json"))
    ap.add_argument("-v", action="store_true", help="every launch, most too fast first")
    a = ap.parse_args(argv)
    rows = launches(Path(a.report))
    table(rows)
    if a.v:
        for r in sorted(rows, key=lambda r: r["signed"]):
            wb = "-" if r["wb"] is None else f"{r['wb']:.2f}"
            print(f"{r['case'][:40]:40s} {r['launch'][:20]:20s} {r['signed']:+.2f} m {r['m']:.2f} wait "
                  f"{r['expect']:.0f} code {r['code_kb']:.0f} KB fetch/trip {r['fetch_over_trip']:.2f} wb {wb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
