"""The ncu CSV parser (on the real H100 fixtures), unit normalisation, per-launch records,
row-to-case mapping, the command line and the error diagnoses."""
from __future__ import annotations

from pathlib import Path

import pytest

from verification import ncu as N

FIX = Path(__file__).resolve().parent / "fixtures" / "ncu"


def rows(name):
    return N.parse_csv((FIX / name).read_text())


def test_parse_probe_fixture_matches_the_paper_count():
    (r,) = rows("n_rowfast_4096.csv")
    assert r.name == "fwd" and r.grid == "(32, 64, 1)" and r.block == "(256, 1, 1)"
    # B*H = 64, N = 4096, d = 64, fp16, 128-row Q blocks: Q + O + K,V once per Q block
    bh, n, d, e, mb = 64, 4096, 64, 2, 4096 // 128
    q = bh * n * d * e
    assert r.metrics["l1tex__t_bytes.sum"] == 2 * q + mb * 2 * q == 2_214_592_512
    assert r.metrics["dram__bytes_read.sum"] == 100_680_192
    assert r.metrics["gpu__time_duration.sum"] == pytest.approx(742_240e-9)
    assert r.units["lts__t_sectors_srcunit_tex_op_read.sum"] == "sector"
    rec = N.launch_record(r)
    assert rec["l2_read_bytes"] == 55_769_284 * 32
    assert rec["l2_write_bytes"] is None  # not in this fixture
    assert rec["global_read_bytes"] is None  # split metrics absent: unknown, not guessed
    assert rec["global_bytes_l1tex_t"] == 2_214_592_512


def test_grid_order_fixtures_show_the_37x_dram_case():
    (row,) = rows("n_rowfast_16384.csv")
    (head,) = rows("n_headfast_16384.csv")
    assert head.metrics["dram__bytes_read.sum"] / row.metrics["dram__bytes_read.sum"] == pytest.approx(36.8, rel=0.01)
    assert head.metrics["l1tex__t_bytes.sum"] == row.metrics["l1tex__t_bytes.sum"]


def test_every_fixture_parses_and_sdpa_math_has_many_kernels():
    for f in sorted(FIX.glob("*.csv")):
        rs = rows(f.name)
        assert rs, f
        for r in rs:
            assert r.metrics["gpu__time_duration.sum"] > 0
            assert all(v is None or v >= 0 for v in r.metrics.values())
    math_rows = rows("ncu_math.csv")
    assert len(math_rows) == 17 and [r.id for r in math_rows] == sorted(r.id for r in math_rows)
    assert any("elementwise" in r.name for r in math_rows)


def test_tma_fixture_needs_the_tma_metrics():
    (r,) = rows("n_tma_4096.csv")
    assert r.name == "fwd_tma"
    assert r.metrics["l1tex__t_bytes.sum"] == 1_048_576  # TMA loads bypass the t-stage
    r.metrics["l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum"] = 0.0
    r.metrics["l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum"] = 1_048_576.0
    r.metrics["l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum"] = 2_181_038_080.0
    rec = N.launch_record(r)
    assert rec["global_read_bytes"] == 2_181_038_080.0
    assert rec["global_write_bytes"] == 1_048_576.0
    assert rec["global_bytes_l1tex_t"] == 1_048_576 + 2_181_038_080


@pytest.mark.parametrize("value,unit,expect,base", [
    ("100,689,152", "byte", 100_689_152, "byte"),
    ("1.5", "Kbyte", 1500, "byte"),
    ("2,000.25", "Mbyte", 2_000_250_000, "byte"),
    ("3", "Gbyte", 3e9, "byte"),
    ("1", "KiB", 1024, "byte"),
    ("2", "MiB", 2 * 1024 ** 2, "byte"),
    ("740,224", "ns", 740_224e-9, "second"),
    ("740,224", "nsecond", 740_224e-9, "second"),
    ("12.5", "us", 12.5e-6, "second"),
    ("12.5", "usecond", 12.5e-6, "second"),
    ("1.25", "msecond", 1.25e-3, "second"),
    ("2", "second", 2.0, "second"),
    ("55,128,000", "sector", 55_128_000, "sector"),
    ("1.5", "Ksector", 1500, "sector"),
    ("2", "Msector", 2e6, "sector"),
    ("13,782,000", "request", 13_782_000, "request"),
])
def test_units_normalise_to_bytes_seconds_counts(value, unit, expect, base):
    v, b = N.normalise(value, unit)
    assert v == pytest.approx(expect) and b == base


def test_numbers():
    assert N.parse_number("1,234,567") == 1234567
    assert N.parse_number("n/a") is None and N.parse_number("") is None
    with pytest.raises(ValueError, match="not a number"):
        N.parse_number("12abc")


def test_parse_tolerates_noise_and_empty():
    assert N.parse_csv("") == []
    assert N.parse_csv("==PROF== nothing profiled\n") == []
    text = (FIX / "n_cg_4096.csv").read_text().replace("==PROF== Disconnected", "program output, line\n==PROF== D")
    assert len(N.parse_csv(text)) == 1


def _row(i, name):
    return N.KernelRow(i, name, metrics={})


def test_assign_rows_to_cases_by_order_and_name():
    rs = [_row(0, "_flash2_fwd"), _row(1, "_naive_qk"), _row(2, "_naive_softmax"), _row(3, "_naive_pv")]
    got = N.assign_rows_to_cases(rs, [("a", ["flash2_fwd"]), ("b", ["naive_qk", "naive_softmax", "naive_pv"])])
    assert [r.id for r in got["a"]] == [0] and [r.id for r in got["b"]] == [1, 2, 3]
    with pytest.raises(N.NcuError, match="case 'b', launch #1: expected kernel '_naive_pv', ncu row 2 is "):
        N.assign_rows_to_cases(rs, [("a", ["flash2_fwd"]), ("b", ["naive_qk", "naive_pv", "naive_softmax"])])
    with pytest.raises(N.NcuError, match="expects launch"):
        N.assign_rows_to_cases(rs[:2], [("a", ["flash2_fwd"]), ("b", ["naive_qk", "naive_softmax"])])
    with pytest.raises(N.NcuError, match="more than the cases expect"):
        N.assign_rows_to_cases(rs, [("a", ["flash2_fwd"])])


def test_sum_records_keeps_unknowns_unknown():
    a = {k: 1.0 for k in N.LEVEL_KEYS}
    b = dict(a, dram_write_bytes=None)
    tot = N.sum_records([a, b])
    assert tot["global_read_bytes"] == 2.0 and tot["dram_write_bytes"] is None


def test_command_line_flags():
    cmd = N.build_command(["python", "-m", "x"], exe="ncu", log_file="/tmp/l")
    s = " ".join(cmd)
    assert "--clock-control none" in s and "--profile-from-start off" in s and "--csv" in s
    assert "--cache-control" not in s  # default: flush all caches before each kernel
    assert f"-k regex:{N.DEFAULT_KERNEL_REGEX}" in s and "--log-file /tmp/l" in s
    assert cmd[-3:] == ["python", "-m", "x"]
    for m in ("l1tex__t_bytes.sum", "lts__t_sectors_srcunit_tex_op_write.sum", "dram__bytes_write.sum",
              "gpu__time_duration.sum", "l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum"):
        assert m in s


def test_default_kernel_regex_covers_every_registered_algorithm():
    """A new algorithm's kernels (e.g. hopper's _hopper_fwd) must be profiled, not silently skipped."""
    import re
    from memsim.algorithms import registered
    from memsim.schedule import AttentionProblem, Schedule, kernel_launches
    pat = re.compile(N.DEFAULT_KERNEL_REGEX)
    for alg, phase in registered():
        assert pat.match(f"_{alg}_x"), f"{alg}: its kernels _{alg}_* are not matched by {N.DEFAULT_KERNEL_REGEX}"
    p = AttentionProblem(1, 1, 1, 64, 64, 64)
    assert pat.match("_" + kernel_launches(p, Schedule("hopper", "fwd", block_m=64, block_n=64))[0].name)


def test_filter_metrics():
    kept, dropped = N.filter_metrics(["a__x.sum", "b__y.sum"], {"a__x"})
    assert kept == ["a__x.sum"] and dropped == ["b__y.sum"]
    assert N.filter_metrics(["a__x.sum"], None) == (["a__x.sum"], [])


@pytest.mark.parametrize("text,needle", [
    ("==ERROR== ERR_NVGPUCTRPERM - The user does not have permission", "NVreg_RestrictProfilingToAdminUsers=0"),
    ("==ERROR== Failed to initialize the profiler: LibraryNotLoaded", "gVisor"),
    ("==ERROR== Failed to find metric foo__bar", "--query-metrics"),
    ("RuntimeError: No CUDA-capable device is detected", "no GPU"),
    ("==WARNING== No kernels were profiled.", "kernel-name filter"),
])
def test_diagnose_known_failures(text, needle):
    assert needle in N.diagnose(text, 1)


def test_diagnose_generic_and_none():
    assert N.diagnose("==ERROR== something odd", 3) == "ncu failed: something odd"
    assert N.diagnose("all fine", 0) is None


def test_ncu_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("NCU", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(N.os.path, "exists", lambda p: False)
    with pytest.raises(N.NcuError, match="not on the PATH.*NCU="):
        N.ncu_path()


def test_assign_rows_by_launches_isolates_a_disagreeing_case():
    rs = [_row(0, "_flash2_fwd"), _row(1, "_naive_pv"), _row(2, "_naive_qk"), _row(3, "_flash2_fwd")]
    done = [{"case": "a", "ok": True, "launches": ["flash2_fwd"], "launched": ["_flash2_fwd", "some_torch_fill"]},
            {"case": "b", "ok": True, "launches": ["naive_qk", "naive_pv"], "launched": ["_naive_pv", "_naive_qk"]},
            {"case": "x", "ok": False, "launches": ["flash2_fwd"]},
            {"case": "c", "ok": True, "launches": ["flash2_fwd"], "launched": None}]
    got, errors = N.assign_rows_by_launches(rs, done)
    assert [r.id for r in got["a"]] == [0] and [r.id for r in got["c"]] == [3]
    assert "b" not in got and "kernels and model disagree" in errors["b"]
    with pytest.raises(N.NcuError):
        N.assign_rows_by_launches(rs[:3], done)


# --- global reductions / atomics (verification.ncu.atomic_bytes) ---------------------------------------------------
def _atomic_metrics(t, ld, st, lld, lst, tma_ld=0.0, tma_st=0.0):
    return {"l1tex__t_bytes.sum": t, "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum": ld,
            "l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum": st, "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum": lld,
            "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum": lst,
            "l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum": tma_ld,
            "l1tex__m_l1tex2xbar_write_bytes_mem_global_op_tma_st.sum": tma_st}


@pytest.mark.parametrize("t,ld,st,lld,lst,tma,expected", [
    (1000.0, 600.0, 100.0, 200.0, 0.0, 0.0, 100.0),   # 100 B of RED/ATOM left in the t-stage
    (900.0, 600.0, 100.0, 200.0, 0.0, 0.0, 0.0),      # none
    (1000.0, 600.0, 100.0, 200.0, 0.0, 64.0, None),   # a TMA kernel: its t-stage residue is not atomics
])
def test_atomic_bytes_from_the_t_stage(t, ld, st, lld, lst, tma, expected):
    from verification.ncu import atomic_bytes
    assert atomic_bytes(_atomic_metrics(t, ld, st, lld, lst, tma_ld=tma)) == expected


def test_atomic_bytes_need_the_local_counters():
    from verification.ncu import atomic_bytes
    m = _atomic_metrics(1000.0, 600.0, 100.0, 200.0, 0.0)
    del m["l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum"]
    assert atomic_bytes(m) is None


def test_launch_record_counts_atomics_as_writes():
    from verification.ncu import KernelRow, launch_record
    rec = launch_record(KernelRow(id=0, name="_hopper_bwd_dkdvdq", metrics=_atomic_metrics(1000.0, 600.0, 100.0, 200.0, 0.0)))
    assert rec["global_atomic_bytes"] == 100.0
    assert rec["global_write_bytes"] == 100.0 + 100.0, rec


def test_atomic_bytes_prefer_the_direct_counters():
    from verification.ncu import atomic_bytes
    m = _atomic_metrics(1000.0, 600.0, 100.0, 200.0, 0.0, tma_ld=64.0)  # even beside TMA traffic
    m["l1tex__t_bytes_pipe_lsu_mem_global_op_red.sum"] = 96.0
    m["l1tex__t_bytes_pipe_lsu_mem_global_op_atom.sum"] = 4.0
    assert atomic_bytes(m) == 100.0
