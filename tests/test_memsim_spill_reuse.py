"""Spill reloads aged from the value's last access (memsim.spill_reuse; notes/spills.md session 15)."""
import json

import pytest

from memsim import spill_reuse as SR


def _ops(*acc):
    """("S"|"L", word offset) pairs -> kernels.sass.parse opcodes (32-bit accesses)."""
    return [f"{'STL' if k == 'S' else 'LDL'}:4:{4 * w}" for k, w in acc] + ["FFMA"]


def test_single_reload_per_store_matches_since_store_distances():
    # each value stored once and reloaded once per trip (the microbenchmarks' pattern): both readings agree
    from kernels.sass import local_distances
    body = _ops(("S", 0), ("S", 1), ("S", 2), ("S", 3), ("L", 0), ("L", 1), ("L", 2), ("L", 3))
    since_store = [(w, d) for k, w, d in local_distances(body) if k == "LDL"]
    assert SR.stack_distances(body) == since_store == [(4, 12)] * 4


def test_second_reload_is_aged_from_the_first():
    # store a, touch b..e, reload a (distance 4 words), touch f, reload a again: 1 word since the last access, where
    # the since-store reading says 5
    from kernels.sass import local_distances
    body = _ops(("S", 0), ("S", 1), ("S", 2), ("S", 3), ("S", 4), ("L", 0), ("S", 5), ("L", 0))
    assert [d for _, d in SR.stack_distances(body)] == [16, 4]
    assert [d for k, _, d in local_distances(body) if k == "LDL"] == [16, 20]


def test_reload_of_a_value_stored_before_the_loop_is_aged_one_trip():
    body = _ops(("L", 7), ("S", 0), ("S", 1))
    assert SR.stack_distances(body) == [(4, 8)]


def test_histogram_buckets():
    assert SR.histogram([(4, 7), (4, 9), (16, 40)]) == [[0, 4], [16, 4], [48, 16]]


def _facts(**loop):
    from memsim.compiled import CompiledFacts
    return CompiledFacts(launch="flash2_bwd_dq", regs_per_thread=255, spill_store_bytes=8, spill_load_bytes=8,
                         local_bytes_per_thread=8, shared_bytes=0, num_warps=4, num_stages=1, source="test",
                         loop={"local_reuse": {"reload": [[64, 8]], "restore": [[32, 8]], **loop}})


def test_reuse_for_reads_the_pairs_from_the_file(tmp_path, monkeypatch):
    from memsim.spill_draw import fingerprint
    f = _facts()
    p = tmp_path / "lru.json"
    p.write_text(json.dumps({"entries": {fingerprint(f): {"key": "k", "reload_pairs": [[64, 16, 8]]}}}))
    monkeypatch.delenv(SR.LEVELS_ENV, raising=False)
    monkeypatch.setenv(SR.ENV, str(p))
    assert SR.reuse_for(f) == {"reload": [[64, 8]], "restore": [[32, 8]], "reload_pairs": [[64, 16, 8]]}
    monkeypatch.setenv(SR.LEVELS_ENV, "l1l2")  # both caches from the last access: the marginal
    assert SR.reuse_for(f) == {"reload": [[16, 8]], "restore": [[32, 8]]}
    monkeypatch.setenv(SR.ENV, "0")  # off
    assert SR.reuse_for(f) == {"reload": [[64, 8]], "restore": [[32, 8]]}
    monkeypatch.delenv(SR.ENV)  # on by default (DATA_FILE: no entry for these made-up facts -> the table's reading)
    assert SR.reuse_for(f) == {"reload": [[64, 8]], "restore": [[32, 8]]}
    monkeypatch.setenv(SR.ENV, str(tmp_path / "missing.json"))  # no entry: the table's reading
    assert SR.reuse_for(f) == {"reload": [[64, 8]], "restore": [[32, 8]]}


def test_pairs_in_the_table_come_first(monkeypatch):
    monkeypatch.setenv(SR.ENV, "1")
    monkeypatch.delenv(SR.LEVELS_ENV, raising=False)
    f = _facts(reload_pairs=[[64, 32, 8]])
    assert SR.reuse_for(f)["reload_pairs"] == [[64, 32, 8]]


def test_the_packed_data_covers_the_brief_case():
    # held-out V's r26112703_000 (fp32 flash2 backward, 128x128): both spilling launches have pairs, and their
    # since-store marginals are the table's
    from memsim import compiled
    from memsim.spill_draw import fingerprint
    t = compiled.load_table("sm90")
    ent = SR._entries(str(SR.DATA_FILE))
    for launch in ("flash2_bwd_dkdv", "flash2_bwd_dq"):
        e = t[f"{launch}|fp32|d32|bm128|bn128|w4|st1|causal-top_left|heads_fastest|g3|sp-fp32|spec:n,1,16,16,16,16"]
        pairs = ent[fingerprint(e)]["reload_pairs"]
        h: dict = {}
        for a, _, n in pairs:
            h[a] = h.get(a, 0) + n
        assert sorted([d, n] for d, n in h.items()) == e["loop"]["local_reuse"]["reload"]
        assert sum(n * b for _, b, n in pairs) < 0.6 * sum(n * a for a, _, n in pairs)  # reloads aged from a reload


def test_distance_pairs_are_both_readings():
    from kernels.sass import local_distances
    body = _ops(("S", 0), ("S", 1), ("S", 2), ("S", 3), ("S", 4), ("L", 0), ("S", 5), ("L", 0), ("L", 9))
    pairs = SR.distance_pairs(body)
    assert [(w, a) for w, a, _ in pairs] == [(w, d) for k, w, d in local_distances(body) if k == "LDL"]
    assert [(w, b) for w, _, b in pairs] == SR.stack_distances(body)
    r = lambda d: 16 * ((d + 8) // 16)  # noqa: E731
    h: dict = {}
    for w, a, b in pairs:
        h[(r(a), r(b))] = h.get((r(a), r(b)), 0) + w
    assert SR.pair_histogram(pairs) == sorted([a, b, n] for (a, b), n in h.items())


def test_l2_placement_reads_the_last_access_distance():
    # the same reloads, far from their store (the L1 misses them either way) but 1 KB per thread from their last
    # access: with the pairs the L2 keeps them (the measured curve near 0 at x ~ 0.1), without it misses most
    import memsim
    from memsim.calibration import calibration_for
    from memsim.local_memory import local_memory
    hw = memsim.load_hardware("h100-sxm")
    cal = calibration_for(hw)
    args = dict(local_bytes_per_thread=24 * 1024, threads=128, ctas_per_sm=1, num_ctas=126,
                smem_per_cta_bytes=128 * 1024, store_bytes_per_iteration=48 * 1024)
    since_store = {"reload": [[16 * 1024, 4096]], "restore": [[16 * 1024, 4096]]}
    old = local_memory(hw, cal, reuse=since_store, **args)
    new = local_memory(hw, cal, reuse={**since_store, "reload_pairs": [[16 * 1024, 1024, 4096]]}, **args)
    assert old.l1_miss_fraction == new.l1_miss_fraction > 0.9
    assert old.dram_read_fraction > 0.9 and new.dram_read_fraction < 0.05, (old.explain(), new.explain())


@pytest.mark.skipif("spill_reuse" not in open(__import__("memsim.costs").costs.__file__).read(),
                    reason="memsim.costs does not read memsim.spill_reuse yet (notes/spills_patch_session15.diff)")
@pytest.mark.parametrize("launch, ctas, since_store, last_access, ncu", [
    # held-out V's r26112703_000 (fp32 flash2 backward, 128x128, d 32, 5376 tokens): the share of the reloads reaching
    # the L2 that miss it -- ncu: DRAM reads / (L2 reads - global loads) = 0.025 (dK/dV), 0.098 (dQ)
    ("flash2_bwd_dkdv", 42, 0.286, 0.122, 0.025),
    ("flash2_bwd_dq", 126, 0.452, 0.176, 0.098),
])
def test_held_out_v000_reloads_hit_the_l2_more(monkeypatch, launch, ctas, since_store, last_access, ncu):
    import memsim
    from memsim.calibration import calibration_for
    from memsim.costs import launch_cost
    from memsim.schedule import AttentionProblem, Schedule
    hw = memsim.load_hardware("h100-sxm")
    cal = calibration_for(hw)
    p = AttentionProblem(batch=1, heads_q=3, heads_kv=1, seq_q=5376, seq_kv=5376, head_dim=32, dtype="fp32",
                         causal=True, causal_align="top_left")
    s = Schedule(algorithm="flash2", phase="bwd", block_m=128, block_n=128, num_warps=4, num_stages=1,
                 grid_order="heads_fastest")
    monkeypatch.delenv(SR.LEVELS_ENV, raising=False)
    monkeypatch.setenv("MEMSIM_SPILL_L2CURVE", "all")  # the curve these figures were read with (session 15)
    monkeypatch.setenv(SR.ENV, "1")
    on = launch_cost(hw, cal, launch, p, s, 131072, num_ctas=ctas)
    monkeypatch.delenv(SR.ENV)
    assert launch_cost(hw, cal, launch, p, s, 131072, num_ctas=ctas) == on  # on by default
    monkeypatch.setenv(SR.ENV, "0")
    off = launch_cost(hw, cal, launch, p, s, 131072, num_ctas=ctas)
    assert on.local.l1_miss_fraction == off.local.l1_miss_fraction  # the L1 keeps the since-store reading
    assert off.spill_dram_read_fraction == pytest.approx(since_store, abs=0.005)
    assert on.spill_dram_read_fraction == pytest.approx(last_access, abs=0.005)
    assert abs(on.spill_dram_read_fraction - ncu) < abs(off.spill_dram_read_fraction - ncu)
