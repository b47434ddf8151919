"""kernels.decode's default (issue 12, session 15): the 128-key tile weighed at its own rule split where the `loop`
microbenchmark measured that loop (`kernels.decode_kv.TILE_CANDIDATES`, `_own_loop_measured`), and a paged cache's
table entries loaded one tile ahead (`PAGED_PREFETCH_DEFAULT`) -- checked against the card's runs, no GPU here.

Data: reports/h100-sxm/decode/s15-call2/ab.json (H100 80GB HBM3, 2026-11-27 02:53 UTC: the rule's picks of the call
("default"), the session-14 default with page_prefetch on ("s14pf") and off ("s14", the old public default on paged
caches), rotated caches, CUDA-graph medians, SDPA cuDNN in the same process) and benchmark run 5
(reports/h100-sxm/decode/bench-session11-run5/, every paged shape with page_prefetch off and on)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from memsim.inference import DecodeProblem, DecodeSchedule, decode_schedule_from_dict

ROOT = Path(__file__).resolve().parents[1]
CALL2 = ROOT / "reports/h100-sxm/decode/s15-call2/ab.json"
S18 = ROOT / "reports/h100-sxm/decode/s18-call1/tile.json"
S18B = ROOT / "reports/h100-sxm/decode/s18-call2/paged.json"
RUN5 = ROOT / "reports/h100-sxm/decode/bench-session11-run5/decode-bench.json"


def _rows():
    return [r for r in json.loads(CALL2.read_text())["rows"] if r["impl"] == "decode"]


def _pick(B, N, page):
    from kernels.decode_kv import PAGED_PREFETCH_DEFAULT, _auto_tile
    p = DecodeProblem.uniform(B, 32, 8, 128, N, dtype="bf16", page_size=page)
    base = DecodeSchedule(block_n=64, num_warps=4, num_stages=3, combine_pdl=True,
                          page_prefetch=page is not None and PAGED_PREFETCH_DEFAULT)
    return _auto_tile(p, base, None, True)[0]


def _key(s: DecodeSchedule):
    return (s.block_n, s.num_splits, s.split_d, s.page_prefetch, s.combine_fused)


def test_default_picks_what_ran_faster_in_call_2():
    """Every (shape, layout) of call 2: today's pick was timed there, and it ran no slower than the session-14
    default with prefetch (within the run's 2 % spread) and faster than the old public paged default (prefetch off);
    contiguous batch 64 runs the 128-key tile, 1.2-3.6 % faster (0.984 / 0.964 / 0.984 / 0.988 of the time at 1k /
    8k / 16k / 32k), >= 1.0x cuDNN from 8k keys on."""
    rows = _rows()
    cudnn = {(r["batch"], r["context"]): r["us"] for r in json.loads(CALL2.read_text())["rows"]
             if r["impl"] == "sdpa_cudnn"}
    shapes = {(r["batch"], r["context"], r["layout"]) for r in rows if not r["layout"].endswith("-ordered")}
    assert len(shapes) == 15
    for B, N, lay in shapes:
        page = None if lay == "contiguous" else int(lay[len("paged"):])
        pick = _pick(B, N, page)
        here = [r for r in rows if (r["batch"], r["context"], r["layout"]) == (B, N, lay)]
        if pick.block_n == 32:  # session 18's measured rule (SHORT_TILE): test_short_tile_* below, on its own runs
            assert (B, N) == (64, 1024)
            continue
        got = [r["us"] for r in here if _key(decode_schedule_from_dict(r["schedule"])) == _key(pick)]
        assert got, (B, N, lay, pick)
        ref = {r["variant"]: r["us"] for r in here}
        if "s14pf" in ref:
            assert min(got) <= ref["s14pf"] * 1.02, (B, N, lay)
        if "s14" in ref:
            assert min(got) < ref["s14"], (B, N, lay)
        if page is None and B == 64:  # (64 x 1k: the 32-key tile since session 18, skipped above)
            assert pick.block_n == 128 and pick.split_d == 1
            assert min(got) < ref["s14"] * 0.99, (B, N)
            if N >= 8192:
                assert cudnn[B, N] / min(got) >= 1.0, (B, N)


def test_paged_128_key_tile_measured_but_not_weighed():
    """The 128-key tile on paged caches ran 11.8 % slower at 8 x 1k paged16 (20.25 vs 18.11 us) and was mixed at
    batch 64, where the form -- its paged 128-key loops then priced by a class ratio measured on 64-key tiles -- ranked
    it first.  Session 16 measured those loops themselves (reports/h100-sxm/decode/s16-call1/loop3.json, merged into
    memsim/decode_compiled_sm90.json: `_own_loop_measured` is true); with them the form ranks 8 x 1k right (bn64 S = 2)
    but still moves the 8 timed batch-64 paged shapes to the 128-key tile, 3 of which ran slower in call 2 (64 x 1k
    paged64 1.018, 64 x 32k paged16 / paged64 at S = 3 1.013 / 1.002): kernels.decode does not weigh it on paged
    caches (`TILE_CANDIDATES_PAGED`).  If that changes, this test and TILE_CANDIDATES' comment change together."""
    import kernels.decode_kv as dk
    f = dk.device_facts(None)
    for page in (16, 64):
        p = DecodeProblem.uniform(8, 32, 8, 128, 1024, dtype="bf16", page_size=page)
        assert dk._own_loop_measured(p, DecodeSchedule(block_n=128, page_prefetch=True), f)
    assert not dk.TILE_CANDIDATES_PAGED
    rows = _rows()
    paged = sorted({(r["batch"], r["context"], int(r["layout"][len("paged"):])) for r in rows
                    if r["layout"] in ("paged16", "paged64")})
    short = [k for k in paged if _pick(*k).block_n == 32]  # session 18's SHORT_TILE (test_short_tile_on_paged_*)
    assert short == [(64, 1024, 16), (64, 1024, 64)]
    assert len(paged) == 10 and all(_pick(B, N, page).block_n == 64 for B, N, page in paged if (B, N, page) not in short)
    us = {(r["batch"], r["context"], r["layout"], r["variant"]): r["us"] for r in rows}
    assert us[8, 1024, "paged16", "default"] > us[8, 1024, "paged16", "s14pf"] * 1.1  # call 2's bn128 pick there
    # what the form picks with the paged tile weighed: bn128 at every batch-64 paged shape, 3 of 8 slower
    dk._auto_tile.cache_clear()
    try:
        dk.TILE_CANDIDATES_PAGED = True
        picks = {(B, N, page): _pick(B, N, page) for B, N, page in paged}
    finally:
        dk.TILE_CANDIDATES_PAGED = False
        dk._auto_tile.cache_clear()
    assert [k for k, s in picks.items() if s.block_n == 128] == [k for k in paged if k[0] == 64 and k not in short]
    ratio = {k: us[k[0], k[1], f"paged{k[2]}", "default"] / us[k[0], k[1], f"paged{k[2]}", "s14pf"]
             for k in paged if k[0] == 64}
    assert sum(r > 1.0 for r in ratio.values()) == 3 and max(ratio.values()) < 1.02
    contiguous = DecodeProblem.uniform(64, 32, 8, 128, 1024, dtype="bf16")
    assert dk._own_loop_measured(contiguous, DecodeSchedule(block_n=128), f)


def test_paged_prefetch_default_ran_faster():
    """page_prefetch on ran faster than off on 27 of run 5's 28 paged shapes (0.91-0.998x) and tied on the last (8 x
    32k paged64: 359.59 vs 359.53 us), and faster on call 2's 4 pairs (s14pf vs s14: 0.91-0.97x)."""
    from kernels.decode_kv import PAGED_PREFETCH_DEFAULT
    assert PAGED_PREFETCH_DEFAULT
    recs = [r for r in json.loads(RUN5.read_text())["records"] if r["impl"] == "decode" and r["layout"] != "contiguous"
            and r.get("auto") and r.get("ms") and r.get("timing") != "eager" and not r.get("tune")]
    by = {}
    for r in recs:
        by.setdefault((r["batch"], r["context"], r["layout"]), {})[bool(r.get("page_prefetch"))] = r["ms"]
    ratios = [v[True] / v[False] for v in by.values() if len(v) == 2]
    assert len(ratios) == 28 and sum(x < 1.0 for x in ratios) == 27 and min(ratios) < 0.92
    assert max(ratios) < 1.001  # the tie
    rows = {(r["batch"], r["context"], r["layout"], r["variant"]): r["us"] for r in _rows()}
    pairs = [(rows[k[:3] + ("s14pf",)], v) for k, v in rows.items() if k[3] == "s14" and k[2] != "contiguous"]
    assert len(pairs) == 4 and all(on < off for on, off in pairs)


def test_form_on_call_2_predicted_before_the_call():
    """The rule's graph form on call 2's rows (predicted before the call, reports/h100-sxm/decode/
    s15b-predictions.json) -- recomputed with today's model: within 10 % but the named miss (split_d paged16 at 8 x 1k:
    -13 % before the call, -12 % with its own loop measured in session 16), median under 3 %.  The 128-key tile at
    8 x 1k paged16 (-11.3 % before the call) is -2.4 % with its own loop (session 16, s16-call1/loop3.json)."""
    from kernels.decode_kv import device_facts
    from memsim.inference import estimate_time_graph_s
    f = device_facts(None)
    errs, misses = [], []
    for r in _rows():
        page = None if r["layout"] == "contiguous" else int(r["layout"][len("paged"):])
        p = DecodeProblem.uniform(r["batch"], 32, 8, 128, r["context"], dtype="bf16", page_size=page)
        s = decode_schedule_from_dict(r["schedule"])
        e = estimate_time_graph_s(p, s, f)["time_s"] * 1e6 / r["us"] - 1
        (misses if (page == 16 and s.split_d == 2 and r["batch"] == 8) else errs).append(e)
    assert len(errs) == 34 and max(abs(e) for e in errs) <= 0.10, errs
    assert statistics.median(abs(e) for e in errs) <= 0.03
    assert len(misses) == 1 and all(e < -0.08 for e in misses), misses  # named miss: update MODEL.md if it passes


def _s18_repeats():
    """{(batch, context): {"default": [...], "bn32": [...], "cudnn": [...]}}: every median (two per timing) of
    session 18's tile block, the default and the 32-key tile interleaved three times each."""
    out = {}
    for r in json.loads(S18.read_text())["rows"]:
        k = "cudnn" if r["impl"] == "sdpa_cudnn" else ("bn32" if r["variant"] == "1/32/3/1/none" else r["variant"])
        out.setdefault((r["batch"], r["context"]), {}).setdefault(k, []).extend(x * 1e6 for x in r["s"])
        if r["variant"] == "default":  # the old choice: the form's 128-key tile at one split
            s = decode_schedule_from_dict(r["schedule"])
            assert (s.block_n, s.num_splits, s.split_d) == (128, 1, 1)
    return out


def test_short_tile_where_it_ran_faster_in_session_18():
    """kernels.decode runs the 32-key tile at one split (`kernels.decode_kv.SHORT_TILE`) exactly at session 18's
    shapes where every repeat of it ran faster than every repeat of the old pick (the 128-key tile at one split):
    64 / 48 / 80 / 32 x 1k, 64 x 512, 64 / 32 x 2k, whose 32-key launches fit one wave of that tile (256-640 CTAs on
    660 slots); and keeps the old pick at 128 x 1k (1024 CTAs, 1.55 waves), where the 32-key tile ran 8.8 % slower."""
    runs = _s18_repeats()
    assert len(runs) == 8
    for (B, N), v in runs.items():
        assert len(v["default"]) == len(v["bn32"]) == 6
        pick = _pick(B, N, None)
        if max(v["bn32"]) < min(v["default"]):
            assert (pick.block_n, pick.num_splits, pick.combine_fused) == (32, 1, False), (B, N)
        else:
            assert (pick.block_n, pick.num_splits) == (128, 1), (B, N)
            assert statistics.median(v["bn32"]) > statistics.median(v["default"]) * 1.05, (B, N)
    assert _pick(128, 1024, None).block_n == 128
    # outside the measured range the form's pick stays: a longer cache, paged caches, the 64-key picks
    assert _pick(64, 4096, None).block_n == 128 and _pick(64, 4096, 16).block_n != 32
    assert _pick(99, 1024, None).block_n == 64 and _pick(16, 1024, None).block_n != 32


def test_short_tile_against_cudnn_at_64_x_1k():
    """The goal row: 64 x 1k, the 32-key tile 0.996x cuDNN (medians of the run: 92.65 vs 92.21 us), the old pick
    0.986x; not >= 1.0x -- the goal stays unmet (notes/decode.md, session 18)."""
    v = _s18_repeats()[64, 1024]
    bn32, old, cu = (statistics.median(v[k]) for k in ("bn32", "default", "cudnn"))
    assert cu / old < cu / bn32 < 1.0


def test_short_tile_on_paged_caches_session_18():
    """Session 18's call 2 (reports/h100-sxm/decode/s18-call2/paged.json, H100 80GB HBM3, 07:30 UTC; 16- and 64-row
    pages with page_prefetch, the default paged pick and the 32-key tile at one split interleaved twice each): the
    32-key tile runs where the old pick takes more than one wave -- 64 x 1k paged16 (S = 4: 0.884 of its time), paged64
    (S = 1, 512 CTAs on 396 slots: 0.974), 64 x 2k paged16 / paged64 (S = 4 / 3: 0.935 / 0.941), every repeat below
    every repeat of the old pick -- and not where the old pick fits one wave (48 / 32 x 1k, bn64 S = 1: 0.983-1.002).
    With today's picks every paged row of the call is within 5 % of contiguous (the issue's goal, at these shapes):
    +0.9..+1.4 % where the rule applies, +2.7..+3.9 % at 48 / 32 x 1k."""
    reps, old = {}, {}
    for r in json.loads(S18B.read_text())["rows"]:
        if r["impl"] != "decode":
            continue
        k = (r["batch"], r["context"], r["layout"])
        reps.setdefault(k, {}).setdefault(r["variant"], []).extend(x * 1e6 for x in r["s"])
        if r["variant"] == "default":
            old[k] = decode_schedule_from_dict(r["schedule"])
    moved = []
    for (B, N, lay), v in reps.items():
        if lay == "contiguous":
            continue
        pick = _pick(B, N, int(lay[len("paged"):]))
        if pick.block_n == 32:
            moved.append((B, N, lay))
            assert (pick.num_splits, pick.page_prefetch) == (1, True)
            assert max(v["1/32/3/1/none"]) < min(v["default"]), (B, N, lay)
            now = statistics.median(v["1/32/3/1/none"])
        else:
            assert (pick.block_n, pick.num_splits) == (old[B, N, lay].block_n, old[B, N, lay].num_splits)
            assert old[B, N, lay].num_splits == 1 and B * 8 <= 396  # (one wave of the 64-key tile)
            now = statistics.median(v["default"])
        assert now / statistics.median(reps[B, N, "contiguous"]["default"]) < 1.05, (B, N, lay)
    assert sorted(moved) == [(64, 1024, "paged16"), (64, 1024, "paged64"), (64, 2048, "paged16"),
                             (64, 2048, "paged64")]


S20C = ROOT / "reports/h100-sxm/decode/s20-call3/sweep3.json"


def test_short_tile_in_place_of_one_wave_picks_session_20():
    """Session 20's call 3 (H100 80GB HBM3, 12:21 UTC; the 32- / 64- / 128-key tiles at one split against the default,
    twice, interleaved): where the form's pick is the 64-key tile in one wave, bn32 ran faster than both default
    repeats at 24 / 36 / 40 x 1k and 40 x 2k (192-320 CTAs, >= 1.45 per SM) and slower at 20 x 1k (160 CTAs) -- so
    kernels.decode runs bn32 exactly at the first four (`SHORT_TILE_ONE_WAVE_MIN_PER_SM`), keeps bn64 at 20 x 1k, and
    keeps the form's pick on paged caches (not timed this way).  The form ranks bn64 first at all five (named miss)."""
    from kernels.decode_kv import device_facts
    from memsim.inference import estimate_time_graph_s
    f = device_facts(None)
    by = {}
    for r in json.loads(S20C.read_text())["rows"]:
        if r["impl"] == "decode":
            by.setdefault((r["batch"], r["context"]), {}).setdefault(r["variant"], []).append(r)
    seen = 0
    for (B, N), v in by.items():
        d = [decode_schedule_from_dict(r["schedule"]) for r in v["default"]]
        if (d[0].block_n, d[0].num_splits) != (64, 1):
            continue  # (the default there was already bn32, or bn128 -- not this rule's shapes)
        seen += 1
        bn32 = v["1/32/3/1/none"][0]["us"]
        faster = bn32 < min(r["us"] for r in v["default"])
        pick = _pick(B, N, None)
        assert (pick.block_n == 32) == faster, (B, N, bn32, [r["us"] for r in v["default"]])
        p = DecodeProblem.uniform(B, 32, 8, 128, N, dtype="bf16")
        if faster:  # the named miss: the form ranks the one-wave bn64 pick first where bn32 ran faster
            assert estimate_time_graph_s(p, d[0], f)["time_s"] <= \
                estimate_time_graph_s(p, DecodeSchedule(num_splits=1, block_n=32), f)["time_s"], (B, N)
    assert seen == 5
    assert _pick(20, 1024, None).block_n == 64 and _pick(40, 2048, None).block_n == 32


def test_short_tile_one_wave_moves_only_contiguous_picks(monkeypatch):
    """`SHORT_TILE_ONE_WAVE_MIN_PER_SM` moves contiguous picks only (batch 24-43 x 512-2k at 32 / 8 heads on the
    session's grid); paged caches keep the pick they had without it."""
    import kernels.decode_kv as K
    shapes = [(B, N, page) for B in (20, 24, 36, 40, 43, 48) for N in (512, 1024, 2048) for page in (None, 16, 64)]
    now = {k: _pick(*k) for k in shapes}
    monkeypatch.setattr(K, "SHORT_TILE_ONE_WAVE_MIN_PER_SM", 1e9)
    K._auto_tile.cache_clear()
    try:
        old = {k: _pick(*k) for k in shapes}
    finally:
        K._auto_tile.cache_clear()
    moved = sorted(k for k in shapes if now[k] != old[k])
    assert moved and all(page is None and 24 <= B <= 43 and now[(B, N, page)].block_n == 32
                         for B, N, page in moved), moved
    assert (40, 1024, None) in moved and (40, 2048, None) in moved and (20, 1024, None) not in moved
