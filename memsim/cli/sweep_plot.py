"""The sweep's PNG: global traffic, DRAM traffic and predicted time against the swept parameter."""
from __future__ import annotations

import io

from .common import GB


def sweep_png(rows, a, hw) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for alg in dict.fromkeys(r["algorithm"] for r in rows):
        pts = [r for r in rows if r["algorithm"] == alg and r["status"] == "ok"]
        if not pts:
            continue
        x = [r["value"] for r in pts]
        axes[0].plot(x, [(r["global_read_bytes"] + r["global_write_bytes"]) / GB for r in pts], "o-", label=alg)
        axes[1].plot(x, [(r["dram_read_bytes"] + r["dram_write_bytes"]) / GB for r in pts], "o-", label=alg)
        axes[2].plot(x, [r["time_s"] * 1e3 for r in pts], "o-", label=alg)
    for ax, t in zip(axes, ("global traffic (GB)", "DRAM traffic (GB)", "predicted time (ms)")):
        ax.set_xlabel(a.param)
        ax.set_title(t)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"memsim sweep on {hw.name}: {a.phase}, B={a.batch} H={a.heads} d={a.head_dim} N={a.seq} {a.dtype}",
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
