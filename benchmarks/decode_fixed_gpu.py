"""Where a one-CTA-per-SM decode launch spends its fixed time (issue 12, session 17): per-CTA %globaltimer traces of
back-to-back launches inside ONE CUDA graph (as the benchmark and a serving stack replay them), so that the time per
launch splits into the gap between launches (the previous launch's last CTA end -> this launch's first CTA start) and
the span of the launch (first CTA start -> last CTA end), and the span into its waves.

Session 16 measured the 128-key tile (one CTA per SM) at 33 / 66 / 99 / 64 x 1k: the per-wave slope is the model's
within 1 %, the intercept 5.9 us vs the rule's graph form's 3.0 -- a roughly fixed 3.3-4.3 us per launch
(reports/h100-sxm/decode/s16-call1/).  Candidates: the kernel boundary in the graph (the form: `GRAPH_KERNEL_S` =
0.97 us, measured with EMPTY kernels), the first wave's start (the sequence-length load, then the first tiles' latency
with every SM asking at once), the last wave's end (the last tile's compute, the epilogue, the stores), the GPCs'
shares at 128 KB in flight per CTA.

Each case: n input sets (rotated: every launch finds its cache in DRAM), the real `_decode_split` inlined into
`benchmarks.decode_tail_gpu._traced_split` (it records per CTA %smid and %globaltimer at its start and end), n launches
captured in one graph, replayed; the last --snapshots replays' traces are kept.  Beside each traced graph the same
launches untraced (`kernels.decode_kv.decode` with the schedule, do_bench_cudagraph median twice): the trace's
overhead.  Cases of zero keys (cache_seqlens all 0: the CTAs load their length, write zeros, end) give the launch's
cost with no stream.  SDPA cuDNN at 64 x 1k in the same process.  32 / 8 heads, d = 128, bf16, one query token,
contiguous caches, S = 1.

    PYTHONPATH=. python3 benchmarks/decode_fixed_gpu.py --out /tmp/fixed.json

Predictions: `python benchmarks/decode_fixed_gpu.py --predict FILE` (no GPU; the graph form's period, span and waves
per case); `--check RUN [--pred FILE]` compares and prints the waves per GPC class (`analyse`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HQ, HKV, D = 32, 8, 128

#: name -> (batch, context (cache capacity), keys read per sequence (0: cache_seqlens all 0), block_n[, early_tile])
CASES = {
    "b64_1k_bn128": (64, 1024, 1024, 128),
    "b64_0_bn128": (64, 1024, 0, 128),
    "b64_1k_bn32": (64, 1024, 1024, 32),
    "b64_0_bn32": (64, 1024, 0, 32),
    "b16_0_bn128": (16, 1024, 0, 128),
    "b16_1k_bn128": (16, 1024, 1024, 128),
    "b16_4k_bn128": (16, 4096, 4096, 128),
    "b64_2k_bn128": (64, 2048, 2048, 128),
    # session 19 (prepared for session 20): the first tile beside the length (early_tile) and without, where it gained
    # (64 x 1k), tied (32 x 1k: 2 CTAs per SM), lost (64 x 2k; 16 x 1k: one CTA per SM), and 56 x 1k (0.981x cuDNN)
    "b64_1k_bn32_e": (64, 1024, 1024, 32, True),
    "b32_1k_bn32": (32, 1024, 1024, 32),
    "b32_1k_bn32_e": (32, 1024, 1024, 32, True),
    "b64_2k_bn32": (64, 2048, 2048, 32),
    "b64_2k_bn32_e": (64, 2048, 2048, 32, True),
    "b16_1k_bn64": (16, 1024, 1024, 64),
    "b16_1k_bn64_e": (16, 1024, 1024, 64, True),
    "b56_1k_bn32_e": (56, 1024, 1024, 32, True),
    # session 20 (call 5): where the form is 5-7 % fast on the one-wave 64-key tile and bn32 ran faster (40 x 1k / 2k,
    # 2.42 CTAs per SM), where bn64 ran faster (20 x 1k, 1.21 per SM), and 52 x 1k (0.963x cuDNN: 20 SMs hold 4 CTAs)
    "b40_1k_bn32": (40, 1024, 1024, 32),
    "b40_1k_bn64": (40, 1024, 1024, 64),
    "b40_2k_bn64": (40, 2048, 2048, 64),
    "b20_1k_bn32": (20, 1024, 1024, 32),
    "b20_1k_bn64": (20, 1024, 1024, 64),
    "b52_1k_bn32_e": (52, 1024, 1024, 32, True),
}


def schedule_for(bn: int, early: bool = False):
    from memsim.inference import DecodeSchedule
    return DecodeSchedule(num_splits=1, block_n=bn, num_warps=4, num_stages=3, early_tile=early)


def problem_for(B: int, N: int, L: int):
    from memsim.inference import DecodeProblem
    return DecodeProblem(HQ, HKV, D, (1,) * B, (L,) * B, dtype="bf16", capacity_kv=N)


def summarise(tr: list, per_launch: int) -> dict:
    """Per launch of one replay's trace (rows (smid, start_ns, end_ns), launches one after the other): span, gap to
    the previous launch, the first wave's CTAs (starting within 1 us of the launch's first) and their ends, the last
    CTA's start, and per CTA the duration by the wave it started in."""
    out = []
    prev_end = None
    for i in range(0, len(tr), per_launch):
        rows = tr[i:i + per_launch]
        s0 = min(r[1] for r in rows)
        e1 = max(r[2] for r in rows)
        first = [r for r in rows if r[1] - s0 < 1000]
        later = [r for r in rows if r[1] - s0 >= 1000]
        d = dict(span_us=(e1 - s0) / 1e3, gap_us=None if prev_end is None else (s0 - prev_end) / 1e3,
                 first_wave_ctas=len(first),
                 first_wave_end_us=[(min(r[2] for r in first) - s0) / 1e3, statistics.median(r[2] - s0 for r in first) / 1e3,
                                    (max(r[2] for r in first) - s0) / 1e3],
                 first_wave_dur_median_us=statistics.median(r[2] - r[1] for r in first) / 1e3,
                 later_dur_median_us=statistics.median(r[2] - r[1] for r in later) / 1e3 if later else None,
                 last_start_us=(max(r[1] for r in rows) - s0) / 1e3,
                 ends_after_last_start_us=sorted((r[2] - s0) / 1e3 for r in rows)[-5:])
        out.append(d)
        prev_end = e1
    return out


def main_gpu(a) -> int:
    import torch
    import triton
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench

    from benchmarks.decode_cold import graph_time_s
    from benchmarks.decode_tail_gpu import _capture, _traced_split
    from kernels.decode_kv import decode
    from kernels.decode_testing import make_problem_inputs
    from kernels.reference import naive_same_dtype, reference
    from kernels.testing import check_rule
    from memsim.io import base_provenance, write_json

    t_start = time.time()
    F = torch.nn.functional
    x = torch.empty(2 ** 31, dtype=torch.bfloat16, device="cuda").normal_()
    read_Bps = x.numel() * 2 / (do_bench(lambda: x.sum(), rep=50, return_mode="median") * 1e-3)
    del x
    torch.cuda.empty_cache()
    res, notes = {}, []
    names = [n for n in a.cases.split(",") if n]
    for name in names:
        if time.time() - t_start > a.budget_s:
            notes.append(f"budget reached before {name}")
            break
        B, N, L, bn, *early = CASES[name]
        p, s = problem_for(B, N, L), schedule_for(bn, *early)
        kv = 2 * B * N * HKV * D * 2
        n = max(a.min_copies, -(-int(a.rotate_mb * 1e6) // kv))
        try:
            sets = [make_problem_inputs(p, "cuda", seed=B * 1000003 + N + i) for i in range(n)]
            if L:  # DESIGN.md's rule on sequence 0 of set 0
                q, kc, vc, lens, _ = sets[0]
                qs, ks, vs = (t[:1].transpose(1, 2).contiguous() for t in (q, kc, vc))
                o = decode(q, kc, vc, lens, schedule=s)
                check_rule("decode", o[:1].transpose(1, 2), reference(qs, ks, vs)[0], naive_same_dtype(qs, ks, vs)[0],
                           "bf16", verbose=False)
            plain = graph_time_s([lambda st=st: decode(st[0], st[1], st[2], st[3], schedule=s) for st in sets],
                                 a.rep_ms)
            launches = []
            for st in sets:
                args, kwargs, grid = _capture(p, s, st[0], st[1], st[2], st[3])
                ctas = grid[0] * grid[1]
                launches.append((args, kwargs, grid, torch.full((ctas * 3,), -1, dtype=torch.int64, device="cuda")))

            def traced():
                for args, kwargs, grid, tr in launches:
                    _traced_split[grid](tr, *args, **kwargs)
            traced_t = graph_time_s([traced], a.rep_ms)
            traced()
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                traced()
            for _ in range(3):
                g.replay()
            torch.cuda.synchronize()
            snaps = []
            for _ in range(a.snapshots):
                g.replay()
                torch.cuda.synchronize()
                rows = torch.cat([tr.view(-1, 3) for *_, tr in launches]).cpu().tolist()
                t0 = min(r[1] for r in rows)
                snaps.append([[r[0], r[1] - t0, r[2] - t0] for r in rows])
            per = launches[0][2][0] * launches[0][2][1]
            summ = [summarise(sn, per) for sn in snaps]
            res[name] = dict(batch=B, context=N, keys=L, block_n=bn, early_tile=bool(early and early[0]), copies=n,
                             ctas=per, kv_bytes=kv if L else 0,
                             plain_period_us=[t * 1e6 for t in plain], traced_period_us=[t * 1e6 / n for t in traced_t],
                             summary=summ, traces=snaps)
            spans = [d["span_us"] for sm in summ for d in sm]
            gaps = [d["gap_us"] for sm in summ for d in sm if d["gap_us"] is not None]
            fw = [d["first_wave_end_us"][1] for sm in summ for d in sm]
            print(f"[{time.time() - t_start:6.1f}s] {name}: {n} copies, {per} CTAs; period plain {plain[0] * 1e6:.2f} / "
                  f"{plain[1] * 1e6:.2f} us, traced {traced_t[0] * 1e6 / n:.2f}; span median {statistics.median(spans):.2f}, "
                  f"gap median {statistics.median(gaps) if gaps else float('nan'):.2f}, first wave end median "
                  f"{statistics.median(fw):.2f} us", flush=True)
            if name == "b64_1k_bn128":  # SDPA cuDNN on the same caches, same graph form
                ssets = [tuple(t.transpose(1, 2).contiguous() for t in st[:3]) for st in sets]

                def cudnn(st):
                    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                        return F.scaled_dot_product_attention(st[0], st[1], st[2], enable_gqa=True)
                cu = graph_time_s([lambda st=st: cudnn(st) for st in ssets], a.rep_ms)
                dflt = graph_time_s([lambda st=st: decode(st[0], st[1], st[2], st[3]) for st in sets], a.rep_ms)
                cu2 = graph_time_s([lambda st=st: cudnn(st) for st in ssets], a.rep_ms)
                res[name].update(cudnn_period_us=[t * 1e6 for t in cu + cu2], default_period_us=[t * 1e6 for t in dflt])
                print(f"    cuDNN {cu[0] * 1e6:.2f} / {cu[1] * 1e6:.2f} / {cu2[0] * 1e6:.2f} / {cu2[1] * 1e6:.2f} us; "
                      f"kernels.decode default {dflt[0] * 1e6:.2f} / {dflt[1] * 1e6:.2f}", flush=True)
                del ssets
            del sets, launches
            torch.cuda.empty_cache()
        except Exception as exc:
            notes.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
            print(notes[-1], flush=True)
    prov = base_provenance("python3 benchmarks/decode_fixed_gpu.py " + " ".join(sys.argv[1:]))
    prov.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                cuda=torch.version.cuda, card_read_Bps=read_Bps,
                card_read_method="torch.sum of a 2^31-element bf16 tensor, do_bench median")
    write_json(a.out, dict(provenance=prov, cases=res, notes=notes))
    print(f"card read {read_Bps / 1e12:.2f} TB/s")
    for nn in notes:
        print("NOTE", nn)
    return 0


def predict(names) -> dict:
    """The graph form per case: period (`estimate_time_graph_s` time), its kernel cost (the predicted gap), the span
    (the launch's last CTA end), the first wave's group ends, the last group start."""
    from kernels.decode_kv import device_facts
    from memsim.inference import estimate_time_graph_s
    f = device_facts(None)
    out = {}
    for name in names:
        B, N, L, bn, *early = CASES[name]
        p, s = problem_for(B, N, L), schedule_for(bn, *early)
        ev = []
        r = estimate_time_graph_s(p, s, f, events=ev)
        first = [e for e in ev if e[0] == 0.0]
        out[name] = dict(period_us=r["time_s"] * 1e6, gap_us=r["kernel_s"] * 1e6,
                         span_us=(r["time_s"] - r["kernel_s"]) * 1e6,
                         first_wave_end_us=sorted({round(e[1] * 1e6, 3) for e in first}),
                         last_start_us=max(e[0] for e in ev) * 1e6 if ev else 0.0)
    return out


def load_run(path: str) -> dict:
    """A run's JSON (plain or .gz)."""
    import gzip
    with (gzip.open(path, "rt") if str(path).endswith(".gz") else open(path)) as f:
        return json.load(f)


def launches_of(case: dict):
    """Each recorded launch of a case: {sm: [(start_us, end_us), ...] in start order}, times from the launch's first
    CTA start."""
    per = case["ctas"]
    for snap in case["traces"]:
        for li in range(len(snap) // per):
            rows = snap[li * per:(li + 1) * per]
            s0 = min(r[1] for r in rows)
            by = {}
            for r in rows:
                by.setdefault(r[0], []).append(((r[1] - s0) / 1e3, (r[2] - s0) / 1e3))
            yield {sm: sorted(v) for sm, v in by.items()}


def fast_sms(run: dict, threshold: float = 0.92) -> set:
    """The SMs whose CTAs run faster in a one-wave launch (the 12-SM GPCs of `memsim.inference.GPC_ARBITRATION`):
    per SM the mean over the one-wave cases' launches of its CTA's duration over the launch's median, below
    `threshold` (the traces are bimodal: 0.83-0.86 and 0.99-1.02 on the session-17 machine)."""
    acc = {}
    for name, c in run["cases"].items():
        if c["ctas"] > 132 or not c["keys"]:
            continue
        for la in launches_of(c):
            m = statistics.median(v[0][1] - v[0][0] for v in la.values())
            for sm, v in la.items():
                acc.setdefault(sm, []).append((v[0][1] - v[0][0]) / m)
    return {sm for sm, v in acc.items() if statistics.mean(v) < threshold}


def one_wave_cv(run: dict) -> dict:
    """Per one-wave case: the median over its launches of the coefficient of variation of the CTA durations on the
    slower (18-SM) GPCs -- `memsim.inference.CTA_RATE_SPREAD`'s figure."""
    fast = fast_sms(run)
    out = {}
    for name, c in run["cases"].items():
        if c["ctas"] > 132 or not c["keys"]:
            continue
        cvs = []
        for la in launches_of(c):
            d = [v[0][1] - v[0][0] for sm, v in la.items() if sm not in fast]
            cvs.append(statistics.pstdev(d) / statistics.mean(d))
        out[name] = statistics.median(cvs)
    return out


def waves(run: dict, name: str) -> dict:
    """Per (class F = fast GPC / S = slow, CTA index on its SM, CTAs on its SM): medians of start and end, min and
    max end (us) over every recorded launch; plus the span's median and the SM-consecutive duration correlation of the
    slow class's first two CTAs."""
    fast = fast_sms(run)
    agg, spans, corr = {}, [], []
    for la in launches_of(run["cases"][name]):
        spans.append(max(e for v in la.values() for _, e in v))
        x, y = [], []
        for sm, v in la.items():
            cls = "F" if sm in fast else "S"
            for k, (a, b) in enumerate(v):
                agg.setdefault((cls, k, len(v)), []).append((a, b))
            if cls == "S" and len(v) > 2:
                x.append(v[0][1] - v[0][0])
                y.append(v[1][1] - v[1][0])
        if len(x) > 2:
            mx, my, sx, sy = statistics.mean(x), statistics.mean(y), statistics.pstdev(x), statistics.pstdev(y)
            corr.append(sum((a - mx) * (b - my) for a, b in zip(x, y)) / len(x) / sx / sy)
    rows = {f"{c}{k}/{n}": dict(n=len(v), start=statistics.median(a for a, _ in v), end=statistics.median(b for _, b in v),
                               end_min=min(b for _, b in v), end_max=max(b for _, b in v))
            for (c, k, n), v in sorted(agg.items())}
    return dict(span=statistics.median(spans), classes=rows, corr01=statistics.median(corr) if corr else None)


def analyse(run: dict) -> None:
    fast = fast_sms(run)
    print(f"fast SMs ({len(fast)}): {sorted(fast)}")
    print("one-wave CV of the slow GPCs' CTA durations:", {k: round(v, 4) for k, v in one_wave_cv(run).items()})
    for name, c in run["cases"].items():
        w = waves(run, name)
        print(f"== {name}: span median {w['span']:.2f} us, corr(first, second CTA on an SM, slow GPCs) "
              f"{w['corr01'] if w['corr01'] is None else round(w['corr01'], 2)}")
        for k, v in w["classes"].items():
            print(f"   {k:6s} n {v['n']:5d} start {v['start']:7.2f} end {v['end']:7.2f} (min {v['end_min']:7.2f} "
                  f"max {v['end_max']:7.2f})")


def check(run: dict, pred: dict) -> None:
    print("| case | period us (pred, err) | gap us (pred) | span us (pred) | first-wave end median us (pred) | "
          "traced / plain |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in run["cases"].items():
        pr = pred["cases"][name]
        per = statistics.median(r["plain_period_us"])
        spans = [d["span_us"] for sm in r["summary"] for d in sm]
        gaps = [d["gap_us"] for sm in r["summary"] for d in sm if d["gap_us"] is not None]
        fw = [d["first_wave_end_us"][1] for sm in r["summary"] for d in sm]
        print(f"| {name} | {per:.2f} ({pr['period_us']:.2f}, {(pr['period_us'] - per) / per:+.1%}) | "
              f"{statistics.median(gaps):.2f} ({pr['gap_us']:.2f}) | {statistics.median(spans):.2f} "
              f"({pr['span_us']:.2f}) | {statistics.median(fw):.2f} ({pr['first_wave_end_us']}) | "
              f"{statistics.median(r['traced_period_us']) / per:.3f} |")
        if "cudnn_period_us" in r:
            cu = statistics.median(r["cudnn_period_us"])
            dp = statistics.median(r["default_period_us"])
            print(f"|   cuDNN {cu:.2f} us; default {dp:.2f} ({cu / dp:.3f}x) | | | | | |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--rotate-mb", type=float, default=400.0)
    ap.add_argument("--min-copies", type=int, default=4)
    ap.add_argument("--snapshots", type=int, default=3)
    ap.add_argument("--rep-ms", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=90)
    ap.add_argument("--predict", help="write the graph form's predictions of --cases to this file (no GPU)")
    ap.add_argument("--check", help="a run's JSON: compare with --pred")
    ap.add_argument("--pred")
    a = ap.parse_args(argv)
    if a.predict:
        from memsim.io import base_provenance, write_json
        names = [n for n in a.cases.split(",") if n]
        write_json(a.predict, dict(provenance=base_provenance("python benchmarks/decode_fixed_gpu.py " +
                                                               " ".join(argv or sys.argv[1:])), cases=predict(names)))
        print(json.dumps(predict(names), indent=1))
        return 0
    if a.check:
        run = load_run(a.check)
        if a.pred:
            with open(a.pred) as f:
                check(run, json.load(f))
        analyse(run)
        return 0
    return main_gpu(a)


if __name__ == "__main__":
    sys.exit(main())
