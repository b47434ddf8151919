"""What a trip of the masked copy of a tile loop costs (issue 8; memsim/MODEL.md "the masked copy of the tile
loop"; notes/fidelity.md, thirteenth session).

flash2 compiles its K/V loop twice (kernels/flash2.py, MASKED): the blocks every row of the Q tile sees whole, and
the masked ones -- the causal diagonal band, a ragged last block -- whose copy carries the mask arithmetic (forward
d=128 128x16: 416 SASS instructions a trip against 347).  The model booked every trip at the first loop's replay.

The isolating program: the same launch, same tiles, same bytes and the same number of trips per CTA, once with every
trip in the masked copy and once with none -- a Q block that is the whole sequence (seq_q = seq_kv = block_m):
causal top-left puts all block_m / block_n K/V trips on the diagonal band, non-causal (seq_kv a multiple of block_n)
puts none there.  What it checks is the counting the model rests on: the warp instructions the card executes
(ncu smsp__inst_executed.sum) differ by CTAs x warps x trips x (masked copy - unmasked copy) SASS instructions,
the two loops as `kernels.sass.band_profile` reads them, the trips as `memsim.workloads` counts them.  (The time of
these launches is their DRAM traffic's: a Q block that sees 128 keys cannot keep the SM busy, so the time
difference is not the band's; the time effect is the replay's, checked on the live sets.)  ncu (default cache
control, clocks unlocked), LAUNCHES launches of each point, median.

    run(command="python3 benchmarks/masked_band_gpu.py --out $OUT/masked_band.json", timeout_s=300)
    python benchmarks/masked_band_gpu.py --analyse FILE     (here: the model's time per point with and without
                                                             the masked copy's replay, against the card's)

Data only (no assertion).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAUNCHES = 3
METRICS = ["gpu__time_duration.sum", "smsp__inst_executed.sum", "sm__cycles_active.avg"]
#: (phase, dtype, head_dim, block_m, block_n, num_warps, num_stages, CTAs): tile shapes of the live sets' flash2
#: cases (r7126_003's 128x16, r11262_013's 32x32 w2, r26112617_001's 16x64) and the defaults' larger tiles
POINTS = [
    ("fwd", "fp16", 128, 128, 16, 4, 1, 2112),
    ("fwd", "bf16", 128, 32, 32, 2, 2, 4224),
    ("fwd", "fp16", 32, 16, 64, 4, 2, 4224),
    ("fwd", "fp16", 64, 64, 32, 4, 2, 4224),
    ("fwd", "bf16", 64, 128, 64, 8, 2, 2112),
    ("fwd", "fp32", 64, 64, 32, 4, 2, 2112),
    ("bwd", "fp16", 64, 64, 32, 4, 2, 2112),
    ("bwd", "bf16", 128, 32, 32, 2, 2, 2112),
    ("bwd", "fp16", 32, 16, 64, 2, 1, 4224),
]


def specs() -> list[dict]:
    """Case-runner specs: every point causal top-left and not, seq_q = seq_kv = block_m (the whole sequence one Q
    block: all its trips masked, or none), batch = CTAs, one head."""
    sys.path.insert(0, ROOT)
    from memsim.schedule import AttentionProblem, Schedule, kernel_launches
    out = []
    for phase, dt, d, bm, bn, w, st, ctas in POINTS:
        for causal in (True, False):
            p = AttentionProblem(batch=ctas, heads_q=1, heads_kv=1, seq_q=bm, seq_kv=bm, head_dim=d, dtype=dt,
                                 causal=causal, causal_align="top_left")
            s = Schedule("flash2", phase, bm, bn, w, st)
            name = f"{phase}_{dt}_d{d}_{bm}x{bn}_w{w}_st{st}_{'causal' if causal else 'full'}"
            out.append({"name": name, "problem": p.to_dict(), "schedule": s.to_dict(), "hardware": "h100-sxm",
                        "launches": [L.name for L in kernel_launches(p, s)]})
    return out


def child(spec_file: str) -> int:
    import torch
    sys.path.insert(0, ROOT)
    from verification.caserunner import prepare
    for spec in json.load(open(spec_file)):
        fn, keep = prepare(spec, "cuda")
        fn()
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        for _ in range(LAUNCHES):
            fn()
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
        del fn, keep
        print(json.dumps({"case": spec["name"], "ok": True}), flush=True)
    return 0


def run(out: str) -> int:
    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    from run_file import ncu_rows, write_run
    t0 = time.time()
    sp = specs()
    spec_file = out + ".specs.json"
    json.dump(sp, open(spec_file, "w"))
    expected = sum(len(s["launches"]) * LAUNCHES for s in sp)
    rows, cmd, _ = ncu_rows(os.path.abspath(__file__), ["--child", spec_file], metrics=METRICS,
                            kernel_regex="^_flash2_", expected=expected, timeout_s=280)
    points, k = [], 0
    for s in sp:
        n = len(s["launches"])
        per = {m: {name: [] for name in s["launches"]} for m in METRICS}
        for _ in range(LAUNCHES):
            for name in s["launches"]:
                r = rows[k]
                k += 1
                if r.name.lstrip("_") != name:
                    raise SystemExit(f"{s['name']}: profiled {r.name}, expected _{name}")
                for m in METRICS:
                    per[m][name].append(r.metrics.get(m))
        med = {m: {name: statistics.median(v) for name, v in d.items()} for m, d in per.items()}
        points.append({**s, "time_s": med["gpu__time_duration.sum"], "inst_executed": med["smsp__inst_executed.sum"],
                       "sm_cycles_active": med["sm__cycles_active.avg"], "repeats": per})
    write_run(out, "masked_band/1", points, script="masked_band_gpu.py", argv=None, t0=t0,
              method=f"ncu gpu__time_duration.sum per launch, {LAUNCHES} launches per point, median; default cache "
                     f"control, --clock-control none; ncu command: {' '.join(cmd)}")
    os.remove(spec_file)
    print(f"{'point':44s} {'launch':>22s} {'us':>9s} {'warp instructions':>18s}")
    for p in points:
        for name, t in p["time_s"].items():
            print(f"{p['name']:44s} {name:>22s} {t * 1e6:9.1f} {p['inst_executed'][name]:18.0f}")
    return 0


def analyse(path: str) -> int:
    """The model's kernel time per launch with the masked copy's replay and without (every trip at the tile loop's
    replay, as before), beside the card's; and the causal / full ratio of each."""
    sys.path.insert(0, ROOT)
    import memsim.engine as E
    from memsim.schedule import problem_from_dict, schedule_from_dict
    from memsim.sim import simulate
    doc = json.load(open(path))

    def predict(pt, band: bool):
        orig = E.LaunchModel.__init__

        def init(self, *a, **kw):
            orig(self, *a, **kw)
            if not band:
                self.trip_factors = (1.0, 1.0)
        E.LaunchModel.__init__ = init
        try:
            r = simulate(problem_from_dict(pt["problem"]), schedule_from_dict(pt["schedule"]), "h100-sxm")
        finally:
            E.LaunchModel.__init__ = orig
        return {k["name"]: k["time_s"] for k in r.to_dict()["kernels"]}
    rows = []
    for pt in doc["points"]:
        with_band, without = predict(pt, True), predict(pt, False)
        for name, t in pt["time_s"].items():
            rows.append((pt["name"], name, t, with_band[name], without[name]))
    print(f"{'point':40s} {'launch':22s} {'card us':>8s} {'model':>8s} {'err':>7s} {'no band':>8s} {'err':>7s}")
    for n, L, t, a, b in rows:
        print(f"{n:40s} {L:22s} {t * 1e6:8.1f} {a * 1e6:8.1f} {(a - t) / t:+7.1%} {b * 1e6:8.1f} {(b - t) / t:+7.1%}")
    print("\nwarp instructions per launch: the card's over the table's SASS reading -- CTAs x warps x (the code "
          "outside the loops + each trip's loop copy) -- with the masked trips at the masked copy, and with every "
          "trip at the tile loop (as before)")
    from memsim import compiled
    from memsim.workloads import _Ctx
    entries = compiled.load_table("sm90")
    with_r, without_r = [], []
    for pt in doc["points"]:
        p, s = problem_from_dict(pt["problem"]), schedule_from_dict(pt["schedule"])
        c = _Ctx(p, s, 1)
        for name in pt["launches"]:
            rep = (entries.get(compiled.key(name, p, s)) or {}).get("issue") or {}
            if name.endswith("preprocess") or not rep.get("tile_instructions"):
                continue
            if name == "flash2_bwd_dkdv":  # a K/V-block CTA's trips: the Q blocks that see it, per query head
                ctas = c.nb
                trips = sum(c.mb - c.imin(j) for j in range(c.nb)) * c.G
                masked = sum(c.masked_kv(j) for j in range(c.nb)) * c.G
            else:
                ctas = c.mb
                trips = sum(c.jmax[i] + 1 for i in range(c.mb))
                masked = sum(c.masked_q(i) for i in range(c.mb))
            tile, band = rep["tile_instructions"], rep.get("band_instructions") or rep["tile_instructions"]
            m_i, u_i = (band, tile) if rep.get("band_masked") else (tile, band)
            k = p.batch * p.heads_q // (c.G if name == "flash2_bwd_dkdv" else 1) * s.num_warps
            straight = ctas * rep["straight_instructions"]
            got = pt["inst_executed"][name]
            a = got / (k * (straight + masked * m_i + (trips - masked) * u_i))
            b = got / (k * (straight + trips * tile))
            with_r.append(a)
            without_r.append(b)
            print(f"{pt['name']:40s} {name:16s} {masked:3d} / {trips:3d} masked  {a:6.3f}  {b:6.3f}")
    print(f"median {statistics.median(with_r):.3f} (range {min(with_r):.3f}-{max(with_r):.3f}) with the masked "
          f"copy, {statistics.median(without_r):.3f} ({min(without_r):.3f}-{max(without_r):.3f}) without")
    print("\ncausal / full, per launch: card, model, model without the band")
    by = {(n.rsplit("_", 1)[0], L): (t, a, b) for n, L, t, a, b in rows if n.endswith("_full")}
    for n, L, t, a, b in rows:
        if n.endswith("_causal"):
            ft, fa, fb = by[(n.rsplit("_", 1)[0], L)]
            print(f"{n.rsplit('_', 1)[0]:40s} {L:22s} {t / ft:6.3f} {a / fa:6.3f} {b / fb:6.3f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--child")
    ap.add_argument("--analyse")
    ap.add_argument("--specs", action="store_true", help="print the case specs (JSON) and stop")
    a = ap.parse_args(argv)
    if a.child:
        return child(a.child)
    if a.analyse:
        return analyse(a.analyse)
    if a.specs:
        print(json.dumps(specs()))
        return 0
    if not a.out:
        ap.error("--out, --analyse or --specs")
    return run(a.out)


if __name__ == "__main__":
    sys.exit(main())
