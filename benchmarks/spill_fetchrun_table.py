"""The replays with the fetch window for the live records' tile loops (issue 8, spills session 19; CPU only).

`MEMSIM_FETCH_RUN=1` (memsim.fetch_run) charges a tile-loop trip the replay in which each warp's code arrives a
128-B line at a time at the loop curve's rate, at most `fetch_run.DEPTH_LINES` ahead of the warp
(benchmarks/spill_fetchrun_gpu.py).  The compiled table's replays do not have it, so this script replays the
loops of the launches the live records use -- those of >= MIN_KB of loop code (smaller ones fetch at ~1 cycle an
instruction: nothing moves) -- exactly as `kernels.sass.issue_profile` does (the same bodies, port charges and
passes: loads at the L2 / DRAM latency, reloads at the L2 latency, the masked copy), with the window, for 1..k
resident CTAs (k: the most any live launch of that entry has), and writes memsim/fetch_run_sm90.json.gz, keyed
by `fetch_run.loop_key` (warps, loop instructions, the table's one-CTA trip).  Each kernel is compiled again from
its entry (Triton's cache makes that a lookup here).

    python benchmarks/spill_fetchrun_table.py [--min-kb 32] [--limit N]
    python benchmarks/spill_fetchrun_table.py --curve    # memsim/fetch_run_curve_sm90.json.gz: the loops whose
                                                         # rate fetch_run.CURVE_POINT changes (144-192 KB), at it
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "random"


def needed(min_kb: float) -> dict:
    """table key -> (entry facts, most resident CTAs) for the live records' launches with a replayed tile loop of
    >= min_kb of code."""
    import memsim
    from memsim import compiled
    from memsim.costs import _lookup_facts, launch_cost
    from memsim.schedule import check_fits, kernel_launches
    from verification import records as R
    from verification.suite import case_from_record
    hw = memsim.load_hardware("h100-sxm")
    from memsim.calibration import load_calibration
    cal = load_calibration(hw)
    table = compiled.load_table("sm90")
    out: dict = {}
    for d in sorted(p for p in DATA.iterdir() if p.is_dir()):
        for rec in R.load_records(d):
            c = case_from_record(rec)
            try:
                smem = check_fits(c.problem, c.schedule, hw.smem_per_block_bytes, hw.name)
                kl = kernel_launches(c.problem, c.schedule)
            except Exception:  # noqa: BLE001 -- a case the registry no longer builds
                continue
            for la in kl:
                f = _lookup_facts(la.name, c.problem, c.schedule)
                iss = (f.issue or {}) if f is not None else {}
                if not iss.get("tile_cycles") or iss.get("tile_instructions", 0) * 16 < min_kb * 1024:
                    continue
                k_ = compiled.key(la.name, c.problem, c.schedule)
                if k_ not in table:
                    near = compiled.nearest(la.name, c.problem, c.schedule)
                    if near is None:
                        continue
                    k_ = near[1]
                cost = launch_cost(hw, cal, la.name, c.problem, c.schedule, smem, num_ctas=la.num_ctas)
                res = max(1, min(cost.ctas_per_sm, -(-la.num_ctas // hw.num_sms)))
                res = min(res, len(iss["tile_cycles"]))
                prev = out.get(k_)
                out[k_] = (f, max(res, prev[1] if prev else 0), c.schedule.num_warps)
    return out


def replay_entry(e: dict, k: int, cal, curve=None) -> dict:
    """issue_profile's tile-loop lists of entry `e` for 1..k CTAs, every loop replay with the fetch window (at
    `curve`'s rate; default the calibration's loop curve)."""
    import memsim.warp_issue as wi
    from kernels.compiled_facts import _compile_entry
    from kernels.sass import disassemble, issue_profile
    from memsim import fetch_run
    curve = curve or cal.icache_loop_curve or cal.icache_curve
    orig = wi.replay

    def windowed(body, *, trips=3, fetch=None, **kw):
        if trips != 1 and fetch is None:
            fetch = fetch_run.window(curve, len(body))
        return orig(body, trips=trips, fetch=fetch, **kw)
    ck = _compile_entry(e, "sm90")
    text = disassemble(ck.asm["cubin"])
    wi.replay = windowed
    try:
        prof = issue_profile(text, num_warps=e["num_warps"], max_ctas=k, lat=cal.issue,
                             walk="persistent" in ck.name)
    finally:
        wi.replay = orig
    return {x: prof[x] for x in ("tile_cycles", "tile_cycles_local_l2", "tile_cycles_dram", "band_cycles",
                                 "tile_instructions", "latencies") if x in prof}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min-kb", type=float, default=32.0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--curve", action="store_true", help="the loops whose fetch rate fetch_run.CURVE_POINT changes, "
                    "replayed at the extended curve's rate, into fetch_run.TABLE_CURVE")
    a = ap.parse_args(argv)
    import memsim
    from memsim import compiled, fetch_run
    from memsim.calibration import load_calibration
    cal = load_calibration(memsim.load_hardware("h100-sxm"))
    table = compiled.load_table("sm90")
    want = needed(a.min_kb)
    keys = sorted(want, key=lambda k_: want[k_][0].issue.get("tile_instructions", 0))
    curve = None
    if a.curve:
        from memsim.issue_fit import fetch_cycles
        curve, base = fetch_run.loop_curve(cal), cal.icache_loop_curve or cal.icache_curve
        n_of = lambda k_: want[k_][0].issue.get("tile_instructions", 0)  # noqa: E731
        keys = [k_ for k_ in keys if abs(fetch_cycles(curve, n_of(k_)) - fetch_cycles(base, n_of(k_))) > 1e-6]
    if a.limit:
        keys = keys[:a.limit]
    out_path = Path(a.out) if a.out else (fetch_run.TABLE_CURVE if a.curve else fetch_run.TABLE)
    entries: dict = {}
    t0 = time.time()
    for j, k_ in enumerate(keys, 1):
        f, k, warps = want[k_]
        t1 = time.time()
        try:
            fig = replay_entry(table[k_], k, cal, curve)
        except Exception as ex:  # noqa: BLE001 -- one entry must not stop the others
            print(f"[{j}/{len(keys)}] {k_}: FAILED {type(ex).__name__}: {str(ex)[:200]}", file=sys.stderr, flush=True)
            continue
        old = f.issue
        if fig.get("tile_instructions") != old.get("tile_instructions"):
            print(f"[{j}/{len(keys)}] {k_}: loop differs from the table's ({fig.get('tile_instructions')} vs "
                  f"{old.get('tile_instructions')}), skipped", file=sys.stderr, flush=True)
            continue
        entries[fetch_run.loop_key(table[k_]["num_warps"], old)] = fig | {"table_key": k_}
        print(f"[{j}/{len(keys)}] {k_}: {old['tile_instructions']} instr, k {k}: tile {old['tile_cycles'][:k]} -> "
              f"{fig['tile_cycles']} ({time.time() - t1:.1f} s)", file=sys.stderr, flush=True)
    with gzip.open(out_path, "wt") as fh:
        json.dump({"note": __doc__.split("\n\n")[0], "depth_lines": fetch_run.DEPTH_LINES,
                   "min_kb": a.min_kb, "curve": list(map(list, curve)) if curve else None, "entries": entries}, fh)
    print(f"{len(entries)} entries -> {out_path} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
