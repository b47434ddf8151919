"""SASS identity of kernel launches before/after a refactor, without a GPU: every launch of a few (problem, schedule)
configurations is captured from the registry launcher on meta tensors (`kernels.compiled_facts.capture`), compiled for
sm_90a by Triton's own compiler and bundled ptxas (`compile_launch`'s specialisation), and disassembled
(`kernels.sass.disassemble`, with encodings: control bits included).

    python benchmarks/hopper_sass_identity.py snap --out before.json [--configs flash2 hopper_bwd] [--jobs 2]
    python benchmarks/hopper_sass_identity.py diff before.json after.json

`snap` writes {config/launch: {sha256, instructions, text}} (atomic; refuses to overwrite); `diff` prints one line
per launch (same / DIFFERENT, with the first differing line) and exits 1 when any differs or is missing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor

if __name__ == "__main__":  # before triton is imported (compiling needs real JITFunctions); never when a
    os.environ.pop("TRITON_INTERPRET", None)  # test imports this module: the interpreter must stay on for the rest
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

#: (name, algorithm, phase, problem args, tiles block_m, block_n, warps, stages): the registry's usual tiles and
#: the odd cases (causal bottom-right, GQA, ragged lengths, fp16, d 64/128)
CONFIGS = {
    "flash2": [
        ("f2_fwd_d64_causal", "flash2", "fwd", (4, 32, 32, 4096, 4096, 64, "bf16", True), (128, 64, 4, 3)),
        ("f2_fwd_d128_gqa_ragged", "flash2", "fwd", (2, 8, 2, 1000, 1203, 128, "fp16", True, "bottom_right"),
         (128, 64, 8, 2)),
        ("f2_bwd_d64", "flash2", "bwd", (4, 32, 32, 4096, 4096, 64, "bf16", False), (64, 64, 4, 3)),
        ("f2_bwd_d128_causal", "flash2", "bwd", (4, 16, 16, 4096, 4096, 128, "bf16", True), (64, 64, 4, 2)),
        ("f2_bwd_d128_gqa_ragged", "flash2", "bwd", (2, 8, 2, 1000, 1203, 128, "fp16", True, "bottom_right"),
         (64, 128, 8, 2)),
        ("f2_bwd_d64_fp32", "flash2", "bwd", (1, 4, 4, 513, 513, 64, "fp32", False), (32, 32, 4, 2)),
    ],
    "hopper_fwd": [
        ("hf_d128_ws_causal", "hopper", "fwd", (4, 16, 16, 4096, 4096, 128, "bf16", True), (128, 128, 4, 2)),
        ("hf_d64_pipelined", "hopper", "fwd", (4, 32, 32, 4096, 4096, 64, "bf16", False), (128, 64, 8, 3)),
        ("hf_d128_ws_gqa_ragged", "hopper", "fwd", (2, 8, 2, 1000, 1203, 128, "fp16", True, "bottom_right"),
         (128, 64, 4, 2)),
    ],
    "hopper_bwd": [
        ("hb_d64", "hopper", "bwd", (4, 32, 32, 4096, 4096, 64, "bf16", False), (64, 128, 8, 3)),
        ("hb_d128_causal", "hopper", "bwd", (4, 16, 16, 4096, 4096, 128, "bf16", True), (64, 128, 8, 3)),
        ("hb_d128_gqa_ragged", "hopper", "bwd", (2, 8, 2, 1000, 1203, 128, "fp16", True, "bottom_right"),
         (64, 128, 8, 3)),
    ],
    "hopper_ws": [
        ("hw_fwd_d128_persistent", "hopper_ws", "fwd", (16, 16, 16, 1024, 1024, 128, "bf16", False), (128, 128, 4, 2)),
        ("hw_fwd_d64_persistent_causal", "hopper_ws", "fwd", (16, 32, 32, 1024, 1024, 64, "fp16", True),
         (128, 128, 4, 2)),
        ("hw_bwd_d128_causal", "hopper_ws", "bwd", (4, 16, 16, 4096, 4096, 128, "bf16", True), (64, 128, 4, 2)),
        ("hw_bwd_d64_gqa_ragged", "hopper_ws", "bwd", (2, 8, 2, 1000, 1203, 64, "fp16", True, "bottom_right"),
         (64, 128, 4, 2)),
    ],
    # hopper_fa3 bwd's Gluon pass (session 18): the registered kernels (fold + early, fold late, causal with
    # GRID_GROUP, d=64 with DQ_ASYNC) and the benchmarks' switch paths (a 6th element: {switch: value} set on
    # kernels.hopper_gluon_bwd for the capture; "_only": keep the launches whose kernel name starts with it)
    "hopper_fa3": [
        ("fa3_d128_n1024_fold_early", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", False),
         (64, 128, 4, 2), {"_only": "_hopper_fa3"}),
        ("fa3_d128_n4096_fold_fp16", "hopper_fa3", "bwd", (4, 16, 16, 4096, 4096, 128, "fp16", False),
         (64, 128, 4, 2), {"_only": "_hopper_fa3"}),
        ("fa3_d128_causal_n4096_group", "hopper_fa3", "bwd", (4, 16, 16, 4096, 4096, 128, "bf16", True),
         (64, 128, 4, 2), {"_only": "_hopper_fa3"}),
        ("fa3_d64_async", "hopper_fa3", "bwd", (4, 32, 32, 4096, 4096, 64, "bf16", False), (128, 128, 4, 2),
         {"_only": "_hopper_fa3"}),
        ("fa3_d128_chunk4_causal", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", True),
         (64, 128, 4, 2), {"_only": "_hopper_fa3", "DQ_FUSE": True, "DQ_ZERO_WS": True, "FUSE_STEP": 4}),
        ("fa3_d128_gqa_br_fold_nows", "hopper_fa3", "bwd", (2, 8, 2, 512, 1024, 128, "fp16", True, "bottom_right"),
         (64, 128, 4, 2), {"_only": "_hopper_fa3", "DQ_FUSE": True, "DQ_ZERO_WS": False}),
        ("fa3_d128_fold_diag2", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", False),
         (64, 128, 4, 2), {"_only": "_hopper_fa3", "DQ_FUSE": True, "DQ_ZERO_WS": True, "FUSE_DIAG": 2}),
        ("fa3_d64_defer", "hopper_fa3", "bwd", (4, 32, 32, 4096, 4096, 64, "bf16", False), (128, 128, 4, 2),
         {"_only": "_hopper_fa3", "DQ_ASYNC": True, "DQ_DEFER": True}),
        ("fa3_d64_order1", "hopper_fa3", "bwd", (4, 32, 32, 4096, 4096, 64, "bf16", True), (128, 128, 4, 2),
         {"_only": "_hopper_fa3", "MMA_ORDER": 1}),
        ("fa3_d64_ksplit", "hopper_fa3", "bwd", (4, 32, 32, 4096, 4096, 64, "bf16", False), (128, 128, 4, 2),
         {"_only": "_hopper_fa3", "DQ_KSPLIT": True}),
        ("fa3_d128_ksplit", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", False), (64, 128, 4, 2),
         {"_only": "_hopper_fa3", "DQ_KSPLIT": True, "DQ_LAG": False, "DQ_FUSE": False}),
        ("fa3_d128_lockstep_stage1", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", True),
         (64, 128, 4, 2), {"_only": "_hopper_fa3", "DQ_LAG": False, "DQ_STAGE1": True}),
        ("fa3_d128_pingpong", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", False), (64, 128, 4, 2),
         {"_only": "_hopper_fa3", "PINGPONG": True, "DQ_FUSE": False}),
        ("fa3_d128_persistent_causal", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", True),
         (64, 128, 4, 2), {"_only": "_hopper_fa3", "PERSISTENT": True}),
        # session 22: the registered causal N=1024 kernel (three launches, EPI_TMA by the registry), causal N=16384
        # (without it), the walk with it, the stamps diagnostic
        ("fa3_d128_causal_n1024_epi_tma", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", True),
         (64, 128, 4, 2), {"_only": "_hopper_fa3"}),
        ("fa3_d128_causal_n16384", "hopper_fa3", "bwd", (1, 16, 16, 16384, 16384, 128, "fp16", True),
         (64, 128, 4, 2), {"_only": "_hopper_fa3"}),
        ("fa3_d128_persistent_epi_tma", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", True),
         (64, 128, 4, 2), {"_only": "_hopper_fa3", "PERSISTENT": True, "EPI_TMA": True}),
        ("fa3_d128_causal_fold_early", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", True),
         (64, 128, 4, 2), {"_only": "_hopper_fa3", "DQ_FUSE": True, "DQ_ZERO_WS": True, "FUSE_EARLY": True}),
        ("fa3_d128_causal_fold_late_diag1", "hopper_fa3", "bwd", (4, 16, 16, 4096, 4096, 128, "fp16", True),
         (64, 128, 4, 2), {"_only": "_hopper_fa3", "DQ_FUSE": True, "DQ_ZERO_WS": True, "FUSE_EARLY": False,
                           "FUSE_DIAG": 1}),
        ("fa3_d128_fold_early_diag3", "hopper_fa3", "bwd", (16, 16, 16, 1024, 1024, 128, "bf16", False),
         (64, 128, 4, 2), {"_only": "_hopper_fa3", "DQ_FUSE": True, "DQ_ZERO_WS": True, "FUSE_EARLY": True,
                           "FUSE_DIAG": 3}),
    ],
}


_INSTR = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+\S.*;", re.M)


def _problem(args):
    from memsim.schedule import AttentionProblem
    b, hq, hkv, nq, nk, d, dt, causal, *align = args
    kw = {"causal_align": align[0]} if align else {}
    return AttentionProblem(b, hq, hkv, nq, nk, d, dt, causal, **kw)


def _snap_one(cfg) -> dict:
    from kernels.compiled_facts import _specialise, capture
    from kernels.sass import disassemble
    import triton
    from triton.backends.compiler import GPUTarget
    from memsim.schedule import Schedule
    name, alg, phase, pargs, tiles, *sw = cfg
    switches = dict(sw[0]) if sw else {}
    only = switches.pop("_only", "")
    target = GPUTarget("cuda", 90, 32)
    out = {}
    import kernels.hopper_gluon_bwd as hb
    saved = {k: getattr(hb, k) for k in switches}  # the pool's workers are reused: put the switches back after
    try:
        for k, v in switches.items():
            setattr(hb, k, v)
        launches = [c for c in capture(_problem(pargs), Schedule(alg, phase, *tiles))
                    if c[0].fn.__name__.startswith(only)]
    finally:
        for k, v in saved.items():
            setattr(hb, k, v)
    for jf, args, kw, grid in launches:
        src, options = _specialise(jf, args, kw, target)
        text = disassemble(triton.compile(src, target=target, options=options.__dict__).asm["cubin"])
        out[f"{name}/{jf.fn.__name__}"] = {"sha256": hashlib.sha256(text.encode()).hexdigest(),
                                           "instructions": len(_INSTR.findall(text)),
                                           "text": text}
        print(f"{name}/{jf.fn.__name__}: {out[f'{name}/{jf.fn.__name__}']['sha256'][:12]}", flush=True)
    return out


def snap(a) -> int:
    if os.path.exists(a.out):
        print(f"error: {a.out} exists (remove it or pick another --out)", file=sys.stderr)
        return 2
    unknown = [c for c in a.configs if c not in CONFIGS]
    if unknown:
        print(f"error: unknown config group(s) {unknown}; known: {sorted(CONFIGS)}", file=sys.stderr)
        return 2
    cfgs = [c for g in a.configs for c in CONFIGS[g]]
    doc = {}
    with ProcessPoolExecutor(a.jobs) as ex:
        for part in ex.map(_snap_one, cfgs):
            doc.update(part)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=0, sort_keys=True)
    os.replace(tmp, a.out)
    return 0


def diff(a) -> int:
    before, after = (json.load(open(p)) for p in (a.before, a.after))
    bad = 0
    for key in sorted(set(before) | set(after)):
        if key not in before or key not in after:
            print(f"MISSING in {'before' if key not in before else 'after'}: {key}")
            bad += 1
            continue
        x, y = before[key], after[key]
        if x["sha256"] == y["sha256"]:
            print(f"same       {key}  {x['sha256'][:12]}  {x['instructions']} instructions")
            continue
        bad += 1
        first = next((i for i, (p, q) in enumerate(zip(x["text"].splitlines(), y["text"].splitlines())) if p != q),
                      None)
        where = "" if first is None else f" first difference at line {first + 1}: " \
            f"{x['text'].splitlines()[first].strip()[:90]!r} vs {y['text'].splitlines()[first].strip()[:90]!r}"
        print(f"DIFFERENT  {key}  {x['instructions']} vs {y['instructions']} instructions;{where}")
    print(f"{len(set(before) | set(after)) - bad} same, {bad} different or missing")
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snap", help="compile and disassemble the configurations")
    s.add_argument("--out", required=True)
    s.add_argument("--configs", nargs="+", default=sorted(CONFIGS))
    s.add_argument("--jobs", type=int, default=2)
    d = sub.add_parser("diff", help="compare two snapshots")
    d.add_argument("before")
    d.add_argument("after")
    a = ap.parse_args(argv)
    return snap(a) if a.cmd == "snap" else diff(a)


if __name__ == "__main__":
    sys.exit(main())
