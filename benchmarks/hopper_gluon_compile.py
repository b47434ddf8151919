"""Compile a Gluon forward for sm_90a on the CPU -- no GPU: Triton's own binder specialises the arguments as a launch
would, `triton.compile` runs the Gluon pipeline and ptxas; prints registers, spills, shared memory, warps and the SASS
counts that show the pipelining (HGMMA, wgmma waits) and, for the warp-specialised one, the register budgets
(USETMAXREG).  --kernel session5: the session-5 experiment (kernels.hopper._hopper_fwd_gluon); fa3: the registry's
hopper_fa3 launch (kernels.hopper_gluon._hopper_fa3_fwd, host TMA descriptors, producer + two ping-pong consumers).

    python benchmarks/hopper_gluon_compile.py [--kernel fa3] [--d 128,64] [--causal both] [--dtype bf16]
        [--block-n 128] [--stages 2] [--sass FILE]

Exit status 1 when a configuration does not compile (the error is printed).
"""
from __future__ import annotations

import argparse
import os
import re
import sys

if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)  # compiling needs real JIT functions
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def wait_order(sass: str) -> list:
    """Per consumer step of the SASS: (MUFU.EX2 between the wait for S_j -- WARPGROUP.DEPBAR.LE gsb0, 0x1 -- and the
    next wait, MUFU.EX2 after that wait before the next HGMMA or branch).  FA3's in-warpgroup overlap needs the
    softmax's exponentials between the two waits (they run while P_{j-1} V_{j-1} does): (66, 0) at d=128 128x128;
    (0, 66) means ptxas hoisted the wait for P V above the softmax (session 9)."""
    ins = []
    for line in sass.splitlines():
        m = re.search(r"/\*[0-9a-f]{4}\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*)", line)
        if m:
            ins.append((m.group(2), m.group(3).strip()))
    out = []
    for i, (op, args) in enumerate(ins):
        if op == "WARPGROUP.DEPBAR.LE" and args.endswith("0x1"):
            j = next((k for k in range(i + 1, len(ins)) if ins[k][0] == "WARPGROUP.DEPBAR.LE"), None)
            if j is None:
                continue
            nxt = next((k for k in range(j + 1, len(ins)) if ins[k][0].startswith("HGMMA") or ins[k][0] == "BRA"),
                       len(ins))
            out.append((sum(ins[k][0] == "MUFU.EX2" for k in range(i, j)),
                        sum(ins[k][0] == "MUFU.EX2" for k in range(j, nxt))))
    return out


def compile_one(d: int, causal: bool, dtype: str, block_n: int, n: int = 4096, kernel: str = "session5",
                stages: int = 2, sass_out: str | None = None, persistent: bool = False,
                wait_fence: bool | None = None, block0_unmasked: bool | None = None, kv_regs: bool | None = None,
                diag: int = 0, dq_tma: bool | None = None, mma_order: int | None = None,
                dq_async: bool | None = None, dq_defer: bool | None = None, dq_ksplit: bool | None = None, dq_lag: bool | None = None,
                wg_offset: int | None = None, dq_stage1: bool | None = None, pingpong: bool | None = None) -> dict:
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import create_function_from_signature

    from kernels import hopper as kh
    from kernels.compiled_facts import ptxas_report
    from kernels.sass import disassemble
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    B, H = 1, 2
    q = torch.empty(B, H, n, d, dtype=tdt)
    o = torch.empty_like(q)
    lse = torch.empty(B, H, n, dtype=torch.float32)
    st = tuple(q.stride()[:3])
    if kernel == "fa3bwd":
        from kernels import hopper_gluon_bwd as kb
        from memsim.schedule import AttentionProblem, Schedule
        p = AttentionProblem(B, H, H, n, n, d, dtype=dtype, causal=causal)
        s = Schedule("hopper_fa3", "bwd", int(os.environ.get("FA3_BWD_BM", 64)), 128, 4, stages)
        dqacc = torch.empty(B, H, n, d, dtype=torch.float32)
        args, kw = kb.fa3_bwd_args(p, s, q, q, q, o, lse, lse, dqacc, q, q, kv_regs=kv_regs, diag=diag,
                                   dq_tma=dq_tma, mma_order=mma_order, dq_async=dq_async,
                                   dq_defer=dq_defer, dq_ksplit=dq_ksplit, dq_lag=dq_lag,
                                   wg_offset=wg_offset, dq_stage1=dq_stage1, pingpong=pingpong)
        jf = kb._hopper_fa3_bwd
    elif kernel == "fa3":
        from kernels import hopper_gluon as kg
        from memsim.schedule import AttentionProblem, Schedule
        p = AttentionProblem(B, H, H, n, n, d, dtype=dtype, causal=causal)
        s = Schedule("hopper_fa3", "fwd", 128, block_n, 4, stages)
        args, kw = kg.fa3_args(p, s, q, q, q, o, lse, persistent=persistent, wait_fence=wait_fence,
                               block0_unmasked=block0_unmasked)
        jf = kg._hopper_fa3_fwd
    else:
        args = (q, q, q, o, lse, st, st, st, st, H, n, n, 0.125, 0)
        kw = dict(GROUP=1, HEAD_DIM=d, BLOCK_M=128, BLOCK_N=block_n, CAUSAL=causal, MASK_COLS=False, num_warps=8)
        jf = kh._hopper_fwd_gluon
    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(jf.signature, jf.params, backend)
    bound_args, specialization, options = binder(*args, **kw)
    options, signature, constexprs, attrs = jf._pack_args(backend, kw, bound_args, specialization, options)
    k = triton.compile(GluonASTSource(jf, signature, constexprs, attrs), target=target, options=options.__dict__)
    sass = disassemble(k.asm["cubin"])
    if sass_out:
        with open(sass_out, "w") as f:
            f.write(sass)
    rep = ptxas_report(k.asm["ptx"], "sm90", options)
    return {"kernel": kernel + ("+persistent" if persistent else "") + ("+wait_fence" if wait_fence else "")
            + ("+block0_unmasked" if block0_unmasked else "") + ("+kv_regs" if kv_regs else "") + ("+dq_tma" if dq_tma else "")
            + (f"+diag{diag}" if diag else "") + (f"+order{mma_order}" if mma_order else "")
            + ("" if dq_async is None else f"+dq_async={dq_async}") + ("+dq_defer" if dq_defer else "")
            + ("+dq_ksplit" if dq_ksplit else "") + ("+dq_lag" if dq_lag else "")
            + (f"+wg_offset{wg_offset}" if wg_offset else "") + ("+dq_stage1" if dq_stage1 else "")
            + ("+pingpong" if pingpong else ""), "d": d, "causal": causal, "dtype": dtype, "block_n": block_n, "stages": stages,
            "regs": rep["regs_per_thread"], "USETMAXREG": re.findall(r"USETMAXREG[^;]*", sass),
            "mufu_between_waits": wait_order(sass),
            "local_bytes": rep["local_bytes_per_thread"], "shared": k.metadata.shared, "num_warps": k.metadata.num_warps,
            "HGMMA": len(re.findall(r"\bHGMMA\b", sass)), "WARPGROUP.DEPBAR": len(re.findall(r"WARPGROUP\.DEPBAR", sass)),
            "WARPGROUP.ARRIVE": len(re.findall(r"WARPGROUP\.ARRIVE", sass)), "MUFU.EX2": len(re.findall(r"MUFU\.EX2", sass))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", default="128,64")
    ap.add_argument("--causal", default="both", choices=("both", "yes", "no"))
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--block-n", type=int, default=128)
    ap.add_argument("--kernel", default="session5", choices=("session5", "fa3", "fa3bwd"))
    ap.add_argument("--stages", type=int, default=2, help="fa3: K/V stages")
    ap.add_argument("--sass", default=None, help="write the (last) SASS here")
    ap.add_argument("--persistent", action="store_true", help="fa3: the persistent walk")
    ap.add_argument("--wait-fence", default=None, choices=("on", "off"),
                    help="fa3: the l_i scratch store before the wait for P V (default: kernels.hopper_gluon.WAIT_FENCE)")
    ap.add_argument("--block0-unmasked", default=None, choices=("on", "off"),
                    help="fa3, causal: block 0 without the mask where the rows see it whole (default: "
                         "kernels.hopper_gluon.BLOCK0_UNMASKED)")
    ap.add_argument("--kv-regs", action="store_true", help="fa3bwd: K_w, V_w as register operands")
    ap.add_argument("--diag", type=int, default=0, help="fa3bwd: timing diagnostic variant (1 no dQ adds, 2 no dQ)")
    ap.add_argument("--dq-tma", action="store_true", help="fa3bwd: dQ by TMA bulk reduce-add")
    ap.add_argument("--mma-order", type=int, default=None, help="fa3bwd: the consumer's matmul order (MMA_ORDER)")
    ap.add_argument("--dq-defer", action="store_true", help="fa3bwd: DQ_DEFER (with DQ_ASYNC)")
    ap.add_argument("--dq-ksplit", action="store_true", help="fa3bwd: DQ_KSPLIT (no dS^T exchange)")
    ap.add_argument("--dq-lag", action="store_true", help="fa3bwd: DQ_LAG (step t's dQ in step t+1, 4 dS^T buffers)")
    ap.add_argument("--wg-offset", type=int, default=None, help="fa3bwd: WG_OFFSET (consumer 1's start-up offset)")
    ap.add_argument("--dq-stage1", action="store_true", help="fa3bwd: DQ_STAGE1 (one staging tile, waited at reuse)")
    ap.add_argument("--pingpong", action="store_true", help="fa3bwd: PINGPONG (with DQ_LAG: turns between consumers)")
    ap.add_argument("--dq-async", default=None, choices=("on", "off"), help="fa3bwd: DQ_ASYNC (default: registry)")
    a = ap.parse_args(argv)
    bad = 0
    for d in (int(x) for x in a.d.split(",")):
        for causal in {"both": (False, True), "yes": (True,), "no": (False,)}[a.causal]:
            try:
                print(compile_one(d, causal, a.dtype, a.block_n, kernel=a.kernel, stages=a.stages, sass_out=a.sass,
                                  persistent=a.persistent,
                                  wait_fence=None if a.wait_fence is None else a.wait_fence == "on",
                                  block0_unmasked=None if a.block0_unmasked is None else a.block0_unmasked == "on",
                                  kv_regs=a.kv_regs or None, diag=a.diag,
                                  dq_tma=a.dq_tma or None, mma_order=a.mma_order,
                                  dq_async=None if a.dq_async is None else a.dq_async == "on",
                                  dq_defer=a.dq_defer or None, dq_ksplit=a.dq_ksplit or None,
                                  dq_lag=a.dq_lag or None, wg_offset=a.wg_offset,
                                  dq_stage1=a.dq_stage1 or None, pingpong=a.pingpong or None),
                      flush=True)
            except Exception as e:  # noqa: BLE001 -- printed, counted
                bad += 1
                print(f"d={d} causal={causal}: {type(e).__name__}: {str(e)[:2000]}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
