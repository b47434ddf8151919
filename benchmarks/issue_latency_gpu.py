"""One device call: how long a warp waits on the SM's variable-latency units, and how warps share its issue slots.

A warp issues its instructions in order.  Fixed-latency instructions (FFMA, IMAD, HMMA, ...) carry the compiler's
stall count in their control bits; the variable-latency ones (MUFU, SHFL, LDS, LDSM, LDL, S2R, ...) set a
scoreboard that a later instruction waits on.  `memsim.warp_issue` replays a loop's SASS that way, for W warps
sharing the SM's four schedulers; what it needs from the card is how long each scoreboard wait lasts.  These
kernels isolate one unit each, as a chain of dependent operations in a loop (no memory traffic in the loop):

* ``mufu``: x = exp2(x * -0.5) (MUFU.EX2), chains of 1, 2 or 4 independent values per thread;
* ``shfl``: x += sum(x) over one warp (a 5-step SHFL.BFLY butterfly);
* ``smem``: x += sum(x) over 4 or 8 warps (butterfly, then STS / BAR / LDS across warps);
* ``softmax``: an online-softmax step on a register tile (FFMA, FMNMX, MUFU.EX2, SHFL; the attention inner loop
  without its dots) -- a check of the replay on a mix it was not fitted to, at 1-16 warps per SM.

Each point: grid = num_sms x ctas_per_sm CTAs, n_iter iterations, do_bench median; seconds per iteration of one
SM.  The SASS of each kernel is the one `triton.compile` makes for sm_90 on any machine (CPU included), so the
replay is run on the CPU side (memsim.calibration.issue_latency_from).

    run(command="python3 benchmarks/issue_latency_gpu.py --out $OUT/issue_latency.json", timeout_s=300)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import triton
import triton.language as tl


@triton.jit
def _mb_mufu_chain(x_ptr, out_ptr, n_iter, CHAINS: tl.constexpr, NUM_WARPS: tl.constexpr):
    """In registers: CHAINS independent fp32 values per thread.  Each iteration: one FMUL + MUFU.EX2 each."""
    offs = tl.arange(0, 32 * NUM_WARPS)
    x0 = tl.load(x_ptr + offs)
    x1 = x0 + 0.25
    x2 = x0 + 0.5
    x3 = x0 + 0.75
    for i in range(n_iter):
        x0 = tl.exp2(x0 * -0.5)
        if CHAINS >= 2:
            x1 = tl.exp2(x1 * -0.5)
        if CHAINS >= 4:
            x2 = tl.exp2(x2 * -0.5)
            x3 = tl.exp2(x3 * -0.5)
    tl.store(out_ptr + tl.program_id(0) * 32 * NUM_WARPS + offs, x0 + x1 + x2 + x3)


@triton.jit
def _mb_sum_chain(x_ptr, out_ptr, n_iter, NUM_WARPS: tl.constexpr):
    """In registers: one fp32 value per thread.  Each iteration: a sum over the CTA's 32 x NUM_WARPS values
    (SHFL.BFLY within a warp; with several warps, then STS / BAR / LDS through shared memory), fed back."""
    offs = tl.arange(0, 32 * NUM_WARPS)
    x = tl.load(x_ptr + offs)
    for i in range(n_iter):
        x = x * 0.5 + tl.sum(x, axis=0) * 0.001
    tl.store(out_ptr + tl.program_id(0) * 32 * NUM_WARPS + offs, x)


@triton.jit
def _mb_softmax_chain(x_ptr, out_ptr, n_iter, BM: tl.constexpr, BN: tl.constexpr):
    """In registers: a BM x BN fp32 score tile and the running max / sum of each row.  Each iteration: an
    online-softmax step on the tile (scale, row max, exp2, row sum, rescale), the scores then perturbed so the
    next step depends on this one."""
    s = tl.load(x_ptr + tl.arange(0, BM)[:, None] * BN + tl.arange(0, BN)[None, :])
    m = tl.full([BM], -1.0e30, tl.float32)
    l = tl.zeros([BM], dtype=tl.float32)
    for i in range(n_iter):
        m_new = tl.maximum(m, tl.max(s, axis=1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m - m_new)
        l = l * alpha + tl.sum(p, axis=1)
        m = m_new
        s = s * 0.999 + p * 0.001
    tl.store(out_ptr + tl.program_id(0) * BM + tl.arange(0, BM), l)


def loop_body(cubin: bytes) -> tuple[list, int]:
    """The chain loop's instructions (`kernels.sass.instructions`, as lists) and how many iterations one trip
    runs: LLVM unrolls small loops and counts the trips down by that many (``IADD3 R0, R0, -0x4``)."""
    import re

    from kernels.sass import disassemble, instructions
    text = disassemble(cubin)
    ins, loops = instructions(text)
    _, a, b = max(loops, key=lambda x: x[2] - x[1])
    lines = [ln for ln in text.splitlines() if re.match(r"^\s*/\*[0-9a-f]{4,}\*/", ln)]
    unroll = 1
    for ln in lines[a:b + 1]:
        m = re.search(r"U?I(?:ADD3|ADD)\s+U?R\w+,\s*U?R\w+,\s*-0x([0-9a-f]+)", ln)
        if m:
            unroll = int(m.group(1), 16)
            break
    return [x.to_list() for x in ins[a:b + 1]], unroll


def _time(run) -> float:
    run()
    torch.cuda.synchronize()
    return triton.testing.do_bench(run, warmup=5, rep=40, return_mode="median") * 1e-3


def points(num_sms: int):
    """(name, kernel, constexprs, num_warps, ctas_per_sm, n_iter, elements to allocate)."""
    out = []
    for chains in (1, 2, 4):
        for w, c in ((1, 1), (1, 4), (4, 1), (4, 4)):
            out.append(("mufu", _mb_mufu_chain, {"CHAINS": chains, "NUM_WARPS": w}, w, c, 4096, 32 * w))
    for w, c in ((1, 1), (1, 4), (4, 1), (8, 1), (4, 4)):
        out.append(("shfl" if w == 1 else "smem", _mb_sum_chain, {"NUM_WARPS": w}, w, c, 4096, 32 * w))
    for bm, bn in ((16, 32), (32, 64), (64, 64)):
        for w in (1, 2, 4, 8):
            if bm * bn < 32 * w * 4:
                continue
            for c in (1, 4):
                out.append(("softmax", _mb_softmax_chain, {"BM": bm, "BN": bn}, w, c, 1024, bm * bn))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    props = torch.cuda.get_device_properties(0)
    n_sms = props.multi_processor_count
    t0 = time.time()
    rows = []
    for name, k, const, w, c, n_iter, elems in points(n_sms):
        x = torch.rand(max(elems, 32 * w), device="cuda", dtype=torch.float32)
        grid = n_sms * c
        out = torch.empty(grid * max(elems, 32 * w), device="cuda", dtype=torch.float32)
        run = lambda: k[(grid,)](x, out, n_iter, **const, num_warps=w, num_stages=1)  # noqa: E731
        try:
            t = _time(run)
            ck = k.warmup(x, out, n_iter, **const, num_warps=w, num_stages=1, grid=(grid,))
            body, unroll = loop_body(ck.asm["cubin"])
            rows.append({"kind": name, "kernel": k.__name__, "constexprs": const, "num_warps": w, "ctas_per_sm": c,
                         "ctas": grid, "n_iter": n_iter, "time_s": t, "s_per_iter": t / n_iter,
                         "regs_per_thread": int(ck.n_regs), "spills": int(ck.n_spills),
                         "iterations_per_trip": unroll, "body": body})
        except Exception as e:  # noqa: BLE001 -- recorded, not fatal
            rows.append({"kind": name, "kernel": k.__name__, "constexprs": const, "num_warps": w, "ctas_per_sm": c,
                         "error": f"{type(e).__name__}: {str(e)[:160]}"})
        r = rows[-1]
        print(f"{name:8s} {json.dumps(const):32s} w{w} c{c}: " +
              (f"{r['s_per_iter'] * 1e9:8.1f} ns/iter" if "error" not in r else r["error"]), flush=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_file import write_run
    write_run(a.out, "issue_latency/1", rows, script="issue_latency_gpu.py", argv=argv, t0=t0,
              method="triton.testing.do_bench median (warmup 5 ms, rep 40 ms); clocks not locked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
