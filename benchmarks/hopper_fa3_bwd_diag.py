"""hopper_fa3 bwd on the card: where the time of the Gluon dK/dV/dQ pass goes (issue 9, session 11).

Per case (bf16, B*N = 16k, H*d = 2048): the pass `_hopper_fa3_bwd` alone (do_bench medians, events) in variants --
the kernel as registered (2 and 3 stages), K_w/V_w as register operands (`kv_regs`, d=64), and two timing
diagnostics that compute a WRONG dQ (diag 1: dQ's atomic adds predicated off; diag 2: no dQ at all: the dK/dV work
alone; diag 3, session 14: the dS^T exchange without its wait) -- beside the whole backward (kernels.backward with the hopper_fa3 schedule, the default's backward) and SDPA
cuDNN's backward, in the same process.  Writes DIR/fa3_bwd_diag.json (+ provenance) and prints a table.
Session 12: `--bwd-switches` times the whole backward with the module's switches set (STAT_SMEM, DQ_ASYNC, ...);
`--bwd-cases` adds cases that get only the whole-backward rows (+ SDPA flash); `--also hopper_ws` times other
algorithms' registry backward; `--rounds` repeats those rows
(alternating); `--dtype fp16`; `--warm-only` launches everything once (compiles; nothing timed, nothing written).

    PYTHONPATH=. python benchmarks/hopper_fa3_bwd_diag.py --out DIR [--cases 128/16384/0,64/4096/1]
    ncu ... python benchmarks/hopper_fa3_bwd_diag.py --ncu-case 128/16384/0[/variant]   (one launch of the pass)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: name: (stages, kv_regs, diag, dq_tma[, stat_smem, dq_async[, mma_order[, dq_ksplit[, dq_lag[, wg_offset[, dq_stage1[,
#: pingpong]]]]]]]) --
#: None: the module's switch (the
#: registry's setting: since run11d/e STAT_SMEM on, DQ_ASYNC at d=64; run11b/c's 4-tuples ran with both off)
VARIANTS = {"s2": (2, None, 0, False), "s3": (3, None, 0, False), "kv_regs": (2, True, 0, False),
            "diag1_no_dq_adds": (2, None, 1, False), "diag2_no_dq": (2, None, 2, False), "dq_tma": (2, None, 0, True),
            "dq_tma_s3": (3, None, 0, True), "dq_tma_kv_regs": (2, True, 0, True),
            "dq_tma_stat_smem": (2, None, 0, True, True, False), "dq_tma_async": (2, None, 0, True, False, True),
            "dq_tma_stat_smem_async": (2, None, 0, True, True, True),
            "diag2_stat_smem": (2, None, 2, True, True, False),
            # session 13: the registered kernel (STAT_SMEM; DQ_ASYNC by the registry) and FA3's matmul order
            "registered": (2, None, 0, True, None, None, None), "order1": (2, None, 0, True, None, None, 1),
            "order2": (2, None, 0, True, None, None, 2), "dq_ksplit": (2, None, 0, True, None, None, None, True),
            "diag1_stat_smem": (2, None, 1, True, True, False),
            # session 14: diag 3 -- the dS^T exchange without its wait (dQ may read the other warpgroup's stale
            # rows: timing only); DQ_LAG (step t's dQ in step t+1) with / without WG_OFFSET; WG_OFFSET alone
            # (after run16 DQ_STAGE1 is the registry's at d=128 too: these rows keep run15's meaning with it off)
            "diag3_no_ds_wait": (2, None, 3, True, None, None, None, None, None, None, False),
            "dq_lag": (2, None, 0, True, None, None, None, None, True, 0, False),
            "dq_lag_off1": (2, None, 0, True, None, None, None, None, True, 1, False),
            "dq_lag_off2": (2, None, 0, True, None, None, None, None, True, 2, False),
            "wg_off1": (2, None, 0, True, None, None, None, None, False, 1, False),
            # session 14 (after run15: "registered" is DQ_LAG + WG_OFFSET 1 at d=128): the lockstep kernel before it,
            # DQ_STAGE1 (one staging tile, waited for at reuse), PINGPONG (turns), both
            "lockstep": (2, None, 0, True, None, None, None, None, False, None, False),
            "lag_stage1": (2, None, 0, True, None, None, None, None, True, 1, True),
            "lag_pingpong": (2, None, 0, True, None, None, None, None, True, None, False, True),
            "lag_pingpong_stage1": (2, None, 0, True, None, None, None, None, True, None, True, True),
            "stage1": (2, None, 0, True, None, None, None, None, False, None, True)}
#: the whole backward with the module's switches set (name: {switch: value}); "registered": as the registry runs it
BWD_SWITCHES = {"registered": {}, "atomics": dict(DQ_TMA=False, STAT_SMEM=False, DQ_ASYNC=False),
                "dq_tma": dict(DQ_TMA=True, STAT_SMEM=False, DQ_ASYNC=False),
                "stat_smem": dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=False),
                "dq_async": dict(DQ_TMA=True, STAT_SMEM=False, DQ_ASYNC=True),
                "stat_smem_async": dict(DQ_TMA=True, STAT_SMEM=True, DQ_ASYNC=True),
                # session 13: the consumer's matmul order (MMA_ORDER), 3 stages ("_stages": the schedule's)
                "order1": dict(MMA_ORDER=1), "order2": dict(MMA_ORDER=2),
                "order1_async": dict(MMA_ORDER=1, DQ_ASYNC=True), "order1_sync": dict(MMA_ORDER=1, DQ_ASYNC=False),
                "s3": dict(_stages=3), "order1_s3": dict(MMA_ORDER=1, _stages=3), "order2_s3": dict(MMA_ORDER=2, _stages=3),
                "dq_async_on": dict(DQ_ASYNC=True), "dq_defer": dict(DQ_ASYNC=True, DQ_DEFER=True),
                "order2_dq_defer": dict(MMA_ORDER=2, DQ_ASYNC=True, DQ_DEFER=True),
                "bm128": dict(_block_m=128), "bm128_sync": dict(_block_m=128, DQ_ASYNC=False),
                "bm128_dq_defer": dict(_block_m=128, DQ_ASYNC=True, DQ_DEFER=True),
                # session 13 (run14: exact, 0.84-0.94x): dQ by each warpgroup's own K/V rows, no dS^T exchange
                "dq_ksplit": dict(DQ_KSPLIT=True), "dq_ksplit_async": dict(DQ_KSPLIT=True, DQ_ASYNC=True),
                "dq_ksplit_sync": dict(DQ_KSPLIT=True, DQ_ASYNC=False),
                "bm128_dq_ksplit": dict(_block_m=128, DQ_KSPLIT=True),
                # session 14: step t's dQ in step t+1 (no per-step lockstep), consumer 1's start-up offset
                "dq_lag": dict(DQ_LAG=True, WG_OFFSET=0, DQ_STAGE1=False),
                "dq_lag_off1": dict(DQ_LAG=True, WG_OFFSET=1, DQ_STAGE1=False),
                "dq_lag_off2": dict(DQ_LAG=True, WG_OFFSET=2, DQ_STAGE1=False),
                "wg_off1": dict(DQ_LAG=False, WG_OFFSET=1, DQ_STAGE1=False),
                # after run15 ("registered" = DQ_LAG + WG_OFFSET 1 at d=128; after run16 + DQ_STAGE1)
                "lockstep": dict(DQ_LAG=False, DQ_STAGE1=False),
                "lag_stage1": dict(DQ_LAG=True, WG_OFFSET=1, DQ_STAGE1=True),
                # session 15: the dQ conversion folded into the pass (last warpgroup per head_kv and column half),
                # with the preprocess still zeroing dQacc / with dQacc a workspace the pass leaves zero
                "fuse": dict(DQ_FUSE=True, DQ_ZERO_WS=False),
                "fuse_ws": dict(DQ_FUSE=True, DQ_ZERO_WS=True),
                "nofuse": dict(DQ_FUSE=False),  # three launches (the kernel before run17's adoption)
                # timing diagnostics of fuse_ws (dQ wrong): the end-of-CTA full wait + counter without the
                # conversion; the conversion without the full wait
                "fuse_ws_noconv": dict(DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_DIAG=1),
                "fuse_ws_nowait": dict(DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_DIAG=2),
                # session 16: the conversion per (Q block, column half) inside the loop (FUSE_STEP: the staging
                # reuse wait made a full completion wait; the last K/V block of each Q block converts its tile)
                "fuse_step": dict(DQ_FUSE=True, DQ_ZERO_WS=False, FUSE_STEP=True),
                "fuse_step_ws": dict(DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_STEP=True),
                # (after run19: the same per chunk of n Q blocks -- one full wait + atomic per chunk)
                "fuse_chunk4_ws": dict(DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_STEP=4),
                "fuse_chunk16_ws": dict(DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_STEP=16),
                # (after run20: the end-of-CTA form counting in before the dK/dV stores -- the release's MEMBAR.GPU
                # then has no plain stores to wait for; + the no-conversion diagnostic of it)
                "fuse_ws_early": dict(DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_EARLY=True),
                "fuse_ws_early_noconv": dict(DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_EARLY=True, FUSE_DIAG=1),
                # causal: the launch order in groups of one wave's heads, every head's longest K/V block first
                "group_wave": dict(GRID_GROUP=-1),
                # (after run21: FUSE_EARLY and GRID_GROUP are the registry's where they won -- N=1024 non-causal,
                # causal seq_kv 4096 -- so fuse_ws / nofuse there include them; these turn them off)
                "fuse_ws_late": dict(DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_EARLY=False),
                "group_off": dict(GRID_GROUP=0),
                # the registered d=128 kernel (three launches) as a persistent walk over a host table
                "persistent": dict(PERSISTENT=True, DQ_FUSE=False),
                # session 18: the timing diagnostic FUSE_DIAG 3 (the conversion without the zeros: the workspace
                # left dirty, later dQ of it wrong).  (run23's fuse_ws_early_zn / fuse_ws_zn -- ZERO_NEXT, the zeros
                # by every CTA's producer warps into the other of two workspaces -- were removed with the switch
                # after run23: 0.98-1.02x; commit 3b5fec3 has them)
                "fuse_ws_early_norezero": dict(DQ_FUSE=True, DQ_ZERO_WS=True, FUSE_EARLY=True, FUSE_DIAG=3),
                # session 22: PERSISTENT's walk with its LPT's item cost 3 / 5 steps.  (Sessions 19-22's wg_band,
                # kv_prefetch*, split*, epi_early, persistent_pf* were removed with their switches -- WG_BAND,
                # KV_PREFETCH, STREAM_SPLIT, EPI_EARLY, WALK_PF -- after session 22; commit 0ba58c3 has them)
                "persistent_f3": dict(PERSISTENT=True, DQ_FUSE=False, WALK_ITEM_COST=3),
                "persistent_f5": dict(PERSISTENT=True, DQ_FUSE=False, WALK_ITEM_COST=5),
                # (after run32: the dK/dV epilogue by TMA stores through the dQ staging tile, in the grid and the walk)
                "epi_tma": dict(EPI_TMA=True),
                "persistent_epi_tma": dict(PERSISTENT=True, DQ_FUSE=False, EPI_TMA=True),
                "nofuse_epi_tma": dict(DQ_FUSE=False, EPI_TMA=True),
                # (after the registry's EPI_TMA, session 22: the default without it; with it beside the fold counting in
                # early at every N)
                "no_epi_tma": dict(EPI_TMA=False), "epi_tma_early": dict(EPI_TMA=True, FUSE_EARLY=True),
                "lag_pingpong": dict(DQ_LAG=True, PINGPONG=True, DQ_STAGE1=False),
                "lag_pingpong_stage1": dict(DQ_LAG=True, PINGPONG=True, DQ_STAGE1=True),
                "stage1": dict(DQ_LAG=False, DQ_STAGE1=True),
                # the grid with heads varying fastest ("_order": the schedule's): causal, the K/V blocks that see the
                # most Q blocks (the first) of every head go first -- longest first
                "heads_fastest": dict(_order="heads_fastest")}


def setup(d: int, n: int, causal: bool, dtype: str = "bf16"):
    import torch

    import kernels
    from kernels.testing import make_inputs, seed_of
    b, h = 16384 // n, 2048 // d
    q, k, v, do = make_inputs(b, h, h, n, n, d, dtype, "cuda", seed_of("fa3_bwd_diag", d, n, causal, dtype))
    p = kernels.problem_for(q, k, v, causal=causal)
    f = kernels.forward(p, kernels.default_schedule(p, "flash2", "fwd", q.device), q, k, v)
    return p, q, k, v, do, f


def pass_fn(p, q, k, v, do, f, variant: str):
    """A closure launching the dK/dV/dQ pass alone (its delta and dQacc from hopper bwd's preprocess, once)."""
    import torch

    from kernels.hopper_bwd import _hopper_bwd_preprocess
    from kernels._common import strides3
    from kernels.hopper_gluon_bwd import fa3_bwd_dkdvdq
    from memsim.schedule import Schedule, kernel_launches
    st, kv_regs, diag, dq_tma, stat_smem, dq_async, mma_order, dq_ksplit, dq_lag, wg_offset, dq_stage1, pingpong = (
        VARIANTS[variant] + (None,) * 8)[:12]
    s = Schedule("hopper_fa3", "bwd", 64, 128, 4, st)
    pre, main, _ = kernel_launches(p, s)
    delta = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    dqacc = torch.empty((p.batch, p.heads_q, p.seq_q, p.head_dim), dtype=torch.float32, device=q.device)
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    _hopper_bwd_preprocess[pre.grid](f.o, do, delta, dqacc, *strides3(f.o), *strides3(do), p.heads_q, p.seq_q,
                                     HEAD_DIM=p.head_dim, BLOCK_M=64, Q_FASTEST=True, num_warps=4, num_stages=2)
    return lambda: fa3_bwd_dkdvdq(p, s, main.grid, q, k, v, do, f.lse, delta, dqacc, dk, dv, kv_regs, diag,
                                  dq_tma, stat_smem, dq_async, mma_order, None, dq_ksplit, dq_lag, wg_offset,
                                  dq_stage1, pingpong)


def parse_case(c: str):
    d, n, causal = c.split("/")[:3]
    return int(d), int(n), causal in ("1", "True", "causal")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--cases", default="128/16384/0,128/4096/1,64/16384/0,64/4096/1")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--bwd-switches", default="registered",
                    help="comma list of BWD_SWITCHES names; NAME@D: only at head dim D")
    ap.add_argument("--bwd-cases", default="", help="more cases: the whole-backward rows only")
    ap.add_argument("--rounds", type=int, default=1, help="repeats of the whole-backward rows (alternating)")
    ap.add_argument("--also", default="", help="comma list of algorithms whose registry backward is timed too")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    ap.add_argument("--warm-only", action="store_true", help="launch everything once (compile), time nothing")
    ap.add_argument("--pieces", action="store_true",
                    help="also time hopper bwd's preprocess and dQ conversion launches alone (the registry's schedule)")
    ap.add_argument("--ncu-case", default=None, help="d/N/causal[/variant]: launch the pass once (for ncu)")
    a = ap.parse_args(argv)
    import torch
    import triton

    import kernels
    import kernels.hopper_gluon_bwd as hb
    if a.ncu_case:
        d, n, causal = parse_case(a.ncu_case)
        var = a.ncu_case.split("/")[3] if a.ncu_case.count("/") == 3 else "s2"
        p, q, k, v, do, f = setup(d, n, causal, a.dtype)
        fn = pass_fn(p, q, k, v, do, f, var)
        fn()
        torch.cuda.synchronize()
        return 0
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from memsim.schedule import Schedule

    def bench(fn):
        if a.warm_only:
            fn()
            torch.cuda.synchronize()
            return float("nan")
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")

    def with_switches(sw, fn):
        sw = {name: val for name, val in sw.items() if not name.startswith("_")}

        def g():
            old = {name: getattr(hb, name) for name in sw}
            try:
                for name, val in sw.items():
                    setattr(hb, name, val)
                return fn()
            finally:
                for name, val in old.items():
                    setattr(hb, name, val)
        return g

    def sdpa(backend, q, k, v, do, causal):
        qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
        with sdpa_kernel(backend):
            oo = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
        return lambda: torch.autograd.grad(oo, (qq, kk, vv), do, retain_graph=True)

    out, rows = [], []
    pass_cases = [c for c in a.cases.split(",") if c]
    for c in pass_cases + [c for c in a.bwd_cases.split(",") if c and c not in pass_cases]:
        d, n, causal = parse_case(c)
        p, q, k, v, do, f = setup(d, n, causal, a.dtype)
        fl = p.nominal_flops("bwd")
        base = dict(d=d, seq=n, causal=causal, batch=p.batch, heads=p.heads_q, dtype=a.dtype)
        for var in (a.variants.split(",") if c in pass_cases else []):
            if "kv_regs" in var and d != 64:
                continue
            try:
                fn = pass_fn(p, q, k, v, do, f, var)
                ms = bench(fn)
                out.append(dict(base, impl="pass:" + var, ms=ms, tflops=fl / ms * 1e-9))
            except Exception as e:  # noqa: BLE001 -- recorded
                out.append(dict(base, impl="pass:" + var, error=f"{type(e).__name__}: {str(e)[:300]}"))
        if a.pieces:  # the whole backward's two memory-bound launches alone, as the registry runs them
            from kernels._common import dot_precision, strides3
            from kernels.hopper_bwd import (_hopper_bwd_dq_convert, _hopper_bwd_preprocess, dqacc_buffers,
                                            dqacc_convert, dqacc_preprocess)
            from memsim.schedule import kernel_launches
            sp = kernels.default_schedule(p, "hopper_fa3", "bwd", q.device)
            from memsim.algorithms_hopper import _hopper_bwd_launches
            pre, _, conv = _hopper_bwd_launches(p, sp)  # the three launches (the registry may fold the third in)
            delta, dqacc, dq, _, _ = dqacc_buffers(p, q, k, v)
            nbytes = p.batch * p.heads_q * p.seq_q * p.head_dim
            for name, fn, byts in (
                    ("piece:preprocess", lambda: dqacc_preprocess(p, sp, pre.grid, f.o, do, delta, dqacc),
                     nbytes * (2 * q.element_size() + 4) + p.batch * p.heads_q * p.seq_q * 4),
                    ("piece:dq_convert", lambda: dqacc_convert(p, sp, conv.grid, dqacc, dq),
                     nbytes * (4 + q.element_size())),
                    # the same kernels with 128-row blocks and 8 warps (not what the registry launches)
                    ("piece:preprocess_128w8", lambda: _hopper_bwd_preprocess[(p.seq_q // 128, p.batch * p.heads_q)](
                        f.o, do, delta, dqacc, *strides3(f.o), *strides3(do), p.heads_q, p.seq_q,
                        HEAD_DIM=p.head_dim, BLOCK_M=128, Q_FASTEST=True, num_warps=8, num_stages=2),
                     nbytes * (2 * q.element_size() + 4) + p.batch * p.heads_q * p.seq_q * 4),
                    ("piece:dq_convert_128w8", lambda: _hopper_bwd_dq_convert[(p.seq_q // 128, p.batch * p.heads_q)](
                        dqacc, dq, *strides3(dq), p.heads_q, p.seq_q, p.scale, Q_FASTEST=True,
                        PREC=dot_precision(p), HEAD_DIM=p.head_dim, BLOCK_M=128, num_warps=8, num_stages=2),
                     nbytes * (4 + q.element_size()))):
                ms = bench(fn)
                out.append(dict(base, impl=name, ms=ms, tflops=fl / ms * 1e-9, gbps=byts / ms * 1e-6))
        ch = kernels.default_choice(p, q, k, v)
        fns = []
        for name in [x for x in a.bwd_switches.split(",") if x]:
            name, _, only_d = name.partition("@")
            if only_d and int(only_d) != d:
                continue
            sw_ = BWD_SWITCHES[name]
            s = Schedule("hopper_fa3", "bwd", sw_.get("_block_m", 64), 128, 4, sw_.get("_stages", 2),
                         sw_.get("_order", "q_fastest"))
            fns.append((f"bwd:hopper_fa3[{name}]" if name != "registered" else "bwd:hopper_fa3",
                        with_switches(BWD_SWITCHES[name], lambda s=s: kernels.backward(p, s, q, k, v, f.o, do, f))))
        for alg in [x for x in a.also.split(",") if x]:
            sa = kernels.default_schedule(p, alg, "bwd", q.device)
            fns.append((f"bwd:{alg}", lambda sa=sa: kernels.backward(p, sa, q, k, v, f.o, do, f)))
        fns += [(f"bwd:default({ch.backward.algorithm})", lambda: kernels.backward(p, ch.backward, q, k, v, f.o, do, f)),
                ("bwd:sdpa_cudnn", sdpa(SDPBackend.CUDNN_ATTENTION, q, k, v, do, causal)),
                ("bwd:sdpa_flash", sdpa(SDPBackend.FLASH_ATTENTION, q, k, v, do, causal))]
        for rnd in range(1 if a.warm_only else a.rounds):
            for name, fn in (fns if rnd % 2 == 0 else fns[::-1]):
                try:
                    ms = bench(fn)
                    out.append(dict(base, impl=name, round=rnd, ms=ms, tflops=fl / ms * 1e-9))
                except Exception as e:  # noqa: BLE001 -- recorded
                    out.append(dict(base, impl=name, round=rnd, error=f"{type(e).__name__}: {str(e)[:300]}"))
        for r in out[len(rows):]:
            print(json.dumps(r), flush=True)
        rows = list(out)
    if a.warm_only:
        print(f"warm: {len(out)} launches, errors: {sum('error' in r for r in out)}")
        return 0
    print("\n| dtype | d | causal | N | impl | ms | TFLOP/s (bwd FLOPs) |\n| --- | --- | --- | --- | --- | --- | --- |")
    for r in out:
        head = f"| {r['dtype']} | {r['d']} | {r['causal']} | {r['seq']} | {r['impl']} | "
        print(head + (f"{r['ms']:.3f} | {r['tflops']:.0f} |" if "ms" in r else f"error | {r['error'][:80]} |"))
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        prov = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                    cudnn=torch.backends.cudnn.version(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    command=" ".join(sys.argv))
        Path(a.out, f"fa3_bwd_diag_{a.dtype}.json").write_text(json.dumps(dict(provenance=prov, records=out),
                                                                          indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
