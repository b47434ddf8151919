"""Decode cases in the verification flow (issue 12 item 4): the committed decode data as named sets, the decode
report with the figure "achieved DRAM bandwidth vs context length, predicted and measured", and the fidelity
tables of every set (frozen predictions where the set was held out).

    python -m verification decode [--sets NAME ...] [--out reports/h100-sxm/decode/verification [--force]] [--json]
    python -m verification decode --list
    python -m verification fidelity --data <random-set folders> --decode committed     # the headline, decode beside

`COMMITTED` names every measured decode set in the repository (card, role, data file, frozen predictions).  A
held-out set is compared twice: with the predictions frozen (committed) before it was measured -- the held-out
claim -- and with the model now (development data since).  Errors follow the attention random sets' definition:
|predicted - measured| / max(measured, 1 MB or 5 us) (`verification.report_decode.error`); time is ncu's kernel
time (split + combine), predicted as `simulate_decode`'s GPU time.

The figure: per case, DRAM bytes (read + write) per second of kernel time against the mean cached tokens per
sequence (the context length), measured (ncu `dram__bytes_read.sum + dram__bytes_write.sum` over
`gpu__time_duration.sum`) and predicted (the model's DRAM bytes over its time), one marker per set, a grey line
from each measured point to its prediction.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from memsim.io import OutputExistsError, write_atomic

from . import report_decode as RD
from . import suite_decode as SD

ROOT = Path(__file__).resolve().parents[1]
H100 = "verification/data/nvidia-h100-80gb-hbm3/decode"
REPORTS = "reports/h100-sxm/decode"
DEFAULT_OUT = f"{REPORTS}/verification"
#: the files the decode report writes
OUT_FILES = ("report.md", "fidelity.md", "bandwidth_context.png", "rows.json")


@dataclass(frozen=True)
class DecodeSet:
    """One committed decode set: ncu records of the cases (`data`), frozen predictions if it was held out."""

    name: str
    role: str          # "suite" (the fixed cases), "development" (random, used while developing), "held-out"
    data: str          # decode_ncu.json, relative to the repository root
    frozen: str | None = None
    frozen_note: str = ""

    def path(self) -> Path:
        return ROOT / self.data

    def frozen_path(self) -> Path | None:
        return None if self.frozen is None else ROOT / self.frozen


#: every measured decode set in the repository (NVIDIA H100 80GB HBM3, ncu 2025.3.1, default cache control,
#: --clock-control none), in the order they were measured
COMMITTED = (
    DecodeSet("suite-run2", "suite", "benchmarks/results/decode-h100-run2-ncu.json"),
    DecodeSet("seed1", "development", f"{H100}/random-seed1-2026-11-25/decode_ncu.json"),
    DecodeSet("seed1126", "held-out", f"{H100}/random-seed1126-2026-11-26/decode_ncu.json",
              f"{REPORTS}/seed1126/predictions.json", "frozen at 3390314, measured 2026-11-26"),
    DecodeSet("seed112602", "held-out", f"{H100}/random-seed112602-2026-11-26/decode_ncu.json",
              f"{REPORTS}/seed112602/predictions.json", "frozen at 098de47, measured 2026-11-26 03:22 UTC"),
    DecodeSet("seed261126", "held-out", f"{REPORTS}/seed261126/measured/decode_ncu.json",
              f"{REPORTS}/seed261126/predictions.json", "frozen at fa7f961, measured 2026-11-26 06:25 UTC"),
    DecodeSet("seed11260807", "held-out", f"{H100}/random-seed11260807-2026-11-26/decode_ncu.json",
              f"{REPORTS}/seed11260807/predictions.json", "frozen at d4e0544, measured 2026-11-26 08:40 UTC"),
    DecodeSet("seed11260935", "held-out", f"{H100}/random-seed11260935-2026-11-26/decode_ncu.json",
              f"{REPORTS}/seed11260935/predictions.json", "frozen at 07f2528, measured 2026-11-26 09:54 UTC"),
    DecodeSet("seed11261138", "held-out", f"{H100}/random-seed11261138-2026-11-26/decode_ncu.json",
              f"{REPORTS}/seed11261138/predictions.json", "frozen at c79ddb4, measured 2026-11-26 11:42 UTC"),
    DecodeSet("seed11261455", "held-out", f"{H100}/random-seed11261455-2026-11-26/decode_ncu.json",
              f"{REPORTS}/seed11261455/predictions.json",
              "frozen at 5eff7ad (the session-10 kernel), measured 2026-11-26 15:00 UTC"),
)


class DecodeSetError(ValueError):
    """An unknown set name or a committed file that is missing or not what it should be."""


def select(names=None) -> list:
    """The committed sets named (all when None), in COMMITTED order; unknown names are refused."""
    known = {s.name: s for s in COMMITTED}
    if not names:
        return list(COMMITTED)
    bad = [n for n in names if n not in known]
    if bad:
        raise DecodeSetError(f"unknown decode set(s) {bad}; committed: {', '.join(known)}")
    return [s for s in COMMITTED if s.name in set(names)]


def committed_specs(frozen: bool = True) -> list:
    """`report_decode.fidelity_sets` specs of every committed set: FILE@FROZEN for the held-out ones (with
    `frozen`), and FILE (the model now) for all."""
    out = []
    for s in COMMITTED:
        if frozen and s.frozen:
            out.append(f"{s.path()}@{s.frozen_path()}")
        out.append(str(s.path()))
    return out


def context_tokens(problem) -> float:
    """The context length of a decode case: cached tokens per sequence, averaged over the batch."""
    return sum(problem.seqlens_kv) / len(problem.seqlens_kv)


def set_rows(s: DecodeSet, frozen: bool) -> list:
    """Rows of one set (report_decode.rows_for: every level's (predicted, measured, signed error)), each with the
    set, the case's context length and the measured and predicted DRAM bandwidth; calibration cases left out."""
    path = s.path()
    if not path.is_file():
        raise DecodeSetError(f"decode set {s.name}: {s.data} is missing")
    preds = None
    if frozen:
        if not s.frozen:
            raise DecodeSetError(f"decode set {s.name} was not held out: it has no frozen predictions")
        preds = RD.load_predictions(s.frozen_path())
    try:
        recs = {r["case"]: r for r in json.loads(path.read_text())["records"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DecodeSetError(f"decode set {s.name}: {s.data} is not a decode_ncu.json ({e})") from None
    rows = []
    for r in RD.rows_for([str(path)], preds):
        if r.get("calibration"):
            continue
        c = SD.case_from_record(recs[r["case"]])
        (pd, md, _), (pt, mt, _) = r["dram_bytes"], r["time_s"]
        r.update(set=s.name, role=s.role, frozen=frozen, context_tokens=context_tokens(c.problem),
                 dram_Bps_measured=(md / mt) if md is not None and mt else None,
                 dram_Bps_predicted=(pd / pt) if pt else None)
        rows.append(r)
    return rows


def provenance(sets) -> list:
    """[(set, gpu, date)] from the records' provenance (the card each set was measured on)."""
    out = []
    for s in sets:
        doc = json.loads(s.path().read_text())
        prov = doc.get("provenance") or (doc["records"][0].get("provenance") if doc.get("records") else {}) or {}
        out.append((s.name, prov.get("gpu", "?"), prov.get("date", "?")))
    return out


def within(rows, level: str, limit: float) -> int:
    return sum(1 for r in rows if r[level][1] is not None and RD.error(r[level][0], r[level][1], level) <= limit)


def summary_rows(sets, live: dict, frozen: dict) -> list:
    """One line per set: time and DRAM-bytes median / worst (model now and frozen), cases within 10 % / 5 %."""
    out = []
    for s in sets:
        line = {"set": s.name, "role": s.role, "data": s.data, "frozen": s.frozen, "frozen_note": s.frozen_note}
        for tag, rows in (("now", live.get(s.name)), ("frozen", frozen.get(s.name))):
            if not rows:
                continue
            summ = RD.summary(rows)
            for lv in ("time_s", "dram_bytes"):
                if lv in summ:
                    line[f"{tag}_{lv}"] = {"median": summ[lv]["median"], "worst": summ[lv]["worst"],
                                           "worst_case": summ[lv]["worst_case"], "n": summ[lv]["n"],
                                           "within": within(rows, lv, 0.10 if lv == "time_s" else 0.05)}
        out.append(line)
    return out


def bandwidth_context_figure(rows, ceiling_Bps: float | None = None):
    """Achieved DRAM bandwidth (read + write per second of kernel time) against the context length, measured and
    predicted, one marker shape per set; a grey line joins each case's two points."""
    from memsim.plots import _new_figure
    fig, (ax,) = _new_figure(1, 7.2, 4.4)
    names = list(dict.fromkeys(r["set"] for r in rows))
    marks = "os^vD<>p"
    for i, n in enumerate(names):
        rs = [r for r in rows if r["set"] == n and r["dram_Bps_measured"] is not None]
        xs = [max(r["context_tokens"], 1.0) for r in rs]
        m = [r["dram_Bps_measured"] / 1e12 for r in rs]
        p = [r["dram_Bps_predicted"] / 1e12 for r in rs]
        for x, a, b in zip(xs, m, p):
            ax.plot([x, x], [a, b], color="0.8", lw=0.7, zorder=0)
        ax.scatter(xs, m, marker=marks[i % len(marks)], color="tab:blue", s=18, label=f"{n} measured")
        ax.scatter(xs, p, marker=marks[i % len(marks)], facecolors="none", edgecolors="tab:orange", s=18,
                   label=f"{n} predicted")
    if ceiling_Bps:
        ax.axhline(ceiling_Bps / 1e12, color="0.4", ls="--", lw=0.8, label="DRAM rate of the model (dram_stream peak)")
    ax.set_xscale("log")
    ax.set_xlabel("context length (cached tokens per sequence, batch mean)")
    ax.set_ylabel("DRAM bytes / kernel time (TB/s)")
    ax.set_title("decode: achieved DRAM bandwidth vs context length (model now vs ncu)")
    ax.legend(loc="upper left", fontsize=6, ncol=2)
    return fig


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def markdown(summ: list, prov: list, command: str, hw: str) -> str:
    cards = {g for _, g, _ in prov}
    lines = ["# Decode cases in the verification flow (issue 12)", "",
             f"Every committed decode set (cards: {', '.join(sorted(cards))}; per set below), predicted by "
             f"`memsim.workloads_decode.simulate_decode` on the `{hw}` preset (L2 flushed before each kernel, as ncu "
             "does). Error = |predicted - measured| / max(measured, 1 MB or 5 us); time = ncu kernel time (split + "
             "combine). A held-out set's **frozen** columns are the held-out claim (predictions committed before it "
             "was measured); its *now* columns are the model today, for which it is development data. "
             f"Command: `{command}`.", "",
             "| set | role | time now: median / worst | within 10 % | time frozen: median / worst | within 10 % | "
             "DRAM bytes now: median / worst | within 5 % | frozen predictions |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summ:
        nt, ft, nd = s.get("now_time_s"), s.get("frozen_time_s"), s.get("now_dram_bytes")
        lines.append(
            f"| {s['set']} | {s['role']} | "
            + (f"{_pct(nt['median'])} / {_pct(nt['worst'])} | {nt['within']}/{nt['n']}" if nt else "- | -") + " | "
            + (f"{_pct(ft['median'])} / {_pct(ft['worst'])} | {ft['within']}/{ft['n']}" if ft else "- | -") + " | "
            + (f"{_pct(nd['median'])} / {_pct(nd['worst'])} | {nd['within']}/{nd['n']}" if nd else "- | -") + " | "
            + (f"`{s['frozen']}` ({s['frozen_note']})" if s["frozen"] else "-") + " |")
    lines += ["", "![achieved DRAM bandwidth vs context length](bandwidth_context.png)", "",
              "Measured on: " + "; ".join(f"{n}: {g}, {d}" for n, g, d in prov) + ".", "",
              "Per level and per case: `fidelity.md` (the headline's format, one section per set) and `rows.json` "
              "(every case's predicted and measured values)."]
    return "\n".join(lines) + "\n"


def build(names=None, hw: str = "h100-sxm"):
    """(live rows, frozen rows, summary lines, fidelity sets, provenance) of the named committed sets."""
    sets = select(names)
    live = {s.name: set_rows(s, False) for s in sets}
    frozen = {s.name: set_rows(s, True) for s in sets if s.frozen}
    specs = []
    for s in sets:
        if s.frozen:
            specs.append(f"{s.path()}@{s.frozen_path()}")
        specs.append(str(s.path()))
    fsets = RD.fidelity_sets(specs)
    return live, frozen, summary_rows(sets, live, frozen), fsets, provenance(sets)


def write_report(out, names=None, *, force: bool = False, command: str = "", hw: str = "h100-sxm") -> dict:
    """Build the report of the named sets into folder `out` (OUT_FILES, each atomically; existing ones are
    replaced only with `force`); returns the JSON summary."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DecodeSetError(f"{out} is a file; --out takes a folder")
    for n in OUT_FILES:
        if (out / n).exists() and not force:
            raise DecodeSetError(f"{out / n} already exists; pass --force to replace it")
    live, frozen, summ, fsets, prov = build(names, hw)
    from memsim.hardware import load_hardware
    from memsim.inference import DeviceFacts
    from memsim.plots import png_bytes
    rows = [r for rs in live.values() for r in rs]
    fig = bandwidth_context_figure(rows, DeviceFacts.from_hardware(load_hardware(hw)).dram_Bps)
    out.mkdir(parents=True, exist_ok=True)
    js = {"command": command, "hardware": hw, "sets": summ, "provenance": prov,
          "rows": {"now": rows, "frozen": [r for rs in frozen.values() for r in rs]}}
    try:
        write_atomic(out / "report.md", markdown(summ, prov, command, hw), overwrite=force)
        write_atomic(out / "fidelity.md", RD.fidelity_markdown(fsets, command), overwrite=force)
        write_atomic(out / "bandwidth_context.png", png_bytes(fig), overwrite=force)
        write_atomic(out / "rows.json", json.dumps(js, indent=1), overwrite=force)
    except OutputExistsError as e:
        raise DecodeSetError(str(e)) from None
    return js


def headline(summ: list) -> list:
    """One printable line per set."""
    out = []
    for s in summ:
        parts = [f"{s['set']:14s} {s['role']:11s}"]
        for tag in ("now", "frozen"):
            t = s.get(f"{tag}_time_s")
            if t:
                parts.append(f"time {tag} {_pct(t['median'])} / {_pct(t['worst'])} ({t['within']}/{t['n']} within 10 %)")
        d = s.get("now_dram_bytes")
        if d:
            parts.append(f"DRAM bytes {_pct(d['median'])} / {_pct(d['worst'])}")
        out.append("  ".join(parts))
    return out
