"""Compiled facts of the decode split kernel for sm_90, without a GPU: its tile loop's SASS instruction count per
warp per iteration, registers and shared memory, per schedule variant -> memsim/decode_compiled_sm90.json.

    python -m kernels.decode_compiled [--out memsim/decode_compiled_sm90.json]

The decode model (memsim.inference) turns the loop's instructions into issue time per K/V tile: a fact of the
compiled kernel, not of a decode run.  Each variant is compiled exactly as kernels.decode would launch it (the
launch is captured on meta tensors and compiled with kernels.compiled_facts.compile_launch).
"""
from __future__ import annotations

import argparse
import re
import sys
import time

from memsim.inference import DecodeProblem, DecodeSchedule, decode_combine_key, decode_loop_key

#: (block_n, num_stages) x layouts, and (block_n, num_stages, num_warps) of the benchmark's tune rows (contiguous)
TILES = ((64, 3), (128, 3), (64, 2), (128, 2), (32, 3))
TUNE = ((64, 4, 4), (32, 4, 4), (128, 3, 8), (64, 3, 8), (128, 4, 4))
LAYOUTS = ((None, False), (16, False), (16, True), (64, False), (64, True))


def variants():
    out = []
    for bn, st in TILES:
        for page, pf in LAYOUTS:
            out.append((DecodeProblem.uniform(1, 32, 8, 128, 4096, dtype="bf16", page_size=page),
                        DecodeSchedule(num_splits=1, block_n=bn, num_stages=st, page_prefetch=pf)))
    for bn, st, w in TUNE:
        out.append((DecodeProblem.uniform(1, 32, 8, 128, 4096, dtype="bf16"),
                    DecodeSchedule(num_splits=1, block_n=bn, num_stages=st, num_warps=w)))
    for page, pf in LAYOUTS:  # split launches (SPLIT, NUM_SPLITS specialised: "x" and "d") of the default tile
        for S in (4, 16):
            out.append((DecodeProblem.uniform(1, 32, 8, 128, 4096, dtype="bf16", page_size=page),
                        DecodeSchedule(num_splits=S, page_prefetch=pf)))
    out.append((DecodeProblem.uniform(1, 32, 8, 128, 4096, dtype="bf16"), DecodeSchedule(block_n=64, pack_gqa=False)))
    out.append((DecodeProblem.uniform(1, 32, 8, 128, 4096, seq_q=4, dtype="bf16"), DecodeSchedule(block_n=64)))
    # the first tile beside the length (DecodeSchedule.early_tile, session 19): the tiles kernels.decode runs at one
    # split on contiguous caches, at the benchmark's heads (the "-e1" entries EARLY_TILE_DEFAULT looks up)
    for bn, sd in ((32, 1), (64, 1), (128, 1), (128, 2)):
        out.append((DecodeProblem.uniform(64, 32, 8, 128, 1024, dtype="bf16"),
                    DecodeSchedule(num_splits=1, block_n=bn, split_d=sd, early_tile=True)))
    return out


def capture(problem, schedule, kernel: str = "_decode_split"):
    """The (JITFunction, args, kwargs) of the launch of `kernel` (_decode_split or _decode_combine) that kernels.decode
    makes for this variant (meta tensors)."""
    import torch
    from triton.runtime.jit import JITFunction

    from .decode_kv import decode_launch
    from .decode_testing import _DT
    p = problem
    meta = dict(device="meta", dtype=_DT[p.dtype])
    q = torch.empty(p.batch, p.max_seq_q, p.heads_q, p.head_dim, **meta)
    if p.page_size is None:
        k = torch.empty(p.batch, p.capacity_kv, p.heads_kv, p.head_dim, **meta)
        bt = None
    else:
        n = -(-p.capacity_kv // p.page_size)
        k = torch.empty(n * p.batch, p.page_size, p.heads_kv, p.head_dim, **meta)
        bt = torch.empty(p.batch, n, device="meta", dtype=torch.int32)
    v = torch.empty_like(k)
    lens = torch.empty(p.batch, device="meta", dtype=torch.int32)
    calls = []
    orig = JITFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        calls.append((self, args, kwargs))

    JITFunction.run = run
    try:
        decode_launch(p, schedule, q, k, v, lens, bt)
    finally:
        JITFunction.run = orig
    return next(c for c in calls if getattr(getattr(c[0], "fn", c[0]), "__name__", "") == kernel)


def combine_variants(extra=()):
    """(problem, schedule) pairs covering the combine kernel's compiled variants (head_dim x dtype x BLOCK_S), and
    those of `extra` that split (S > 1)."""
    out = []
    for d in (64, 128, 256):
        for dt in ("bf16", "fp16"):
            for S in (2, 32):  # BLOCK_S 16 and 32
                out.append((DecodeProblem.uniform(1, 32, 8, d, 4096, dtype=dt), DecodeSchedule(num_splits=S)))
    return out + [(p, s) for p, s in extra if s.num_splits > 1]


_DEPBAR_WAIT = re.compile(r"\bDEPBAR\.LE\s+SB0\s*,\s*(0x[0-9a-f]+|\d+)")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_BRA = re.compile(r"\bBRA\b.*`\((\.L_x_\d+)\)")


def tiles_in_flight(sass: str) -> int | None:
    """K/V tiles the compiled tile loop keeps in flight, read off its SASS: the loop (a backward BRA to a label
    above it) holding the tensor-core instructions waits at ``DEPBAR.LE SB0, N`` for the oldest copies while N
    commit groups (``LDGDEPBAR``) may stay outstanding; an iteration commits G groups (K, V, and a paged loop's
    block-table entries), so N // G later tiles are in flight while tile i is computed: N // G + 1 (the default
    bn64/st3 loop: N = 2, G = 2 -> 2; num_stages 2 and paged loops without page_prefetch: N = 0 -> 1).  None
    when no such loop or wait is found."""
    lines = sass.splitlines()
    labels = {}
    for i, ln in enumerate(lines):
        m = _LABEL.match(ln)
        if m:
            labels[m.group(1)] = i
    for i, ln in enumerate(lines):
        m = _BRA.search(ln)
        if not m or labels.get(m.group(1), i) >= i:
            continue
        body = lines[labels[m.group(1)]:i + 1]
        if not any(("HMMA" in x or "HGMMA" in x) for x in body):
            continue
        waits = [int(w.group(1), 0) for x in body for w in [_DEPBAR_WAIT.search(x)] if w]
        groups = sum(1 for x in body if re.search(r"\bLDGDEPBAR\b", x))
        if not waits or not groups:
            return None
        return min(waits) // groups + 1
    return None


def _sass_of(jf, args, kwargs) -> str:
    """The sm_90 SASS of a captured launch (compiled as `kernels.compiled_facts.compile_launch` does; Triton's
    cache makes the second compile cheap)."""
    import triton
    from triton.backends.compiler import GPUTarget

    from .compiled_facts import ARCHS, _specialise
    from .sass import disassemble
    target = GPUTarget("cuda", ARCHS["sm90"][0], 32)
    src, options = _specialise(jf, args, kwargs, target)
    return disassemble(triton.compile(src, target=target, options=options.__dict__).asm["cubin"])


class KeyClash(ValueError):
    """Two variants with one table key compile to different specialisations (the key misses a field)."""


def specialisation(jf, args, kwargs) -> str:
    """The specialisation text of a captured launch (`kernels.compiled_facts._spec_text`: signature, constants,
    integer attributes, warps, stages), without compiling."""
    from triton.backends.compiler import GPUTarget

    from .compiled_facts import ARCHS, _spec_text, _specialise
    return _spec_text(*_specialise(jf, args, kwargs, GPUTarget("cuda", ARCHS["sm90"][0], 32)))


def check_keys(pairs, kernel: str = "_decode_split") -> dict:
    """{key: specialisation} of (problem, schedule) pairs; KeyClash when one key holds two specialisations."""
    key_of = decode_loop_key if kernel == "_decode_split" else decode_combine_key
    seen: dict = {}
    for p, s in pairs:
        k = key_of(p, s)
        spec = specialisation(*capture(p, s, kernel))
        if k in seen and seen[k][0] != spec:
            raise KeyClash(f"table key {k!r}: {seen[k][1]} and {p} {s} compile to different specialisations")
        seen.setdefault(k, (spec, f"{p} {s}"))
    return {k: v[0] for k, v in seen.items()}


def build(echo=print, extra=(), only: str | None = None) -> dict:
    """Compile every variant (the fixed list, then `extra` (problem, schedule) pairs); one entry per key.  Each entry
    keeps its specialisation text; KeyClash when two variants of one key specialise differently.  only="combine":
    the combine variants alone (their entries replace the table's; the split entries stay as they are)."""
    from .compiled_facts import compile_launch
    entries = {}
    pairs = [] if only == "combine" else list(variants()) + list(extra)
    check_keys(pairs)
    check_keys([(p, s) for p, s in combine_variants(extra)], "_decode_combine")
    for p, s in pairs:
        if decode_loop_key(p, s) in entries:
            continue
        t = time.time()
        jf, args, kwargs = capture(p, s)
        r = compile_launch(jf, args, kwargs)
        loop = r.get("loop") or {}
        key = decode_loop_key(p, s)
        entries[key] = {"loop_instructions": loop.get("instructions"), "regs_per_thread": r["regs_per_thread"],
                        "shared_bytes": r["shared_bytes"], "local_bytes_per_thread": r["local_bytes_per_thread"],
                        "tiles_in_flight": tiles_in_flight(_sass_of(jf, args, kwargs)),
                        "num_warps": r["num_warps"], "num_stages": r["num_stages"], "source": r["source"],
                        "specialisation": r.get("specialisation")}
        issue = r.get("issue") or {}
        if issue.get("tile_cycles"):  # the warp issue replay of the tile loop (memsim.warp_issue, lead's calibration)
            entries[key]["tile_cycles"] = [round(x, 1) for x in issue["tile_cycles"]]
            if issue.get("tile_cycles_dram"):
                entries[key]["tile_cycles_dram"] = [round(x, 1) for x in issue["tile_cycles_dram"]]
            entries[key]["issue_latencies"] = issue.get("latencies")
        echo(f"{key}: {entries[key]['loop_instructions']} instructions/warp/iteration, {r['shared_bytes']} B shared "
             f"({time.time() - t:.1f} s)")
    for p, s in combine_variants(extra):
        key = decode_combine_key(p, s)
        if key in entries:
            continue
        t = time.time()
        r = compile_launch(*capture(p, s, "_decode_combine"))
        loop = r.get("loop") or {}
        entries[key] = {"loop_instructions": loop.get("instructions"), "regs_per_thread": r["regs_per_thread"],
                        "shared_bytes": r["shared_bytes"], "local_bytes_per_thread": r["local_bytes_per_thread"],
                        "num_warps": r["num_warps"], "num_stages": r["num_stages"], "source": r["source"],
                        "specialisation": r.get("specialisation")}
        echo(f"{key}: {r['regs_per_thread']} registers, {r['local_bytes_per_thread']} B local ({time.time() - t:.1f} s)")
    return entries


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernels.decode_compiled", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="default: memsim/decode_compiled_sm90.json")
    ap.add_argument("--specs", action="append", default=[],
                    help="also the variants of these case specs (JSON list of {problem, schedule}: the "
                         "decode_cases.json that `verification.suite_decode measure` writes, or "
                         "`suite_decode cases --random N --seed S --json F`); repeatable")
    ap.add_argument("--fresh", action="store_true",
                    help="write only the variants compiled now (default: keep the table's other entries)")
    ap.add_argument("--only", choices=("combine",), default=None,
                    help="compile the combine variants only (the table's split entries are kept)")
    a = ap.parse_args(argv)
    import json

    from memsim.inference import COMPILED_FILE, decode_problem_from_dict, decode_schedule_from_dict
    from memsim.io import base_provenance, write_json
    extra = []
    for path in a.specs:
        with open(path) as f:
            extra += [(decode_problem_from_dict(x["problem"]), decode_schedule_from_dict(x["schedule"]))
                      for x in json.load(f)]
    entries = build(extra=extra, only=a.only)
    import triton
    from pathlib import Path
    out = Path(a.out or COMPILED_FILE)
    kept, earlier, measured = {}, [], {}
    if out.is_file() and not a.fresh:  # entries of earlier runs (other drawn sets) stay; recompiled ones are replaced
        old = json.loads(out.read_text())
        kept = {k: v for k, v in old.get("entries", {}).items() if k not in entries}
        earlier = old.get("earlier_runs", []) + [old.get("provenance", {})]
    if out.is_file():  # the measured loop compute (benchmarks/decode_mechanisms_gpu.py --merge-loop) is not compiled
        measured = json.loads(out.read_text()).get("measured_loop", {})
    prov = {**base_provenance("python -m kernels.decode_compiled " + " ".join(argv or sys.argv[1:])),
            "triton": triton.__version__}
    write_json(out, {"format": "memsim.decode_compiled/1", "arch": "sm90", "provenance": prov,
                     "earlier_runs": earlier, "entries": dict(sorted({**kept, **entries}.items())),
                     **({"measured_loop": measured} if measured else {})}, overwrite=True)
    print(f"{out}: {len(entries)} variants compiled now, {len(kept)} kept from earlier runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
