"""hopper_fa3 bwd on the card: where an item's fixed cost goes (issue 9, session 22).

The pass `_hopper_fa3_bwd` (d=128 registered kernel, three-launch form) launched once with the timing diagnostic
`kernels.hopper_gluon_bwd.STAMPS`: every item (K/V block, batch*head_kv) writes the SM's clock64 at its milestones
(`STAMP_NAMES`: the producer's start, K/V issue, last issue; per consumer warpgroup the K/V wait, the first S^T, the
loop's end, the last dQ, the end) beside the SM id and the global timer.  Per variant (the plain grid, PERSISTENT's
walk with module switches) it prints, from the same launch:
  * per item on its SM, the time from the previous item's end (the later warpgroup's) to this item's end -- the
    item's whole cost on the SM, launch gap included -- and a least-squares fit cost = fixed + per_step x steps;
  * the mean of each segment: launch gap (previous end -> producer start; the plain grid only: the walk's producer
    starts an item while the previous one computes), fill (producer start -> warpgroup 0 has K/V), previous end ->
    warpgroup 0 has K/V (both grids: launch + fill, or the walk's reload), first S^T, the loop per step, the last dQ, the epilogue, and the
    warpgroups' skew at the end;
  * the SMs' busy share of the span (first start to last end on each SM, against the launch's longest).
Writes DIR/fa3_bwd_stamps_<dtype>.json (raw stamps per item + the summary + provenance).

    PYTHONPATH=. python benchmarks/hopper_fa3_bwd_stamps.py --out DIR [--cases 128/1024/1,128/4096/1]
        [--variants plain,walk,walk_f3] [--dtype bf16]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: name: module switches of kernels.hopper_gluon_bwd (STAMPS on, the fold off, added by the script)
VARIANTS = {"plain": dict(EPI_TMA=False), "walk": dict(PERSISTENT=True, EPI_TMA=False),
            "walk_f3": dict(PERSISTENT=True, WALK_ITEM_COST=3, EPI_TMA=False),
            "walk_f5": dict(PERSISTENT=True, WALK_ITEM_COST=5, EPI_TMA=False),
            "epi_tma": dict(EPI_TMA=True), "walk_epi_tma": dict(PERSISTENT=True, EPI_TMA=True),
            "registered": {}}
#: (run32 / run33 also ran epi_early, walk_pf_f3, walk_epi_tma_pf: EPI_EARLY and WALK_PF were removed after session
#: 22; "plain" and "walk" keep their run32 meaning -- the kernel without EPI_TMA -- now that the registry runs it)


def run_stamps(d: int, n: int, causal: bool, dtype: str, sw: dict):
    """One launch of the pass with STAMPS and the switches sw: (problem, schedule, stamps [items, 16] int64 numpy,
    walk table or None)."""
    import torch

    import kernels.hopper_gluon_bwd as hb
    from benchmarks.hopper_fa3_bwd_diag import setup
    from kernels.hopper_bwd import dqacc_buffers, dqacc_preprocess
    from memsim.schedule import Schedule, kernel_launches
    p, q, k, v, do, f = setup(d, n, causal, dtype)
    s = Schedule("hopper_fa3", "bwd", 64 if d == 128 else 128, 128, 4, 2)
    pre, main = kernel_launches(p, s)[:2]
    items = p.batch * p.heads_kv * (p.seq_kv // s.block_n)
    old = {name: getattr(hb, name) for name in list(sw) + ["STAMPS", "DQ_FUSE"]}
    try:
        for name, val in dict(sw, STAMPS=True, DQ_FUSE=False).items():
            setattr(hb, name, val)
        delta, dqacc, dq, dk, dv = dqacc_buffers(p, q, k, v)
        buf = torch.zeros(items * hb.STAMP_SLOTS, dtype=torch.int64, device=q.device)
        for _ in range(2):  # the first compiles (and warms the L2 as a timed run would be)
            dqacc_preprocess(p, s, pre.grid, f.o, do, delta, dqacc)
            buf.zero_()
            hb.fa3_bwd_dkdvdq(p, s, main.grid, q, k, v, do, f.lse, delta, dqacc, dk, dv, cnt=buf, dq_fuse=False)
        torch.cuda.synchronize()
        walk = None
        if hb.PERSISTENT:
            walk = hb.fa3_bwd_walk_table(p, s, q.device, hb.fa3_bwd_walk_ctas(p, s, q.device)).cpu().tolist()
    finally:
        for name, val in old.items():
            setattr(hb, name, val)
    return p, s, buf.view(items, hb.STAMP_SLOTS).cpu().numpy(), walk


def summarize(p, s, st, names) -> dict:
    """The per-item costs and segment means of one launch's stamps (cycles -> us by the global timer)."""
    import numpy as np
    ix = {nm: i for i, nm in enumerate(names)}
    n_kv, n_m = p.seq_kv // s.block_n, p.seq_q // s.block_m

    def steps(j):
        if not p.causal:
            return n_m
        return n_m - min(max(j * s.block_n - p.causal_offset, 0) // s.block_m, n_m)
    nsteps = np.array([p.group_size * steps(e % n_kv) for e in range(st.shape[0])])
    c = {nm: st[:, i].astype(np.float64) for nm, i in ix.items()}
    ok = (c["w0_end"] > 0) & (c["w1_end"] > 0) & (c["p_start"] > 0)
    dt_ns = c["gt_w0_end"] - c["gt_start"]
    dc = c["w0_end"] - c["p_start"]
    good = ok & (dt_ns > 2000)
    ghz = float(np.median(dc[good] / dt_ns[good]))  # cycles per ns
    us = 1e-3 / ghz  # us per cycle
    end = np.maximum(c["w0_end"], c["w1_end"])
    sm = st[:, ix["smid"]]
    cost = np.zeros(st.shape[0])
    gap = np.full(st.shape[0], np.nan)
    prev = np.full(st.shape[0], np.nan)
    busy, spans = [], []
    for m in np.unique(sm[ok]):
        idx = np.where(ok & (sm == m))[0]
        idx = idx[np.argsort(c["p_start"][idx])]
        prev_end = None
        for e in idx:
            cost[e] = (end[e] - (c["p_start"][e] if prev_end is None else prev_end)) * us
            if prev_end is not None:
                gap[e] = (c["p_start"][e] - prev_end) * us
                prev[e] = prev_end
            prev_end = end[e]
        spans.append((end[idx].max() - c["p_start"][idx].min()) * us)
        busy.append(sum((end[e] - c["p_start"][e]) * us for e in idx))
    A = np.stack([np.ones(ok.sum()), nsteps[ok]], 1)
    fixed, per_step = np.linalg.lstsq(A, cost[ok], rcond=None)[0]
    seg = lambda a, b: float(np.nanmean((c[b] - c[a])[ok]) * us)  # noqa: E731
    loop = (c["w0_loop_end"] - c["w0_first_s"]) * us
    multi = ok & (nsteps > 1)
    by_steps = {}
    for k_ in sorted(set(nsteps[ok].tolist())):
        sel = ok & (nsteps == k_)
        by_steps[int(k_)] = dict(items=int(sel.sum()), cost_us=float(cost[sel].mean()),
                                 fill_us=float(((c["w0_kv"] - c["p_start"]) * us)[sel].mean()),
                                 loop_us=float(loop[sel].mean()))
    return dict(
        ghz=ghz, items=int(ok.sum()), sms=len(spans), span_max_us=float(max(spans)),
        span_mean_us=float(np.mean(spans)), busy_share=float(np.sum(busy) / (max(spans) * len(spans))),
        fit_fixed_us=float(fixed), fit_per_step_us=float(per_step), cost_mean_us=float(cost[ok].mean()),
        launch_gap_us=float(np.nanmean(gap)),
        seg_us=dict(p_start_to_kv_issued=seg("p_start", "p_kv_issued"), fill=seg("p_start", "w0_kv"),
                    first_s=seg("w0_kv", "w0_first_s"), w1_start_after_w0_first_s=seg("w0_first_s", "w1_start"),
                    loop=float(np.mean(loop[ok])),
                    loop_per_step=float(np.mean(loop[multi] / (nsteps[multi] - 1))),
                    last_dq=seg("w0_loop_end", "w0_last_dq"), epilogue=seg("w0_last_dq", "w0_end"),
                    w1_end_minus_w0_end=seg("w0_end", "w1_end"),
                    prev_end_to_w0_kv=float(np.nanmean((c["w0_kv"] - prev) * us))),
        by_steps=by_steps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--cases", default="128/1024/1,128/4096/1")
    ap.add_argument("--variants", default="registered,plain,walk_epi_tma")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    a = ap.parse_args(argv)
    import torch
    import triton

    import kernels.hopper_gluon_bwd as hb
    from benchmarks.hopper_fa3_bwd_diag import parse_case
    out = []
    for case in [x for x in a.cases.split(",") if x]:
        d, n, causal = parse_case(case)
        for var in [x for x in a.variants.split(",") if x]:
            try:
                p, s, st, walk = run_stamps(d, n, causal, a.dtype, VARIANTS[var])
                summ = summarize(p, s, st, hb.STAMP_NAMES)
                out.append(dict(case=case, variant=var, summary=summ, stamps=st.tolist(), walk=walk))
                print(json.dumps(dict(case=case, variant=var, **{k: v for k, v in summ.items() if k != "by_steps"})),
                      flush=True)
            except Exception as e:  # noqa: BLE001 -- recorded
                out.append(dict(case=case, variant=var, error=f"{type(e).__name__}: {str(e)[:400]}"))
                print(json.dumps(out[-1]), flush=True)
    print("\n| case | variant | item cost us (mean) | fit fixed + per step us | launch gap | fill | first S^T | "
          "prev end->K/V | loop/step | last dQ | epilogue | w1-w0 end | busy | span max us |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in out:
        if "error" in r:
            print(f"| {r['case']} | {r['variant']} | error: {r['error'][:100]} |")
            continue
        m, g = r["summary"], r["summary"]["seg_us"]
        print(f"| {r['case']} | {r['variant']} | {m['cost_mean_us']:.2f} | {m['fit_fixed_us']:.2f} + "
              f"{m['fit_per_step_us']:.3f} | {m['launch_gap_us']:.2f} | {g['fill']:.2f} | {g['first_s']:.2f} | "
              f"{g['prev_end_to_w0_kv']:.2f} | "
              f"{g['loop_per_step']:.3f} | {g['last_dq']:.2f} | {g['epilogue']:.2f} | {g['w1_end_minus_w0_end']:.2f} "
              f"| {m['busy_share']:.3f} | {m['span_max_us']:.1f} |")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        prov = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                    date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command=" ".join(sys.argv))
        Path(a.out, f"fa3_bwd_stamps_{a.dtype}.json").write_text(json.dumps(dict(provenance=prov, records=out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
