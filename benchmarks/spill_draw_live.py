"""Spill reloads drawn one by one on the live sets' launches (issue 8, CPU only; notes/spills.md session 12).

    python benchmarks/spill_draw_live.py --bodies DIR [--cases CASE ...] [--max-compile-s S]
    MEMSIM_SPILL_DRAW=DIR python benchmarks/spill_live.py --only-spilling --out VARIANT.json   (patched worktree)

`benchmarks/spill_draw_replay.py` showed on the `spill_sm` microbenchmark (57 points at <= 4 warps per SM) that a
tile loop's time follows its replay with each reload (LDL) DRAWN -- an L1 hit, an L2 hit or a DRAM miss -- and the
DRAM misses at a loaded latency, where memsim.costs mixes the all-L1 and all-L2 replays linearly.  To try that on
the live launches the model needs each spilling tile loop's SASS body, which the compiled table does not keep (it
keeps the two replays).  ``--bodies DIR`` compiles the live sets' spilling table entries again (the table's own
compile path, `kernels.compiled_facts._compile_entry`) and pickles each entry's tile-loop body
(`kernels.sass.tile_loop_body`) under DIR, keyed by `fingerprint` -- entries whose case is in the live sets, whose
tile loop has reloads (`issue.tile_cycles_local_l2`) and that are not warp-specialised; the brief's cases first,
then by the table's compile time (cheapest first).  The patch that uses them (`memsim.spill_draw`, hooked in
memsim.costs / memsim.engine behind MEMSIM_SPILL_DRAW) is notes/spills_patch_session13.diff.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "verification" / "data" / "nvidia-h100-80gb-hbm3"

#: the brief's cases (held-out misses of the spill class), compiled first
PRIORITY = ("r26112617_003", "r26112617_009", "r26112614_001", "r26112612_015", "r26112609_011", "r26112609_015")


def reload_distances(body: list[str], word_bytes: int = 4) -> list[int]:
    """Per LDL of the tile loop (`kernels.sass.parse`'s "LDL:width:offset" opcodes, in order), its reuse distance in
    bytes per thread (`kernels.sass.local_distances`: the distinct other local words loaded or stored since the STL
    that wrote its first word, around the loop; the loop's whole local footprint for a value no STL writes)."""
    from kernels.sass import local_distances
    return [d for kind, _, d in local_distances(body, word_bytes) if kind == "LDL"]


def add_distances(folder: Path, sel) -> int:
    from kernels.compiled_facts import _compile_entry
    from kernels.sass import _pick_tile_loop, disassemble, parse
    from memsim.spill_draw import body_file, fingerprint
    done = 0
    for k, e in sel:
        path = folder / body_file(fingerprint(e))
        if not path.exists():
            continue
        d = pickle.loads(path.read_bytes())
        if "ldl_distance" in d:
            continue
        try:
            text = disassemble(_compile_entry(e, "sm90").asm["cubin"])
            _, ops = _pick_tile_loop(parse(text))
        except Exception as ex:
            print(f"  skip {k}: {type(ex).__name__}: {str(ex)[:120]}", flush=True)
            continue
        dist = reload_distances(ops)
        n_ldl = sum(x.op == "LDL" for x in d["body"])
        if len(dist) != n_ldl:
            print(f"  skip {k}: {len(dist)} distances for {n_ldl} LDLs", flush=True)
            continue
        d["ldl_distance"] = dist
        path.write_bytes(pickle.dumps(d))
        done += 1
        print(f"  {n_ldl:5d} LDLs  {k}", flush=True)
    print(f"{done} bodies given their reloads' distances")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bodies", required=True, help="folder for the pickled tile-loop bodies")
    ap.add_argument("--max-compile-s", type=float, default=1e9, help="skip entries the table says took longer")
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--list", action="store_true", help="only list what would be compiled")
    ap.add_argument("--keys", help="a file of table keys, one a line: compile these, in this order")
    ap.add_argument("--distances", action="store_true", help="add to each pickled body its reloads' reuse distances "
                    "(`reload_distances`; the kernels come from Triton's cache after the first pass)")
    a = ap.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, str(ROOT))
    from memsim.spill_draw import body_file, fingerprint
    out = Path(a.bodies)
    out.mkdir(parents=True, exist_ok=True)
    table = json.loads((ROOT / "memsim/presets/compiled/sm90.json").read_text())["entries"]
    live = {os.path.basename(p)[:-5] for p in glob.glob(str(DATA / "random*" / "*" / "*.json"))}
    sel = [(k, e) for k, e in table.items()
           if e.get("local_bytes_per_thread") and e.get("case") in live
           and (e.get("issue") or {}).get("tile_cycles_local_l2") and not (e.get("issue") or {}).get("groups")
           and (e.get("compile_s") or 0) <= a.max_compile_s]
    sel.sort(key=lambda ke: (not any(ke[1]["case"].startswith(p) for p in PRIORITY), ke[1].get("compile_s") or 0))
    if a.keys:  # e.g. the keys of the live spilling launches whose reloads miss L1 (the draw changes nothing else)
        order = [k.strip() for k in Path(a.keys).read_text().split() if k.strip()]
        sel = [(k, table[k]) for k in order if k in table]
    i, n = (int(x) for x in a.shard.split("/"))
    sel = sel[i::n]
    print(f"{len(sel)} entries, table compile time {sum(e.get('compile_s') or 0 for _, e in sel):.0f} s", flush=True)
    if a.list:
        for k, e in sel:
            print(f"  {e.get('compile_s')} {k}")
        return 0
    from kernels.compiled_facts import _compile_entry
    from kernels.sass import disassemble, tile_loop_body
    if a.distances:
        return add_distances(out, sel)
    for k, e in sel:
        fp = fingerprint(e)
        path = out / body_file(fp)
        if path.exists():
            continue
        t0 = time.time()
        try:
            ck = _compile_entry(e, "sm90")
            body = tile_loop_body(disassemble(ck.asm["cubin"]), num_warps=e["num_warps"])
        except Exception as ex:  # an entry that no longer compiles as recorded: left to the linear mix
            print(f"  skip {k}: {type(ex).__name__}: {str(ex)[:120]}", flush=True)
            continue
        path.write_bytes(pickle.dumps({"key": k, "fingerprint": fp, "num_warps": e["num_warps"], "body": body}))
        print(f"  {time.time() - t0:6.1f} s  {len(body):5d} instructions  {k}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
