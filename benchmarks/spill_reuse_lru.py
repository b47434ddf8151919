"""Spill reloads' reuse distances since the value's last ACCESS, not its store (issue 8, CPU only; notes/spills.md
session 15).

    python benchmarks/spill_reuse_lru.py --out FILE [--cases CASE ...] [--max-compile-s S]
    python benchmarks/spill_reuse_lru.py --pack FILE          # -> memsim/spill_reuse_sm90.json.gz (the model's data)

`kernels.sass.local_reuse` gives each reload (LDL) of a tile loop the distinct local words touched since the STL that
wrote its value.  A cache that keeps lines by recency (LRU, its pseudo-LRU approximations, RRIP's promotion on a hit)
ages a line from its last reference, so a value reloaded twice per store is aged from its first reload when its
second comes.  The `spills` / `spill_sm` microbenchmarks store each value once and reload it once per sweep (every
LDL's two distances are equal: checked on `_mb_spill_sm`'s four variants), so the calibrated curves hold under either
reading; the live fp32 loops reload a value 1-4 times per store (held-out V's r26112703_000 dK/dV: 93 688 B reloaded
per 52 476 B stored per thread and trip).

This script compiles the live sets' spilling table entries again (the table's compile path,
`kernels.compiled_facts._compile_entry`; Triton's cache makes a second run fast), takes the tile loop's SASS
(`kernels.sass._pick_tile_loop(parse(...))`, the loop whose `local_reuse` the table holds -- each entry's
since-store histogram recomputed here must equal the table's, else the entry is skipped), and writes per entry
(`memsim.spill_draw.fingerprint`) the reload histogram since the last access and the joint histogram of the two
distances (`memsim.spill_reuse.distance_pairs`), which `memsim.spill_reuse` reads under MEMSIM_SPILL_LRU=FILE.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3" / "random"


def live_entries(only_cases=None) -> list:
    """[(table key, entry)] of every spilling launch of the live random sets (the key the model reads: exact, else
    `memsim.compiled.nearest`'s), cheapest compile first, once each."""
    sys.path.insert(0, str(ROOT))
    from memsim import compiled
    from verification import records as R
    from verification.suite import case_from_record
    table = compiled.load_table("sm90")
    out: dict = {}
    for d in sorted(p for p in DATA.iterdir() if p.is_dir()):
        for rec in R.load_records(d):
            if only_cases and not rec["case"].startswith(tuple(only_cases)):
                continue
            case = case_from_record(rec)
            for k in rec.get("kernels", []):
                name = k.get("name")
                key = compiled.key(name, case.problem, case.schedule)
                if key not in table:
                    near = compiled.nearest(name, case.problem, case.schedule)
                    if near is None:
                        continue
                    key = near[1]
                e = table[key]
                if (e.get("loop") or {}).get("local_reuse"):
                    out[key] = e
    return sorted(out.items(), key=lambda kv: kv[1].get("compile_s") or 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--pack", metavar="FILE", help="write FILE's pairs, compact and gzipped, to memsim.spill_reuse's "
                    "DATA_FILE")
    ap.add_argument("--cases", nargs="+")
    ap.add_argument("--max-compile-s", type=float, default=120.0,
                    help="skip entries whose table compile took longer (ptxas)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if a.pack:
        import gzip
        from memsim.spill_reuse import DATA_FILE
        ent = json.loads(Path(a.pack).read_text())["entries"]
        data = {"about": "memsim.spill_reuse: per spilling table entry (memsim.spill_draw.fingerprint) of the live "
                         "random sets, the tile loop's reloads as [[distance since the store, since the last access, "
                         "bytes]] per thread; written by benchmarks/spill_reuse_lru.py",
                "entries": {k: {"key": v["key"], "reload_pairs": v["reload_pairs"]} for k, v in sorted(ent.items())}}
        DATA_FILE.write_bytes(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), mtime=0))
        print(f"{len(ent)} entries -> {DATA_FILE} ({DATA_FILE.stat().st_size} bytes)")
        return 0
    if not a.out:
        ap.error("give --out FILE or --pack FILE")
    from kernels.compiled_facts import _compile_entry
    from kernels.sass import _pick_tile_loop, disassemble, parse
    from memsim.spill_draw import fingerprint
    from memsim.spill_reuse import distance_pairs, histogram, pair_histogram
    out_p = Path(a.out)
    got = json.loads(out_p.read_text()) if out_p.is_file() else {"entries": {}}
    sel = live_entries(a.cases)
    print(f"{len(sel)} spilling entries", flush=True)
    for key, e in sel:
        fp = fingerprint(e)
        if fp in got["entries"] or (e.get("compile_s") or 0.0) > a.max_compile_s:
            continue
        t0 = time.time()
        try:
            _, ops = _pick_tile_loop(parse(disassemble(_compile_entry(e, "sm90").asm["cubin"])))
        except Exception as ex:  # a compile that fails here fails in the table's tool too
            print(f"  skip {key}: {type(ex).__name__}: {str(ex)[:100]}", flush=True)
            continue
        pairs = distance_pairs(ops)
        if histogram([(w, a_) for w, a_, _ in pairs]) != e["loop"]["local_reuse"]["reload"]:
            print(f"  skip {key}: its tile loop is not the table's (since-store histograms differ)", flush=True)
            continue
        got["entries"][fp] = {"key": key, "reload": histogram([(w, b_) for w, _, b_ in pairs]),
                              "reload_pairs": pair_histogram(pairs)}
        out_p.write_text(json.dumps(got))
        print(f"  {time.time() - t0:5.1f} s  {key}", flush=True)
    print(f"{len(got['entries'])} entries -> {out_p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
