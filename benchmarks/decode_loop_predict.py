"""The model's compute per K/V tile of the decode loops a `benchmarks/decode_mechanisms_gpu.py` loop set measures,
written BEFORE the run (issue 12, session 15, for the ``loop3`` set): per variant the warp-issue replay of its compiled
loop at one CTA per SM and the model's c (`memsim.inference.loop_compute_s`: the replay x the variant's own measured
ratio, else its layout class's, `loop_layout_class`).  --check compares a run's ``hidden`` periods at one CTA per SM
(`decode_mechanisms_gpu.loop_table`) with them.  No GPU.

    python benchmarks/decode_loop_predict.py --sets loop3 --write reports/h100-sxm/decode/s16-loop3-predictions.json
    python benchmarks/decode_loop_predict.py --check RUN.json --pred reports/h100-sxm/decode/s16-loop3-predictions.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def write(sets: tuple, out: str) -> int:
    import decode_mechanisms_gpu as M

    import memsim.inference as I
    from kernels.decode_kv import device_facts
    from memsim.io import base_provenance, write_json
    f = device_facts(None)
    rows = {}
    for p in M.plan(sets):
        if p["kind"] != "loop" or p["variant"] in rows:
            continue
        prob, sch = M._loop_case(p)
        e = I._compiled_entry(prob, sch) or {}
        cyc = e.get("tile_cycles") or [None]
        c = I.loop_compute_s(prob, sch, f)
        rows[p["variant"]] = dict(variant=p["variant"], key=I.decode_loop_key(prob, sch), cls=I.loop_layout_class(prob, sch),
                                  replay_us=cyc[0] / f.clock_Hz * 1e6 if cyc[0] else None,
                                  model_c_us=c * 1e6 if c else None, loop_instructions=e.get("loop_instructions"))
        print(rows[p["variant"]])
    write_json(out, {"provenance": base_provenance("python benchmarks/decode_loop_predict.py " + " ".join(sys.argv[1:])),
                     "rows": list(rows.values())}, overwrite=True)
    return 0


def check(run: str, pred: str) -> int:
    import decode_mechanisms_gpu as M
    pts = json.load(open(run)).get("points", [])
    P = {r["variant"]: r for r in json.load(open(pred))["rows"]}
    print("| variant | mode | CTAs | measured period us | model c us (err) | replay us | measured / replay |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in M.loop_table(pts):
        pr = P.get(r["variant"])
        if pr is None or r["ctas_on_sm"] != 1:
            continue
        m = r["period_s"] * 1e6
        c = pr["model_c_us"]
        print(f"| {r['variant']} | {r['mode']} | {r['ctas']} | {m:.3f} | "
              f"{'-' if c is None else f'{c:.3f} ({c / m - 1:+.1%})'} | {pr['replay_us']:.3f} | "
              f"{m / pr['replay_us']:.3f} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="loop3")
    ap.add_argument("--write")
    ap.add_argument("--check")
    ap.add_argument("--pred", default="reports/h100-sxm/decode/s16-loop3-predictions.json")
    a = ap.parse_args(argv)
    if a.write:
        return write(tuple(x for x in a.sets.split(",") if x), a.write)
    if a.check:
        return check(a.check, a.pred)
    ap.error("--write or --check")
    return 2


if __name__ == "__main__":
    sys.exit(main())
