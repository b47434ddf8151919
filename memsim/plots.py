"""Figures of simulated results, for notebooks and reports.

Every function RETURNS a `matplotlib.figure.Figure` built without pyplot, so it never selects or
changes the process's matplotlib backend (a notebook keeps its inline/widget backend; a script
with no display needs none).  Show it in a notebook by leaving it as a cell's value, save it with
`fig.savefig(path)`, or get PNG bytes with `png_bytes(fig)`.

    sweep_figure(rows, x="seq")     global traffic, DRAM traffic and time against one axis, a line per algorithm
    launches_figure(result)         a SimResult's bytes per level, one bar group per kernel launch
"""
from __future__ import annotations

import io

GB = 1e9


def _records(rows) -> list[dict]:
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        return rows.to_dict("records")
    return [dict(r) for r in rows]


def _new_figure(ncols: int, width_in: float, height_in: float):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def sweep_figure(rows, x: str, *, hue: str = "algorithm", title: str | None = None, log_x: bool | None = None):
    """Global GB, DRAM GB and predicted time (ms) of the ok rows against column `x`, one line per
    value of `hue`.  rows: a sweep's rows (dicts) or its DataFrame; filter other axes first."""
    recs = [r for r in _records(rows) if r.get("status", "ok") == "ok"]
    fig, axes = _new_figure(3, 13, 4)
    if recs and x not in recs[0]:
        raise KeyError(f"no column {x!r} in the rows; columns: {', '.join(recs[0])}")
    groups = {}
    for r in recs:
        groups.setdefault(r.get(hue, "") if hue else "", []).append(r)
    for label, pts in groups.items():
        pts = sorted(pts, key=lambda r: r[x])
        xs = [r[x] for r in pts]
        axes[0].plot(xs, [(r["global_read_bytes"] + r["global_write_bytes"]) / GB for r in pts], "o-", label=str(label))
        axes[1].plot(xs, [(r["dram_read_bytes"] + r["dram_write_bytes"]) / GB for r in pts], "o-", label=str(label))
        axes[2].plot(xs, [r["time_s"] * 1e3 for r in pts], "o-", label=str(label))
    xs_all = [r[x] for r in recs]
    if log_x is None:
        log_x = bool(xs_all) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                     for v in xs_all) and max(xs_all) / min(xs_all) >= 8
    for ax, t in zip(axes, ("global traffic (GB)", "DRAM traffic (GB)", "predicted time (ms)")):
        ax.set_xlabel(x)
        ax.set_title(t, fontsize=10)
        if log_x:
            ax.set_xscale("log", base=2)
        if recs:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if len(groups) > 1 or (hue and groups):
            ax.legend(title=hue or None, fontsize=8)
    if not recs:
        axes[1].text(0.5, 0.5, "no point simulated (all refused)", ha="center", va="center",
                     transform=axes[1].transAxes)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def launches_figure(result, *, title: str | None = None):
    """Bytes read + written at the global, L2 and DRAM levels for each launch of a SimResult."""
    import numpy as np
    names = [k["name"] for k in result.kernels]
    levels = ("global", "l2", "dram")
    fig, (ax,) = _new_figure(1, max(5, 1.6 * len(names) + 2), 3.8)
    xs = np.arange(len(names))
    w = 0.8 / len(levels)
    for i, lvl in enumerate(levels):
        vals = [(k[f"{lvl}_read_bytes"] + k[f"{lvl}_write_bytes"]) / GB for k in result.kernels]
        ax.bar(xs + (i - 1) * w, vals, w, label=lvl)
    ax.set_xticks(xs)
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("GB read + written")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    p, s = result.problem, result.schedule
    ax.set_title(title or f"{result.hardware}: {s.algorithm} {s.phase}, B={p.batch} H={p.heads_q} N={p.seq_q} "
                          f"d={p.head_dim} {p.dtype}; {result.time_s * 1e3:.3f} ms", fontsize=9)
    return fig


def png_bytes(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (Agg canvas attached to this figure only; no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
