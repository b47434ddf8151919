"""Results as pandas DataFrames, for notebooks (pandas is the optional `study` extra).

    SimResult.to_frame()            one row per kernel launch plus a "total" row, indexed by launch name
    sweep result .to_frame()        one row per point (memsim.sweep.SweepResult)
    compare_frame(results)          one row per (algorithm, phase): the totals of several SimResults
    read_sweep(prefix)              a published sweep set (PREFIX.parquet if present, else PREFIX.json)

Nothing here is imported by the simulator itself: memsim runs without pandas.
"""
from __future__ import annotations

import json
from pathlib import Path

MISSING = ("pandas is needed for DataFrames: pip install 'io-aware-attention[study]' (or pip install pandas); "
           "without it use SimResult.to_dict() and the sweep's rows")


def require_pandas():
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(MISSING) from None
    return pd


def simresult_frame(result):
    """One row per launch (and "total"): the level bytes, time, FLOPs and model details; the problem,
    schedule and hardware are in `df.attrs`."""
    pd = require_pandas()
    rows = [dict(k) for k in result.kernels] + [dict(result.total, name="total")]
    for r in rows:
        if "grid" in r:
            r["grid"] = tuple(r["grid"])
    df = pd.DataFrame(rows).set_index("name")
    df.attrs.update(hardware=result.hardware, problem=result.problem.to_dict(), schedule=result.schedule.to_dict(),
                    grain=result.grain, run_blocks=result.run_blocks)
    return df


def rows_frame(rows, columns=None):
    """A DataFrame of result rows (dicts); `columns` fixes the order, extra keys follow."""
    pd = require_pandas()
    rows = list(rows)
    df = pd.DataFrame(rows)
    if columns is not None:
        ordered = [c for c in columns if c in df.columns] + [c for c in df.columns if c not in columns]
        df = df.reindex(columns=ordered)
    return df


def compare_frame(results):
    """One row per SimResult: algorithm, phase, problem fields and the totals."""
    require_pandas()
    rows = []
    for r in results:
        rows.append({"algorithm": r.schedule.algorithm, "phase": r.schedule.phase, "hardware": r.hardware,
                     **{f"problem.{k}": v for k, v in r.problem.to_dict().items()},
                     "launches": len(r.kernels), **r.total, "nominal_flops": r.nominal_flops,
                     "extra_device_bytes": r.extra_device_bytes})
    return rows_frame(rows)


def read_sweep(prefix):
    """The published set of `python -m memsim sweep --out PREFIX` (or run_sweep(out=PREFIX))."""
    pd = require_pandas()
    pq = Path(f"{prefix}.parquet")
    if pq.exists():
        try:
            return pd.read_parquet(pq)
        except ImportError:
            pass
    path = Path(f"{prefix}.json")
    try:
        doc = json.loads(path.read_text())
        return rows_frame(doc["rows"], columns=doc.get("columns"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no published sweep there (an unfinished one keeps "
                                f"{prefix}.partial.jsonl: finish it with --resume)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a memsim sweep set ({type(e).__name__}: {e})") from None
