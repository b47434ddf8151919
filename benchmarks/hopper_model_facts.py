"""memsim with and without compiled facts for launches the committed compiled-facts table lacks (issue 9 item 4: the
model keeps up).  CPU only: each record's launches are compiled for sm_90a here (`kernels.compiled_facts
.facts_for_case`, the same capture and ptxas report as the table's) and passed to `memsim.simulate(...,
compiled_facts=...)` -- nothing is written to memsim/presets/compiled/.

    python benchmarks/hopper_model_facts.py benchmarks/results/hopper-h100-2026-11-26-run5.json --out FILE \
        [--impls hopper_ws] [--hardware h100-sxm]

Per record (median ms of the benchmark): memsim's time from the table as it is (`memsim_ms`: for a launch it lacks,
the nearest entry or the preset's registers), and with this compile's facts (`memsim_with_facts_ms`).  Data only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)  # compiling needs real JIT functions
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench_json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--impls", default="hopper_ws", help="comma-separated record impls to simulate")
    ap.add_argument("--hardware", default="h100-sxm")
    a = ap.parse_args(argv)
    import memsim
    from kernels.compiled_facts import facts_for_case
    from memsim.compiled import facts_from_entry
    from memsim.io import base_provenance, write_json
    from memsim.schedule import AttentionProblem, Schedule
    hw = memsim.load_hardware(a.hardware)
    impls = a.impls.split(",")
    rows = []
    print("| pass | impl | d | causal | N | measured ms | memsim ms | with facts ms | memsim/meas | with facts/meas | facts (regs) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in json.load(open(a.bench_json))["records"]:
        if r["impl"] not in impls or r["pass"] not in ("fwd", "bwd") or not r.get("ms"):
            continue
        p = AttentionProblem(r["batch"], r["heads"], r["heads"], r["seq"], r["seq"], r["head_dim"], r["dtype"], r["causal"])
        s = Schedule(**r["schedule"])
        facts = {e["launch"]: facts_from_entry(e) for e in facts_for_case(p, s, have={}).values()}
        t0 = memsim.simulate(p, s, hw).total["time_s"] * 1e3
        t1 = memsim.simulate(p, s, hw, compiled_facts=facts).total["time_s"] * 1e3
        regs = {k: f.regs_per_thread for k, f in facts.items()}
        rows.append(dict(phase=r["pass"], impl=r["impl"], variant=r["variant"], head_dim=p.head_dim, causal=p.causal,
                         seq=p.seq_q, schedule=s.to_dict(), measured_ms=r["ms"], memsim_ms=t0, memsim_with_facts_ms=t1,
                         facts={k: dict(regs_per_thread=f.regs_per_thread, local_bytes_per_thread=f.local_bytes_per_thread,
                                        shared_bytes=f.shared_bytes, num_warps=f.num_warps, source=f.source)
                                for k, f in facts.items()}))
        print(f"| {r['pass']} | {r['impl']} | {p.head_dim} | {p.causal} | {p.seq_q} | {r['ms']:.3f} | {t0:.3f} | {t1:.3f} | "
              f"{t0 / r['ms']:.2f} | {t1 / r['ms']:.2f} | {regs} |", flush=True)
    write_json(a.out, {"provenance": base_provenance("python benchmarks/hopper_model_facts.py " + " ".join(
        sys.argv[1:] if argv is None else argv)), "hardware": a.hardware, "bench": a.bench_json, "rows": rows},
        overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
