"""Where spills live (memsim.local_memory): L1 beside the shared-memory carve-out, then the L2, then DRAM."""
from __future__ import annotations

import pytest

import memsim
from memsim.calibration import calibration_for
from memsim.local_memory import SpillCurves, carveout_bytes, curves_for, l1_data_bytes, local_memory

KB, MB = 1024, 1 << 20


@pytest.fixture(scope="module")
def h100():
    return memsim.load_hardware("h100-sxm")


@pytest.mark.parametrize("smem, ctas, want_kb", [
    (0, 8, 0),            # no shared memory: the whole 256 KB is L1
    (32 * KB, 2, 100),    # 2 x (32 + 1) KB = 66 KB -> the 100 KB carve-out
    (32 * KB, 1, 64),     # 33 KB -> 64 KB
    (48 * KB, 4, 196),    # 48 KB is not over Triton's threshold: 4 x 49 KB = 196 KB -> 196 KB
    (47 * KB, 4, 196),    # 4 x 48 KB = 192 KB -> 196 KB: 60 KB of L1 (spill_sm carveout: 26 % of reloads missed)
    (48 * KB + 1, 1, 228),  # over 48 KB: Triton's PREFER_SHARED -> the largest, whatever the occupancy
    (64 * KB, 3, 228),    # occupancy alone: 3 x 65 KB -> 196 KB; measured: 97.5 % of reloads missed (28 KB of L1)
    (147968, 1, 228),     # flash2 fp32 d128 (set B case 011): 164 KB by occupancy, 228 by the preference
    (200 * KB, 1, 228),   # the largest carve-out
])
def test_carveout_is_the_smallest_that_holds_the_resident_ctas(h100, smem, ctas, want_kb):
    got = carveout_bytes(h100, smem, ctas)
    assert got == want_kb * KB, f"smem {smem} x {ctas} CTAs: carve-out {got / KB} KB, want {want_kb} KB"
    assert l1_data_bytes(h100, smem, ctas) == 256 * KB - want_kb * KB


def test_unknown_l1_means_reloads_stay_in_l1(h100):
    a100_like = h100.with_overrides(l1_shared_per_sm_bytes=0, smem_carveouts_bytes=[])
    lm = local_memory(a100_like, calibration_for(a100_like), local_bytes_per_thread=8192, threads=256,
                      ctas_per_sm=1, num_ctas=132, smem_per_cta_bytes=0)
    assert l1_data_bytes(a100_like, 0, 1) == 0
    assert lm.l1_miss_fraction == 0.0


@pytest.mark.parametrize("local_b, threads, per_sm, ctas, most", [
    (64, 128, 4, 528, False),     # the calibration's small spilling point: 32 KB per SM, reloads hit L1
    (6224, 256, 1, 100, True),    # set B case 011: 1.5 MB per SM
    (2048, 32, 2, 264, False),    # 128 KB per SM fits a 256 KB L1 (no shared memory)
    (2048, 32, 8, 1056, True),    # 512 KB per SM does not (measured: 96 % of reloads reach L2)
])
def test_reloads_miss_l1_when_the_sm_footprint_exceeds_it(h100, local_b, threads, per_sm, ctas, most):
    lm = local_memory(h100, calibration_for(h100), local_bytes_per_thread=local_b, threads=threads,
                      ctas_per_sm=per_sm, num_ctas=ctas, smem_per_cta_bytes=0)
    assert lm.footprint_per_sm_bytes == min(per_sm, ctas) * threads * local_b
    assert (lm.l1_miss_fraction > 0.5) is most and (lm.l1_miss_fraction < 0.05) is not most, lm.explain()


def test_curves_come_from_the_spills_points(h100):
    cal = calibration_for(h100)
    c = curves_for(h100, cal)
    assert c is not None and "spills" in c.source
    for name in ("l1_miss", "dram_write", "l2_miss"):
        pts = getattr(c, name)
        assert len(pts) >= 4, f"{name}: {pts}"
        xs, ys = zip(*pts)
        assert list(xs) == sorted(xs) and all(0 <= y <= 1 for y in ys), f"{name}: {pts}"
        assert ys[-1] > 0.9, f"{name}: the largest footprints miss almost always, got {pts}"
    assert SpillCurves.at(c.dram_write, 0.0) == 0.0
    assert SpillCurves.at(c.dram_write, 100.0) == c.dram_write[-1][1]


def test_dram_fractions_follow_the_gpu_footprint(h100):
    cal = calibration_for(h100)
    assert cal.l2_dirty_bytes, "the H100 calibration has a dirty capacity"
    fr = []
    for per_sm in (1, 2, 4, 8):
        lm = local_memory(h100, cal, local_bytes_per_thread=2048, threads=32, ctas_per_sm=per_sm,
                          num_ctas=per_sm * h100.num_sms, smem_per_cta_bytes=0)
        assert lm.footprint_bytes == per_sm * h100.num_sms * 32 * 2048
        fr.append(lm.dram_write_fraction)
    # 8.6, 17, 35, 69 MB against ~22 MB dirty: little, some, half, nearly all (the measured curve)
    assert fr[0] < 0.05 and fr == sorted(fr) and 0.3 < fr[2] < 0.8 and fr[3] > 0.9, f"write-back fractions {fr}"


def test_a_loop_that_restores_its_frame_often_reuses_sooner(h100):
    cal = calibration_for(h100)
    args = dict(local_bytes_per_thread=4096, threads=64, ctas_per_sm=4, num_ctas=528, smem_per_cta_bytes=0)
    once = local_memory(h100, cal, store_bytes_per_iteration=4096, **args)
    often = local_memory(h100, cal, store_bytes_per_iteration=4 * 4096, **args)
    assert once.footprint_bytes == often.footprint_bytes
    assert often.dram_write_fraction < once.dram_write_fraction, (once.explain(), often.explain())


def test_uncalibrated_rule(h100):
    from memsim.calibration import datasheet
    cal = datasheet(h100)
    lm = local_memory(h100.with_overrides(name="no-such-calibration"), cal, local_bytes_per_thread=8192,
                      threads=256, ctas_per_sm=1, num_ctas=132, smem_per_cta_bytes=0)
    assert lm.rule.startswith("uncalibrated") and lm.l1_miss_fraction == 1.0
    assert lm.dram_write_fraction == pytest.approx(1 - h100.l2_effective_bytes / lm.footprint_bytes)


def test_only_resident_ctas_count(h100):
    cal = calibration_for(h100)
    few = local_memory(h100, cal, local_bytes_per_thread=4096, threads=256, ctas_per_sm=2, num_ctas=10,
                       smem_per_cta_bytes=0)
    many = local_memory(h100, cal, local_bytes_per_thread=4096, threads=256, ctas_per_sm=2, num_ctas=100000,
                        smem_per_cta_bytes=0)
    assert few.footprint_bytes == 10 * 256 * 4096
    assert many.footprint_bytes == 2 * h100.num_sms * 256 * 4096


@pytest.mark.parametrize("kw", [dict(local_bytes_per_thread=-1), dict(threads=0), dict(ctas_per_sm=0),
                                dict(num_ctas=0)])
def test_bad_arguments_are_refused(h100, kw):
    args = dict(local_bytes_per_thread=64, threads=128, ctas_per_sm=1, num_ctas=1, smem_per_cta_bytes=0)
    args.update(kw)
    with pytest.raises(ValueError, match="local_memory"):
        local_memory(h100, calibration_for(h100), **args)


def test_engine_sends_overflowing_spills_to_dram():
    """A spilling flash2 launch whose resident local memory overflows the L2 gets DRAM traffic from its
    spills; the same launch with a footprint well under the dirty capacity gets almost none."""
    from memsim.compiled import CompiledFacts
    from memsim.schedule import AttentionProblem, Schedule
    hw = memsim.load_hardware("h100-sxm")
    p = AttentionProblem(batch=1, heads_q=8, heads_kv=8, seq_q=2048, seq_kv=2048, head_dim=64, dtype="fp16")
    s = Schedule("flash2", "fwd", block_m=64, block_n=64, num_warps=4, num_stages=2)
    def run(local_b):
        loop = {"instructions": 100, "mma": 8, "mufu": 8, "memory": 10, "local": 4, "label": ".L",
                "local_store_bytes": local_b, "local_load_bytes": local_b}
        f = CompiledFacts(launch="flash2_fwd", regs_per_thread=255, spill_store_bytes=local_b,
                          spill_load_bytes=local_b, local_bytes_per_thread=local_b, shared_bytes=32 * KB,
                          num_warps=4, num_stages=2, source="test", loop=loop)
        r = memsim.simulate(p, s, hw, compiled_facts={"flash2_fwd": f}).to_dict()
        return r["kernels"][0]

    small, big = run(256), run(64 * KB)
    assert small["spill_l2_write_bytes"] > 0
    assert small["spill_dram_write_bytes"] < 0.05 * small["spill_l2_write_bytes"], small["compiled_facts"]
    assert big["spill_dram_write_bytes"] > 0.5 * big["spill_l2_write_bytes"], big["compiled_facts"]
    assert big["dram_write_bytes"] >= big["spill_dram_write_bytes"]
    assert big["time_s"] > small["time_s"]
