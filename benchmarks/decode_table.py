"""Tables and the plot of a decode benchmark run (benchmarks/decode.py JSON), beside memsim's predictions.

    python benchmarks/decode_table.py benchmarks/results/decode-h100-run2.json [--ncu ..-ncu.json] \
        --md benchmarks/results/decode.md --png benchmarks/results/decode-bandwidth.png

Per shape: our kernel at the automatic split count (contiguous; paged 16 / 64 with the better of
page_prefetch off/on, both listed in the JSON), its best measured split count, SDPA cuDNN / flash,
FlexAttention; achieved KV read bandwidth and its fraction of the card's read rate measured in the same
run; speed ratios; the model's predicted time (memsim.workloads_decode, no L2 flush, CUDA-graph context) and split choice.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load(path):
    with open(path) as f:
        return json.load(f)


def summarize(data):
    """{(B, N): {...}} from the records."""
    from memsim.inference import DecodeProblem, DecodeSchedule
    from memsim.workloads_decode import simulate_decode
    read = data["provenance"]["card_read_Bps"]
    shapes = {}
    for r in data["records"]:
        if not r.get("ms") or r.get("timing") == "eager" or r.get("tune"):
            continue
        sh = shapes.setdefault((r["batch"], r["context"]), {"kv": r["kv_bytes"], "sweep": {}, "psweep": {}})
        key = r["impl"] + ("" if r["layout"] == "contiguous" else "_" + r["layout"])
        if r.get("s13_default"):  # (session 14: the session-13 default beside the default's own pick)
            sh[key + "_s13"] = (r["ms"], r["num_splits"])
            continue
        if r["impl"] == "decode" and r["layout"] == "contiguous":
            if r.get("auto"):
                sh["auto"] = (r["ms"], r["num_splits"])
                sh["auto_fused"] = bool(r.get("combine_fused"))  # (session 13: kernels.decode fuses at S <= 2)
                sh["auto_tile"] = (r.get("block_n", 64), r.get("split_d", 1))  # (session 14: split_d's tile)
            else:
                sh["sweep"][r["num_splits"]] = r["ms"]
        elif r["impl"] == "decode":
            if r.get("auto"):
                best = sh.get(key)
                if best is None or r["ms"] < best[0]:
                    sh[key] = (r["ms"], r["num_splits"], r.get("page_prefetch"))
            else:
                sh["psweep"].setdefault((r["layout"], r.get("page_prefetch")), {})[r["num_splits"]] = r["ms"]
        else:
            sh[key] = min(sh.get(key, 1e9), r["ms"])
    for (B, N), sh in shapes.items():
        p = DecodeProblem.uniform(B, 32, 8, 128, N)
        if "auto" in sh:
            # the graph context (CUDA-graph replay, as timed); rank_num_splits ranks in it too
            bn, sd = sh.get("auto_tile", (64, 1))
            pred = simulate_decode(p, DecodeSchedule(num_splits=sh["auto"][1], combine_fused=sh.get("auto_fused", False),
                                                     block_n=bn, split_d=sd),
                                   "h100-sxm", flush_l2=False, context="graph")
            sh["pred_ms"] = pred["total"]["gpu_time_s"] * 1e3
        if sh["sweep"]:
            from memsim.workloads_decode import rank_num_splits
            ranked = rank_num_splits(p, DecodeSchedule(), "h100-sxm", candidates=sorted(sh["sweep"]))
            sh["model_choice"] = ranked[0][0]
    return shapes, read


def markdown(data, shapes, read) -> str:
    prov = data["provenance"]
    tb = lambda kv, ms: kv / (ms * 1e-3) / 1e12  # noqa: E731
    lines = [f"# Decode on {prov['gpu']} ({prov['date']})", "",
             f"bf16, d=128, 32 query heads, 8 KV heads, one query token; KV read bandwidth = K+V bytes / time "
             f"(CUDA-graph replay medians). Card read rate measured in the same run: {read / 1e12:.2f} TB/s "
             f"({prov.get('card_read_method', '')}). torch {prov['torch']}, triton {prov['triton']}, CUDA "
             f"{prov['cuda']}, driver {prov.get('driver', '?')}. Command: `{prov['command']}`.", "",
             "| B x context (KV MB) | ours auto: TB/s (% of read), splits | ours best split | paged16 | paged64 | "
             "SDPA cuDNN | SDPA flash | Flex | ours / best SDPA | model: time err, split | auto / session-13 default |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (B, N), sh in sorted(shapes.items()):
        kv = sh["kv"]
        if "auto" not in sh:
            continue
        ms, S = sh["auto"]
        best_S = min(sh["sweep"], key=sh["sweep"].get) if sh["sweep"] else S
        cell = lambda k: f"{tb(kv, sh[k]):.2f}" if k in sh else "-"  # noqa: E731

        def paged(k):
            if k not in sh:
                return "-"
            pm, ps, pf = sh[k]
            return f"{tb(kv, pm):.2f} (S={ps}{', prefetch' if pf else ''}; {pm / ms - 1:+.0%})"
        sdpa = [sh[k] for k in ("sdpa_cudnn", "sdpa_flash", "sdpa_efficient") if k in sh]
        ratio = f"{min(sdpa) / ms:.2f}x" if sdpa else "-"
        model = "-"
        if "pred_ms" in sh:
            ch = sh.get("model_choice")
            model = f"{sh['pred_ms'] / ms - 1:+.0%}, S={ch} ({sh['sweep'][ch] / sh['sweep'][best_S] - 1:+.0%} vs best)" \
                if ch in sh["sweep"] else f"{sh['pred_ms'] / ms - 1:+.0%}"
        tile = sh.get("auto_tile", (64, 1))
        # the default's pick over the session-13 default's, where they differ (time ratio: < 1 faster)
        old = []
        for new_k, name in (("decode", "contiguous"), ("decode_paged16", "paged16"), ("decode_paged64", "paged64")):
            if new_k + "_s13" in sh:
                t_new = ms if new_k == "decode" else (sh[new_k][0] if new_k in sh else None)
                if t_new:
                    old.append(f"{name} {t_new / sh[new_k + '_s13'][0]:.3f}")
        lines.append(f"| {B} x {N // 1024}k ({kv / 1e6:.0f}) | {tb(kv, ms):.2f} ({kv / (ms * 1e-3) / read:.0%}), {S}"
                     f"{f' (bn{tile[0]}, split_d {tile[1]})' if tile[1] > 1 else ''} | "
                     f"{tb(kv, sh['sweep'][best_S]):.2f} (S={best_S}) | {paged('decode_paged16')} | "
                     f"{paged('decode_paged64')} | {cell('sdpa_cudnn')} | {cell('sdpa_flash')} | {cell('flex')} | "
                     f"{ratio} | {model} | {'; '.join(old) or '-'} |")
    return "\n".join(lines) + "\n"


def plot(shapes, read, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for B, color in ((1, "tab:blue"), (8, "tab:orange"), (64, "tab:green")):
        rows = sorted((N, sh) for (b, N), sh in shapes.items() if b == B and "auto" in sh)
        if not rows:
            continue
        xs = [N for N, _ in rows]
        ax.plot(xs, [sh["kv"] / (sh["auto"][0] * 1e-3) / 1e12 for _, sh in rows], "o-", color=color,
                label=f"B={B} measured (auto splits)")
        ax.plot(xs, [sh["kv"] / (sh["pred_ms"] * 1e-3) / 1e12 for _, sh in rows], "x--", color=color,
                label=f"B={B} predicted (memsim)")
        sd = [(N, sh["kv"] / (sh["sdpa_cudnn"] * 1e-3) / 1e12) for N, sh in rows if "sdpa_cudnn" in sh]
        if sd:
            ax.plot(*zip(*sd), ":", color=color, alpha=0.6, label=f"B={B} SDPA cuDNN")
    ax.axhline(read / 1e12, color="gray", lw=0.8)
    ax.text(1024, read / 1e12 * 1.01, "card read rate (same run)", fontsize=7, color="gray")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("KV read bandwidth (TB/s)")
    ax.set_title("Decode, H100, bf16, 32 q / 8 KV heads, d=128")
    ax.legend(fontsize=6.5, ncol=3, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench")
    ap.add_argument("--md", default=None)
    ap.add_argument("--png", default=None)
    a = ap.parse_args(argv)
    data = load(a.bench)
    shapes, read = summarize(data)
    md = markdown(data, shapes, read)
    print(md)
    if a.md:
        Path(a.md).write_text(md)
    if a.png:
        plot(shapes, read, a.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
