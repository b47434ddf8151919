"""Spill traffic outside the tile loop: where in a kernel's SASS its local stores and reloads sit (issue 8, CPU only).

    python benchmarks/spill_regions.py --microbench [--fact memsim/presets/h100-sxm.calibration.json]
    python benchmarks/spill_regions.py --table OUT.json [DATA_DIR ...]

The model books a launch's spill traffic per trip of its tile loop (`kernels.sass.tile_loop`'s local stores and
reloads; a kernel without a tile loop: the static counts once per CTA).  The code outside every loop -- the
prologue that stores the initial values of what the loop keeps spilled, the epilogue that reloads them -- runs once
per CTA and spills too; a persistent kernel's walk runs the code around its tile loop once per tile.  Neither is
booked.  Per SASS instruction, `regions` puts every STL / LDL in one of:

* ``tile``: the tile loop (booked per trip);
* ``pre_straight`` / ``pre_walk``: between the tile loop's guard -- the conditional branch before it to just past
  its end (no trip: skip the loop) -- and the loop: runs once per CTA (per tile of a walk) that makes a trip;
* ``walk``: inside a loop that holds the tile loop (a persistent CTA's walk over its tiles): once per tile;
* ``other``: in another loop (the masked diagonal copy of the tile loop, a ragged tail: the engine books those
  trips at the tile loop's cost);
* ``straight``: outside every loop: once per CTA.

``--microbench`` checks it on the `spill_sm` fact (benchmarks/spill_sm_gpu.py, 85 points under ncu, H100): each
variant of `_mb_spill_sm` compiled here for sm_90; ncu's local store / load bytes less the tile loop's bytes x
n_iter x threads x CTAs, per thread per CTA, against the SASS's ``straight`` bytes.  ``--table`` writes the regions of
every spilling launch of the given random sets (default: all) from the compiled table's entries (compiled again:
Triton's cache makes that a lookup), keyed by the table key.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "random"
REGIONS = ("tile", "pre_straight", "pre_walk", "walk", "other", "straight")  # = kernels.sass.LOCAL_REGIONS


def regions(sass: str, tile_label: str | None) -> dict:
    """{region: [store bytes, load bytes] per thread}: `kernels.sass.local_regions` (its home since the eleventh
    session: the compiled table's entries carry it as `local_regions`)."""
    sys.path.insert(0, str(ROOT))
    from kernels.sass import local_regions
    return local_regions(sass, tile_label)


def microbench(fact_path: Path) -> list[dict]:
    """Each `spill_sm` point: ncu's local bytes outside the tile loop per thread per CTA against the SASS's."""
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, str(ROOT))
    import torch

    from benchmarks.spill_sm_gpu import VARIANTS, _mb_spill_sm
    from kernels.compiled_facts import capture  # noqa: F401  (the table's compile path, for its environment)
    from kernels.sass import disassemble, tile_loop
    import triton
    from triton.backends.compiler import GPUTarget
    sass_of = {}
    for v, (rows, warps, maxnreg, n_iter) in VARIANTS.items():
        src = torch.empty(16, dtype=torch.float32, device="meta")
        sm = torch.empty(16, dtype=torch.int32, device="meta")
        kw = dict(ROWS=rows, COLS=64, num_warps=warps, **({"maxnreg": maxnreg} if maxnreg else {}))
        from kernels.compiled_facts import _specialise
        s, options = _specialise(_mb_spill_sm, (src, src, sm, n_iter, 132), kw, GPUTarget("cuda", 90, 32))
        ck = triton.compile(s, target=GPUTarget("cuda", 90, 32), options=options.__dict__)
        text = disassemble(ck.asm["cubin"])
        lp = tile_loop(text)
        sass_of[v] = regions(text, lp.label if lp else None)
    pts = json.loads(fact_path.read_text())["facts"]["spill_sm"]
    out = []
    for p in pts:
        c, r = p["compiled"], sass_of[p["variant"]]
        th, ctas = 32 * p["num_warps"], p["observed"]["ctas_working"]
        st = (p["local_st_bytes"] - c["loop_store_bytes"] * p["n_iter"] * th * ctas) / (th * ctas)
        ld = (p["local_ld_bytes"] - c["loop_load_bytes"] * p["n_iter"] * th * ctas) / (th * ctas)
        out.append({"id": p["id"], "variant": p["variant"], "ncu_outside_st": st, "ncu_outside_ld": ld,
                    "sass_tile": r["tile"], "sass_straight": r["straight"],
                    "sass_outside": [sum(r[k][j] for k in REGIONS if k != "tile") for j in (0, 1)],
                    "loop_matches": r["tile"] == [c["loop_store_bytes"], c["loop_load_bytes"]]})
    return out


def table(dirs, out_path: Path) -> dict:
    """The regions of every spilling launch of the given random sets, keyed by the compiled table's key."""
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, str(ROOT))
    from kernels.compiled_facts import _compile_entry
    from kernels.sass import disassemble
    from memsim import compiled
    from verification import records as R
    from verification.suite import case_from_record
    ents = compiled.load_table("sm90")
    ents = ents.get("entries", ents)
    out = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for d in dirs:
        for rec in R.load_records(Path(d)):
            case = case_from_record(rec)
            for k_ in rec["kernels"]:
                key = compiled.key(k_["name"], case.problem, case.schedule)
                if key not in ents:
                    near = compiled.nearest(k_["name"], case.problem, case.schedule)
                    if near is None:
                        continue
                    key = near[1]
                e = ents[key]
                if key in out or not (e.get("spill_store_bytes") or e.get("spill_load_bytes")):
                    continue
                try:
                    text = disassemble(_compile_entry(e, "sm90").asm["cubin"])
                except Exception as ex:  # noqa: BLE001 -- recorded, the rest go on
                    out[key] = {"error": f"{type(ex).__name__}: {ex}"[:200]}
                    continue
                out[key] = regions(text, (e.get("loop") or {}).get("label"))
                out_path.write_text(json.dumps(out, indent=0, sort_keys=True))
                print(key[:100], {r: out[key][r] for r in REGIONS if out[key][r] != [0, 0]}, flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="*")
    ap.add_argument("--microbench", action="store_true")
    ap.add_argument("--fact", default=str(ROOT / "memsim" / "presets" / "h100-sxm.calibration.json"))
    ap.add_argument("--table", metavar="OUT")
    a = ap.parse_args(argv)
    if a.microbench:
        rows = microbench(Path(a.fact))
        print("| point | ncu outside the loop st / ld B per thread per CTA | SASS straight st / ld | SASS tile loop = "
              "fact's |")
        print("| --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['id']} | {r['ncu_outside_st']:.1f} / {r['ncu_outside_ld']:.1f} | "
                  f"{r['sass_straight'][0]} / {r['sass_straight'][1]} | {r['loop_matches']} |")
        bad = [r for r in rows if abs(r["ncu_outside_st"] - r["sass_outside"][0]) > 0.5
               or abs(r["ncu_outside_ld"] - r["sass_outside"][1]) > 0.5]
        print(f"{len(rows) - len(bad)} of {len(rows)} points: ncu's bytes outside the tile loop = the SASS's, exactly")
        return 0 if not bad else 1
    if a.table:
        dirs = a.dirs or sorted(p for p in DATA.iterdir() if p.is_dir())
        table(dirs, Path(a.table))
        return 0
    ap.error("give --microbench or --table OUT")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
