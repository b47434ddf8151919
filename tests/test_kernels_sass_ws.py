"""Warp-specialised SASS (Triton 3.6's `warp_specialize=True`): kernels.sass reads its partitions, and memsim.costs
reads the launch as the card runs it -- 12 launched warps, two consumer warpgroups side by side, the producer's
descriptors, a persistent walk's per-tile code (compiled-table profile 9)."""
from __future__ import annotations

import pytest

from kernels.sass import _decode, instructions, issue_profile, parse, warp_specialised

_CTRL = "/* 0x000fe2000fffe03f */"


def _ctrl(stall: int = 1, write_sb: int = 7, read_sb: int = 7, wait_mask: int = 0) -> str:
    """The second 64-bit word of an instruction with these control bits (bits 41-57, `kernels.sass.instructions`)."""
    bits = stall | (write_sb << 5) | (read_sb << 8) | (wait_mask << 11)
    return f"/* 0x{bits << 41:016x} */"


def _sass(lines: list) -> str:
    """nvdisasm -hex shaped text: each instruction with its address and a control word line under it (stall 1, no
    scoreboard, unless the line is given as (text, control word))."""
    out, addr = [], 0
    for ln in lines:
        ln, ctrl = ln if isinstance(ln, tuple) else (ln, _CTRL)
        if ln.startswith(".L_x_"):
            out.append(f"{ln}:")
            continue
        out.append(f"        /*{addr:04x}*/                   {ln} ;                /* 0x0000000000007947 */")
        out.append(f"                                                                  {ctrl}")
        addr += 16
    return "\n".join(out)


def _ws_kernel(persistent: bool) -> str:
    walk_open = lambda t: [f".L_x_2{t}"] if persistent else []
    walk_close = lambda t: [f"@!P3 BRA `(.L_x_2{t})"] if persistent else []
    consumer = lambda tile, setup: (["USETMAXREG.TRY_ALLOC.CTAPOOL UP0, 0xe8", "S2R R0, SR_TID.X", "UTMACCTL.IV [UR6]"]
                                    + walk_open(tile) + [setup, f".L_x_{tile}", "HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], R24",
                                                   "MUFU.EX2 R3, R3", "FFMA R4, R3, R5, R4", f"@!P1 BRA `(.L_x_{tile})",
                                                   "STG.E desc[UR50][R4.64], R23"]
                                    + walk_close(tile) + ["@!P2 BRA `(.L_x_5)", ".L_x_6", "USETMAXREG.DEALLOC.CTAPOOL 0x78",
                                                    "BRA `(.L_x_9)"])
    return _sass(["@!P0 BRA `(.L_x_0)", ".L_x_9", "USETMAXREG.DEALLOC.CTAPOOL 0x78", "BAR.SYNC.DEFER_BLOCKING 0x1"]
                 + consumer(1, "IMAD R7, R0, 0x2, RZ") + consumer(2, "IMAD R8, R0, 0x2, RZ")
                 + [".L_x_0", "USETMAXREG.DEALLOC.CTAPOOL 0x28", "UTMACCTL.IV [UR22]", "UTMACCTL.IV [UR8]",
                    "UTMACCTL.IV [UR16]", ".L_x_3", "UTMALDG.2D [UR12], [UR22]", "@!P0 BRA `(.L_x_3)", "EXIT",
                    # out-of-line mbarrier try-wait stub: retries itself, then returns into the consumer
                    ".L_x_5", "SYNCS.PHASECHK.TRANS64.TRYWAIT P0, [UR4], R3", "@!P0 BRA `(.L_x_5)", "BRA `(.L_x_6)",
                    ".L_x_7", "BRA `(.L_x_7)"])


def test_stub_returns_after_the_last_exit_are_not_loops():
    sass = _ws_kernel(persistent=False)
    ins, loops = instructions(sass)
    spans = {lb: (a, b) for lb, a, b in loops}
    exit_at = next(k for k, x in enumerate(ins) if x.op == "EXIT")
    # the stub's return (BRA .L_x_6, after EXIT, to code before it) is no loop; its own retry and the final
    # self-branch stay (they lie after EXIT and cover nothing of the kernel)
    assert ".L_x_6" not in spans, f"loops {spans}"
    assert {".L_x_1", ".L_x_2", ".L_x_5", ".L_x_7"} <= set(spans), f"loops {spans}"
    assert all(a > exit_at for lb, (a, b) in spans.items() if lb in (".L_x_5", ".L_x_7"))
    assert ".L_x_6" not in {lb for lb, _ in parse(sass)}


@pytest.mark.parametrize("persistent", [False, True])
def test_partitions_of_a_warp_specialised_kernel(persistent):
    ins, loops, marks = _decode(_ws_kernel(persistent))
    ws = warp_specialised(ins, loops, marks)
    assert ws is not None and ws.groups == 2, ws
    assert ws.producer_descriptors == 3  # the consumers' own (O) descriptors are built beside the producer's
    body = [x.op for x in ins[ws.tile[0]:ws.tile[1] + 1]]
    assert body == ["HGMMA", "MUFU", "FFMA", "BRA"], body
    once = [x.op for x in ws.once]
    per_tile = [x.op for x in ws.per_tile]
    if persistent:  # the walk's set-up and epilogue run per tile; the prologue once
        assert per_tile == ["IMAD", "STG"] and once == ["USETMAXREG", "S2R", "UTMACCTL"], (once, per_tile)
    else:
        assert per_tile == [] and once == ["USETMAXREG", "S2R", "UTMACCTL", "IMAD", "STG"], once


def test_not_warp_specialised_without_setmaxreg():
    sass = _sass([".L_x_1", "HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], R24", "@!P1 BRA `(.L_x_1)", "EXIT"])
    ins, loops, marks = _decode(sass)
    assert marks == [] and warp_specialised(ins, loops, marks) is None


def _lat():
    from memsim.warp_issue import IssueLatencies
    return IssueLatencies(cycles={"MUFU": 20.0, "SHFL": 25.0, "LDS": 30.0, "BAR": 0.0}, hmma_flops_per_cycle=512.0,
                          hgmma_flops_per_cycle=4096.0, mufu_cycles=8.0)


@pytest.mark.parametrize("persistent", [False, True])
def test_issue_profile_replays_both_consumer_groups(persistent):
    from memsim.warp_issue import replay
    sass = _ws_kernel(persistent)
    prof = issue_profile(sass, num_warps=4, max_ctas=2, lat=_lat())
    ins, loops, marks = _decode(sass)
    ws = warp_specialised(ins, loops, marks)
    body = ins[ws.tile[0]:ws.tile[1] + 1]
    assert prof["groups"] == 2 and prof["tma_descriptor_inits"] == 3
    want = [round(replay(body, warps_per_cta=4, ctas=2 * c, lat=_lat()), 1) for c in (1, 2)]
    assert prof["tile_cycles"] == want, (prof["tile_cycles"], want)
    assert ("tile_fixed_cycles" in prof) is persistent
    if persistent:
        assert len(prof["tile_fixed_cycles"]) == 2 and prof["tile_fixed_instructions"] == 2


def _facts(issue: dict, launched: int | None):
    from memsim.compiled import CompiledFacts
    return CompiledFacts(launch="hopper_fwd", regs_per_thread=168, spill_store_bytes=0, spill_load_bytes=0,
                         local_bytes_per_thread=0, shared_bytes=82_000, num_warps=4, num_stages=2, source="test",
                         loop={"instructions": 300, "local_store_bytes": 0, "local_load_bytes": 0}, issue=issue,
                         launched_warps=launched)


@pytest.mark.parametrize("groups, launched, want_ctas, persistent", [(2, 12, 1, True), (2, 12, 1, False),
                                                                    (1, None, 2, False)])
def test_costs_read_the_launched_warps_and_the_groups(groups, launched, want_ctas, persistent):
    """168 registers x 384 launched threads leave one CTA per SM (ncu: launch__occupancy_limit_registers 1) where the
    schedule's 4 warps leave two; two groups do the trip's FLOPs together and overlap dot and exp."""
    pytest.importorskip("simpy")
    import memsim
    from memsim.calibration import calibration_for
    from memsim.costs import launch_cost
    from memsim.schedule import AttentionProblem, Schedule
    hw = memsim.load_hardware("h100-sxm")
    cal = calibration_for(hw)
    issue = {"tile_cycles": [3000.0, 6000.0], "straight_cycles": [900.0, 1800.0], "tile_instructions": 450,
             "straight_instructions": 120, "tile_mma_flops_per_warp": 1048576.0, "tma_descriptor_inits": 3,
             "latencies": cal.issue.fingerprint(), "mma_instructions": 64}
    if groups > 1:
        issue["groups"] = groups
    if persistent:
        issue["tile_fixed_cycles"] = [1200.0, 2400.0]
    p = AttentionProblem(4, 32, 32, 4096, 4096, 64, "bf16", False)
    s = Schedule("hopper", "fwd", 128, 128, 4, 2)
    c = launch_cost(hw, cal, "hopper_fwd", p, s, 82_000, facts=_facts(issue, launched), num_ctas=4096)
    assert c.ctas_per_sm == want_ctas, c
    assert c.trip_mma_flops == pytest.approx(1048576.0 * 4 * groups)
    assert c.overlap_dot_exp is (groups >= 2)
    clock = cal.mma_sm_clock_Hz
    # one CTA's turn: the replay at the resident CTAs over their number (groups are inside the replayed cycles)
    trip = {1: 3000.0, 2: 6000.0 / 2}[want_ctas]
    assert c.issue_s_per_tile == pytest.approx(trip / clock), (c.issue_s_per_tile * clock, trip)
    assert (c.tile_fixed_s > 0) is persistent
    if persistent:
        assert c.tile_fixed_s == pytest.approx(1200.0 / clock)


@pytest.mark.parametrize("overlap", [False, True])
def test_engine_overlaps_dot_and_exp_for_two_groups(overlap):
    """One CTA, one tile of L2-resident work: the step computes for dot + exp, or max(dot, exp) with two groups."""
    pytest.importorskip("simpy")
    from dataclasses import replace

    import memsim
    from memsim.calibration import calibration_for
    from memsim.costs import launch_cost
    from memsim.schedule import AttentionProblem, Schedule
    hw = memsim.load_hardware("h100-sxm")
    cal = calibration_for(hw)
    p = AttentionProblem(1, 1, 1, 128, 128, 64, "bf16", False)
    s = Schedule("flash2", "fwd", 128, 128, 4, 2)
    base = launch_cost(hw, cal, "flash2_fwd", p, s, 64_000, num_ctas=1)
    cost = replace(base, sec_per_flop=1e-12, sec_per_exp=2e-12, issue_s_per_tile=0.0, issue_s_per_tile_dram=0.0,
                   cta_fixed_s=0.0, cta_start_s=0.0, overlap_dot_exp=overlap)
    from memsim.engine import L2Cache, LaunchModel

    class _Work:
        name, num_ctas, dependent_loop, cta_l1_bytes = "w", 1, False, None

        def cta_steps(self, idx):
            return [([], [], 1_000_000, 400_000, 1)]  # no reads: compute alone
    m = LaunchModel(hw, _Work(), L2Cache(hw.l2_bytes), cost, num_stages=2, dram_Bps=hw.dram_bw_Bps,
                    launch_overhead_s=0.0)
    st = m.run()
    want = max(1e-6, 0.8e-6) if overlap else 1.8e-6
    assert st.time_s == pytest.approx(want, rel=1e-6), (st.time_s, want)


@pytest.mark.parametrize("with_mma", [False, True])
def test_profile_8_figures_reused_only_where_the_tensor_rates_cannot_move_them(with_mma):
    """Profile 8 -> 9 changed the tensor pipes' rates: a refresh copies the replays of code without HMMA/HGMMA and
    replays the rest; either way the figures equal a fresh replay with today's rates."""
    from dataclasses import replace
    loop = ["HMMA.16816.F32.BF16 R4, R8, R12, R4"] if with_mma else ["FFMA R4, R3, R5, R4"]
    sass = _sass(["S2R R0, SR_TID.X", "LDS.128 R8, [R0]", ".L_x_1", *loop, "MUFU.EX2 R3, R3", "FFMA R4, R3, R5, R4",
                  "LDS.64 R12, [R0+0x40]", "@!P1 BRA `(.L_x_1)", "STG.E desc[UR50][R4.64], R23", "EXIT",
                  ".L_x_2", "BRA `(.L_x_2)"])
    old_lat = replace(_lat(), hmma_flops_per_cycle=300.0)
    new_lat = _lat()
    old = dict(issue_profile(sass, num_warps=4, max_ctas=3, lat=old_lat), profile=8)
    fresh = issue_profile(sass, num_warps=4, max_ctas=3, lat=new_lat)
    reused = issue_profile(sass, num_warps=4, max_ctas=3, lat=new_lat, known=old)
    assert reused == fresh, (reused, fresh)
    assert (fresh["tile_cycles"] == old["tile_cycles"]) is (not with_mma), (fresh["tile_cycles"], old["tile_cycles"])


@pytest.mark.parametrize("stride, wavefronts", [(4, 1), (8, 2), (128, 32)])
def test_issue_profile_charges_the_port_its_bank_conflicts(stride, wavefronts):
    """A 32-bit LDS whose lanes are `stride` bytes apart: 1, 2 or 32 wavefronts (kernels.smem_banks); the replay of a
    loop of such loads, with many warps on the SM, is bound by the port: cycles scale with the wavefronts."""
    from kernels.smem_banks import smem_wavefronts
    # each load sets scoreboard 0; the FADD after them waits on it: a warp's trip ends when its loads are served
    sass = _sass(["S2R R0, SR_TID.X", f"IMAD.SHL.U32 R1, R0, {hex(stride)}, RZ", ".L_x_1",
                  *[(f"LDS R{8 + j}, [R1+{hex(0x1000 * j)}]", _ctrl(write_sb=0)) for j in range(4)],
                  ("FADD R12, R8, R11", _ctrl(wait_mask=1)), "@!P1 BRA `(.L_x_1)", "EXIT", ".L_x_2", "BRA `(.L_x_2)"])
    ins, _ = instructions(sass)
    wf = smem_wavefronts(sass, num_warps=8)
    lds = [k for k, x in enumerate(ins) if x.op == "LDS"]
    assert [wf[k] for k in lds] == [wavefronts] * 4, wf
    prof = issue_profile(sass, num_warps=8, max_ctas=4, lat=_lat())
    # port-bound at 4 CTAs of 8 warps: 4 x 8 x 4 loads x wavefronts cycles per trip (issue: 48)
    assert prof["tile_cycles"][-1] == pytest.approx(4 * 8 * 4 * wavefronts, rel=0.05), prof["tile_cycles"]


def _pipelined_walk_kernel() -> str:
    """FA3's consumer as `kernels/hopper_gluon.py` compiles it, reduced: per tile, S_0 before the tile loop and the
    last P V after it (peeled MMAs), the unmasked tile loop, then a causal kernel's masked diagonal band (a second,
    larger MMA loop), then the epilogue's store; the whole inside the persistent walk."""
    mma = "HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], R24"
    consumer = (["USETMAXREG.TRY_ALLOC.CTAPOOL UP0, 0xf0", "S2R R0, SR_TID.X", ".L_x_20", "IMAD R7, R0, 0x2, RZ",
                 mma, "MUFU.EX2 R3, R3",  # S_0 and its softmax, peeled
                 ".L_x_1", mma, "MUFU.EX2 R3, R3", "@!P1 BRA `(.L_x_1)",  # the tile loop
                 ".L_x_3", mma, "MUFU.EX2 R3, R3", "FMNMX R9, R9, R3, !PT", "FSEL R3, R3, -INF, P4",
                 "@!P4 BRA `(.L_x_3)",  # the masked diagonal band
                 mma,  # the last P V, peeled
                 "STG.E desc[UR50][R4.64], R23", "@!P3 BRA `(.L_x_20)", "USETMAXREG.DEALLOC.CTAPOOL 0x78",
                 "BRA `(.L_x_9)"])
    return _sass(["@!P0 BRA `(.L_x_0)", ".L_x_9", "USETMAXREG.DEALLOC.CTAPOOL 0x78", "BAR.SYNC.DEFER_BLOCKING 0x1"]
                 + consumer + [op.replace(".L_x_1)", ".L_x_11)").replace(".L_x_1", ".L_x_11")
                                  .replace(".L_x_3)", ".L_x_13)").replace(".L_x_3", ".L_x_13")
                                  .replace(".L_x_20)", ".L_x_30)").replace(".L_x_20", ".L_x_30") for op in consumer]
                 + [".L_x_0", "USETMAXREG.DEALLOC.CTAPOOL 0x18", ".L_x_4", "UTMALDG.2D [UR12], [UR22]",
                    "@!P0 BRA `(.L_x_4)", "EXIT"])


def test_pipelined_walk_books_neither_its_band_loop_nor_its_peeled_trip_per_tile():
    """The workload books every visible block of a tile as a step at the tile loop's cost, the diagonal band's and
    the peeled first / last block's too: the per-tile code leaves out every MMA loop of the walk, and its cost
    leaves out the trips its peeled MMAs amount to (here the trip has one HGMMA and the peeled code two: two trips;
    in FA3 a trip has two, S_j and P_{j-1} V_{j-1}, and the peeled S_0 + last P V make one)."""
    from memsim.warp_issue import replay
    sass = _pipelined_walk_kernel()
    ins, loops, marks = _decode(sass)
    ws = warp_specialised(ins, loops, marks)
    assert ws is not None and ws.groups == 2
    assert [x.op for x in ins[ws.tile[0]:ws.tile[1] + 1]] == ["HGMMA", "MUFU", "BRA"]
    per_tile = [x.op for x in ws.per_tile]
    assert per_tile == ["IMAD", "HGMMA", "MUFU", "HGMMA", "STG"], per_tile  # no FMNMX / FSEL: the band is a step
    prof = issue_profile(sass, num_warps=4, max_ctas=2, lat=_lat())
    assert prof["tile_fixed_peeled_trips"] == 2
    for c in (1, 2):
        whole = replay(list(ws.per_tile), warps_per_cta=4, ctas=2 * c, lat=_lat(), trips=1)
        want = round(max(0.0, whole - 2 * prof["tile_cycles"][c - 1]), 1)
        assert prof["tile_fixed_cycles"][c - 1] == want, (c, prof["tile_fixed_cycles"], whole, prof["tile_cycles"])


@pytest.mark.parametrize("walk", [False, True])
def test_persistent_walk_without_warp_specialisation(walk):
    """A persistent kernel that is not warp-specialised (the spills helper's patch, session 12: P's r26112617_009):
    the loop around its tile loop walks the CTA's tiles, and that loop's code outside the tile loop is replayed once
    per tile as ``tile_fixed_cycles`` -- only when the kernel is named persistent (compiled_facts passes walk=)."""
    sass = _sass(["S2R R0, SR_CTAID.X", ".L_x_1", "IMAD R2, R0, R1, RZ", ".L_x_2",
                  "HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], R24", "MUFU.EX2 R3, R3", "@!P1 BRA `(.L_x_2)",
                  "STG.E [R4], R24", "@!P2 BRA `(.L_x_1)", "EXIT"])
    prof = issue_profile(sass, num_warps=4, max_ctas=2, lat=_lat(), walk=walk)
    assert prof is not None and prof["tile_instructions"] == 3, prof
    assert ("tile_fixed_cycles" in prof) is walk, prof
    if walk:  # IMAD and STG around the tile loop; the branches are not charged
        assert prof["tile_fixed_instructions"] == 2 and len(prof["tile_fixed_cycles"]) == 2, prof
        assert all(c > 0 for c in prof["tile_fixed_cycles"])
