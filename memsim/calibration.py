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

import functools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from .hardware import PRESET_DIR, Hardware


class CalibrationError(ValueError):
    """A calibration file that cannot be read or lacks what the model needs."""


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
    #: the host-bound floor of a pass per (algorithm, phase): our entry point timed on the smallest problem
    #: (None: launches x host_launch_s)
    host_pass_s: dict | None = None
    #: the launches each of those points makes ((algorithm, phase) -> launch names): a floor applies to a pass that
    #: makes the same launches (`host_floor_for`)
    host_pass_launches: dict | None = None
    #: bytes of dirty lines the L2 keeps; beyond, it writes back the oldest dirty lines (they stay resident,
    #: clean).  None: no limit besides the LRU (uncalibrated hardware)
    l2_dirty_bytes: int | None = None
    #: fraction of the bytes still dirty at kernel end that were written back during the kernel without being
    #: evicted (background cleaning); None: the preset's l2_eager_writeback_fraction
    background_clean_fraction: float | None = None
    #: the age law of dirty lines under the kernel's other traffic (`l2_dirty_reads` fact): a dirty line is written
    #: back (and stays, clean) once the bytes brought into the L2 after its last write pass a threshold spread as a
    #: normal law of (mean, sd) bytes over the lines; None: not calibrated (only the LRU and the dirty limit)
    l2_clean_age: tuple | None = None
    #: with the age law: a line read by a second reader adds this x its bytes to the age clock, once (a copy in each
    #: half of the L2 -- 2 copies -- where a line read from one half holds 1.5 on average: (2 - 1.5) / 1.5)
    l2_shared_copy_extra: float = 0.0
    #: SMs whose reads of the same lines merge before L2 (a group of consecutive SMs), and how long after a
    #: group member's request another member's request for the same block still merges (None: no merging
    #: calibrated; the preset's constant l2_read_request_fraction applies)
    merge_group_sms: int = 1
    l2_merge_window_s: float | None = None
    #: which SMs' reads of the same lines merge, by SM id (%smid; `sm_groups` fact): group id per SM id, the most
    #: SMs one merged L2 request serves, and the rule's text with the points it explains (None: not calibrated)
    merge_group_of_sm: tuple | None = None
    merge_max_sms: int | None = None
    merge_rule: str | None = None
    #: loaded DRAM latency (Little's law on the `dram_stream` fact): ((achieved B/s, latency s), ...) by rising
    #: bandwidth, the most one CTA streams (its pipeline's own limit) and the highest rate reached (None: not
    #: calibrated; see dram_latency_s)
    dram_latency_curve: tuple | None = None
    cta_stream_max_Bps: float | None = None
    dram_stream_peak_Bps: float | None = None
    #: a dependent tile loop (flash1's workspace): fixed round trip per iteration and the bytes per second
    #: one CTA moves through such a loop (None: the preset's mem_latency_s and no transfer term)
    l2_roundtrip_s: float | None = None
    dependent_Bps: float | None = None
    #: the SM clock the card ran at while calibrating (ncu sm__cycles_elapsed.avg.per_second, median over
    #: every ncu point; None: the preset's clock_Hz): the clock of the issue limit
    sm_clock_Hz: float | None = None
    #: the SM clock while a kernel that issues tensor-core instructions (HMMA / HGMMA) runs: ncu's clock of every
    #: such launch of the `tile_loop` fact (benchmarks/tile_loop_gpu.py), median; None: sm_clock_Hz for all
    mma_sm_clock_Hz: float | None = None
    #: the block scheduler starts one CTA every this many seconds on the whole GPU (0: all at once)
    cta_dispatch_s: float = 0.0
    #: L2 traffic per static spill byte per thread per loop iteration: stores go through to L2, loads mostly
    #: hit in L1
    l2_write_per_spill_store_byte: float = 1.0
    l2_read_per_spill_load_byte: float = 1.0
    #: local-memory (spill) traffic one SM moves per second, by the warps resident on it: ((warps, B/s), ...)
    #: from the spills points that run one CTA per SM on a few SMs (each warp waits on its own reloads); None:
    #: not calibrated (spilled kernels then cost only their L2/DRAM traffic)
    local_rate_curve: tuple | None = None
    #: the highest rate at which spill stores reached the L2, whole GPU (the spills points on every SM: local
    #: stores are 4 bytes per thread, and the L2 takes them slower than tile traffic); None: not calibrated
    spill_store_l2_Bps: float | None = None
    #: rate of a chain of small dots: ((kind, FLOPs per warp per dot, warps on the SM, FLOP/s per SM), ...) from
    #: the `dot_chain` points, kind = dot_kind(...) ("wgmma", "mma" for fp16/bf16, "fma" for fp32 with IEEE
    #: precision); None: the best GEMM rate for every tile
    dot_chain: tuple | None = None
    #: what `memsim.warp_issue.replay` needs (scoreboard release cycles per unit, tensor / SFU / shared-memory
    #: pipes) from the `issue_latency` microbenchmark and the dot-chain points (memsim.issue_fit); None: not
    #: calibrated (the issue limit is then instructions / issue rate)
    issue: object | None = None
    #: instruction fetch: ((code bytes, cycles per instruction), ...) from the `icache` microbenchmark (one warp
    #: per SM; memsim.issue_fit.icache_curve_from); None: code is assumed to be at hand
    icache_curve: tuple | None = None
    #: the same for a loop body: `icache_curve` plus the `spill_fetch` loop points (a 192 KB loop fetches at the
    #: 256 KB rate; memsim.issue_fit.icache_loop_curve_from); None: the tile loop reads `icache_curve`
    icache_loop_curve: tuple | None = None
    #: latency a CTA waits before its first TMA load when it builds its own tensor descriptors: (seconds, seconds
    #: per descriptor), fitted on the `tma_descriptor` microbenchmark's one-wave points (None: not calibrated)
    tma_descriptor_s: tuple | None = None
    #: one more DRAM round trip of a CTA whose loads go out after it waited for others (a small tile: the round
    #: trip alone), the `prologue_trips` microbenchmark's median excess per wave per level of its 1 KB tiles (None:
    #: not calibrated -- the engine takes the first loads' latency)
    round_trip_s: float | None = None
    #: the same for a level whose loads hit in the L2 (every CTA reads the same tiles: `prologue_trips --plan l2`);
    #: None: not calibrated -- the engine takes `l2_roundtrip_s`
    round_trip_l2_s: float | None = None
    #: ((CTAs adding into the same lines, bytes/s), ...) at which the L2 takes fp32 reduce-adds (`l2_atomics`
    #: microbenchmark, median over its runs; None: not calibrated -- reduce-adds are stores)
    reduce_add_curve: tuple | None = None
    #: the narrowest TMA box row (bytes) whose reads the L2 request coalescer merges as it merges LSU loads of the
    #: same lines (`tma_window` fact, benchmarks/tma_window_gpu.py; `tma_coalesce_from`); narrower rows are
    #: partial-line requests that all reach the L2.  None: not calibrated (TMA reads merge as LSU reads)
    tma_coalesce_min_row_bytes: int | None = None
    #: the highest rate at which the SMs read L2-resident lines (`l2_bandwidth` fact, benchmarks/l2_bandwidth_gpu.py:
    #: L2 read sectors x 32 B / kernel time, points whose reads hit the L2); None: the preset's l2_bw_Bps
    l2_read_Bps: float | None = None
    #: the highest rate at which the SMs' stores reached the L2 (the same fact's store points): a ceiling of the
    #: writes' own besides the link they share with reads; None: the shared link only
    l2_write_Bps: float | None = None
    #: what a store to a sector the instruction covers only in part costs the L2's write path, in whole-sector
    #: stores (`l2_bandwidth` fact's pitch points, `partial_store_cost_from`); None: the same as a whole one
    partial_store_cost: float | None = None
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
        cal, ref = _derived(str(p), p.stat().st_mtime_ns, hw.name)  # read once per file (what-if sweeps)
        if ref is None:  # the file names no loadable preset: its reference is `hw` itself
            raw = json.loads(p.read_text(encoding="utf-8"))
            cal, ref = derive(raw, hw), hw
        return scaled_to(cal, ref, hw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationError(f"{p}: cannot read calibration file: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CalibrationError(f"{p}: {e}") from None


@functools.lru_cache(maxsize=32)
def _derived(path: str, mtime_ns: int, name: str):
    """(derived calibration, reference preset) of a calibration file, or (None, None) when the preset it
    names does not load; cached by path and modification time."""
    from .hardware import HardwareError, load_hardware
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        ref = load_hardware(raw.get("hardware") or name)
    except HardwareError:
        return None, None
    return derive(raw, ref), ref


def scaled_to(cal: Calibration, ref: Hardware, hw: Hardware) -> Calibration:
    """The calibration of `ref` applied to `hw` (a what-if copy of it): rates and capacities that the
    study changed scale with the change (measured / datasheet of ref x datasheet of hw); latencies,
    windows and host times stay as measured."""
    if hw == ref:
        return cal
    dots = {dt: v * (hw.tensor_flops_per_sm_per_cycle[dt] * hw.clock_Hz)
            / (ref.tensor_flops_per_sm_per_cycle[dt] * ref.clock_Hz) for dt, v in cal.dot_flops_per_sm_s.items()}
    dirty = None if cal.l2_dirty_bytes is None else int(cal.l2_dirty_bytes * hw.l2_bytes / ref.l2_bytes)
    age = None if cal.l2_clean_age is None else tuple(x * hw.l2_bytes / ref.l2_bytes for x in cal.l2_clean_age)
    bw = hw.dram_bw_Bps / ref.dram_bw_Bps  # the loaded-latency curve: same latencies at scaled bandwidths
    curve = None if cal.dram_latency_curve is None else tuple((b * bw, lat) for b, lat in cal.dram_latency_curve)
    peak = None if cal.dram_stream_peak_Bps is None else cal.dram_stream_peak_Bps * bw
    groups = cal.merge_group_of_sm if hw.num_sms == ref.num_sms else None  # an SM map is for one SM count
    l2x = hw.l2_bw_Bps / ref.l2_bw_Bps  # the measured L2 rates follow a what-if change of the preset's L2 bandwidth
    return replace(cal, dot_flops_per_sm_s=dots,
                   l2_read_Bps=None if cal.l2_read_Bps is None else cal.l2_read_Bps * l2x,
                   l2_write_Bps=None if cal.l2_write_Bps is None else cal.l2_write_Bps * l2x,
                   exp_per_sm_s=cal.exp_per_sm_s * (hw.exp_per_sm_per_cycle * hw.clock_Hz)
                   / (ref.exp_per_sm_per_cycle * ref.clock_Hz),
                   dram_Bps=cal.dram_Bps * hw.dram_bw_Bps / ref.dram_bw_Bps, l2_dirty_bytes=dirty, l2_clean_age=age,
                   dram_latency_curve=curve, dram_stream_peak_Bps=peak, merge_group_of_sm=groups,
                   sm_clock_Hz=None if cal.sm_clock_Hz is None else cal.sm_clock_Hz * hw.clock_Hz / ref.clock_Hz,
                   mma_sm_clock_Hz=None if cal.mma_sm_clock_Hz is None
                   else cal.mma_sm_clock_Hz * hw.clock_Hz / ref.clock_Hz)


_CACHE: dict = {}


def calibration_for(hw: Hardware) -> Calibration:
    """`load_calibration(hw)`, read once per preset file per process."""
    p = calibration_path(hw)
    key = (hw.name, p.stat().st_mtime_ns if p.is_file() else None, id(hw))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is hw:
        return hit[1]
    c = load_calibration(hw)
    if len(_CACHE) >= 256:  # what-if sweeps make a new Hardware per point: keep memory bounded
        _CACHE.clear()
    _CACHE[key] = (hw, c)
    return c


#: facts merged into a calibration file from other studies' runs: their points' SM clocks are their own (tensor
#: work, decode streams), not the calibrate plan's clock (`derive` reads tile_loop and dot_clock for the tensor
#: clock and the dot chains' clock; decode_mechanisms is read by memsim.inference)
FOREIGN_FACTS = ("decode_mechanisms", "tile_loop", "dot_clock")


def derive(raw: dict, hw: Hardware) -> Calibration:
    """Turn the calibrate command's raw curves into model figures (rules in memsim/MODEL.md)."""
    base = datasheet(hw)
    prov = raw.get("provenance", {})
    src = f"{prov.get('gpu', '?')}, {prov.get('date', '?')}, {prov.get('command', 'verification calibrate')}"
    facts = raw.get("facts", raw)
    kw = {}
    mm = facts.get("matmul")
    if mm:  # dots: the best rate a Triton tl.dot GEMM sustained, per dtype (our kernels are Triton)
        rates = dict(base.dot_flops_per_sm_s)
        for dt, path in (("fp16", "triton_fp16"), ("bf16", "triton_bf16"), ("fp32", "triton_fp32_ieee")):
            pts = [r["flops_per_s"] for r in mm if r.get("path") == path and r.get("flops_per_s")]
            if pts:
                rates[dt] = max(pts) / hw.num_sms
        kw["dot_flops_per_sm_s"] = rates
    ex = [r["exp_per_s"] for r in facts.get("exp", []) if r.get("exp_per_s")]
    if ex:
        kw["exp_per_sm_s"] = max(ex) / hw.num_sms
    cp = [r["bytes_per_s"] for r in facts.get("copy", []) if r.get("kind") == "copy" and r.get("bytes_per_s")]
    if cp:
        kw["dram_Bps"] = max(cp)
    ln = [r["host_launch_s"] for r in facts.get("launch", []) if r.get("kernel_args", 0) >= 32]
    if ln:  # the 32-argument launch: our attention launches pass 20-35 arguments
        kw["host_launch_s"] = max(ln)
    hp = {(r["algorithm"], r["phase"]): r["time_s_median"] for r in facts.get("host_pass", [])
          if r.get("time_s_median")}
    if hp:
        kw["host_pass_s"] = hp
        kw["host_pass_launches"] = host_pass_paths(facts.get("host_pass", []))
    lg = facts.get("launch_gpu", [])
    empty = [r["time_s"] for r in lg if r.get("variant") == "empty" and r.get("time_s")]
    if empty:
        kw["launch_overhead_s"] = empty[0]
    many = sorted((r["ctas"], r["time_s"]) for r in lg if r.get("variant") == "ctas" and r.get("time_s"))
    if len(many) >= 2:
        a0, slope = _fit_line([float(c) for c, _ in many], [t for _, t in many])
        kw["cta_dispatch_s"] = max(0.0, slope)
    # the clock of the calibrate plan's own ncu points (facts merged from other studies -- decode_mechanisms -- keep
    # their clocks to themselves: the issue replay's figures, and the compiled table's fingerprint, hang on this)
    clk = [r["sm_clock_Hz"] for name, pts in facts.items() if isinstance(pts, list) and name not in FOREIGN_FACTS
           for r in pts if isinstance(r, dict) and r.get("sm_clock_Hz")]
    if clk:
        kw["sm_clock_Hz"] = _median(clk)
    mma_clk = [r["sm_clock_Hz"] for r in facts.get("tile_loop", []) if r.get("mma") and r.get("sm_clock_Hz")]
    if mma_clk:
        kw["mma_sm_clock_Hz"] = _median(mma_clk)
    for fact, rule in (("l2_writeback", l2_from_writeback), ("l2_merge", merge_from),
                       ("dependent_loop", dependent_loop_from), ("l2_dirty_reads", l2_clean_age_from)):
        if facts.get(fact):
            kw.update(rule(facts[fact]))
    if facts.get("sm_groups"):
        kw.update(sm_groups_from(facts["sm_groups"], num_sms=hw.num_sms))
    if facts.get("dram_stream"):
        kw.update(dram_stream_from(facts["dram_stream"]))
    if facts.get("spills"):
        kw.update(spills_from(facts["spills"], num_sms=hw.num_sms,
                              l1_bytes_per_sm=getattr(hw, "l1_shared_per_sm_bytes", 0) or None))
        kw.update(spill_rates_from(facts["spills"], num_sms=hw.num_sms))
    if facts.get("dot_chain"):
        kw.update(dot_chain_from(facts["dot_chain"], hw))
    if facts.get("issue_latency") and facts.get("dot_chain"):
        from .issue_fit import fit
        kw["issue"] = fit(facts["issue_latency"], facts["dot_chain"], kw.get("sm_clock_Hz") or hw.clock_Hz,
                          facts.get("dot_clock"))
        if facts.get("load_latency"):
            from .issue_fit import load_latency_from
            kw["issue"] = load_latency_from(facts["load_latency"], kw["issue"])
            if facts.get("sm_fill"):
                from .issue_fit import sm_fill_from
                kw["issue"] = sm_fill_from(facts["sm_fill"], kw["issue"])
    if facts.get("tma_descriptor"):
        kw.update(tma_descriptor_from(facts["tma_descriptor"]))
    if facts.get("prologue_trips"):
        kw.update(prologue_trips_from(facts["prologue_trips"]))
    if facts.get("l2_atomics"):
        kw.update(l2_atomics_from(facts["l2_atomics"]))
    if facts.get("tma_window"):
        kw.update(tma_coalesce_from(facts["tma_window"]))
    if facts.get("l2_bandwidth"):
        kw.update(l2_bandwidth_from(facts["l2_bandwidth"]))
    if facts.get("icache"):
        from .issue_fit import icache_curve_from
        kw["icache_curve"] = icache_curve_from(facts["icache"], kw.get("sm_clock_Hz") or hw.clock_Hz)
        if facts.get("spill_fetch"):
            from .issue_fit import icache_loop_curve_from
            kw["icache_loop_curve"] = icache_loop_curve_from(facts["icache"], facts["spill_fetch"],
                                                             kw.get("sm_clock_Hz") or hw.clock_Hz)
    return Calibration(**{**base.__dict__, **kw, "source": src, "raw": raw})


def cleaned_fraction(hw: Hardware, cal: Calibration, dirty_bytes: int) -> float:
    """Share of the bytes dirty at kernel end that the L2 had already written to DRAM during the kernel."""
    if dirty_bytes <= 0:
        return 0.0
    if cal.background_clean_fraction is not None:
        return cal.background_clean_fraction
    return hw.l2_eager_writeback_fraction


def l2_from_writeback(points: list) -> dict:
    """The L2's dirty capacity and background cleaning from kernels that write W fresh bytes, then spin T.

    Measured (H100, 2026-11-25): nothing reaches DRAM inside the kernel up to W = 8 MB whatever T (0 to
    1000 us); beyond, DRAM writes = W - C with C about 22 MB at every W of 32..128 MB and every T.  So the
    L2 does not clean in the background (time changes nothing), and keeps at most C bytes dirty:
    C = median over the largest W points of (W - DRAM writes).  Background cleaning = the median fraction
    written inside the kernel where W < C/2 (0 on the H100).
    """
    pts = [(r["dirty_bytes"], r["dram_write_bytes"]) for r in points
           if r.get("dirty_bytes") and r.get("dram_write_bytes") is not None]
    if not pts:
        return {}
    big = max(w for w, _ in pts)
    held = [w - d for w, d in pts if w >= big / 2 and d > 0]
    out = {}
    if held:
        out["l2_dirty_bytes"] = int(_median(held))
        small = [d / w for w, d in pts if w < out["l2_dirty_bytes"] / 2]
        if small:
            out["background_clean_fraction"] = _median(small)
    return out


def aged_clean_bytes(age_lo: float, age_hi: float, law: tuple) -> float:
    """Bytes written back of dirty bytes laid evenly over ages age_lo..age_hi (bytes brought into the L2 since each
    was written) under the age law (mean, sd): the integral of the normal CDF over that range."""
    from statistics import NormalDist
    mean, sd = law
    nd = NormalDist()

    def antider(a):  # integral of Phi((x - mean) / sd) dx from -inf to a
        z = (a - mean) / sd
        return sd * (z * nd.cdf(z) + nd.pdf(z))
    return max(0.0, antider(age_hi) - antider(age_lo))


def l2_clean_age_from(points: list) -> dict:
    """The age law of dirty lines (`benchmarks/l2_dirty_reads_gpu.py`, ncu after its L2 flush): a kernel stores W
    bytes, then reads R other bytes once (``write_first``).  ncu leaves ~2.2 MB of its own dirty lines in the L2 (the
    W = 0 points at the largest R: all of it written back); they are older than the kernel's stores.  With dirty
    bytes laid evenly over ages, the points' DRAM writes are the integral of the law's CDF from R to R + W +
    residue; (mean, sd) = the least-squares fit over every write_first point (a 1 MB grid, then 0.25 MB around its best).

    Measured (H100, 2026-11-26): mean 33.5 MB, sd 7.5 MB over 29 points (rms 0.3 MB); the 12 ``interleaved`` points
    (stores spread evenly among the reads, not fitted) within 0.5 MB of the law.  It is not the LRU: the same
    card's clean lines re-read after R other bytes all hit up to R = 24 MB and all miss from R = 47 MB."""
    mb = float(1 << 20)
    rows: dict = {}
    for r in points:
        if r.get("mode") != "write_first":
            continue
        m = r.get("metrics") or {}
        if m.get("dram__bytes_write.sum") is None:
            continue
        rows.setdefault((r["stored_bytes"], r["unique_read_bytes"]), []).append(m["dram__bytes_write.sum"])
    pts = [(w / mb, rd / mb, _median(v) / mb) for (w, rd), v in rows.items()]
    if len(pts) < 4:
        return {}
    zero = [(rd, v) for w, rd, v in pts if w == 0]
    if not zero:
        return {}
    residue = max(zero)[1]  # W = 0 at the largest R: the whole residue written back

    def rss(mean, sd):
        return sum((aged_clean_bytes(rd, rd + w + residue, (mean, sd)) - v) ** 2 for w, rd, v in pts)
    _, m0, s0 = min((rss(m, sd), m, sd) for m in range(8, 64) for sd in range(1, 24))  # 1 MB grid, then 0.25 MB
    best = min((rss(m0 + i / 4, s0 + j / 4), m0 + i / 4, s0 + j / 4) for i in range(-4, 5) for j in range(-4, 5)
               if s0 + j / 4 > 0)
    return {"l2_clean_age": (best[1] * mb, best[2] * mb), "l2_shared_copy_extra": L2_SHARED_COPY_EXTRA}


#: The H100's L2 is two halves; a line read by an SM whose half is not the line's home half is also kept in the SM's
#: half (NVIDIA's A100/H100 whitepapers: each L2 partition caches data for the SMs of its GPCs).  One reader: 1.5
#: copies on average (its half is the home half for half the SMs); readers on both halves: 2.  The age law was
#: measured with one reader per line, so a line's second reader adds (2 - 1.5) / 1.5 of its bytes to the age clock.
#: `benchmarks/l2_readers_gpu.py` (23:20 UTC, single ncu pass): W = 7 MB stored, then R read by pairs of SMs 6 apart
#: or by all 132 -- the engine with this extra gives the pairs 3.81 / 6.31 / 6.69 MB at R = 24 / 32 / 40 (measured
#: 4.30 / 6.70 / 6.95; without it 1.31 / 3.81 / 5.88); it over-predicts R = 16 and under-predicts all 132 readers at
#: R = 24 (measured 5.81).  Not fitted: derived from the two-copies count (tests/test_memsim_l2_age.py).
L2_SHARED_COPY_EXTRA = (2.0 - 1.5) / 1.5


def merge_from(points: list) -> dict:
    """Which SMs merge their reads of the same lines, and for how long, from G CTAs reading one set.

    Measured (H100): in lockstep, 2 and 4 CTAs cost the L2 the sectors of ONE reader (fraction 1/G), 8 CTAs
    those of two, and 132 CTAs (one per SM) those of about 35: reads of the same sectors by the SMs of a
    group of about four merge before the L2 (the group size = G / (fraction x G) at the largest G); with
    readers staggered in position they do not.  Delaying each CTA's start by d: the fraction rises from
    its lockstep value towards 1; the window is the delay between two group members at which half of the
    possible merges are lost (interpolated; CTAs of one group are consecutive in the dispatch order).
    """
    lock = {}
    for r in points:
        if r.get("mode") == "lockstep" and r.get("global_read_bytes"):
            lock.setdefault(r["ctas"], []).append(r["l2_read_bytes"] / r["global_read_bytes"])
    if not lock:
        return {}
    gmax = max(lock)
    readers = _median(lock[gmax]) * gmax  # distinct requesters at the largest G
    group = max(1, round(gmax / readers))
    f_lock = _median([f for g in lock if g >= group for f in lock[g] if g % group == 0] or lock[gmax])
    dl = {}
    for r in points:
        if r.get("mode") == "delayed" and r.get("global_read_bytes") and r.get("ctas", 0) <= 2 * group:
            dl.setdefault(float(r["delay_us"]) * 1e-6, []).append(r["l2_read_bytes"] / r["global_read_bytes"])
    out = {"merge_group_sms": group}
    if dl:
        ds = sorted(dl)
        fs = [_median(dl[d]) for d in ds]
        half = f_lock + 0.5 * (1.0 - f_lock)
        w = ds[-1]
        pts = [(0.0, f_lock)] + list(zip(ds, fs))
        for (d0, f0), (d1, f1) in zip(pts, pts[1:]):
            if f0 < half <= f1:
                w = d0 + (half - f0) / (f1 - f0) * (d1 - d0)
                break
        out["l2_merge_window_s"] = w
    return out


def _parse_sms(text: str, num_sms: int) -> list:
    """An sm_groups point's set: "0+2+4", ranges "0-3", or "all" (as verification.microbench.programs.parse_sms)."""
    if text == "all":
        return list(range(num_sms))
    out = set()
    for part in str(text).split("+"):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return sorted(out)


def merge_requests(sms, group_of_sm, max_sms) -> int:
    """Distinct L2 requests for one line read in lockstep by the SMs `sms`: per group, one request per max_sms
    readers (ceil)."""
    n = {}
    for s in sms:
        g = group_of_sm[s]
        n[g] = n.get(g, 0) + 1
    return sum(-(-k // max_sms) for k in n.values())


def sm_groups_from(points: list, *, num_sms: int) -> dict:
    """The map of SMs whose lockstep reads of the same lines merge, from sets of SMs (by %smid) reading one set.

    Each point: the SMs that read (observed on the card: ``sms_read``) and the distinct requesters the L2 saw
    (``distinct_readers`` = L2 sectors / global bytes x readers).  Candidate rules, simplest first: SM ids in
    consecutive blocks of s (s = 1, 2, 4, 8, 16: the engine's old assumption is s = 4), or TPCs (pairs of SMs,
    2k and 2k+1) dealt round-robin to n groups (n = 2 .. 16, as SM ids are dealt to the GPCs), each with a
    cap c on the SMs one merged request serves (1, 2, 4, 8, 16, unbounded).  The rule explaining the most points
    (|predicted - measured| < 0.5 requester) wins; ties go to the simplest (fewest groups, then the smallest
    cap).  H100 (2026-11-25 22:25): TPC round-robin over 8 groups (the 8 GPCs) with at most 4 SMs per request
    explains 33 of 38 points; it misses SM pairs (0, 64) (no merge measured) and (0, 131) (merge measured),
    the sets every 16th / 18th SM and all 132 SMs (34 predicted, 34.9 measured): SM ids from 64 up are not
    dealt round-robin, and the rule text says so.
    """
    pts = []
    for r in points:
        sms = r.get("sms_read") or (_parse_sms(r["sms"], num_sms) if r.get("sms") is not None else None)
        if sms and r.get("distinct_readers") is not None:
            pts.append((r.get("id", r.get("sms")), sms, float(r["distinct_readers"])))
    if not pts:
        return {}
    caps = (1, 2, 4, 8, 16, num_sms)
    cands = [(f"SM ids in blocks of {b}", 0, b, lambda s, b=b: s // b) for b in (1, 2, 4, 8, 16)]
    cands += [(f"TPCs (SMs 2k, 2k+1) dealt round-robin to {n} groups", 1, n, lambda s, n=n: (s // 2) % n)
              for n in range(2, 17)]
    best = None
    for name, kind, size, rule in cands:
        groups = [rule(s) for s in range(num_sms)]
        for cap in caps:
            miss = [pid for pid, sms, got in pts if abs(merge_requests(sms, groups, cap) - got) >= 0.5]
            key = (len(miss), kind, size if kind else -size, cap)
            if best is None or key < best[0]:
                best = (key, name, groups, cap, miss)
    _, name, groups, cap, miss = best
    cap_text = "no limit" if cap >= num_sms else f"at most {cap} SMs per merged request"
    text = (f"{name}, {cap_text}: explains {len(pts) - len(miss)} of {len(pts)} sm_groups points"
            + (f"; not: {', '.join(str(m) for m in miss)}" if miss else ""))
    return {"merge_group_of_sm": tuple(groups), "merge_max_sms": cap if cap < num_sms else None,
            "merge_rule": text}


def dram_stream_from(points: list) -> dict:
    """Loaded DRAM latency vs achieved bandwidth, from CTAs streaming their own data with F bytes in flight.

    Little's law per point: latency = (CTAs resident at once x F) / achieved bytes per second (CTAs resident
    from the kernel's own %globaltimer stamps).  A CTA also has a rate of its own it cannot pass (its pipeline:
    the median per-CTA rate of the points with at most 16 CTAs at the largest F; H100, 4 warps: 47 GB/s);
    points whose CTAs ran within 20 % of it are co-limited by it and left out, and so are the points past the
    peak (another point with less in flight reached 5 % more: H100 at 3-4 CTAs per SM, 2.5-2.7 of 3.05 TB/s,
    spread 17 % -- not modelled).  The curve is made monotone (a latency never falls as load rises).
    """
    rows = []
    for r in points:
        if r.get("layout", "own") != "own":
            continue  # the KV-cache layout points (heads interleaved, pages): a locality question, not the curve
        bw, res, f = r.get("bytes_per_s_median"), r.get("ctas_resident_mean"), r.get("inflight_bytes")
        if bw and res and f:
            rows.append((int(r["ctas"]), int(f), float(bw), float(res)))
    if not rows:
        return {}
    fmax = max(f for _, f, _, _ in rows)
    own = [bw / c for c, f, bw, _ in rows if f == fmax and c <= 16]
    cap = _median(own) if own else None
    peak = max(bw for _, _, bw, _ in rows)
    curve = []
    for c, f, bw, res in rows:
        inflight = res * f
        if cap is not None and bw / res >= 0.8 * cap:
            continue  # within 20 % of the CTA's own limit: co-limited by the CTA, not only by the memory system
        if any(i2 <= inflight and b2 > 1.05 * bw for _, f2, b2, r2 in rows for i2 in (r2 * f2,)):
            continue  # past the peak: less in flight elsewhere reached more bandwidth
        curve.append((bw, inflight / bw))
    curve.sort()
    mono, hi = [], 0.0
    for bw, lat in curve:
        hi = max(hi, lat)
        mono.append((bw, hi))
    out = {"dram_stream_peak_Bps": peak}
    if cap is not None:
        out["cta_stream_max_Bps"] = cap
    if mono:
        out["dram_latency_curve"] = tuple(mono)
    return out


def dram_latency_s(cal: Calibration, bandwidth_Bps: float) -> float | None:
    """The loaded DRAM latency at an achieved bandwidth (None without a dram_stream calibration)."""
    return curve_latency_s(cal.dram_latency_curve, bandwidth_Bps) if cal.dram_latency_curve else None


def curve_latency_s(curve, bandwidth_Bps: float) -> float:
    """Latency at `bandwidth_Bps` on a ((B/s, s), ...) curve: linear between points, flat beyond its ends."""
    if bandwidth_Bps <= curve[0][0]:
        return curve[0][1]
    for (b0, l0), (b1, l1) in zip(curve, curve[1:]):
        if bandwidth_Bps <= b1:
            return l0 + (l1 - l0) * (bandwidth_Bps - b0) / (b1 - b0) if b1 > b0 else l1
    return curve[-1][1]


def dram_queue_latency(cal: Calibration, link_Bps: float) -> tuple | None:
    """The loaded DRAM latency as the attention engine uses it: (((B/s, latency - unloaded latency), ...), the
    unloaded latency s).

    From the `dram_stream` curve (Little's law on CTAs streaming their own data): the latency a request sees
    beyond the unloaded one, at the rate the chip's DRAM is asked for -- 0 up to ~1.2 TB/s, +0.15 us at 2.1,
    +0.61 us at 2.9 (H100).  Only the points below the engine's DRAM link rate (`link_Bps`): past it the link's
    own queue (transfers booked first come, first served) is the wait, and the curve's queue regime (2.8-5.4 us
    at 3.0 TB/s) would count it twice.  The unloaded latency (0.86 us: a CTA with 16-32 KB in flight) is also the
    engine's memory of the asked rate: the requests a new one queues behind went out within one round trip.
    None without the curve."""
    curve = [(b, lat) for b, lat in (cal.dram_latency_curve or ()) if b <= link_Bps]
    if len(curve) < 2:
        return None
    lat0 = curve[0][1]
    return tuple((b, lat - lat0) for b, lat in curve), lat0


def stream_fixed_point(curve, peak_Bps: float, own_Bps: float | None, ctas: float, inflight_bytes: float) -> tuple:
    """(bandwidth B/s, loaded latency s): B = ctas x min(F / latency(B), own), at most peak_Bps (bisection;
    the right side falls as B rises, so the root is unique)."""
    own = own_Bps or float("inf")
    if ctas <= 0 or inflight_bytes <= 0:
        return 0.0, curve_latency_s(curve, 0.0)

    def demand(b):
        return ctas * min(inflight_bytes / curve_latency_s(curve, b), own)
    if demand(peak_Bps) >= peak_Bps:
        return peak_Bps, curve_latency_s(curve, peak_Bps)
    lo, hi = 0.0, peak_Bps
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if demand(mid) > mid:
            lo = mid
        else:
            hi = mid
    b = 0.5 * (lo + hi)
    return b, curve_latency_s(curve, b)


def stream_bandwidth_Bps(cal: Calibration, ctas: int, inflight_bytes_per_cta: float,
                         cta_max_Bps: float | None = None) -> float:
    """DRAM bandwidth that `ctas` resident CTAs reach, each keeping `inflight_bytes_per_cta` in flight: the fixed
    point of  B = ctas x min(F / latency(B), per-CTA limit),  capped at the highest measured rate.
    `cta_max_Bps`: a lower per-CTA limit of the caller's kernel (None: the microbenchmark's).  Requires a
    dram_stream calibration."""
    if not cal.dram_latency_curve:
        raise CalibrationError("no dram_stream calibration: the loaded latency curve is missing")
    owns = [x for x in (cal.cta_stream_max_Bps, cta_max_Bps) if x]
    peak = cal.dram_stream_peak_Bps or cal.dram_latency_curve[-1][0]
    return stream_fixed_point(cal.dram_latency_curve, peak, min(owns) if owns else None, ctas,
                              inflight_bytes_per_cta)[0]


def dependent_loop_from(points: list) -> dict:
    """Round trip and per-CTA transfer rate of a dependent loop (load, store, barrier each iteration).

    One CTA per SM, 4 warps: iteration time = round trip + moved bytes / rate, a least-squares line over the
    tile sizes (moved = 2 x tile: one load, one store).  (The ``read`` points are not used: the compiler
    hoists their loop-invariant loads out of the loop, so they measure nothing.)
    """
    rts = {}
    for r in points:
        ips = r.get("iterations_per_s_median")
        if r.get("mode") == "roundtrip" and ips:
            rts.setdefault(r.get("num_warps", 4), []).append((2.0 * r["tile_bytes"], 1.0 / ips))
    if not rts:
        return {}
    w = 4 if 4 in rts else min(rts)
    xs, ys = zip(*sorted(rts[w]))
    a, b = _fit_line(list(xs), list(ys))
    out = {"l2_roundtrip_s": max(a, 0.0)}
    if b > 0:
        out["dependent_Bps"] = 1.0 / b
    return out


def spills_from(points: list, *, num_sms: int | None = None, l1_bytes_per_sm: int | None = None) -> dict:
    """L2 traffic per spill byte (per byte of local stores / loads executed), from the spilling point whose
    local memory sits deepest inside L1.  H100: every local store reaches the L2 (1.000 on all 18 points, ncu
    L2 writes beyond the global stores / local store bytes); loads that fit in L1 stay there (~0).

    Each point: the compiled kernel's spilled bytes per thread (``compiled.local_bytes_per_thread``), its
    threads, iterations and CTAs, and ncu's local-memory and L2 bytes.  Stores: L2 write bytes beyond the
    global stores; loads: L2 read bytes beyond the global loads (H100: stores reach L2, loads hit L1).
    The figures are per byte *while local memory fits in L1*, so they come from the point(s) with the smallest
    resident local footprint per SM (CTAs per SM of one wave x threads x local bytes; H100: 32 KB of 256 KB).
    Larger footprints (the 22:25 run: 190 KB .. 760 KB per SM) show L1, then L2 overflow: that is the
    capacity mechanism of memsim/local_memory.py (l1_bytes_per_sm only bounds which points may be used).
    """
    rows = []
    for r in points:
        c = r.get("compiled") or {}
        per_thread = c.get("local_bytes_per_thread") or 0
        if per_thread <= 0:
            continue
        per_sm = -(-r["ctas"] // num_sms) if num_sms else 1
        footprint = per_sm * 32 * r["num_warps"] * per_thread
        if l1_bytes_per_sm and footprint > l1_bytes_per_sm:
            continue
        # per byte the local stores and loads moved at L1 (ncu), the unit of the SASS counts the model applies
        # it to; points without those counters: per frame byte per iteration (what the kernel was meant to do)
        issued = per_thread * 32 * r["num_warps"] * r["n_iter"] * r["ctas"]
        st = r.get("local_write_bytes") or issued
        ld = r.get("local_read_bytes") or issued
        rows.append((footprint, max(0.0, r["l2_write_bytes"] - r.get("global_write_bytes", 0.0)) / st,
                     max(0.0, r["l2_read_bytes"] - r.get("global_read_bytes", 0.0)) / ld))
    if not rows:
        return {}
    least = min(f for f, _, _ in rows)
    deep = [(w, rd) for f, w, rd in rows if f == least]
    return {"l2_write_per_spill_store_byte": _median([w for w, _ in deep]),
            "l2_read_per_spill_load_byte": _median([rd for _, rd in deep])}


def spill_rates_from(points: list, *, num_sms: int) -> dict:
    """How fast spilled registers move: per SM by resident warps, and into the L2 for the whole GPU.

    * ``local_rate_curve``: the points that run one CTA per SM on at most a quarter of the SMs (the L2 and DRAM
      far from their limits) time each warp's own local loads and stores: local bytes (ncu's local ld + st at
      L1) / time / CTAs is what one SM moves with ``num_warps`` warps on it.  H100, 2026-11-26: 1, 2, 4, 8, 16
      warps -> 11, 22, 36, 61, 90 GB/s per SM (each warp waits on its reloads; more warps overlap them).
      The median per warp count, sorted by warps.
    * ``spill_store_l2_Bps``: the highest L2 write rate of spill stores (L2 writes beyond the global stores per
      second) over all points: where every SM spills, the stores arrive at the L2 at about 1.5-1.6 TB/s
      (H100), under the L2's rate for the 16-byte-per-thread tile traffic (naive S writes: 2.7 TB/s).
    """
    by_warps: dict[int, list] = {}
    store = []
    for r in points:
        c = r.get("compiled") or {}
        t = r.get("time_s") or 0.0
        local = (r.get("local_read_bytes") or 0.0) + (r.get("local_write_bytes") or 0.0)
        if (c.get("local_bytes_per_thread") or 0) <= 0 or t <= 0 or local <= 0:
            continue
        if r["ctas"] <= num_sms // 4:
            by_warps.setdefault(int(r["num_warps"]), []).append(local / t / r["ctas"])
        store.append(max(0.0, r["l2_write_bytes"] - r.get("global_write_bytes", 0.0)) / t)
    out = {}
    if by_warps:
        out["local_rate_curve"] = tuple((w, _median(v)) for w, v in sorted(by_warps.items()))
    if store:
        out["spill_store_l2_Bps"] = max(store)
    return out


def local_Bps_per_sm(cal: "Calibration", warps_per_sm: float) -> float | None:
    """Spill traffic one SM moves per second with `warps_per_sm` warps resident (linear between the measured
    warp counts; below the first, that point's rate per warp; above the last, the last rate: no data)."""
    curve = cal.local_rate_curve
    if not curve or warps_per_sm <= 0:
        return None
    w0, r0 = curve[0]
    if warps_per_sm <= w0:
        return r0 * warps_per_sm / w0
    for (wa, ra), (wb, rb) in zip(curve, curve[1:]):
        if warps_per_sm <= wb:
            return ra + (rb - ra) * (warps_per_sm - wa) / (wb - wa)
    return curve[-1][1]


def uses_warpgroup_mma(block_m: int, num_warps: int) -> bool:
    """Triton 3.6 on sm_90 issues warpgroup MMAs (wgmma) for a dot when the CTA's warps form whole warpgroups
    (4 warps) and the tile has a warpgroup's 64 rows; else per-warp mma.sync."""
    return num_warps % 4 == 0 and block_m >= 64


def dot_kind(dtype: str, block_m: int, num_warps: int) -> str:
    """How the dots of a tile run: "fma" (fp32, IEEE: FMA pipes, as our fp32 kernels), "wgmma" or "mma"."""
    if dtype in ("fp32", "float32"):
        return "fma"
    return "wgmma" if uses_warpgroup_mma(block_m, num_warps) else "mma"


def dot_chain_from(points: list, hw) -> dict:
    """The `dot_chain` points as (kind, FLOPs per warp per dot, resident warps per SM, FLOP/s per SM).

    Each point: a BM x BN x BK fp16 dot accumulated n_iter times by CTAs of `num_warps` warps, `ctas_per_sm`
    launched per SM (those the registers let reside: `resident`); no memory traffic in the loop.  H100,
    2026-11-26: 38 TFLOP/s (16x16x64, 1 warp, 1 CTA per SM) to 771 (128x128x128, 4 warps, 2 resident): a warp's
    dots wait on each other's latency, so small per-warp dots and few warps leave the tensor cores idle.
    Points that spilled registers are left out (their time is the spills'), and so are the points with the B
    operand loaded from memory every iteration (`operand_b` = "memory", as attention's K/V tiles: 16-bit chains
    lose 20-50 % to that traffic, H100 64x64x64 4 warps 373 -> 188 TFLOP/s; not used yet, see the comment)."""
    rows = []
    for r in points:
        # register-resident chains only: the B-from-memory points are kept as data but not used -- read instead,
        # they moved sets A-F's time medians by -3 to +10 points and a 16x128 8-warp backward to +193 %
        # (notes/fidelity.md, 2026-11-26): the nearest-points lookup over them is not yet a model
        if r.get("error") or r.get("spills") or not r.get("flops_per_sm_s") or r.get("operand_b") == "memory":
            continue
        w = int(r["num_warps"])
        regs = -(-int(r.get("regs_per_thread") or hw.regs_per_thread) // 8) * 8
        resident = max(1, min(int(r["ctas_per_sm"]), hw.regs_per_sm // (regs * 32 * w), hw.max_warps_per_sm // w,
                              hw.max_ctas_per_sm))
        flops_per_warp = 2.0 * r["block_m"] * r["block_n"] * r["block_k"] / w
        kind = dot_kind(r.get("dtype", "float16"), r["block_m"], w)
        rows.append((kind, flops_per_warp, w * resident, float(r["flops_per_sm_s"])))
    return {"dot_chain": tuple(sorted(rows))} if rows else {}


def dot_flops_per_sm_s(cal: "Calibration", dtype: str, *, block_m: int, block_n: int, head_dim: int,
                       num_warps: int, warps_per_sm: int) -> float:
    """The dot rate one SM reaches on an attention launch's tiles: every dot of our kernels (S = Q K^T,
    O += P V, and the backward's four) does 2 x block_m x block_n x head_dim FLOPs, so a warp's share per dot
    is that / num_warps.  fp16/bf16 with `dot_chain` points: the measured rate at the nearest points in
    (log2 FLOPs per warp, log2 warps per SM), same kind (`dot_kind`), inverse-distance weighted (3 nearest);
    without points of that kind: the best GEMM rate (`dot_flops_per_sm_s`)."""
    base = cal.dot_flops_per_sm_s[dtype]
    kind = dot_kind(dtype, block_m, num_warps)
    pts = [r for r in (cal.dot_chain or ()) if r[0] == kind]
    if not pts:
        return base
    import math
    f = math.log2(max(1.0, 2.0 * block_m * block_n * head_dim / num_warps))
    w = math.log2(max(1, warps_per_sm))
    near = sorted((math.hypot(math.log2(fp) - f, math.log2(ws) - w), rate) for _, fp, ws, rate in pts)[:3]
    if near[0][0] < 1e-9:
        return near[0][1]
    num = sum(rate / d for d, rate in near)
    den = sum(1 / d for d, _ in near)
    return num / den


def tma_descriptor_from(points: list) -> dict:
    """A CTA that builds n tensor descriptors in the kernel (write the descriptor, invalidate the TMA unit's
    descriptor cache -- SASS UTMACCTL --, fence) starts its first tile later: a + b n seconds, the line through the
    one-wave points of `tma_descriptor` (benchmarks/tma_descriptor_gpu.py: NDESC 64 x 64 tiles per CTA through
    device-built descriptors minus the same loads through pointers, one CTA per SM).  H100: +1.45 us for 1
    descriptor, +4.57 us for 4 (a = 0.41 us, b = 1.04 us); at eight waves the same CTAs cost only +0.22 / +0.70 us
    per wave: it is latency, co-resident CTAs overlap it."""
    one = [r for r in points if r.get("waves") == 1 and not r.get("error") and r.get("time_s")]
    diffs = []
    for n in sorted({r["ndesc"] for r in one}):
        t = {r["tma"]: r["time_s"] for r in one if r["ndesc"] == n}
        if True in t and False in t:
            diffs.append((float(n), max(0.0, t[True] - t[False])))
    if len(diffs) < 2:
        return {}
    a, b = _fit_line([n for n, _ in diffs], [d for _, d in diffs])
    return {"tma_descriptor_s": (max(0.0, a), max(0.0, b))}


#: the `prologue_trips` tiles that time the round trip alone: 1 KB a CTA a level (the 8 KB tiles are DRAM-bound:
#: there the other CTAs' transfers hide the extra trip, as the engine's links do)
ROUND_TRIP_TILE_BYTES = 1024


def prologue_trips_from(points: list) -> dict:
    """One more round trip in a row, from `prologue_trips` (benchmarks/prologue_trips_gpu.py): each CTA reads
    1 KB tiles whose loads go out level after level (`chain`) or at once (`flat`), the SASS walk's levels recorded
    with each point; per pair at the same grid, (chain - flat) / (waves x (levels_chain - levels_flat)), median.
    Points of the `l2` plan (`shared`: every CTA reads the same tiles, so the levels hit in the L2) give
    `round_trip_l2_s`, the others `round_trip_s` (H100: 0.42-0.48 us over 16-256 waves of 132 x 8 CTAs)."""
    import statistics
    out = {}
    for shared, key in ((False, "round_trip_s"), (True, "round_trip_l2_s")):
        by = {(r["block"] * 4, r["waves"], r["loads"], r["chain"]): r for r in points
              if r.get("time_s") and bool(r.get("shared", False)) == shared}
        per = []
        for (tile, waves, n, chain), r in by.items():
            f = by.get((tile, waves, n, False))
            if not chain or tile != ROUND_TRIP_TILE_BYTES or f is None or "levels" not in r or "levels" not in f:
                continue
            extra = r["levels"] - f["levels"]
            if extra > 0:
                per.append((r["time_s"] - f["time_s"]) / (waves * extra))
        if per:
            out[key] = max(0.0, statistics.median(per))
    return out


def l2_atomics_from(points: list) -> dict:
    """The L2's fp32 reduce-add rate against the CTAs that add into the same lines at once, from `l2_atomics`
    (benchmarks/l2_atomics_gpu.py: 1056 CTAs of 4 warps add 8 KB tiles 64 times over, each tile shared by G of
    them): {"reduce_add_curve": ((G, bytes/s), ...)}, the median over the runs' points of each G.  H100: 2.7 TB/s
    with private tiles, 2.2 at G = 2-8, 1.1-1.3 at 64, 0.6 at 1056 (stores in the same program: 3.1)."""
    by: dict = {}
    for r in points:
        if r.get("op") == "add" and r.get("exact", True) and r.get("time_s"):
            by.setdefault(int(r["group"]), []).append(r["bytes"] / r["time_s"])
    if not by:
        return {}
    import statistics
    return {"reduce_add_curve": tuple((g, statistics.median(v)) for g, v in sorted(by.items()))}


def reduce_add_Bps(curve, sharers: float) -> float:
    """The reduce-add rate of `curve` (`l2_atomics_from`) at `sharers` CTAs per line: linear in log2(sharers)
    between the measured points, the end points' rates beyond them."""
    import math
    g = max(1.0, float(sharers))
    if g <= curve[0][0]:
        return curve[0][1]
    for (g0, r0), (g1, r1) in zip(curve, curve[1:]):
        if g <= g1:
            x = (math.log2(g) - math.log2(g0)) / (math.log2(g1) - math.log2(g0))
            return r0 + x * (r1 - r0)
    return curve[-1][1]


def tma_coalesce_from(points: list) -> dict:
    """The narrowest TMA box row the L2 request coalescer merges, from `tma_window` (benchmarks/tma_window_gpu.py):
    G readers stream the same boxes through TMA and, at the same point, through LSU loads.  A TMA point coalesces
    when its L2 / asked bytes sit nearer the LSU figure of the same point (which merges) than 1 (no merging):
    below their midpoint.  Readers in lockstep only (no start delay).  The threshold is the narrowest row width at
    which every TMA point coalesces, provided every narrower width's points all do not -- a clean split; anything
    else (a width that sometimes does, rows that coalesce below rows that do not) is an error, not a figure.
    H200 and H100 (2026-11-26): rows of 32 and 64 B stay at 0.94-1.00 where LSU merges to 0.27-0.50; rows of 128
    and 256 B merge as LSU does: 128 B."""
    lsu = {(r["rows"], r["cols"], r["readers"], r.get("n_sets", 1), r.get("sets_fastest", 0), r["pace_ns"]):
           r["l2_per_global_byte"] for r in points if r["path"] == "lsu" and not r.get("delay_ns")}
    verdict: dict = {}
    for r in points:
        if r["path"] != "tma" or r.get("delay_ns"):
            continue
        key = (r["rows"], r["cols"], r["readers"], r.get("n_sets", 1), r.get("sets_fastest", 0), r["pace_ns"])
        if key not in lsu or lsu[key] > 0.75:  # the LSU twin must merge for the point to say anything
            continue
        verdict.setdefault(r["row_bytes"], set()).add(r["l2_per_global_byte"] < (lsu[key] + 1.0) / 2)
    if not verdict:
        return {}
    widths = sorted(verdict)
    mixed = [w for w in widths if len(verdict[w]) > 1]
    if mixed:
        raise CalibrationError(f"tma_window: TMA rows of {mixed} B coalesce at some points and not at others; "
                               "no row-width threshold describes them")
    yes = [w for w in widths if True in verdict[w]]
    if not yes:
        return {"tma_coalesce_min_row_bytes": 2 * widths[-1]}  # none coalesced: above every width measured
    if any(True not in verdict[w] for w in widths if w > yes[0]):
        raise CalibrationError(f"tma_window: TMA rows coalesce at {yes} B but not at some wider rows "
                               f"({[w for w in widths if w > yes[0] and True not in verdict[w]]} B)")
    return {"tma_coalesce_min_row_bytes": yes[0]}


def l2_bandwidth_from(points: list) -> dict:
    """The L2 link's read and write rates from the `l2_bandwidth` points (benchmarks/l2_bandwidth_gpu.py: CTAs
    streaming an L2-resident working set from their own offsets).  Reads: the highest L2 read rate (ncu's L2 read
    sectors x 32 B / kernel time) among the read points that hit the L2 (hit rate >= 0.98: not a DRAM stream).
    Writes: the highest L2 write rate among the store-only points.  H100 (2026-11-26): reads 7.30-7.39 TB/s at 4-16
    CTAs per SM, LSU and TMA alike (the preset's 5.5 was an estimate); stores 3.96-4.09 TB/s at every CTA count
    (1-8 per SM); a copy moves 3.5 TB/s each way at once, 7.0 in all: reads and writes share the read rate, and
    writes also have their own lower ceiling (the engine: every byte on the shared link, stores also on a write
    link).  The highest rates reached, floors of the peaks."""
    out = {}
    rates = [r["l2_read_Bps"] for r in points if r.get("plan") == "bandwidth" and r.get("l2_read_Bps")
             and r.get("hit_rate", 0.0) >= 0.98]
    if rates:
        out["l2_read_Bps"] = max(rates)
    w = [r["l2_write_Bps"] for r in points if r.get("plan") == "write" and r.get("path") == "store"
         and r.get("l2_write_Bps")]
    if w:
        out["l2_write_Bps"] = max(w)
    out.update(partial_store_cost_from(points))
    return out


def partial_store_cost_from(points: list) -> dict:
    """A partial-sector store in whole-sector stores, from the `l2_bandwidth` pitch points: CTAs store 128-B rows of
    bf16 (warp instructions of 64 B) at a pitch p.  Per row the instructions touch S sectors, P of them in part
    (memsim.sectors: `row_sector_factor`, `row_partial_share`), F = S - P whole.  With the aligned pitch's time per
    row as 4 whole-sector stores, a pitch's time t_p / t_aligned = (F + k P) / 4 gives k; the median over the
    misaligned pitches.  H100 (2026-11-26): k = 1.70-1.74 at pitches 130 / 136 / 144 B (sectors per row 5.83 / 5.46 /
    4.98 measured, 5.88 / 5.50 / 5.00 by the rule)."""
    from .sectors import row_partial_share, row_sector_factor
    pts = [r for r in points if r.get("plan") == "pitch" and r.get("time_s") and r.get("pitch_bytes")]
    aligned = [r["time_s"] for r in pts if r["pitch_bytes"] % 32 == 0]
    if not aligned:
        return {}
    t0 = _median(aligned)
    ks = []
    for r in pts:
        if r["pitch_bytes"] % 32 == 0:
            continue
        sectors = row_sector_factor(r["pitch_bytes"], 128, 2) * 128 / 32
        part = row_partial_share(r["pitch_bytes"], 128, 2) * sectors
        if part:
            ks.append((4.0 * r["time_s"] / t0 - (sectors - part)) / part)
    return {"partial_store_cost": _median(ks)} if ks else {}


def l2_link_Bps(hw: Hardware, cal: Calibration) -> float:
    """The rate of the modelled L2 link: measured where calibrated, else the preset's."""
    return cal.l2_read_Bps or hw.l2_bw_Bps


def _fit_line(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def host_pass_params(row: dict) -> dict:
    """The plan parameters of a `host_pass` fact row: its id's ``k=v`` pairs (rows store only some as fields)."""
    pid = str(row.get("id", ""))
    out = {k: row[k] for k in ("algorithm", "phase", "seq", "head_dim") if k in row}
    for part in pid.split("/", 1)[-1].split(","):
        k, _, v = part.partition("=")
        if k and v:
            out[k] = int(v) if v.lstrip("-").isdigit() else v
    return out


def host_pass_case(params: dict):
    """(problem, schedule) of a host_pass point: our entry point on a 1 x 1 x seq x seq fp16 problem at the
    point's tiles (one home: `verification.calibrate.host_pass_spec` writes it out for the case runner)."""
    from .schedule import AttentionProblem, Schedule
    p = AttentionProblem(batch=1, heads_q=1, heads_kv=1, seq_q=params["seq"], seq_kv=params["seq"],
                         head_dim=params["head_dim"], dtype="fp16", causal=False)
    s = Schedule(params["algorithm"], params["phase"], params.get("block_m", 16), params.get("block_n", 16),
                 params.get("num_warps", 1), params.get("num_stages", 1))
    return p, s


def host_pass_paths(rows: list) -> dict:
    """{(algorithm, phase): the launch names its host_pass point makes} for the fact's rows (a row whose point no
    longer builds is left out: its floor then applies by (algorithm, phase) alone)."""
    from .schedule import kernel_launches
    out = {}
    for r in rows:
        try:
            out[(r["algorithm"], r["phase"])] = tuple(L.name for L in kernel_launches(*host_pass_case(
                host_pass_params(r))))
        except Exception:  # noqa: BLE001 -- an old point the registry refuses today
            continue
    return out


def host_floor_for(floors: dict, paths: dict | None, algorithm: str, phase: str, names=None) -> float | None:
    """The measured host floor that applies to a pass of (algorithm, phase) making the launches `names`: a floor is
    the launch path's (the Python launcher, the kernels it launches), not the entry point's -- hopper_fa3's forward
    falls back to hopper's launch for tiles FA3's kernel does not take, and its own point (the Gluon kernel) took
    124 us on set T's machine where that fallback pass ran in 49 (notes/fidelity.md, thirteenth session).  The
    (algorithm, phase) point where it makes these launches (or the launches are not known), else a point that
    does, else the (algorithm, phase) point; None: none measured."""
    key = (algorithm, phase)
    names = tuple(names) if names else None
    paths = paths or {}
    if names is not None and paths.get(key) not in (None, names):
        same = [k for k, v in paths.items() if v == names and k in floors]
        if same:
            return floors[min(same, key=lambda k: (k[1] != phase, k))]
    return floors.get(key)


def host_time_s(cal: Calibration, algorithm: str, phase: str, launches: int, names=None) -> float:
    """The host-bound floor of a pass: measured for its launch path where calibrated (`host_floor_for`; `names`:
    the pass's launch names), else per launch."""
    if cal.host_pass_s:
        t = host_floor_for(cal.host_pass_s, cal.host_pass_launches, algorithm, phase, names)
        if t is not None:
            return t
    return launches * cal.host_launch_s


def ncu_dirty_residue_bytes(cal: Calibration, l2_bytes: int) -> float | None:
    """Dirty bytes the L2 holds when ncu starts a measured kernel (after its cache flush) that are not the kernel's:
    written back to DRAM inside the kernel once its reads push them out.  (Added for the decode model, issue 12.)

    From the `l2_thrash_drift` points (ncu, groups of CTAs streaming 4 MB sets): every point that reads at least
    twice the L2 while its own stores stay well inside the dirty capacity (stores <= half of `l2_dirty_bytes`, so
    they are never written back) still writes 2.38-2.48 MB to DRAM (H100, 2026-11-25: 12 repeats, reads 105-210 MB,
    stores 3.3-6.6 MB); the residue is the median of those writes.  None without such points."""
    pts = (cal.raw.get("facts", cal.raw) if cal.raw else {}).get("l2_thrash_drift") or []
    cap = cal.l2_dirty_bytes
    if not cap:
        return None
    ws = []
    for r in pts:
        for rep in r.get("repeats") or []:
            rd, wr = rep.get("dram__bytes_read.sum"), rep.get("dram__bytes_write.sum")
            st = rep.get("l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum")
            if rd is None or wr is None or st is None:
                continue
            if rd >= 2 * l2_bytes and st <= cap / 2:
                ws.append(float(wr))
    return _median(ws) if ws else None
