"""Compiled-kernel facts without a GPU: the key, the stdlib reader, the committed sm90 table against the
facts the H100 reported for the same launches, and one real CPU compile of a small case."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memsim import compiled as MC
from memsim.schedule import AttentionProblem, Schedule, kernel_launches, problem_from_dict, schedule_from_dict

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("x, cls", [(1, "1"), (16, "16"), (4096, "16"), (0, "16"), (-32, "16"), (113, "n"), (2, "n")])
def test_spec_class(x, cls):
    assert MC.spec_class(x) == cls


def _p(n=4096, nkv=None, **kw):
    return AttentionProblem(batch=2, heads_q=16, heads_kv=16, seq_q=n, seq_kv=nkv or n, head_dim=64, **kw)


def test_key_separates_what_changes_the_code_and_nothing_else():
    s = Schedule("flash2", "fwd", 128, 64, 8, 2)
    assert MC.key("flash2_fwd", _p(4096), s) == MC.key("flash2_fwd", _p(8192), s)          # same specialisation
    assert MC.key("flash2_fwd", _p(4096), s) != MC.key("flash2_fwd", _p(4001), s)          # divisibility differs
    assert MC.key("flash2_fwd", _p(1), s) != MC.key("flash2_fwd", _p(17), s)               # == 1 is a constant
    assert MC.key("flash2_fwd", _p(), s) != MC.key("flash2_fwd", _p(dtype="bf16"), s)
    assert MC.key("flash2_fwd", _p(), s) != MC.key("flash2_fwd", _p(), Schedule("flash2", "fwd", 128, 64, 4, 2))
    hkv = AttentionProblem(batch=2, heads_q=16, heads_kv=4, seq_q=4096, seq_kv=4096, head_dim=64)
    assert MC.key("flash2_fwd", _p(), s) != MC.key("flash2_fwd", hkv, s)                     # GROUP constexpr
    n = Schedule("naive", "fwd", 64, 64, 4, 2)
    # the softmax launch loads whole rows: its key holds the row width; the matmul launches' do not
    assert MC.key("naive_softmax", _p(4096), n).endswith("row4096")
    assert MC.key("naive_softmax", _p(2048), n) != MC.key("naive_softmax", _p(4096), n)
    assert MC.key("naive_qk", _p(2048), n) == MC.key("naive_qk", _p(4096), n)


def test_lookup_reads_a_table(tmp_path, monkeypatch):
    p, s = _p(), Schedule("flash2", "fwd", 128, 64, 8, 2)
    k = MC.key("flash2_fwd", p, s)
    entry = {"launch": "flash2_fwd", "regs_per_thread": 168, "spill_store_bytes": 0, "spill_load_bytes": 0,
             "local_bytes_per_thread": 0, "shared_bytes": 49152, "num_warps": 8, "num_stages": 2,
             "source": "ptxas sm_90a, triton 3.6.0", "specialisation": "{}", "case": "x"}
    (tmp_path / "sm90.json").write_text(json.dumps({"format": MC.FORMAT, "arch": "sm90", "entries": {k: entry}}))
    monkeypatch.setattr(MC, "TABLE_DIR", tmp_path)
    monkeypatch.setattr(MC, "_CACHE", {})
    f = MC.lookup("flash2_fwd", p, s)
    assert f == MC.CompiledFacts("flash2_fwd", 168, 0, 0, 0, 49152, 8, 2, "ptxas sm_90a, triton 3.6.0")
    assert not f.spills
    assert MC.lookup("flash2_fwd", _p(4001), s) is None
    assert MC.lookup("flash2_fwd", p, s, arch="sm100") is None
    (tmp_path / "sm90.json").write_text(json.dumps({"format": "other", "entries": {}}))
    monkeypatch.setattr(MC, "_CACHE", {})
    with pytest.raises(ValueError, match="not a compiled-facts table"):
        MC.lookup("flash2_fwd", p, s)


def _gpu_records():
    return [json.loads(Path(f).read_text()) for f in
            sorted(glob.glob(str(ROOT / "verification/data/*h100*/random/*/*.json")))]


#: launches whose kernel changed after the set was measured, so today's compile differs from what the GPU ran
#: (the table describes today's kernels): (case, launch) -> why.  Checked both ways below: an entry that agrees
#: again must leave this list.
CHANGED_SINCE_MEASURED = {
    ("r2611_013_hopper_fwd_bf16_d128_q1280_k7936_bh5", "hopper_fwd"):
        "hopper_fwd gained the LONGEST_FIRST constexpr (836cedc) after set D was measured; its entries were "
        "compiled again at profile 11 (compiled_facts --recompile-changed): 7808 B local where the card had 7688",
    ("r7126_013_hopper_fwd_bf16_d16_q824_k824_bh357", "hopper_fwd"):
        "the same kernel change after set F: 155 registers where the card had 156",
}


@pytest.mark.skipif(not _gpu_records(), reason="no random-set records with GPU compiled facts")
def test_committed_table_equals_what_the_gpu_reported():
    """Every launch of the committed random sets: the CPU-compiled registers, local bytes and shared memory
    equal the H100's CompiledKernel figures recorded with the measurement (but the launches of
    CHANGED_SINCE_MEASURED, which must differ)."""
    diffs, n, agree_again = [], 0, []
    for r in _gpu_records():
        p, s = problem_from_dict(r["problem"]), schedule_from_dict(r["schedule"])
        for k in r["kernels"]:
            g = k.get("compiled")
            if not g:
                continue
            c = MC.lookup(k["name"], p, s)
            n += 1
            got = None if c is None else (c.regs_per_thread, c.local_bytes_per_thread, c.shared_bytes)
            want = (g["regs_per_thread"], g["local_bytes_per_thread"], g["shared_bytes"])
            known = (r["case"], k["name"]) in CHANGED_SINCE_MEASURED
            if got != want and not known:
                diffs.append(f"{r['case']} {k['name']}: table {got} gpu {want}")
            elif got == want and known:
                agree_again.append(f"{r['case']} {k['name']}")
    assert n > 0
    assert not diffs, "\n".join(diffs)
    assert not agree_again, f"these agree with the card again; drop them from CHANGED_SINCE_MEASURED: {agree_again}"


def test_cpu_compile_of_a_small_case():
    """Really compile (sm_90, no GPU): one flash2 forward; the captured launches are the schedule's."""
    code = (
        "import json\n"
        "from memsim.schedule import AttentionProblem, Schedule\n"
        "from kernels.compiled_facts import facts_for_case, capture\n"
        "p = AttentionProblem(batch=1, heads_q=2, heads_kv=1, seq_q=113, seq_kv=200, head_dim=32, dtype='fp16',"
        " causal=True, causal_align='bottom_right')\n"
        "s = Schedule('flash2', 'fwd', 64, 32, 4, 2)\n"
        "print(json.dumps({'captured': [c[0].__name__ for c in capture(p, s)],"
        " 'facts': list(facts_for_case(p, s, case_name='t').values())}))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout.strip().splitlines()[-1])
    p = AttentionProblem(batch=1, heads_q=2, heads_kv=1, seq_q=113, seq_kv=200, head_dim=32, dtype="fp16", causal=True,
                         causal_align="bottom_right")
    assert d["captured"] == ["_" + L.name for L in kernel_launches(p, Schedule("flash2", "fwd", 64, 32, 4, 2))]
    (f,) = d["facts"]
    assert f["launch"] == "flash2_fwd" and f["source"] == "ptxas sm_90a, triton 3.6.0"
    assert 0 < f["regs_per_thread"] <= 255 and f["num_warps"] == 4 and f["num_stages"] == 2
    assert f["local_bytes_per_thread"] >= f["spill_store_bytes"] >= 0
    assert f["shared_bytes"] > 0


@pytest.mark.parametrize("argv, word", [(["--data", "/no/such/folder"], "no <case>.json records"),
                                        (["--random", "x:1"], "error")])
def test_bad_case_sources_are_one_line_errors(argv, word, capsys):
    from kernels.compiled_facts import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert word in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_every_entry_carries_replay_figures_of_todays_calibration():
    """The issue replay's figures in the table were computed with the calibration's figures (fingerprint): a change
    to the calibration that moves them (a new fact, another clock) must come with
    `python -m kernels.compiled_facts --refresh-issue`, or the model silently falls back to the instruction count."""
    pytest.importorskip("simpy")
    import memsim
    from memsim.calibration import calibration_for
    from memsim.compiled import load_table
    cal = calibration_for(memsim.load_hardware("h100-sxm"))
    assert cal.issue is not None
    want = cal.issue.fingerprint()
    table = load_table("sm90")
    stale = [k for k, e in table.items() if (e.get("issue") or {}).get("latencies") != want]
    # an entry that cannot be (or was not yet) replayed says why in `issue_stale`; one that says so but is current
    # is a leftover to clear
    unexplained = [k for k in stale if not table[k].get("issue_stale")]
    assert not unexplained, f"{len(unexplained)} entries replayed with other figures than {want}, e.g. {unexplained[:3]}"
    leftover = [k for k, e in table.items() if e.get("issue_stale") and k not in stale]
    assert not leftover, f"entries marked issue_stale but replayed with today's figures: {leftover[:3]}"
    assert len(stale) <= 20, f"{len(stale)} stale entries: refresh the table rather than mark them"


def test_launch_prefix_without_refresh_issue_is_refused(capsys):
    pytest.importorskip("triton")
    from kernels.compiled_facts import main
    assert main(["--launch-prefix", "hopper_", "--suite"]) == 2
    assert "--refresh-issue" in capsys.readouterr().err


# --- merging another copy of the table (a clean worktree's) ---------------------------------------------------------
def _entry(profile, spec="s1", tile=1.0):
    return {"launch": "flash2_fwd", "specialisation": spec, "regs_per_thread": 64,
            "issue": {"profile": profile, "tile_cycles": [tile], "latencies": "x"}, "loop": {"label": f"L{profile}"}}


@pytest.fixture
def tmp_table(tmp_path, monkeypatch):
    import memsim.compiled as MC
    monkeypatch.setattr(MC, "TABLE_DIR", tmp_path)
    mine = {"format": MC.FORMAT, "arch": "sm90", "entries": {
        "old": _entry(6), "same": _entry(7, tile=2.0), "newer_here": _entry(7), "clash": _entry(6, spec="s1")}}
    (tmp_path / "sm90.json").write_text(json.dumps(mine))
    return tmp_path


def test_merge_from_adds_new_and_takes_only_newer_issue_figures(tmp_table):
    from kernels.compiled_facts import merge_from
    from kernels.sass import PROFILE_VERSION
    other = {"entries": {"old": _entry(7, tile=9.0), "same": _entry(7, tile=3.0), "newer_here": _entry(6, tile=5.0),
                         "added": _entry(7), "future": _entry(PROFILE_VERSION + 1)}}
    src = tmp_table / "other.json"
    src.write_text(json.dumps(other))
    added, updated = merge_from("sm90", src, command="test")
    got = json.loads((tmp_table / "sm90.json").read_text())["entries"]
    assert (added, updated) == (2, 2), (added, updated)  # "added" and "future" are new keys; "old", "same" updated
    assert got["old"]["issue"]["tile_cycles"] == [9.0] and got["old"]["loop"] == {"label": "L7"}
    assert got["same"]["issue"]["tile_cycles"] == [3.0]  # same profile, other figures: the other copy's
    assert got["newer_here"]["issue"]["profile"] == 7  # never replaced by an older profile
    assert "added" in got


@pytest.mark.parametrize("mine_band, theirs_band, want_band", [(True, False, True), (False, True, True),
                                                               (True, True, True), (False, False, False)])
def test_merge_from_never_drops_band_figures(tmp_table, mine_band, theirs_band, want_band):
    """Two copies that differ only by the band figures (`--refresh-band` ran on one): the merged entry keeps them
    (a clean worktree's copy without them once undid a refresh of the live sets' hopper entries)."""
    from kernels.compiled_facts import merge_from
    band = {"band_instructions": 10, "band_masked": True, "band_cycles": [1.5]}
    path = tmp_table / "sm90.json"
    mine = json.loads(path.read_text())
    mine["entries"]["same"]["issue"].update(band if mine_band else {})
    path.write_text(json.dumps(mine))
    theirs = _entry(7, tile=2.0)
    theirs["issue"].update(band if theirs_band else {})
    src = tmp_table / "other.json"
    src.write_text(json.dumps({"entries": {"same": theirs}}))
    merge_from("sm90", src, command="test")
    got = json.loads(path.read_text())["entries"]["same"]["issue"]
    assert ("band_cycles" in got) is want_band, got


def test_merge_from_refuses_a_file_that_is_not_a_table(tmp_table):
    from kernels.compiled_facts import CompiledFactsError, merge_from
    bad = tmp_table / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(CompiledFactsError, match="not a compiled-facts table"):
        merge_from("sm90", bad)


@pytest.mark.parametrize("other_profile, kept", [("today", False), ("older", True)])
def test_merge_from_clears_the_stale_note_only_with_todays_profile(tmp_table, other_profile, kept):
    """An entry marked `issue_stale` (why it could not be replayed) loses the note when the other copy brings figures
    of today's profile; figures of an older profile keep the other copy's note."""
    from kernels.compiled_facts import merge_from
    from kernels.sass import PROFILE_VERSION
    path = tmp_table / "sm90.json"
    mine = json.loads(path.read_text())
    mine["entries"]["old"]["issue_stale"] = "not replayed: test"
    path.write_text(json.dumps(mine))
    prof = PROFILE_VERSION if other_profile == "today" else 7
    theirs = _entry(prof, tile=9.0)
    if kept:
        theirs["issue_stale"] = "still not replayed: test"
    src = tmp_table / "other.json"
    src.write_text(json.dumps({"entries": {"old": theirs}}))
    merge_from("sm90", src, command="test")
    got = json.loads(path.read_text())["entries"]["old"]
    assert ("issue_stale" in got) is kept, got



def test_recompile_changed_replaces_only_entries_that_no_longer_specialise(tmp_path):
    """An entry recorded with another specialisation (its kernel changed since) is compiled again and replaced
    whole; one that still specialises as recorded is left as it is.  (Compiles for sm_90: a subprocess without
    the interpreter.)"""
    pytest.importorskip("triton")
    code = (
        "import json, sys\n"
        "import memsim.compiled as MC\n"
        "from memsim.schedule import AttentionProblem, Schedule\n"
        "from kernels.compiled_facts import facts_for_case, recompile_changed\n"
        "p = AttentionProblem(batch=1, heads_q=1, heads_kv=1, seq_q=64, seq_kv=64, head_dim=16, dtype='fp16')\n"
        "s = Schedule('flash2', 'fwd', 16, 16, 1, 1)\n"
        "(k, e), = facts_for_case(p, s, have={}, case_name='t').items()\n"
        f"MC.TABLE_DIR = __import__('pathlib').Path({str(tmp_path)!r})\n"
        "changed = {**e, 'specialisation': e['specialisation'].replace('\"num_warps\": 1', '\"num_warps\": 9'),"
        " 'regs_per_thread': -1}\n"
        "assert changed['specialisation'] != e['specialisation']\n"
        "(MC.TABLE_DIR / 'sm90.json').write_text(json.dumps({'format': MC.FORMAT, 'arch': 'sm90', 'entries':"
        " {k: changed, k + '|same': {**e, 'regs_per_thread': -2}}}))\n"
        "rc = recompile_changed('sm90', command='test')\n"
        "print(json.dumps({'rc': rc, 'key': k, 'want': e}))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout.strip().splitlines()[-1])
    got = json.loads((tmp_path / "sm90.json").read_text())["entries"]
    k, want = d["key"], d["want"]
    assert d["rc"] == 0
    assert got[k]["specialisation"] == want["specialisation"] and got[k]["regs_per_thread"] == want["regs_per_thread"]
    assert got[k + "|same"]["regs_per_thread"] == -2
