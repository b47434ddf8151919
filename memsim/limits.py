"""Which limit binds a launch: the unit whose busy time comes closest to the launch's simulated time.

For each launch the model knows how long each shared unit would need if it were the only constraint:

* ``tensor`` (``fma`` for fp32 problems, whose IEEE dots run on the FMA pipes): dot FLOPs / (SMs x rate);
* ``exp``: exponentials / (SMs x SFU rate);
* ``dram``: DRAM bytes / achieved DRAM bandwidth;
* ``l2``: L2 request bytes (spills included) / L2 bandwidth.

A CTA's dots and exponentials take turns on its SM, so the SM's share is their sum.
The binding limit is the largest of the SM, DRAM and L2 shares.  When even the largest explains less than
``LATENCY_SHARE`` of the simulated time, the launch is waiting rather than working: too few CTAs per SM
(or too few CTAs) to hide memory latency, a dependent loop, or a tail -- reported as
``latency/occupancy``.  A pass whose host issue time exceeds its GPU time is ``host``-bound.
"""
from __future__ import annotations

#: below this share of the simulated time, no unit is the bottleneck: latency/occupancy binds
LATENCY_SHARE = 0.6


def launch_bounds(stats, *, num_sms: int, sec_per_flop: float, sec_per_exp: float, dram_Bps: float,
                  l2_Bps: float, dot_unit: str, l2_write_Bps: float | None = None) -> dict:
    """Seconds each unit needs for this launch alone (see module doc).  With a measured write rate the writes also
    pass a write link of their own (the engine's): the L2 bound is the longer of the shared link and that."""
    l2 = (stats.l2_read_bytes + stats.l2_write_bytes) / l2_Bps
    if l2_write_Bps:
        l2 = max(l2, stats.l2_write_bytes / l2_write_Bps)
    return {
        dot_unit: stats.flops * sec_per_flop / num_sms,
        "exp": stats.exp_count * sec_per_exp / num_sms,
        "dram": (stats.dram_read_bytes + stats.dram_write_bytes) / dram_Bps,
        "l2": l2,
    }


def binding(bounds_s: dict, time_s: float) -> tuple[str, float]:
    """(name of the binding limit, share of the time it explains).

    A CTA's dots and exponentials take turns on its SM (the model serialises them), so the SM's work is
    their sum; it is named after the unit with most of it, or ``<dot>+exp`` when neither has 70 %.
    """
    if time_s <= 0:
        return "latency/occupancy", 0.0
    dot_unit = next(k for k in bounds_s if k not in ("exp", "dram", "l2"))
    sm = bounds_s[dot_unit] + bounds_s["exp"]
    if bounds_s[dot_unit] >= 0.7 * sm:
        sm_name = dot_unit
    elif bounds_s["exp"] >= 0.7 * sm:
        sm_name = "exp"
    else:
        sm_name = f"{dot_unit}+exp"
    cands = {sm_name: sm, "dram": bounds_s["dram"], "l2": bounds_s["l2"]}
    name = max(cands, key=cands.get)
    share = cands[name] / time_s
    if share < LATENCY_SHARE:
        return "latency/occupancy", share
    return name, share


def pass_binding(kernels: list, gpu_time_s: float, host_time_s: float) -> str:
    """The pass's binding limit: host if the host cannot issue launches fast enough, else the longest launch's."""
    if host_time_s > gpu_time_s:
        return "host"
    if not kernels:
        return "latency/occupancy"
    return max(kernels, key=lambda k: k["time_s"])["binding_limit"]
