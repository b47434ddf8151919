"""Predicted (memsim) against measured (ncu), per case and level, with tolerances as data.

    error = predicted / measured - 1        ratio = predicted / measured

A level's value for a case is the sum of its keys (e.g. global = global_read_bytes +
global_write_bytes) over the case's "total".  Tolerances, targets and ceilings live in
verification/tolerances.toml (see its header).  Stdlib only; the model is called through a
`predict(case) -> dict` function so this module is testable without simpy.
"""
from __future__ import annotations

import math
import re
import statistics
import tomllib
from dataclasses import dataclass
from pathlib import Path

TOLERANCES = Path(__file__).resolve().parent / "tolerances.toml"


class ToleranceError(ValueError):
    pass


@dataclass(frozen=True)
class Level:
    name: str
    keys: tuple
    target: float
    ceiling: float | None
    floor: float
    what: str = ""
    #: a measured-side key used when `keys` are missing (e.g. global read/write split not counted)
    fallback: str | None = None

    @property
    def limit(self) -> float | None:
        """What CI holds the worst case to (the ceiling), None while unset."""
        return self.ceiling


def load_tolerances(path=TOLERANCES) -> dict[str, Level]:
    p = Path(path)
    if not p.is_file():
        raise ToleranceError(f"tolerances file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ToleranceError(f"{p}: not valid TOML ({e})") from None
    levels = {}
    for name, d in data.get("levels", {}).items():
        try:
            target = float(d["target"])
            keys = tuple(d["keys"])
        except (KeyError, TypeError, ValueError):
            raise ToleranceError(f"{p}: [levels.{name}] needs keys = [...] and target = <fraction>") from None
        ceiling = d.get("ceiling")
        if ceiling is not None:
            ceiling = float(ceiling)
            if ceiling < target:
                raise ToleranceError(f"{p}: [levels.{name}] ceiling {ceiling} is below its target {target}; "
                                     f"a level that meets its target is held to the target")
        if target <= 0:
            raise ToleranceError(f"{p}: [levels.{name}] target must be > 0")
        levels[name] = Level(name, keys, target, ceiling, float(d.get("floor", 0.0)), d.get("what", ""),
                             d.get("measured_fallback"))
    if not levels:
        raise ToleranceError(f"{p}: no [levels.*] tables")
    return levels


def level_value(record: dict, level: Level, part: str = "total", *, measured: bool = False):
    """Sum of the level's keys in record[part]; None if any key is missing or None.
    measured=True: fall back to the level's `measured_fallback` key when the keys are missing."""
    src = record.get(part) or {}
    vals = [src.get(k) for k in level.keys]
    if any(v is None for v in vals):
        if measured and level.fallback and src.get(level.fallback) is not None:
            return float(src[level.fallback])
        return None
    return float(sum(vals))


@dataclass
class Row:
    case: str
    level: str
    measured: float | None
    predicted: float | None
    ratio: float | None
    error: float | None
    status: str  # "ok" (within target), "over target", "over ceiling", "below floor", "missing"
    target: float
    ceiling: float | None

    def to_dict(self):
        return dict(self.__dict__)


def compare_one(case: str, measured: float | None, predicted: float | None, level: Level) -> Row:
    if measured is None or predicted is None:
        return Row(case, level.name, measured, predicted, None, None, "missing", level.target, level.ceiling)
    if max(abs(measured), abs(predicted)) < level.floor:
        r = predicted / measured if measured else None
        return Row(case, level.name, measured, predicted, r, None if r is None else r - 1, "below floor",
                   level.target, level.ceiling)
    if measured == 0:
        return Row(case, level.name, measured, predicted, math.inf, math.inf, "over ceiling", level.target,
                   level.ceiling)
    ratio = predicted / measured
    err = ratio - 1.0
    a = abs(err)
    if a <= level.target + 1e-12:
        status = "ok"
    elif level.ceiling is not None and a > level.ceiling + 1e-12:
        status = "over ceiling"
    else:
        status = "over target"
    return Row(case, level.name, measured, predicted, ratio, err, status, level.target, level.ceiling)


def compare_records(pairs, levels: dict[str, Level]) -> list[Row]:
    """pairs: [(case name, measured record, predicted dict), ...] -> rows, case-major."""
    rows = []
    for case, meas, pred in pairs:
        for lv in levels.values():
            rows.append(compare_one(case, level_value(meas, lv, measured=True), level_value(pred, lv), lv))
    return rows


def matched_launches(meas: dict, pred: dict) -> list[tuple[int, dict, dict | None]]:
    """[(index, measured launch, predicted launch or None)]: the prediction's launch at the same index when its
    name agrees, else the first of that name."""
    pk = list(pred.get("kernels") or [])
    out = []
    for i, mk in enumerate(meas.get("kernels") or []):
        pm = pk[i] if i < len(pk) and pk[i].get("name") == mk.get("name") else \
            next((p for p in pk if p.get("name") == mk.get("name")), None)
        out.append((i, mk, pm))
    return out


def compare_launches(meas: dict, pred: dict, levels: dict[str, Level]) -> list[dict]:
    """Per-launch detail (matched by launch name, in order)."""
    out = []
    for _, mk, pm in matched_launches(meas, pred):
        d = {"name": mk.get("name")}
        for lv in levels.values():
            m = level_value({"k": mk}, lv, "k", measured=True)
            p = None if pm is None else level_value({"k": pm}, lv, "k")
            d[lv.name] = {"measured": m, "predicted": p,
                          "error": (p / m - 1.0) if (m and p is not None) else None}
        out.append(d)
    return out


@dataclass
class Summary:
    level: str
    n: int
    n_compared: int
    median_abs_error: float | None
    worst_abs_error: float | None
    worst_case: str | None
    target: float
    ceiling: float | None
    meets_target: bool | None
    within_ceiling: bool | None

    def line(self) -> str:
        if not self.n_compared:
            return f"{self.level:11s} no comparable cases ({self.n} rows)"
        ceil = "unset" if self.ceiling is None else f"{self.ceiling:.1%}"
        verdict = "meets target" if self.meets_target else (
            "MISSES target" + ("" if self.within_ceiling is None else
                               (", within ceiling" if self.within_ceiling else ", OVER CEILING")))
        return (f"{self.level:11s} median |err| {self.median_abs_error:7.1%}  worst |err| {self.worst_abs_error:7.1%} "
                f"({self.worst_case})  target {self.target:.0%}  ceiling {ceil}  n={self.n_compared}: {verdict}")

    def to_dict(self):
        return dict(self.__dict__)


def summarise(rows: list[Row], levels: dict[str, Level]) -> dict[str, Summary]:
    out = {}
    for name, lv in levels.items():
        rs = [r for r in rows if r.level == name]
        comp = [r for r in rs if r.error is not None and r.status not in ("below floor", "missing")]
        if comp:
            errs = [abs(r.error) for r in comp]
            worst = max(comp, key=lambda r: abs(r.error))
            w = abs(worst.error)
            out[name] = Summary(name, len(rs), len(comp), statistics.median(errs), w, worst.case, lv.target,
                                lv.ceiling, w <= lv.target + 1e-12,
                                None if lv.ceiling is None else w <= lv.ceiling + 1e-12)
        else:
            out[name] = Summary(name, len(rs), 0, None, None, None, lv.target, lv.ceiling, None, None)
    return out


def proposed_ceiling(worst: float, target: float) -> float:
    """Today's worst |error| rounded UP to 3 significant digits, never below the target."""
    if worst <= target:
        return target
    e = math.floor(math.log10(worst)) - 2
    return max(target, math.ceil(worst / 10 ** e - 1e-9) * 10 ** e)


def update_ceilings(path, summaries: dict[str, Summary], *, allow_raise=False) -> dict[str, tuple]:
    """Rewrite the `ceiling` lines of tolerances.toml from today's worst errors.

    Only lowers (or sets an unset) ceiling unless allow_raise.  Returns {level: (old, new)}
    for the levels changed.  The file is replaced atomically."""
    from memsim.io import write_atomic
    p = Path(path)
    text = p.read_text()
    changes = {}
    for name, s in summaries.items():
        if s.worst_abs_error is None:
            continue
        new = proposed_ceiling(s.worst_abs_error, s.target)
        old = s.ceiling
        if old is not None and new > old + 1e-12 and not allow_raise:
            raise ToleranceError(f"level {name}: today's worst error {s.worst_abs_error:.4f} is above its ceiling "
                                 f"{old}; the model got worse. Fix the model, or pass --allow-raise with a reason "
                                 f"in the commit message")
        if old is not None and abs(new - old) < 1e-12:
            continue
        sec = re.search(rf"^\[levels\.{re.escape(name)}\]\s*$(.*?)(?=^\[|\Z)", text, flags=re.M | re.S)
        if not sec:
            continue
        body = sec.group(1)
        line = f"ceiling = {new:.6g}\n"
        if re.search(r"^#? ?ceiling\s*=.*\n", body, flags=re.M):
            body2 = re.sub(r"^#? ?ceiling\s*=.*\n", line, body, count=1, flags=re.M)
        else:
            body2 = body.rstrip("\n") + "\n" + line + "\n"
        text = text[:sec.start(1)] + body2 + text[sec.end(1):]
        changes[name] = (old, new)
    if changes:
        write_atomic(p, text, overwrite=True)
        load_tolerances(p)  # still valid
    return changes


def fmt_value(level: str, v) -> str:
    if v is None:
        return "-"
    if level == "time":
        return f"{v * 1e3:.3f} ms"
    return f"{v / 1e9:.4g} GB"


def fmt_err(e) -> str:
    if e is None:
        return "-"
    if math.isinf(e):
        return "inf"
    return f"{e:+.1%}"
