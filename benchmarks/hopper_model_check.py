"""memsim's prediction for every measured hopper / hopper_ws / hopper_fa3 / flash2 forward and backward of a
benchmarks/hopper_bench.py run, beside the measured time (issue 9: "the model keeps up").  CPU only.  hopper_fa3 records
(impl "fa3": one CTA per tile, "fa3p": the persistent walk) are simulated where they are the registry's launch
(`memsim.algorithms_hopper.fa3_persistent`: the walk when not causal), the others skipped; hopper_fa3 bwd records (impl
"hopper_fa3", session 11) as the registry's launches.

Forward records timed in the grid's order (``[grid order]``, kernels.hopper.LONGEST_FIRST off) are simulated with the
model's workload in the grid's order too; backward variants that differ only in how bytes move (``[tma/tma]`` vs
``[pointer/atomic]``: the same bytes) get the same prediction.

    python benchmarks/hopper_model_check.py benchmarks/results/hopper-h100-2026-11-25-run2.json --out FILE

Per record: the engine's predicted time (memsim.simulate, preset h100-sxm) and its ratio to the measured
median, plus two bounds computed from the same simulation's totals that show where the model's time goes:
``dot_s`` = FLOPs / (the calibrated dot rate x SMs) and ``exp_s`` = exps / (exp rate x SMs).  The engine
books a step's dots and exponentials one after the other (dot_s + exp_s when nothing else binds); a
kernel that overlaps the softmax of one warpgroup with the matmuls of the other runs towards
max(dot_s, exp_s).  Data only: no assertion.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def bench_parser(doc: str, *, required: bool = True) -> argparse.ArgumentParser:
    """The arguments the hopper_model_* scripts share: a benchmarks/hopper_bench.py JSON, --out, --hardware
    (`required` False: a script with another mode makes both optional and checks them itself)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("bench_json", nargs=None if required else "?")
    ap.add_argument("--out", required=required)
    ap.add_argument("--hardware", default="h100-sxm")
    return ap


def main(argv=None):
    a = bench_parser(__doc__).parse_args(argv)
    import memsim
    from memsim.calibration import calibration_for
    from memsim.io import base_provenance, write_json
    from memsim.schedule import AttentionProblem, Schedule
    hw = memsim.load_hardware(a.hardware)
    cal = calibration_for(hw)
    raw = Path(a.bench_json).read_bytes()
    if a.bench_json.endswith(".gz"):  # results committed gzipped (the tree the device tool sends is capped)
        import gzip
        raw = gzip.decompress(raw)
    bench = json.loads(raw)
    import memsim.workloads_hopper as wh
    from memsim.algorithms_hopper import fa3_persistent
    rows, memo = [], {}
    for r in bench["records"]:
        if r["impl"] not in ("hopper", "flash2", "hopper_ws", "fa3", "fa3p", "hopper_fa3") \
                or r["pass"] not in ("fwd", "bwd") \
                or not r.get("ms"):
            continue
        p = AttentionProblem(r["batch"], r["heads"], r["heads"], r["seq"], r["seq"], r["head_dim"], r["dtype"],
                             r["causal"])
        s = Schedule(**r["schedule"])
        if r["impl"] in ("fa3", "fa3p") and ((r["impl"] == "fa3p") != fa3_persistent(p, s) or r.get("wait_fence")
                                             or r.get("section_heads") is not None):
            continue  # not the registry's launch for this problem (walk, sections, no wait fence): no workload
        grid_order = "[grid order]" in r["variant"]
        key = (p, s, grid_order)
        if key not in memo:
            rule = wh.longest_first
            if grid_order:
                wh.longest_first = lambda p: False
            try:
                memo[key] = memsim.simulate(p, s, hw).to_dict()
            finally:
                wh.longest_first = rule
        res = memo[key]
        k, tot = max(res["kernels"], key=lambda x: x["time_s"]), res["total"]
        dot_s = tot["flops"] / (cal.dot_flops_per_sm_s[p.dtype] * hw.num_sms)
        exp_s = tot["exp_count"] / (cal.exp_per_sm_s * hw.num_sms)
        rows.append(dict(variant=r["variant"], phase=r["pass"], head_dim=p.head_dim, causal=p.causal, seq=p.seq_q,
                         schedule=r["schedule"], measured_ms=r["ms"], predicted_ms=tot["time_s"] * 1e3,
                         predicted_over_measured=tot["time_s"] * 1e3 / r["ms"], dot_ms=dot_s * 1e3,
                         exp_ms=exp_s * 1e3, sum_ms=(dot_s + exp_s) * 1e3, max_ms=max(dot_s, exp_s) * 1e3,
                         binding_limit=k.get("binding_limit"), compiled_facts=k.get("compiled_facts")))
    doc = {"provenance": base_provenance("python benchmarks/hopper_model_check.py " + " ".join(sys.argv[1:])),
           "hardware": a.hardware, "calibration": getattr(cal, "source", None), "bench": a.bench_json, "rows": rows}
    write_json(a.out, doc)
    print("| pass | variant | d | causal | N | measured ms | memsim ms | memsim/meas | dot+exp ms | max(dot,exp) ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for x in rows:
        print(f"| {x['phase']} | {x['variant']} | {x['head_dim']} | {x['causal']} | {x['seq']} | {x['measured_ms']:.3f} | "
              f"{x['predicted_ms']:.3f} | {x['predicted_over_measured']:.2f} | {x['sum_ms']:.3f} | {x['max_ms']:.3f} |")


if __name__ == "__main__":
    main()
