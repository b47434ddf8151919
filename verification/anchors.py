"""memsim against the H100 ncu fixtures (tests/fixtures/ncu/), before the suite is measured.

The fixtures are real Nsight Compute counters of a 25-line Triton flash forward (the
"probe", fp16, d=64, 8 warps) -- not our kernels, but the same loop order and tiles as
flash2 fwd with the same schedule, so the byte contract says they move the same bytes.
This is a preliminary check of the model on real hardware; the fidelity test uses the
suite's own measurements (verification/data/).  Time is ncu's gpu__time_duration (caches
flushed, one launch), not a median of repeats.
"""
from __future__ import annotations

from pathlib import Path

from memsim.schedule import AttentionProblem, Schedule

from . import ncu as N

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ncu"

#: fixture file -> (problem, schedule, note)
ANCHORS = {
    "n_rowfast_4096.csv": (AttentionProblem(4, 16, 16, 4096, 4096, 64), Schedule("flash2", "fwd", 128, 64, 8, 2),
                           "Q blocks fastest"),
    "n_cg_4096.csv": (AttentionProblem(4, 16, 16, 4096, 4096, 64), Schedule("flash2", "fwd", 128, 64, 8, 2),
                      "K/V loads bypass L1 (.cg)"),
    "n_rowfast_16384.csv": (AttentionProblem(1, 32, 32, 16384, 16384, 64), Schedule("flash2", "fwd", 128, 64, 8, 2),
                            "Q blocks fastest"),
    "n_headfast_16384.csv": (AttentionProblem(1, 32, 32, 16384, 16384, 64),
                             Schedule("flash2", "fwd", 128, 64, 8, 2, "heads_fastest"), "heads fastest"),
    "ncu_probe128x128.csv": (AttentionProblem(4, 16, 16, 4096, 4096, 64), Schedule("flash2", "fwd", 128, 128, 8, 2),
                             "128x128 tiles"),
}

QUANTITIES = (  # (label, measured metric(s) -> value, predicted keys)
    ("global (l1tex t-stage)", lambda m: m.get("l1tex__t_bytes.sum"), ("global_read_bytes", "global_write_bytes")),
    ("L2 read (srcunit tex)", lambda m: None if m.get("lts__t_sectors_srcunit_tex_op_read.sum") is None
     else 32 * m["lts__t_sectors_srcunit_tex_op_read.sum"], ("l2_read_bytes",)),
    ("DRAM read", lambda m: m.get("dram__bytes_read.sum"), ("dram_read_bytes",)),
    ("DRAM write", lambda m: m.get("dram__bytes_write.sum"), ("dram_write_bytes",)),
    ("time", lambda m: m.get("gpu__time_duration.sum"), ("time_s",)),
)


def compare_anchors(predict) -> list[dict]:
    """predict(problem, schedule) -> SimResult.to_dict()-like; one row per fixture and quantity."""
    rows = []
    for fname, (prob, sched, note) in ANCHORS.items():
        (row,) = N.parse_csv((FIXTURES / fname).read_text())
        pred = predict(prob, sched)
        tot = pred.get("total") or {}
        for label, meas_fn, keys in QUANTITIES:
            m = meas_fn(row.metrics)
            vals = [tot.get(k) for k in keys]
            p = None if any(v is None for v in vals) else float(sum(vals))
            rows.append({"fixture": fname, "note": note, "quantity": label, "measured": m, "predicted": p,
                         "error": (p / m - 1) if (m and p is not None) else None})
    return rows


def to_markdown(rows) -> str:
    L = ["# memsim vs the H100 ncu fixtures (Triton probe kernel)", "", __doc__.strip(), "",
         "| fixture | case | quantity | measured | predicted | error |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        unit = (lambda v: f"{v * 1e3:.3f} ms") if r["quantity"] == "time" else (lambda v: f"{v / 1e9:.4g} GB")
        L.append(f"| {r['fixture']} | {r['note']} | {r['quantity']} | "
                 f"{'-' if r['measured'] is None else unit(r['measured'])} | "
                 f"{'-' if r['predicted'] is None else unit(r['predicted'])} | "
                 f"{'-' if r['error'] is None else format(r['error'], '+.1%')} |")
    return "\n".join(L) + "\n"
