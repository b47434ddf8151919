"""Which launch of a hopper_ws backward faults, and for which schedules: each launch of a case alone, each in its own
process (a CUDA fault is sticky: it kills the context), with CUDA_LAUNCH_BLOCKING=1, beside neighbour schedules.

    python benchmarks/hopper_ws_bwd_fault_probe.py --out results.json [--workers 8] [--sanitizer]   (GPU machine)
    python benchmarks/hopper_ws_bwd_fault_probe.py --compile-survey --out survey.json          (CPU: sm_90a compiles)

Made for the misaligned-address crash of random set N's case r26112612_002 (hopper_ws bwd, fp16, d=256, B=2,
Hq=26, Hkv=2, N=256, 16x64 w4 s3 heads_fastest; notes/hopper.md "Session 7").  The probe BYPASSES the registry's
refusal of such schedules (`memsim.algorithms_hopper.check_ws_bwd`): it patches the launcher's `kernel_launches` with
the unchecked grids, so it runs exactly what the launcher ran before the rule.  Each job prints one JSON line:
"ok" (launched and synchronised) or the error.  Inputs are random; lse and delta are zeros where a launch is run
alone (values cannot change an address).  --sanitizer also runs compute-sanitizer memcheck on the case's dK/dV launch.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: the crashing case of set N (verification/data/nvidia-h100-80gb-hbm3/random/N-seed26112612/raw/)
CASE = dict(problem=dict(batch=2, heads_q=26, heads_kv=2, seq_q=256, seq_kv=256, head_dim=256, dtype="fp16",
                         causal=False),
            schedule=dict(block_m=16, block_n=64, num_warps=4, num_stages=3, grid_order="heads_fastest"))


def _job(launch, *, d=256, dtype="fp16", hq=26, hkv=2, bm=16, bn=64, w=4, st=3, order="heads_fastest", n=256,
         causal=False):
    return dict(launch=launch, problem=dict(batch=2, heads_q=hq, heads_kv=hkv, seq_q=n, seq_kv=n, head_dim=d,
                                            dtype=dtype, causal=causal),
                schedule=dict(block_m=bm, block_n=bn, num_warps=w, num_stages=st, grid_order=order))


def jobs() -> list[dict]:
    out = [_job(x) for x in ("fwd", "pre", "dkdv", "dq", "all")]  # the case, each launch alone, then the chain
    nb = [  # neighbours, the dK/dV launch alone
        dict(hq=2, hkv=2),                       # MHA instead of GQA 13
        dict(dtype="bf16"),
        dict(order="q_fastest"),
        dict(d=64), dict(d=128),                 # other head dims, same tiles
        dict(d=64, dtype="fp32"), dict(d=64, dtype="fp32", st=2),
        dict(st=1), dict(w=8, st=2), dict(st=4, d=64),
        dict(st=2),                              # w4 s2 2-byte: the warp-specialised loop
        dict(st=2, bn=32), dict(st=2, bn=128, d=64),
        dict(bm=32), dict(bm=32, w=8), dict(bm=32, st=4, d=64), dict(bm=32, st=2), dict(bm=32, st=2, bn=128, d=64),
        dict(bm=64, st=2), dict(bm=64, st=3, d=64),
        dict(causal=True), dict(bm=32, causal=True),
    ]
    out += [_job("dkdv", **k) for k in nb]
    return out


def _run_one(spec: dict) -> dict:
    """In the child: run the named launch(es) of hopper_ws bwd once, synchronise."""
    import torch

    import kernels
    import kernels.hopper_bwd as hb
    from memsim.algorithms_hopper import _q_kv_q_launches
    from memsim.schedule import AttentionProblem, Schedule

    p = AttentionProblem(**spec["problem"])
    s = Schedule("hopper_ws", "bwd", **spec["schedule"])
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[p.dtype]
    g = torch.Generator(device="cpu").manual_seed(0)

    dev = os.environ.get("PROBE_DEVICE", "cuda")  # "cpu" with TRITON_INTERPRET=1: a dry run of the plumbing

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(dev, dt)
    q = rnd(p.batch, p.heads_q, p.seq_q, p.head_dim)
    k, v = (rnd(p.batch, p.heads_kv, p.seq_kv, p.head_dim) for _ in range(2))
    do = rnd(p.batch, p.heads_q, p.seq_q, p.head_dim)
    launch = spec["launch"]
    if launch == "fwd":  # the case's forward (the measured backward runs it first): hopper_ws fwd, same tiles
        from dataclasses import replace
        kernels.forward(p, replace(s, phase="fwd"), q, k, v)
        _sync(torch)
        return {"ok": True}
    names = ("flash2_bwd_preprocess", "hopper_bwd_dkdv_ws", "flash2_bwd_dq")
    hb.kernel_launches = lambda p_, s_: _q_kv_q_launches(p_, s_, 0, names)  # the grids, no registry rule

    class _Skip:  # a launch not under test: not run
        def __getitem__(self, grid):
            return lambda *a, **kw: None
    keep = {"pre": "_flash2_bwd_preprocess", "dkdv": "_hopper_bwd_dkdv_ws", "dq": "_flash2_bwd_dq"}
    if launch != "all":
        for kname in keep.values():
            if kname != keep[launch]:
                setattr(hb, kname, _Skip())
    o = rnd(p.batch, p.heads_q, p.seq_q, p.head_dim)
    lse = torch.zeros(p.batch, p.heads_q, p.seq_q, device=dev, dtype=torch.float32)
    from kernels.registry import launcher_for
    launcher_for("hopper_ws", "bwd").run(p, s, q, k, v, o, do, {"lse": lse})  # hopper_ws_backward, patched globals
    _sync(torch)
    return {"ok": True}


def _sync(torch):
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _child(spec_json: str) -> int:
    spec = json.loads(spec_json)
    t0 = time.time()
    try:
        r = _run_one(spec)
    except Exception as e:  # noqa: BLE001 -- report it, whatever it is
        r = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    r["wall_s"] = round(time.time() - t0, 2)
    print("RESULT " + json.dumps(r), flush=True)
    return 0


def _spawn(spec: dict, timeout: float, prefix=()) -> dict:
    env = dict(os.environ, CUDA_LAUNCH_BLOCKING="1", PYTHONPATH=ROOT)
    if os.environ.get("PROBE_DEVICE", "cuda") == "cuda":
        env.pop("TRITON_INTERPRET", None)
    cmd = [*prefix, sys.executable, os.path.abspath(__file__), "--one", json.dumps(spec)]
    t0 = time.time()
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**spec, "result": "timeout", "wall_s": round(time.time() - t0, 1)}
    res = [ln for ln in cp.stdout.splitlines() if ln.startswith("RESULT ")]
    r = json.loads(res[-1][7:]) if res else {"ok": False, "error": "no result line (process died)"}
    out = {**spec, "result": "ok" if r.get("ok") else r.get("error"), "rc": cp.returncode,
           "wall_s": round(time.time() - t0, 1)}
    if prefix:
        out["tool_output"] = (cp.stdout + cp.stderr)[-6000:]
    elif not r.get("ok"):
        out["stderr_tail"] = cp.stderr[-1500:]
    return out


def compile_survey() -> list[dict]:
    """sm_90a compiles of the dK/dV launch on the CPU (no GPU): how many shared buffers Triton 3.6 gives the lse and
    delta tiles (TTGIR local_alloc shapes [buffers x] block_m x f32), beside the registry's rule
    (`memsim.algorithms_hopper.ws_stats_multibuffered`).  The launcher is captured with the rule bypassed."""
    import re

    import triton
    from triton.backends.compiler import GPUTarget

    import kernels.hopper_bwd as hb
    from kernels.compiled_facts import _specialise, capture
    from memsim.algorithms_hopper import _q_kv_q_launches, ws_stats_multibuffered
    from memsim.schedule import AttentionProblem, Schedule
    hb.kernel_launches = lambda p_, s_: _q_kv_q_launches(p_, s_, 0, ("flash2_bwd_preprocess", "hopper_bwd_dkdv_ws",
                                                                   "flash2_bwd_dq"))
    target = GPUTarget("cuda", 90, 32)
    cfgs = [(16, 64, w, st, dt) for dt in ("fp16", "fp32") for w in (1, 4, 8) for st in (1, 2, 3, 4)]
    cfgs += [(16, 128, 4, 2, "fp16"), (16, 32, 4, 2, "bf16"), (32, 64, 4, 3, "fp16"), (32, 128, 4, 2, "fp16")]
    rows = []
    for bm, bn, w, st, dt in cfgs:
        p = AttentionProblem(2, 4, 2, 256, 256, 64, dt)
        s = Schedule("hopper_ws", "bwd", bm, bn, w, st, "heads_fastest")
        (jf, args, kw, _), = [c for c in capture(p, s) if "dkdv" in c[0].fn.__name__]
        src, opt = _specialise(jf, args, kw, target)
        ck = triton.compile(src, target=target, options=opt.__dict__)
        shapes = re.findall(r"local_alloc : \(\) -> !ttg.memdesc<((?:\d+x)+)f32", ck.asm["ttgir"])
        stat = [x.rstrip("x") for x in shapes if x.rstrip("x").split("x")[-1] == str(bm)]
        nbuf = max((int(x.split("x")[0]) if x.count("x") else 1) for x in stat) if stat else 0
        rows.append(dict(block_m=bm, block_n=bn, num_warps=w, num_stages=st, dtype=dt, head_dim=64,
                         stat_tiles=stat, stat_buffers=nbuf, stat_buffer_bytes=bm * 4, shared_bytes=ck.metadata.shared,
                         rule_multibuffered=ws_stats_multibuffered(p, s)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def provenance(argv) -> dict:
    import torch
    import triton
    try:
        drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        drv = None
    return {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "driver": drv,
            "cuda": torch.version.cuda, "torch": torch.__version__, "triton": triton.__version__,
            "python": platform.python_version(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python benchmarks/hopper_ws_bwd_fault_probe.py " + " ".join(argv),
            "env": "CUDA_LAUNCH_BLOCKING=1, one process per job"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("--sanitizer", action="store_true")
    ap.add_argument("--compile-survey", action="store_true",
                    help="CPU only: sm_90a compiles, the lse/delta buffers per schedule (no GPU needed)")
    a = ap.parse_args(argv)
    if a.one:
        return _child(a.one)
    if a.compile_survey:
        os.environ.pop("TRITON_INTERPRET", None)
        import torch
        import triton
        rec = {"provenance": {"what": "sm_90a compiles on the CPU (no GPU): triton.compile for GPUTarget cuda 90",
                              "torch": torch.__version__, "triton": triton.__version__,
                              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "command": "python benchmarks/hopper_ws_bwd_fault_probe.py " + " ".join(argv)},
               "rows": compile_survey()}
        _write(a.out, rec)
        return 0
    rec = {"provenance": provenance(argv), "case": "r26112612_002_hopper_ws_bwd_fp16_d256_q256_k256_bh52",
           "jobs": []}
    todo = jobs()
    with cf.ThreadPoolExecutor(a.workers) as ex:
        for r in ex.map(lambda j: _spawn(j, a.timeout), todo):
            rec["jobs"].append(r)
            print(json.dumps({k: r[k] for k in ("launch", "problem", "schedule", "result", "wall_s")}), flush=True)
    _write(a.out, rec)
    if a.sanitizer:
        r = _spawn(_job("dkdv"), a.timeout, prefix=("compute-sanitizer", "--tool", "memcheck"))
        rec["sanitizer_dkdv"] = r
        print(r.get("tool_output", r.get("result")), flush=True)
        _write(a.out, rec)
    return 0


def _write(path, rec) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(rec, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
