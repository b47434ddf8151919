"""Model constants derived from microbenchmarks (``python -m verification calibrate``), never from attention cases.

A preset ``memsim/presets/<name>.toml`` may have a calibration file beside it,
``memsim/presets/<name>.calibration.json``: the raw curves the calibrate command measured on a named card
(copy, matmul per dtype, exp rate, launch cost, L2 write-back, L2 request merging, spills), with provenance.
This module turns those curves into the figures the model uses, each by a rule written here and in
``memsim/MODEL.md``.  Without a calibration file (another GPU, a what-if preset) the model falls back to the
preset's datasheet figures, and `Calibration.source` says so.

Every figure is a *rate or a curve of the hardware*; none is an attention-case error term.
"""
from __future__ import annotations

import json
import math
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from .hardware import PRESET_DIR, Hardware


class CalibrationError(ValueError):
    """A calibration file that cannot be read or lacks what the model needs."""


@dataclass(frozen=True)
class Curve:
    """A measured monotone curve y(x), interpolated linearly in log x (clamped at the ends)."""

    xs: tuple
    ys: tuple

    def __post_init__(self):
        if len(self.xs) != len(self.ys) or not self.xs:
            raise CalibrationError("a curve needs as many x as y values, at least one")
        if any(b <= a for a, b in zip(self.xs, self.xs[1:])):
            raise CalibrationError(f"curve x values must increase: {self.xs}")

    def __call__(self, x: float) -> float:
        xs, ys = self.xs, self.ys
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1]
        k = bisect_left(xs, x)
        x0, x1, y0, y1 = xs[k - 1], xs[k], ys[k - 1], ys[k]
        if x0 > 0:
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
        else:
            t = (x - x0) / (x1 - x0)
        return y0 + t * (y1 - y0)


@dataclass(frozen=True)
class Calibration:
    """The figures the model takes from microbenchmarks (or, without them, from the datasheet preset)."""

    #: where the figures come from: "<card>, <date>, <command>" or "datasheet (no calibration file)"
    source: str
    #: achieved dot FLOP/s per SM by problem dtype, on the unit our kernels use (fp16/bf16: tensor cores;
    #: fp32: IEEE dots, which Triton runs on the FMA pipes)
    dot_flops_per_sm_s: dict
    #: achieved exp2 per second per SM (SFU)
    exp_per_sm_s: float
    #: achieved DRAM bandwidth of a streaming kernel (read + write)
    dram_Bps: float
    #: host time to issue one launch (Python + Triton launch path)
    host_launch_s: float
    #: GPU duration of an empty kernel (launch, first CTA start, tail)
    launch_overhead_s: float
    #: fraction of the bytes dirty at kernel end that were already written to DRAM inside the kernel, as a
    #: function of the dirty bytes (None: the preset's l2_eager_writeback_fraction)
    writeback_fraction_of_dirty: Curve | None = None
    #: a read of a line that another SM requested less than this long ago joins that request and does not
    #: reach the L2 tags (None: no calibrated window; the preset's l2_read_request_fraction applies)
    l2_merge_window_s: float | None = None
    #: bytes per second one SM moves to and from L2 (None: not calibrated, no per-SM limit)
    sm_l2_Bps: float | None = None
    #: time of one dependent L2 round trip (load, then store + barrier) with no bytes to move: the latency a
    #: dependent tile loop pays per tile (None: the preset's mem_latency_s)
    l2_roundtrip_s: float | None = None
    #: the block scheduler starts one CTA every this many seconds on the whole GPU (0: all at once)
    cta_dispatch_s: float = 0.0
    #: L2 bytes (read + write) per byte of spill traffic the compiled code issues (static spill bytes per
    #: thread x threads x loop iterations)
    l2_bytes_per_spill_byte: float = 1.0
    raw: dict = field(default_factory=dict, compare=False, repr=False)


def calibration_path(hw: Hardware) -> Path:
    return PRESET_DIR / f"{hw.name}.calibration.json"


def datasheet(hw: Hardware) -> Calibration:
    """The fallback: the preset's own figures (what the model used before calibration files existed)."""
    rate = {dt: hw.tensor_flops_per_sm_per_cycle[dt] * hw.tensor_efficiency * hw.clock_Hz
            for dt in hw.tensor_flops_per_sm_per_cycle}
    return Calibration(source="datasheet (no calibration file)", dot_flops_per_sm_s=rate,
                       exp_per_sm_s=hw.exp_per_sm_per_cycle * hw.clock_Hz, dram_Bps=hw.dram_achievable_Bps,
                       host_launch_s=hw.host_launch_s, launch_overhead_s=hw.launch_overhead_s)


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        raise CalibrationError("empty sample")
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def load_calibration(hw: Hardware, path: str | Path | None = None) -> Calibration:
    """The calibration of `hw` (its preset's calibration file if there is one, else `datasheet(hw)`)."""
    p = Path(path) if path is not None else calibration_path(hw)
    if not p.is_file():
        if path is not None:
            raise CalibrationError(f"calibration file {p} does not exist")
        return datasheet(hw)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationError(f"{p}: cannot read calibration file: {e}") from None
    try:
        return derive(raw, hw)
    except (KeyError, TypeError, ValueError) as e:
        raise CalibrationError(f"{p}: {e}") from None


_CACHE: dict = {}


def calibration_for(hw: Hardware) -> Calibration:
    """`load_calibration(hw)`, read once per preset file per process."""
    p = calibration_path(hw)
    key = (hw.name, p.stat().st_mtime_ns if p.is_file() else None, id(hw))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is hw:
        return hit[1]
    c = load_calibration(hw)
    _CACHE[key] = (hw, c)
    return c


def derive(raw: dict, hw: Hardware) -> Calibration:
    """Turn the calibrate command's raw curves into model figures (rules in memsim/MODEL.md)."""
    base = datasheet(hw)
    prov = raw.get("provenance", {})
    src = f"{prov.get('gpu', '?')}, {prov.get('date', '?')}, {prov.get('command', 'verification calibrate')}"
    facts = raw.get("facts", raw)
    kw = {}
    # dots: the best rate the card sustained at any measured size, per dtype and path
    mm = facts.get("matmul")
    if mm:
        rates = dict(base.dot_flops_per_sm_s)
        for dt, key in (("fp16", "fp16"), ("bf16", "bf16"), ("fp32", "fp32_ieee")):
            pts = [r for r in mm if r.get("dtype") == key]
            if pts:
                rates[dt] = max(r["flops_per_s"] for r in pts) / hw.num_sms
        kw["dot_flops_per_sm_s"] = rates
    ex = facts.get("exp")
    if ex:
        kw["exp_per_sm_s"] = max(r["exp_per_s"] for r in ex) / hw.num_sms
    cp = facts.get("copy")
    if cp:
        kw["dram_Bps"] = max(r["bytes_per_s"] for r in cp if r.get("kind", "copy") == "copy")
    ln = facts.get("launch")
    if ln:
        if "host_launch_s" in ln:
            kw["host_launch_s"] = float(ln["host_launch_s"])
        if "empty_kernel_s" in ln:
            kw["launch_overhead_s"] = float(ln["empty_kernel_s"])
    wb = facts.get("l2_writeback")
    if wb:
        # kernels that only write W fresh bytes and end: DRAM writes counted inside the kernel / W
        pts = sorted((r["dirty_bytes"], r["dram_write_bytes"] / r["dirty_bytes"]) for r in wb
                     if r.get("spin_s", 0) == 0 and r["dirty_bytes"] > 0)
        if pts:
            xs, ys = [], []
            for x, y in pts:
                if xs and x == xs[-1]:
                    continue
                xs.append(x)
                ys.append(min(1.0, max(0.0, y)))
            kw["writeback_fraction_of_dirty"] = Curve(tuple(xs), tuple(ys))
    mg = facts.get("l2_merge")
    if mg:
        w = merge_window_from(mg)
        if w is not None:
            kw["l2_merge_window_s"] = w
    dl = facts.get("dependent_loop")
    if dl:
        kw.update(sm_link_from(dl))
    sp = facts.get("spills")
    if sp:
        ratios = [r["l2_spill_bytes"] / r["spill_bytes_issued"] for r in sp if r.get("spill_bytes_issued", 0) > 0]
        if ratios:
            kw["l2_bytes_per_spill_byte"] = _median(ratios)
    return Calibration(source=src, **{**base.__dict__, **kw, "source": src, "raw": raw})


def cleaned_fraction(hw: Hardware, cal: Calibration, dirty_bytes: int) -> float:
    """Share of the bytes dirty at kernel end that the L2 had already written to DRAM during the kernel."""
    if dirty_bytes <= 0:
        return 0.0
    if cal.writeback_fraction_of_dirty is not None:
        return cal.writeback_fraction_of_dirty(dirty_bytes)
    return hw.l2_eager_writeback_fraction


def merge_window_from(points: list) -> float | None:
    """The request-merge window from CTAs that read the same lines with a known start delay between them.

    Each point: ``delay_s`` between consecutive CTAs, ``l2_read_bytes`` and ``global_read_bytes``.  With
    no delay the requests merge (fraction f0 < 1); with delays longer than the time a request stays in flight
    they do not (fraction near 1).  The window is the delay at which the fraction is halfway between the
    two, interpolated between the measured delays.
    """
    pts = {}
    for r in points:
        if "delay_s" in r and r.get("global_read_bytes", 0) > 0:
            pts.setdefault(float(r["delay_s"]), []).append(r["l2_read_bytes"] / r["global_read_bytes"])
    if len(pts) < 2:
        return None
    ds = sorted(pts)
    fs = [_median(pts[d]) for d in ds]
    lo, hi = fs[0], max(fs)
    if hi - lo < 0.05:  # no measurable merging on this card
        return 0.0
    half = 0.5 * (lo + hi)
    for (d0, f0), (d1, f1) in zip(zip(ds, fs), zip(ds[1:], fs[1:])):
        if f0 < half <= f1:
            return d0 + (half - f0) / (f1 - f0) * (d1 - d0)
    return ds[-1]


def _fit_line(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def sm_link_from(points: list) -> dict:
    """Per-SM L2 bandwidth and the dependent round trip from the dependent_loop microbenchmark.

    ``read`` points: one CTA per SM streaming its own L2-resident tile with independent loads: the SM's L2
    bandwidth is the best tile bytes per iteration time.  ``roundtrip`` points: load + store + barrier,
    each iteration waiting for the last: iteration time = round trip + 2 x tile bytes / SM bandwidth; a
    least-squares line over the tile sizes gives the round trip (intercept).  Per warp count; the model
    takes the 4-warp figures (the smallest CTAs of our kernels), and the larger bandwidth of the two.
    """
    out = {}
    def per_iter(r):
        ips = r.get("iterations_per_s_median")
        return 1.0 / ips if ips else None
    reads = [(r["tile_bytes"], per_iter(r)) for r in points if r.get("mode") == "read" and per_iter(r)]
    if reads:
        out["sm_l2_Bps"] = max(b / t for b, t in reads)
    rts = {}
    for r in points:
        if r.get("mode") == "roundtrip" and per_iter(r):
            rts.setdefault(r.get("num_warps", 4), []).append((2.0 * r["tile_bytes"], per_iter(r)))
    if rts:
        w = 4 if 4 in rts else min(rts)
        xs, ys = zip(*sorted(rts[w]))
        a, _ = _fit_line(list(xs), list(ys))
        out["l2_roundtrip_s"] = max(a, min(ys) * 0.5)
    return out
