"""Headline model errors on random case sets, with the measurement noise beside them (issue 8).

    error = |predicted - median measured| / max(median measured, floor)

per case and level, on the case's total over its launches; floor = 1 MB for byte levels and 5 us for
time (so a 3 KB DRAM write predicted as 1 MB counts as a 100 % miss, not ×450).  The measured
median is over the case's repeats (separate ncu and timing processes); `spread` = (max - min) /
max(median, floor) over those repeats.  A prediction between the smallest and the largest repeat is
*inside the spread*: the card itself varies that much, and the report says so rather than hiding it.

Goals and CI ceilings per level live in ``verification/fidelity.toml``.  A ceiling is a regression
guard that must sit OUTSIDE the noise: ``ceiling = max(goal, max over cases of (error + that case's
measured spread))`` over the sets.  The goal is what the model is judged against; the report says
which levels meet it, on which cases they miss and by how much.  Stdlib only (the model is passed in
as `predict(case) -> SimResult.to_dict()`).
"""
from __future__ import annotations

import math
import statistics
import tomllib
from dataclasses import dataclass
from pathlib import Path

GOALS_FILE = Path(__file__).resolve().parent / "fidelity.toml"
MB = 1 << 20


class FidelityError(ValueError):
    pass


@dataclass(frozen=True)
class LevelGoal:
    name: str
    keys: tuple
    floor: float
    goal_median: float
    goal_worst: float
    ceiling_worst: float | None
    #: the measured record's keys where they are named otherwise than the prediction's (None: `keys`)
    measured_keys: tuple | None = None

    @property
    def measured(self) -> "LevelGoal":
        """This level as it reads a measured record."""
        if not self.measured_keys:
            return self
        from dataclasses import replace
        return replace(self, keys=self.measured_keys, measured_keys=None)


def load_goals(path=GOALS_FILE) -> dict[str, LevelGoal]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise FidelityError(f"{p}: cannot read the fidelity goals: {e}") from None
    out = {}
    for name, d in data.get("levels", {}).items():
        try:
            out[name] = LevelGoal(name, tuple(d["keys"]), float(d["floor"]), float(d["goal_median"]),
                                  float(d["goal_worst"]),
                                  None if d.get("ceiling_worst") is None else float(d["ceiling_worst"]),
                                  tuple(d["measured_keys"]) if d.get("measured_keys") else None)
        except (KeyError, TypeError, ValueError) as e:
            raise FidelityError(f"{p}: [levels.{name}] needs keys, floor, goal_median, goal_worst ({e})") from None
    if not out:
        raise FidelityError(f"{p}: no [levels.*] tables")
    return out


def _level_value(total: dict, level: LevelGoal) -> float | None:
    """The level's value in one total (compare.level_value: the sum of its keys, None if one is missing)."""
    from .compare import level_value
    return level_value({"total": total}, level)


@dataclass(frozen=True)
class CaseLevel:
    case: str
    level: str
    predicted: float
    measured: float          # median over repeats
    lo: float                # smallest repeat
    hi: float                # largest repeat
    n_repeats: int
    error: float             # |pred - measured| / max(measured, floor)
    spread: float            # (hi - lo) / max(measured, floor)
    signed: float            # (pred - measured) / max(measured, floor)

    @property
    def inside_spread(self) -> bool:
        return self.n_repeats >= 2 and self.lo <= self.predicted <= self.hi


def case_levels(name: str, rec: dict, pred: dict, goals: dict[str, LevelGoal]) -> list[CaseLevel]:
    """Every level of one case: prediction against the median and range of the measured repeats."""
    out = []
    reps = [r.get("total", {}) for r in rec.get("repeats", []) if isinstance(r, dict)]
    from .timing import record_time_s
    for lv in goals.values():
        m = _level_value(rec.get("total", {}), lv.measured)
        p = _level_value(pred.get("total", {}), lv)
        if m is None or p is None:
            continue
        rv = [v for v in (_level_value(t, lv.measured) for t in reps) if v is not None]
        if lv.keys == ("time_s",):  # the timing repeats, where the record keeps them
            ts = rec.get("timing", {}).get("time_s_repeats")
            if ts:
                rv = [float(t) for t in ts if isinstance(t, (int, float))]
            if "time_b2b_s" in rec.get("total", {}):
                # a record with both timings and the floor beside them: the pass's time by verification.timing
                # (records of 2026-11-27 06:09 stored max(cold, back to back) as time_s)
                m = record_time_s(rec["total"])
                rv = [v for v in (record_time_s(t) for t in reps if "time_b2b_s" in t) if v is not None] or [m]
        lo, hi = (min(rv), max(rv)) if rv else (m, m)
        den = max(m, lv.floor)
        out.append(CaseLevel(name, lv.name, p, m, lo, hi, len(rv), abs(p - m) / den, (hi - lo) / den, (p - m) / den))
    return out


@dataclass(frozen=True)
class LevelSummary:
    level: str
    n: int
    median_error: float
    worst_error: float
    worst_case: str
    worst_signed: float
    inside_spread: int
    max_spread: float
    median_spread: float
    goal_median: float
    goal_worst: float
    ceiling_worst: float | None
    #: max over cases of (error + that case's measured spread): how bad a re-measurement could look
    worst_plus_spread: float = 0.0

    @property
    def meets_goal(self) -> bool:
        return self.median_error <= self.goal_median and self.worst_error <= self.goal_worst

    @property
    def proposed_ceiling(self) -> float:
        """max(goal, max over cases of error + that case's spread): outside the noise, a regression guard."""
        return math.ceil(max(self.goal_worst, self.worst_plus_spread) * 1000 - 1e-9) / 1000


def summarise(rows: list[CaseLevel], goals: dict[str, LevelGoal]) -> dict[str, LevelSummary]:
    out = {}
    for name, lv in goals.items():
        rs = [r for r in rows if r.level == name]
        if not rs:
            continue
        w = max(rs, key=lambda r: r.error)
        out[name] = LevelSummary(name, len(rs), statistics.median(r.error for r in rs), w.error, w.case, w.signed,
                                 sum(r.inside_spread for r in rs), max(r.spread for r in rs),
                                 statistics.median(r.spread for r in rs), lv.goal_median, lv.goal_worst,
                                 lv.ceiling_worst, max(r.error + r.spread for r in rs))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def markdown(title: str, summ: dict[str, LevelSummary], rows: list[CaseLevel], *, worst_per_level: int = 5,
             note: str = "", bindings: dict | None = None) -> str:
    """A report section: the headline table, then each level's worst cases with their spread."""
    L = [f"## {title}", ""]
    if note:
        L += [note, ""]
    L += ["| level | cases | median error | worst error (case) | goal median / worst | meets goal | "
          "inside measured spread | median / max spread | CI ceiling |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summ.values():
        L.append(f"| {s.level} | {s.n} | {_pct(s.median_error)} | {_pct(s.worst_error)} ({s.worst_case}, "
                 f"{'+' if s.worst_signed >= 0 else '-'}) | {_pct(s.goal_median)} / {_pct(s.goal_worst)} | "
                 f"{'yes' if s.meets_goal else 'no'} | {s.inside_spread}/{s.n} | {_pct(s.median_spread)} / "
                 f"{_pct(s.max_spread)} | {'unset' if s.ceiling_worst is None else _pct(s.ceiling_worst)} |")
    L.append("")
    for s in summ.values():
        rs = sorted((r for r in rows if r.level == s.level), key=lambda r: -r.error)[:worst_per_level]
        L.append(f"**{s.level}**, worst cases: " + "; ".join(
            f"{r.case} {'+' if r.signed >= 0 else '-'}{_pct(r.error)} (spread {_pct(r.spread)}"
            f"{', inside' if r.inside_spread else ''})" for r in rs))
        L.append("")
    if bindings:
        L += ["Per case: the model's binding limit and its signed time error.", "",
              "| case | binding limit (model) | time error |", "| --- | --- | --- |"]
        t = {r.case: r.signed for r in rows if r.level == "time"}
        for case, b in sorted(bindings.items()):
            L.append(f"| {case} | {b} | {'' if case not in t else f'{100 * t[case]:+.1f} %'} |")
        L.append("")
    return "\n".join(L)


def to_json(summ: dict[str, LevelSummary], rows: list[CaseLevel]) -> dict:
    return {
        "levels": {k: {**s.__dict__, "meets_goal": s.meets_goal, "proposed_ceiling": s.proposed_ceiling}
                   for k, s in summ.items()},
        "cases": [{**r.__dict__, "inside_spread": r.inside_spread} for r in rows],
    }


def check_ceilings(summ: dict[str, LevelSummary]) -> list[str]:
    """Levels whose worst error exceeds their CI ceiling (empty = all within)."""
    bad = []
    for s in summ.values():
        if s.ceiling_worst is not None and s.worst_error > s.ceiling_worst:
            bad.append(f"{s.level}: worst error {_pct(s.worst_error)} ({s.worst_case}) exceeds the CI ceiling "
                       f"{_pct(s.ceiling_worst)}")
    return bad


# --- per launch -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchRow:
    """One launch of one case: the model's kernel time against ncu's (`gpu__time_duration`, median repeat)."""
    case: str
    launch: str
    index: int
    predicted_s: float
    measured_s: float
    signed: float            # (pred - measured) / max(measured, 5 us floor of the time level)
    binding: str             # the model's binding limit for this launch
    source: str              # where the model's issue figure came from ("SASS replay", ...)


def launch_rows(case: str, rec: dict, pred: dict, floor_s: float = 5e-6) -> list[LaunchRow]:
    """Per-launch rows of one case, launches matched as `compare.matched_launches` does (a measured launch the
    prediction lacks is skipped)."""
    from .compare import matched_launches
    out = []
    for i, m, p in matched_launches(rec, pred):
        if p is None:
            continue
        mt, pt = m.get("time_s"), p.get("time_s")
        if not isinstance(mt, (int, float)) or not isinstance(pt, (int, float)):
            continue
        src = p.get("compiled_facts") or ""
        out.append(LaunchRow(case, m["name"], i, float(pt), float(mt), (pt - mt) / max(mt, floor_s),
                             str(p.get("binding_limit", "?")),
                             "SASS replay" if "SASS replay" in src else ("table" if src.startswith("compiled")
                                                                        else "assumed")))
    return out


def launches_markdown(title: str, rows: list[LaunchRow]) -> str:
    """Every launch, worst first: where in a case the model misses."""
    L = [f"### {title}: per launch (model kernel time vs ncu's), worst first", "",
         "| case | launch | predicted us | ncu us | error | binding (model) | issue figure |",
         "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: -abs(r.signed)):
        L.append(f"| {r.case} | {r.launch} | {r.predicted_s * 1e6:.1f} | {r.measured_s * 1e6:.1f} | "
                 f"{100 * r.signed:+.1f} % | {r.binding} | {r.source} |")
    if len(rows) >= 2:
        L += ["", f"Median |error| over {len(rows)} launches: "
                  f"{_pct(statistics.median(abs(r.signed) for r in rows))}."]
    L.append("")
    return "\n".join(L)

