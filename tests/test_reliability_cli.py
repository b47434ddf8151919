"""Issue 11 items 2 and 5: every bad input to `python -m kernels` and `python -m memsim` is one line,
exit status 2, naming what was wrong; no value silently becomes a default."""
from __future__ import annotations

import subprocess
import sys

import pytest

SMALL = ["--batch", "1", "--heads", "2", "--seq", "64", "--head-dim", "32"]


def _one_line(err: str, prog: str) -> str:
    err = err.strip()
    assert err.startswith(f"{prog}: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, word", [
    (["run", "--shape", "1,2,2,16"], "six comma-separated integers"),
    (["run", "--shape", "1,2,2,16,16,x"], "six comma-separated integers"),
    (["launches", "--shape", "1,2,2,16,16,32,7"], "six comma-separated integers"),
    (["run", "--shape", "1,0,0,16,16,32"], "heads_q must be positive"),
    (["launches", "--shape", "1,2,2,-16,16,32"], "seq_q must be positive"),
    (["launches", "--shape", "1,2,2,16,16,24"], "head_dim 24 is not supported"),
    (["launches", "--shape", "1,2,2,16,16,32", "--scale", "nan"], "scale"),
    (["launches", "--shape", "1,2,2,16,16,32", "--scale", "-1"], "scale"),
    (["launches", "--shape", "1,2,2,16,16,32", "--block-m", "48"], "power of two"),
    (["launches", "--shape", "1,2,2,16,16,32", "--num-warps", "3"], "num_warps"),
    (["launches", "--shape", "1,1,1,16,16,256", "--block-m", "4096", "--block-n", "4096"], "shared memory"),
    (["launches", "--shape", "1,3,2,16,16,32"], "multiple of heads_kv"),
    (["launches", "--shape", "1,2,2,16,16,32", "--alg", "flash1", "--phase", "bwd"], "flash1 has no backward"),
    (["run", "--shape", "1,2,2,16,16,32", "--alg", "flash1", "--phase", "bwd"], "flash1 has no backward"),
    (["run", "--shape", "1,2,2,16,16,32", "--dtype", "fp8"], "invalid choice"),
    (["run"], "--shape"),
])
def test_kernels_cli_bad_input(argv, word, capsys):
    from kernels.__main__ import main
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own refusals exit from inside parse_args
        rc = e.code
    assert rc == 2
    assert word in _one_line(capsys.readouterr().err, "kernels")


@pytest.mark.parametrize("argv, word", [
    (["simulate", *SMALL, "--heads-kv", "0"], "heads_kv"),
    (["simulate", *SMALL, "--seq-kv", "0"], "seq_kv"),
    (["simulate", *SMALL, "--seq-kv", "-3"], "seq_kv"),
    (["sweep", "--param", "seq", "--values", "-64,0,64", "--out", "x"], "-64, 0"),
    (["sweep", "--param", "seq", "--values", "0", "--out", "x"], "positive"),
    (["sweep", "--param", "seq", "--values", "64", "--out", ""], "prefix"),
    (["sweep", "--param", "seq", "--values", "64", "--out", "somedir/"], "file prefix"),
    (["simulate", "--algorithm", "flash3"], "invalid choice"),
    (["simulate", "--seq", "x"], "invalid int value"),
    # audit 2026-11-26: a refused --workers used to leave x.partial.jsonl behind ("pass --resume" next time)
    (["sweep", "--param", "seq", "--values", "64", "--out", "x", "--workers", "0"], "--workers"),
    (["decode", "--contexts", ""], "--contexts is empty"),  # was a TypeError traceback
    (["decode", "--batches", "-1,0"], "-1, 0 are not"),  # was argparse's "expected one argument"
    (["decode", "--contexts", "0"], "positive"),  # was a row of 0.00 TB/s
    (["decode", "--pages", "x"], "--pages must be comma-separated integers"),
    (["decode", "--explain", "1x"], "BATCHxCONTEXT"),  # was "invalid literal for int()"
    (["decode", "--explain", "1x8192x3"], "BATCHxCONTEXT"),  # was "too many values to unpack"
    (["decode", "--explain", "0x8192"], "positive batch"),
])
def test_memsim_values_never_silently_default(argv, word, capsys, tmp_path, monkeypatch):
    from memsim.__main__ import main
    monkeypatch.chdir(tmp_path)
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    assert word in _one_line(capsys.readouterr().err, "memsim")
    assert list(tmp_path.iterdir()) == []  # nothing written, in particular no hidden .csv/.json/.png


def test_kernels_module_entry_point_one_line():
    r = subprocess.run([sys.executable, "-m", "kernels", "run", "--shape", "1,2"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("kernels: error:")


@pytest.mark.parametrize("prog, argv, word", [
    ("memsim", ["simulate", *SMALL, "--sp-dtype", "fp16"], "--sp-dtype"),
    ("memsim", ["simulate", *SMALL, "--hw", "/"], "is a folder"),
    ("kernels", ["launches", "--shape", "1,1,1,8,8,16", "--sp-dtype", "fp16"], "--sp-dtype"),
    ("verification", ["numerics", "--filter", ","], "--filter is empty"),
    # audit 2026-11-26: an alignment without a causal mask was silently ignored
    ("memsim", ["simulate", *SMALL, "--causal-align", "bottom_right"], "add --causal"),
    ("memsim", ["compare", *SMALL, "--align", "top_left"], "add --causal"),
    ("memsim", ["sweep", "--param", "seq", "--values", "64", "--out", "x", "--align", "bottom_right"], "add --causal"),
    ("kernels", ["launches", "--shape", "1,1,1,16,8,16", "--align", "bottom_right"], "add --causal"),
])
def test_options_that_would_be_ignored_are_refused(prog, argv, word, capsys, tmp_path, monkeypatch):
    import importlib
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(f"{prog}.__main__").main
    assert main(argv) == 2
    assert word in _one_line(capsys.readouterr().err, prog)


def test_kernels_run_that_does_not_fit_in_memory_is_one_line(monkeypatch, capsys):
    """A --shape whose inputs cannot be allocated was torch's allocator traceback; one line now."""
    import kernels.testing
    from kernels.__main__ import main

    def no_memory(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 25599999744 bytes")
    monkeypatch.setattr(kernels.testing, "make_inputs", no_memory)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert main(["run", "--shape", "1,2,2,99999999,16,32", "--no-check"]) == 2
    err = _one_line(capsys.readouterr().err, "kernels")
    assert "does not fit in" in err and "1,2,2,99999999,16,32" in err


def test_closed_forms_are_linear_in_the_blocks():
    """`memsim simulate`/`sweep` print the closed forms (analytic.launch_counts) beside every result; they must
    not cost more than the simulation they accompany."""
    import time

    from memsim import analytic
    from memsim.schedule import AttentionProblem, Schedule
    p = AttentionProblem(1, 1, 1, 524288, 524288, 64, "fp16")  # 4096 x 8192 blocks: 1.7 s today, ms when linear
    t = time.perf_counter()
    analytic.launch_counts(p, Schedule())
    assert time.perf_counter() - t < 0.3


def test_causal_align_still_works_with_causal_or_a_causal_axis(tmp_path, capsys, monkeypatch):
    from memsim.__main__ import main
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", *SMALL, "--seq-kv", "32", "--causal", "--align", "bottom_right", "--json"]) == 0
    assert '"causal_align": "bottom_right"' in capsys.readouterr().out
    assert main(["sweep", "--axis", "causal=true,false", "--algorithms", "flash2", "--out", "s", *SMALL,
                 "--align", "bottom_right"]) == 0


@pytest.mark.parametrize("extra", [["--grain", "tile"], ["--grain", "run", "--run-blocks", "1"]])
def test_explicit_fine_grain_on_a_large_problem_is_refused_with_the_estimate(extra, capsys):
    """Issue 11 item 7 (audit 2026-11-26): `memsim simulate --grain tile --seq 65536` ran ~15 min behind a
    progress bar; the coarsest-grain refusal did not look at a grain asked for. Now one line, exit 2, with the
    estimate, what the automatic grain would take and --allow-slow."""
    from memsim.__main__ import main
    assert main(["simulate", "--seq", "65536", *extra]) == 2
    err = _one_line(capsys.readouterr().err, "memsim")
    assert "at the grain asked for: about" in err and "--allow-slow" in err and "grain='auto'" in err


def test_sweep_sp_dtype_goes_to_the_naive_points_only(tmp_path, capsys, monkeypatch):
    """Since Schedule(sp_dtype=...) is refused for non-naive algorithms (9e008dd), `memsim sweep --algorithms
    naive,flash2 --sp-dtype fp32` recorded every flash2 point as refused.  --sp-dtype is naive's S and P type:
    it now goes to the naive points only, as `memsim simulate`/`compare` do; without naive it is refused."""
    import csv

    from memsim.__main__ import main
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--param", "seq", "--values", "64,128", "--algorithms", "naive,flash2",
                 "--sp-dtype", "fp32", "--out", "s", "--batch", "1", "--heads", "2", "--head-dim", "32"]) == 0
    rows = list(csv.DictReader(open("s.csv")))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}, rows
    # naive's fp32 S/P is really applied: more DRAM traffic than the default (the inputs' fp16)
    assert main(["sweep", "--param", "seq", "--values", "64,128", "--algorithms", "naive,flash2",
                 "--out", "d", "--batch", "1", "--heads", "2", "--head-dim", "32"]) == 0
    base = list(csv.DictReader(open("d.csv")))
    key = next(k for k in rows[0] if "dram" in k and "bytes" in k)
    by = lambda rs: {(r["seq"], r["algorithm"]): float(r[key]) for r in rs}  # noqa: E731
    got, ref = by(rows), by(base)
    assert got[("128", "naive")] > ref[("128", "naive")] and got[("128", "flash2")] == ref[("128", "flash2")]
    capsys.readouterr()
    assert main(["sweep", "--param", "seq", "--values", "64", "--algorithms", "flash2", "--sp-dtype", "fp32",
                 "--out", "f", *SMALL[:4], "--head-dim", "32"]) == 2
    assert "--sp-dtype" in _one_line(capsys.readouterr().err, "memsim")
    assert not list(tmp_path.glob("f*"))


def test_run_sweep_base_sp_dtype_is_naive_only_but_an_axis_is_kept():
    from memsim.sweep import settings_for
    spec = {"base": {"sp_dtype": "fp32"}, "axes": {}}
    assert settings_for(spec, {"algorithm": "naive"})[2]["sp_dtype"] == "fp32"
    assert "sp_dtype" not in settings_for(spec, {"algorithm": "flash2"})[2]
    assert settings_for({"base": {}}, {"algorithm": "flash2", "sp_dtype": "fp32"})[2]["sp_dtype"] == "fp32"
