"""The prologue's round trips (memsim/MODEL.md "the prologue's round trips").

A warp issues in order: an instruction that waits on a scoreboard holds back every instruction after it, so a load
issued after a wait for level-L data lands at level L + 1 (`kernels.sass._round_trip_levels`).  flash2's dK/dV
pass stores K and V to shared memory (the STS waits for their loads) before it issues the first Q / dO copies: two
round trips before the first trip computes, where the engine charged one
(`benchmarks/prologue_trips_gpu.py`; the masked_band run's one-block launches).
"""
from __future__ import annotations

import pytest

from memsim.warp_issue import Instr


def _ldg(sb: int) -> Instr:
    return Instr(op="LDG", stall=1, write_sb=sb)


def _use(*sbs: int, op: str = "FADD") -> Instr:
    return Instr(op=op, stall=1, wait_mask=sum(1 << b for b in sbs))


def _copy() -> Instr:
    return Instr(op="LDGSTS", stall=1)


def _commit() -> Instr:
    return Instr(op="LDGDEPBAR", stall=1, write_sb=0)


def _depbar(n: int) -> Instr:
    return Instr(op="DEPBAR", stall=1, depbar=(0, n))


@pytest.mark.parametrize("name, prologue, level, groups, loads_at", [
    ("loads all at once", [_ldg(2), _ldg(3), _ldg(2)], 0, [], 1),
    ("used, nothing after", [_ldg(2), _use(2)], 1, [], 1),
    ("K, V stored, then the Q copies (flash2 dK/dV)",
     [_ldg(2), _ldg(3), _use(2, 3, op="STS"), _copy(), _copy(), _commit(), _copy(), _commit()], 1, [2, 2], 1),
    ("copies first, then K, V stored (one round trip)",
     [_copy(), _commit(), _ldg(2), _use(2, op="STS")], 1, [1], 1),
    ("a load whose address needs the previous one",
     [_ldg(2), _use(2), _ldg(3), _use(3), _ldg(4)], 2, [], 3),
    ("a wait on a scoreboard an earlier load shares waits for that one too",
     [_ldg(5), _ldg(2), _use(2), _ldg(5), _use(5)], 2, [], 2),
    ("DEPBAR.LE SB0, 1 waits for all but the newest group",
     [_copy(), _commit(), _depbar(0), _copy(), _commit(), _copy(), _commit(), _depbar(1)], 2, [1, 2, 2], 0),
])
def test_round_trip_levels(name, prologue, level, groups, loads_at):
    from kernels.sass import _round_trip_levels
    got_level, got_groups, sb = _round_trip_levels(prologue)
    assert (got_level, got_groups, max(sb)) == (level, groups, loads_at), (
        f"{name}: waited for level {got_level} (want {level}), groups at {got_groups} (want {groups}), "
        f"register loads land at {max(sb)} (want {loads_at})")


class _OneStep:
    """CTAs of one step each: 16 KB of loads, then a short compute (the engine's minimal work interface)."""
    name, dependent_loop, cta_l1_bytes, launch, num_warps = "prologue", False, None, None, 4

    def __init__(self, num_ctas: int):
        self.num_ctas = num_ctas

    def cta_steps(self, idx):
        nb = 16 << 10
        return [([(("t", idx), 1, nb, nb, -1, nb)], [], 1.0e6, 0, 1)]


@pytest.mark.parametrize("trips", [1, 2, 3])
def test_engine_waits_the_round_trips_in_a_row(trips):
    """One SM slot, CTAs one after another: each extra round trip adds the first step's wait once per CTA."""
    from memsim.costs import LaunchCost
    from memsim.engine import L2Cache, LaunchModel
    from memsim.hardware import load_hardware
    hw = load_hardware("h100-sxm")

    def run(rt):
        cost = LaunchCost(name="prologue", num_warps=4, regs_per_thread=64, ctas_per_sm=1, occupancy_limit="warps",
                          sec_per_flop=1e-15, sec_per_exp=1e-12, issue_s_per_tile=0.0,
                          spill_l2_write_bytes_per_tile=0, spill_l2_read_bytes_per_tile=0,
                          spill_dram_write_fraction=0.0, spill_dram_read_fraction=0.0, facts_source="test",
                          prologue_round_trips=rt)
        hw1 = hw.__class__(**{**hw.__dict__, "num_sms": 1})
        m = LaunchModel(hw1, _OneStep(4), L2Cache(50 << 20), cost, num_stages=2, dram_Bps=3e12,
                        launch_overhead_s=0.0)
        m.progress = None
        m.run()
        return m.end_time
    base, more = run(1), run(trips)
    want = 4 * (trips - 1) * hw.mem_latency_s
    assert more - base == pytest.approx(want, rel=1e-6), (
        f"{trips} round trips: {(more - base) * 1e6:.3f} us more than one, want {want * 1e6:.3f}")


def test_flash2_dkdv_compiled_waits_two_round_trips():
    """flash2's dK/dV pass compiled for sm_90 on this CPU from the table entry's own launch: K and V stored to
    shared memory before the first Q / dO copies -- two round trips."""
    pytest.importorskip("triton")
    from kernels import sass as S
    try:
        S.nvdisasm_path()
    except S.SassError as e:
        pytest.skip(str(e))
    from memsim import compiled
    e = next((e for k, e in compiled.load_table("sm90").items()
              if k.startswith("flash2_bwd_dkdv|fp16|d64|bm64|bn32|w4|st2|") and "groups" not in (e.get("issue") or {})),
             None)
    if e is None:
        pytest.skip("no flash2 dK/dV fp16 d64 64x32 entry in the table")
    import os
    import subprocess
    import sys
    code = ("import json, sys\nfrom kernels import compiled_facts as cf, sass as S\n"
            f"e = json.loads({__import__('json').dumps(__import__('json').dumps(e))})\n"
            "print(S.prologue_round_trips(S.disassemble(cf._compile_entry(e, 'sm90').asm['cubin'])))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "2", r.stdout[-500:]


def test_round_trip_from_the_microbenchmark_pairs():
    """`prologue_trips_from`: per 1 KB chain / flat pair, the time difference over waves x extra levels (the SASS
    walk's), median; the 8 KB points (DRAM-bound: other CTAs hide the trip) and pairs of equal levels do not count."""
    from memsim.calibration import prologue_trips_from

    def pt(block, waves, loads, chain, levels, t_us):
        return {"block": block, "waves": waves, "loads": loads, "chain": chain, "levels": levels, "time_s": t_us * 1e-6}
    pts = [pt(256, 16, 2, False, 1, 30.0), pt(256, 16, 2, True, 2, 38.0),     # 0.5 us
           pt(256, 64, 3, False, 1, 100.0), pt(256, 64, 3, True, 3, 160.0),   # 60 / 128 = 0.469 us
           pt(256, 64, 4, False, 1, 110.0), pt(256, 64, 4, True, 4, 206.0),   # 96 / 192 = 0.5 us
           pt(2048, 16, 2, False, 1, 160.0), pt(2048, 16, 2, True, 2, 999.0),
           pt(256, 16, 3, False, 3, 40.0), pt(256, 16, 3, True, 3, 90.0)]
    got = prologue_trips_from(pts)["round_trip_s"]
    assert got == pytest.approx(0.5e-6), f"{got * 1e6:.4f} us, want the median 0.5"
    assert prologue_trips_from([pt(2048, 16, 2, False, 1, 1.0), pt(2048, 16, 2, True, 2, 2.0)]) == {}


def test_h100_calibration_has_the_measured_round_trip():
    """The preset's calibration carries the merged run (H100 80GB HBM3, 2026-11-27 03:19 UTC): 0.42-0.49 us a level
    at 16-256 waves, between the pointer chase's load latency (0.37 us) and a 16-32 KB CTA's first loads (0.86)."""
    import memsim
    from memsim.calibration import calibration_for
    cal = calibration_for(memsim.load_hardware("h100-sxm"))
    assert cal.round_trip_s is not None and 0.3e-6 < cal.round_trip_s < 0.86e-6, cal.round_trip_s


class _Ragged(_OneStep):
    """CTAs of one step each reading `nb` bytes (a ragged tile reads fewer than the kernel loads at full tile)."""

    def __init__(self, num_ctas: int, nb: int):
        super().__init__(num_ctas)
        self.nb = nb

    def cta_steps(self, idx):
        return [([(("t", idx), 1, self.nb, self.nb, -1, self.nb)], [], 1.0e6, 0, 1)]


@pytest.mark.parametrize("read_kb, want_levels", [(16, 8.0), (8, 4.0), (4, 2.0), (1, 1.0)])
def test_a_ragged_cta_of_a_loopless_kernel_waits_its_share_of_the_chain(read_kb, want_levels):
    """flash2's preprocess loads O / dO row by row, each row under its own `row < seq_q` predicate: a CTA whose tile
    has few real rows issues few of the chain's loads (the rest are predicated off and set no scoreboard).  With
    `prologue_load_bytes` (the full tile's 16 KB) a CTA reading k KB waits max(1, 8 k / 16) of 8 round trips."""
    from memsim.costs import LaunchCost
    from memsim.engine import L2Cache, LaunchModel
    from memsim.hardware import load_hardware
    hw = load_hardware("h100-sxm")
    hw1 = hw.__class__(**{**hw.__dict__, "num_sms": 1})
    rt_s = 0.45e-6

    got = (_run_chain(hw1, read_kb, 8, 16 << 10, rt_s) - _run_chain(hw1, read_kb, 1, 16 << 10, rt_s)) / (4 * rt_s) + 1
    # (the chain overlaps the step's own transfer, a few ns here: hence the tolerance)
    assert got == pytest.approx(want_levels, rel=2e-3), f"{read_kb} KB of 16: waited {got:.3f} levels, want {want_levels}"
    every = (_run_chain(hw1, read_kb, 8, 0, rt_s) - _run_chain(hw1, read_kb, 1, 0, rt_s)) / (4 * rt_s) + 1
    assert every == pytest.approx(8.0, rel=2e-3), "without the full tile's bytes every CTA waits the whole chain"


def _run_chain(hw1, read_kb, trips, full, rt_s, dram_Bps=3e12):
    """End time of 4 one-step CTAs on one SM, each reading `read_kb` KB through a chain of `trips` round trips."""
    from memsim.costs import LaunchCost
    from memsim.engine import L2Cache, LaunchModel
    cost = LaunchCost(name="pre", num_warps=4, regs_per_thread=64, ctas_per_sm=1, occupancy_limit="warps",
                      sec_per_flop=1e-15, sec_per_exp=1e-12, issue_s_per_tile=0.0,
                      spill_l2_write_bytes_per_tile=0, spill_l2_read_bytes_per_tile=0,
                      spill_dram_write_fraction=0.0, spill_dram_read_fraction=0.0, facts_source="test",
                      prologue_round_trips=trips, prologue_load_bytes=full)
    m = LaunchModel(hw1, _Ragged(4, read_kb << 10), L2Cache(50 << 20), cost, num_stages=2, dram_Bps=dram_Bps,
                    launch_overhead_s=0.0, round_trip_s=rt_s)
    m.progress = None
    m.run()
    return m.end_time


def test_a_busy_dram_hides_a_loopless_chain():
    """The chain runs while the links move the step's bytes: with the DRAM slow enough that a CTA's 16 KB take
    longer than its 7 extra round trips, the chain costs nothing (`prologue_trips`' 8 KB points: 0.0-0.2 us); with
    it fast, all of it."""
    from memsim.hardware import load_hardware
    hw = load_hardware("h100-sxm")
    hw1 = hw.__class__(**{**hw.__dict__, "num_sms": 1})
    rt_s = 0.45e-6
    slow = 16e3 / (10 * rt_s)  # 16 KB take 10 round trips at this rate
    hidden = _run_chain(hw1, 16, 8, 16 << 10, rt_s, slow) - _run_chain(hw1, 16, 1, 16 << 10, rt_s, slow)
    assert hidden == pytest.approx(0.0, abs=1e-12), f"{hidden * 1e6:.3f} us more with the DRAM busy, want 0"
    shown = _run_chain(hw1, 16, 8, 16 << 10, rt_s) - _run_chain(hw1, 16, 1, 16 << 10, rt_s)
    assert shown == pytest.approx(4 * 7 * rt_s, rel=2e-3), f"{shown * 1e6:.3f} us with the DRAM idle"


def test_the_l2_plan_gives_the_l2_round_trip():
    """`prologue_trips_from` keeps the plans apart: `shared` points (every CTA re-reads one wave's tiles: L2 hits)
    give `round_trip_l2_s`, the others `round_trip_s`."""
    from memsim.calibration import prologue_trips_from

    def pt(waves, loads, chain, levels, t_us, shared):
        return {"block": 256, "waves": waves, "loads": loads, "chain": chain, "levels": levels, "time_s": t_us * 1e-6,
                "shared": shared}
    pts = [pt(64, 3, False, 1, 100.0, False), pt(64, 3, True, 3, 164.0, False),   # 0.5 us
           pt(64, 3, False, 1, 50.0, True), pt(64, 3, True, 3, 88.4, True)]       # 0.3 us
    got = prologue_trips_from(pts)
    assert got["round_trip_s"] == pytest.approx(0.5e-6) and got["round_trip_l2_s"] == pytest.approx(0.3e-6), got


def test_preprocess_entries_load_their_tiles_once():
    """flash2's preprocess reads O and dO (block_m x d each) once: the table's load_bytes_per_thread (the SASS's
    LDGs) x threads is exactly those bytes on every entry whose chain is more than one round trip."""
    from memsim import compiled
    size = {"fp16": 2, "bf16": 2, "fp32": 4}
    bad, n = [], 0
    for k, e in compiled.load_table("sm90").items():
        rep = e.get("issue") or {}
        if e.get("launch") != "flash2_bwd_preprocess" or (rep.get("prologue_round_trips") or 1) < 2:
            continue
        s, p = e["schedule"], e["problem"]
        got = rep.get("load_bytes_per_thread", 0) * s["num_warps"] * 32
        want = 2 * s["block_m"] * p["head_dim"] * size[p["dtype"]]
        n += 1
        if got != want:
            bad.append(f"{k}: {got} B, want {want}")
    assert n and not bad, f"{len(bad)} of {n}: " + "; ".join(bad[:5])


def test_flash1_outer_steps_without_a_trip_still_wait_their_loads():
    """flash1 puts K_j / V_j in the dot operands' layout before its inner loop, so an outer step whose inner loop
    makes no trip (causal, a K/V block no Q block sees) still waits its loads, and the next step's loads go out a
    round trip later.  Live r11262_008 (115 queries, 5504 keys, causal: 168 of 172 K/V blocks unseen) measured 111.5
    us on the H100 where the model gave 41 (-63 %); each unseen block costs at least an L2 round trip now."""
    import memsim
    from memsim.calibration import calibration_for
    from memsim.schedule import AttentionProblem, Schedule
    hw = memsim.load_hardware("h100-sxm")
    cal = calibration_for(hw)
    s = Schedule(algorithm="flash1", phase="fwd", block_m=16, block_n=32, num_warps=1, num_stages=2,
                 grid_order="heads_fastest")
    t = {}
    for n in (2048, 4096):
        p = AttentionProblem(batch=1, heads_q=4, heads_kv=4, seq_q=64, seq_kv=n, head_dim=32, dtype="bf16",
                             causal=True, causal_align="top_left")
        t[n] = memsim.simulate(p, s, hw).kernels[0]["time_s"]
    unseen = (4096 - 2048) // 32  # K/V blocks the 64 queries never see
    assert t[4096] - t[2048] >= unseen * cal.round_trip_l2_s, (t, unseen * cal.round_trip_l2_s)
