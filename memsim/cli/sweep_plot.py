"""The sweep's PNG: global traffic, DRAM traffic and predicted time against the swept parameter."""
from __future__ import annotations


def sweep_png(rows, a, hw) -> bytes:
    """(Kept for callers of the old helper; the sweep command draws with memsim.plots, which never
    switches the matplotlib backend.)"""
    from ..plots import png_bytes, sweep_figure
    x = getattr(a, "param", None) or "value"
    return png_bytes(sweep_figure([dict(r, **{x: r.get(x, r.get("value"))}) for r in rows], x=x, title=(
        f"memsim sweep on {hw.name}: {a.phase}, B={a.batch} H={a.heads} d={a.head_dim} N={a.seq} {a.dtype}")))
