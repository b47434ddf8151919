"""The validation report: stored measurements + memsim predictions -> report.md, plots, JSON.

`build_report(records, predict, out_dir)` needs no GPU: `predict(case) -> dict` is
memsim.simulate(...).to_dict() in normal use (`memsim_predictor`) and a fake in tests.
Plots (matplotlib, Agg):
  fig2_left.png   the 2022 paper's Figure 2 left: naive vs flash on GPT-2 medium, fwd+bwd --
                  FLOPs, global GB, DRAM GB, runtime; measured and predicted side by side
  block_sweep.png Figure 2 middle: flash1 forward, K/V block size sweep -- global GB and runtime
  scatter.png     predicted vs measured per level, log-log, identity line and target band
  grid_order.png  Q-blocks-fastest vs heads-fastest (N=16384, B*H=32, d=64): DRAM, L2, time
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from memsim.io import write_atomic, write_json

from . import compare as C
from .suite import SUITE, case_from_record


def memsim_predictor(hw_override: str | None = None, **options):
    """predict(case) with memsim (imports simpy)."""
    import memsim
    cache = {}

    def predict(case):
        name = hw_override or case.hardware
        if name not in cache:
            cache[name] = memsim.load_hardware(name)
        return memsim.simulate(case.problem, case.schedule, cache[name], **options).to_dict()
    return predict


def _nominal_flops(case) -> float:
    return case.problem.nominal_flops(case.schedule.phase)


PLOTS = ("fig2_left", "block_sweep", "scatter", "grid_order")
OUTPUTS = ("report.md", "comparison.json")


def check_out_dir(out_dir, overwrite: bool) -> Path:
    """The report folder, or OutputExistsError / NotADirectoryError before anything is computed:
    --out must be a folder (or not exist yet) and must not hold a report unless overwrite."""
    from memsim.io import OutputExistsError
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; the report needs a folder (report.md, *.png, "
                                 f"comparison.json go in it)")
    if not overwrite:
        old = [out / n for n in OUTPUTS if (out / n).exists()]
        if old:
            raise OutputExistsError(f"{old[0]} already exists; pass --force to replace the report in {out}, "
                                    f"or choose another --out")
    return out


def build_report(records: list[dict], predict, out_dir, *, levels=None, title_hw: str = "", overwrite=True,
                 progress=None, command: str = "") -> dict:
    """Compare every record with its prediction; write report.md, comparison.json and PNGs (each
    atomically; a plot not drawn this time is removed, so no stale figure sits beside the report).
    Refuses (OutputExistsError) to replace an existing report unless `overwrite`."""
    levels = levels or C.load_tolerances()
    out = check_out_dir(out_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    pairs, preds, cases, errors = [], {}, {}, {}
    for i, rec in enumerate(records, 1):
        case = case_from_record(rec)
        cases[case.name] = case
        t0 = time.time()
        try:
            pred = predict(case)
        except Exception as e:
            errors[case.name] = f"{type(e).__name__}: {e}"
            pred = {}
        preds[case.name] = pred
        pairs.append((case.name, rec, pred))
        if progress:
            progress(f"[predict {i}/{len(records)}] {case.name} ({time.time() - t0:.1f} s)"
                     + (f" ERROR {errors[case.name]}" if case.name in errors else ""))
    rows = C.compare_records(pairs, levels)
    summ = C.summarise(rows, levels)
    by_rec = {r["case"]: r for r in records}
    launches = {c: C.compare_launches(by_rec[c], preds[c], levels) for c in by_rec if preds.get(c)}
    plots = {}
    for name, fn in zip(PLOTS, (plot_fig2_left, plot_block_sweep, plot_scatter, plot_grid_order)):
        try:
            path = fn(records, preds, cases, levels, out / f"{name}.png")
        except Exception as e:  # a plot must not sink the report
            path = None
            errors[f"plot {name}"] = f"{type(e).__name__}: {e}"
        if path is None and (out / f"{name}.png").exists():
            (out / f"{name}.png").unlink()  # stale: the report says "not drawn"
        plots[name] = path
    doc = {
        "hardware": title_hw or (records[0].get("hardware") if records else ""),
        "summary": {k: s.to_dict() for k, s in summ.items()},
        "rows": [r.to_dict() for r in rows],
        "launches": launches,
        "errors": errors,
        "measured_provenance": records[0].get("provenance") if records else {},
        "report_command": command,
        "not_measured": [c.name for c in SUITE if c.name not in by_rec],
    }
    write_json(out / "comparison.json", doc, overwrite=overwrite)
    write_atomic(out / "report.md", render_markdown(doc, records, rows, summ, plots, levels), overwrite=overwrite)
    return doc


# --- markdown -----------------------------------------------------------------------------
def render_markdown(doc, records, rows, summ, plots, levels) -> str:
    prov = doc["measured_provenance"] or {}
    L = [f"# Validation report: memsim vs {prov.get('gpu') or 'the GPU'} ({doc['hardware']} preset)", ""]
    L += [f"Measured on **{prov.get('gpu', '?')}** on {prov.get('date', '?')} (driver {prov.get('driver', '?')}, "
          f"CUDA {prov.get('cuda', '?')}, torch {prov.get('torch', '?')}, triton {prov.get('triton', '?')}, "
          f"Nsight Compute {prov.get('ncu', '?')}, git {prov.get('git_commit', '?')}).",
          f"Measurement command: `{prov.get('command', '?')}`.",
          f"Report command: `{doc.get('report_command') or '?'}`. {len(records)} case(s); "
          f"error = predicted / measured - 1 on each case's total.", ""]
    L += ["## Summary per level", "", "```"] + [s.line() for s in summ.values()] + ["```", ""]
    L += ["| level | what | target | ceiling (CI) | median abs err | worst abs err | worst case | status |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in summ.items():
        lv = levels[name]
        if s.n_compared:
            status = "meets target" if s.meets_target else (
                "misses target" + ("" if s.within_ceiling is None else
                                   (" (within ceiling)" if s.within_ceiling else " (**over ceiling**)")))
            L.append(f"| {name} | {lv.what} | {lv.target:.0%} | "
                     f"{'unset' if lv.ceiling is None else f'{lv.ceiling:.1%}'} | {s.median_abs_error:.1%} | "
                     f"{s.worst_abs_error:.1%} | {s.worst_case} | {status} |")
        else:
            L.append(f"| {name} | {lv.what} | {lv.target:.0%} | - | - | - | - | no comparable case |")
    L.append("")
    if doc["errors"]:
        L += ["## Errors", ""] + [f"- `{k}`: {v}" for k, v in doc["errors"].items()] + [""]
    titles = {"fig2_left": "(a) Figure 2 left: naive vs flash, GPT-2 medium (B=64, H=16, N=1024, d=64), fwd+bwd",
              "block_sweep": "(b) Figure 2 middle: flash1 forward, K/V block size sweep (GPT-2 medium shape)",
              "scatter": "(c) Predicted vs measured, every case, per level",
              "grid_order": "(d) Grid order: Q blocks fastest vs heads fastest (N=16384, B*H=32, d=64, flash2 fwd)"}
    L += ["## Plots", ""]
    for k, t in titles.items():
        L.append(f"### {t}")
        L.append("")
        L.append(f"![{k}]({Path(plots[k]).name})" if plots.get(k) else "_not drawn: the cases it needs were not "
                                                                       "measured or predicted_")
        L.append("")
    L += ["## Per case and level", ""]
    for name in levels:
        L += [f"### {name}", "", "| case | measured | predicted | ratio | error | status |",
              "| --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            if r.level != name:
                continue
            ratio = "-" if r.ratio is None else ("inf" if math.isinf(r.ratio) else f"{r.ratio:.3f}")
            st = r.status if r.status in ("ok", "below floor", "missing") else f"**{r.status}**"
            L.append(f"| {r.case} | {C.fmt_value(name, r.measured)} | {C.fmt_value(name, r.predicted)} | {ratio} | "
                     f"{C.fmt_err(r.error)} | {st} |")
        L.append("")
    if doc["not_measured"]:
        L += ["## Suite cases without a measurement", "", ", ".join(doc["not_measured"]), ""]
    L += ["## How to read this", "",
          "- `global` = l1tex LSU global loads+stores (+TMA bulk copies) = the paper's HBM accesses; "
          "`l2` = L2 sectors requested by the SMs x 32 B; `dram` = L2<->DRAM. Counters from Nsight Compute with "
          "caches flushed before each kernel (`--cache-control all`) and clocks unlocked.",
          "- `dram_write` under-counts: ncu flushes before, not after, a kernel, so outputs still dirty in L2 at "
          "the end are never counted (DESIGN.md).",
          "- `time` is the pass's time without the profiler: the median of repeated runs with the L2 cleared "
          "before each (triton.testing.do_bench) or, where larger, the time per pass run back to back (a pass "
          "the host launches slower than the GPU runs it; records before 2026-11-27 have the first alone); "
          "per-launch ncu durations are in comparison.json.",
          "- Rebuild without a GPU: `python -m verification report --hw <preset> --data verification/data/<gpu> "
          "--out <dir>`.", ""]
    return "\n".join(L)


# --- plots --------------------------------------------------------------------------------
def _plt():
    """plt-like figure maker without pyplot: never switches the caller's matplotlib backend."""
    from matplotlib.figure import Figure

    class _Figures:
        subplots = staticmethod(lambda *a, figsize=None, **kw: (lambda f: (f, f.subplots(*a, **kw)))(Figure(figsize=figsize)))
        close = staticmethod(lambda fig: None)
    return _Figures


def _save(fig, path) -> str:
    """Lay out and write the figure atomically (a half-written PNG never replaces a good one)."""
    import io
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(path, buf.getvalue(), overwrite=True)
    return str(path)


def _tot(d, keys):
    src = (d or {}).get("total") or {}
    vals = [src.get(k) for k in keys]
    return None if any(v is None for v in vals) else float(sum(vals))


GLOBAL = ("global_read_bytes", "global_write_bytes")
DRAM = ("dram_read_bytes", "dram_write_bytes")


def _bars(ax, labels, series: dict, ylabel, title):
    import numpy as np
    x = np.arange(len(labels))
    w = 0.8 / max(1, len(series))
    for i, (name, vals) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * w, [v if v is not None else 0 for v in vals], w, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def plot_fig2_left(records, preds, cases, levels, path):
    by = {r["case"]: r for r in records}
    groups = {"naive": ("gpt2m_naive_fwd", "gpt2m_naive_bwd"), "flash2": ("gpt2m_flash2_fwd", "gpt2m_flash2_bwd")}
    if not all(c in by for g in groups.values() for c in g):
        return None
    plt = _plt()
    fig, axs = plt.subplots(1, 4, figsize=(15, 3.8))
    labels = list(groups)

    def s(src, keys, scale):
        out = []
        for g in groups.values():
            vals = [_tot(src(c), keys) for c in g]
            out.append(None if any(v is None for v in vals) else sum(vals) * scale)
        return out

    flops_nom = [sum(_nominal_flops(cases[c]) for c in g) / 1e9 for g in groups.values()]
    flops_pred = s(lambda c: preds.get(c), ("flops",), 1e-9)
    _bars(axs[0], labels, {"nominal (4BHN²d, x3.5)": flops_nom, "predicted (memsim)": flops_pred}, "GFLOP",
          "FLOPs")
    _bars(axs[1], labels, {"measured": s(lambda c: by[c], GLOBAL, 1e-9), "predicted": s(lambda c: preds.get(c), GLOBAL,
                                                                                         1e-9)},
          "GB", "global (HBM accesses) GB")
    _bars(axs[2], labels, {"measured": s(lambda c: by[c], DRAM, 1e-9), "predicted": s(lambda c: preds.get(c), DRAM,
                                                                                       1e-9)},
          "GB", "DRAM read+write GB")
    _bars(axs[3], labels, {"measured": s(lambda c: by[c], ("time_s",), 1e3),
                           "predicted": s(lambda c: preds.get(c), ("time_s",), 1e3)}, "ms", "runtime (fwd+bwd)")
    for ax in axs:
        ax.legend(fontsize=7)
    fig.suptitle("GPT-2 medium attention (B=64, H=16, N=1024, d=64, fp16), forward + backward")
    return _save(fig, path)


def plot_block_sweep(records, preds, cases, levels, path):
    pts = sorted((cases[r["case"]].schedule.block_n, r["case"]) for r in records if "block_sweep" in
                 cases[r["case"]].tags)
    if len(pts) < 2:
        return None
    by = {r["case"]: r for r in records}
    plt = _plt()
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [p[0] for p in pts]
    for ax, keys, scale, lab in ((axs[0], GLOBAL, 1e-9, "global GB"), (axs[1], ("time_s",), 1e3, "runtime ms")):
        m = [_tot(by[c], keys) for _, c in pts]
        p = [_tot(preds.get(c), keys) for _, c in pts]
        ax.plot(xs, [v * scale if v is not None else float("nan") for v in m], "o-", label="measured")
        ax.plot(xs, [v * scale if v is not None else float("nan") for v in p], "s--", label="predicted")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.set_xlabel("K/V block size (block_n)")
        ax.set_ylabel(lab)
        ax.legend(fontsize=8)
    fig.suptitle("flash1 forward block-size sweep (B=64, H=16, N=1024, d=64, block_m=64)")
    return _save(fig, path)


def plot_scatter(records, preds, cases, levels, path):
    plt = _plt()
    names = list(levels)
    ncol = 3
    nrow = -(-len(names) // ncol)
    fig, axs = plt.subplots(nrow, ncol, figsize=(4.5 * ncol, 4.2 * nrow))
    axs = list(getattr(axs, "flat", [axs]))
    for ax in axs[len(names):]:
        ax.axis("off")
    drawn = 0
    for ax, name in zip(axs, names):
        lv = levels[name]
        xs, ys, algs = [], [], []
        for r in records:
            m, p = C.level_value(r, lv, measured=True), C.level_value(preds.get(r["case"]) or {}, lv)
            if m and p and m > 0 and p > 0:
                xs.append(m)
                ys.append(p)
                algs.append(r["schedule"]["algorithm"] + " " + r["schedule"]["phase"])
        ax.set_title(f"{name} (target ±{lv.target:.0%})", fontsize=10)
        if not xs:
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
            continue
        drawn += 1
        lo, hi = min(xs + ys) / 1.5, max(xs + ys) * 1.5
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="identity")
        ax.fill_between([lo, hi], [lo * (1 - lv.target), hi * (1 - lv.target)],
                        [lo * (1 + lv.target), hi * (1 + lv.target)], color="0.85", label="target band")
        for g in sorted(set(algs)):
            ax.scatter([x for x, a in zip(xs, algs) if a == g], [y for y, a in zip(ys, algs) if a == g], s=14,
                       zorder=3, label=g)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        unit = "s" if name == "time" else "bytes"
        ax.set_xlabel(f"measured ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
        ax.legend(fontsize=7)
    if not drawn:
        plt.close(fig)
        return None
    return _save(fig, path)


def plot_grid_order(records, preds, cases, levels, path):
    order = [r["case"] for r in records if "grid_order" in cases[r["case"]].tags]
    if len(order) < 2:
        return None
    order.sort(key=lambda c: cases[c].schedule.grid_order != "q_fastest")
    by = {r["case"]: r for r in records}
    labels = [cases[c].schedule.grid_order for c in order]
    plt = _plt()
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, keys, scale, lab in ((axs[0], ("dram_read_bytes",), 1e-9, "DRAM read GB"),
                                 (axs[1], ("l2_read_bytes",), 1e-9, "L2 read GB"),
                                 (axs[2], ("time_s",), 1e3, "runtime ms")):
        m = [_tot(by[c], keys) for c in order]
        p = [_tot(preds.get(c), keys) for c in order]
        _bars(ax, labels, {"measured": [None if v is None else v * scale for v in m],
                           "predicted": [None if v is None else v * scale for v in p]}, lab, lab)
        ax.legend(fontsize=8)
    fig.suptitle("flash2 forward, N=16384, B*H=32, d=64, 128x64 tiles: grid order")
    return _save(fig, path)
