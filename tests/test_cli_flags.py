"""Issue 10 item 5: the same flag names for the same things in `memsim` and `kernels` (memsim's names
--batch/--heads/--heads-kv/--seq/--seq-kv/--head-dim/--algorithm/--causal-align everywhere, kernels'
--shape B,Hq,Hkv,Nq,Nkv,d/--alg/--align kept as aliases in both), with one-line errors."""
from __future__ import annotations

import json

import pytest

from memsim.cli import main as memsim_main

SHAPE = "2,4,2,96,160,32"
FLAGS = ["--batch", "2", "--heads", "4", "--heads-kv", "2", "--seq", "96", "--seq-kv", "160", "--head-dim", "32"]


def _json(main, argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


@pytest.mark.parametrize("spelling", [
    ["--shape", SHAPE],
    FLAGS,
    ["-B", "2", "--heads-q", "4", "--heads-kv", "2", "--seq-q", "96", "--seq-kv", "160", "-d", "32"],
])
@pytest.mark.parametrize("alg", [["--algorithm", "flash2"], ["--alg", "flash2"], ["-a", "flash2"]])
def test_memsim_simulate_takes_every_spelling(spelling, alg, capsys):
    ref = _json(memsim_main, ["simulate", *FLAGS, "--algorithm", "flash2", "--causal", "--causal-align",
                              "bottom_right", "--block-m", "32", "--block-n", "32", "--json"], capsys)
    got = _json(memsim_main, ["simulate", *spelling, *alg, "--causal", "--align", "bottom_right",
                              "--block-m", "32", "--block-n", "32", "--json"], capsys)
    assert got["problem"] == ref["problem"] and got["total"] == ref["total"]
    assert ref["problem"]["heads_kv"] == 2 and ref["problem"]["seq_kv"] == 160


@pytest.mark.parametrize("spelling", [
    ["--shape", SHAPE, "--alg", "naive", "--align", "bottom_right"],
    [*FLAGS, "--algorithm", "naive", "--causal-align", "bottom_right"],
    [*FLAGS, "-a", "naive", "--align", "bottom_right"],
])
def test_kernels_launches_take_memsim_names_and_old_spellings(spelling, capsys):
    from kernels.__main__ import main
    got = _json(main, ["launches", *spelling, "--causal", "--json"], capsys)
    assert (got["problem"]["batch"], got["problem"]["heads_q"], got["problem"]["heads_kv"], got["problem"]["seq_q"],
            got["problem"]["seq_kv"], got["problem"]["head_dim"]) == (2, 4, 2, 96, 160, 32)
    assert got["schedule"]["algorithm"] == "naive" and got["problem"]["causal_align"] == "bottom_right"
    assert [x["name"] for x in got["launches"]][0].startswith("_naive_")


def test_kernels_unset_kv_sizes_follow_the_query_sizes(capsys):
    from kernels.__main__ import main
    got = _json(main, ["launches", "--batch", "1", "--heads", "2", "--seq", "64", "--head-dim", "16", "--json"], capsys)
    p = got["problem"]
    assert (p["heads_kv"], p["seq_kv"]) == (2, 64)


@pytest.mark.parametrize("prog,argv,msg", [
    ("kernels", ["launches", "--shape", SHAPE, "--seq", "64"], "drop --seq"),
    ("kernels", ["launches"], "give the problem: --batch B --heads H --seq N --head-dim d"),
    ("kernels", ["launches", "--shape", "1,2,3"], "six comma-separated integers"),
    ("memsim", ["simulate", "--shape", SHAPE, "-B", "3"], "drop -B"),
    ("memsim", ["simulate", "--shape", "a,b,c,d,e,f"], "six comma-separated integers B,Hq,Hkv,Nq,Nkv,d"),
    ("memsim", ["sweep", "--shape", SHAPE, "--heads-q", "8", "--param", "seq", "--values", "64", "--out", "x"],
     "drop --heads-q"),
])
def test_two_spellings_of_the_shape_at_once_are_refused(prog, argv, msg, capsys):
    if prog == "kernels":
        from kernels.__main__ import main
    else:
        main = memsim_main
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"{prog}: error:") and err.count("\n") == 1 and msg in err, err


def test_memsim_defaults_unchanged(capsys):
    got = _json(memsim_main, ["simulate", "--json", "--seq", "256"], capsys)
    p = got["problem"]
    assert (p["batch"], p["heads_q"], p["heads_kv"], p["seq_q"], p["seq_kv"], p["head_dim"]) == (4, 16, 16, 256, 256, 64)


def test_memsim_sweep_takes_algorithm_aliases(tmp_path, capsys):
    for i, flag in enumerate(("--alg",)):  # --algorithms: tests/test_memsim_sweep.py
        rc = memsim_main(["sweep", "--shape", "1,2,2,64,64,32", "--param", "seq", "--values", "64,128", flag,
                          "naive,flash2", "--workers", "1", "--out", str(tmp_path / f"s{i}")])
        err = capsys.readouterr().err
        assert rc == 0, err
        rows = json.loads((tmp_path / f"s{i}.json").read_text())["rows"]
        assert sorted({r["algorithm"] for r in rows}) == ["flash2", "naive"] and len(rows) == 4


@pytest.mark.parametrize("flag", ["--address", "--scheduler"])
def test_sweep_cluster_address_flag_and_its_alias(flag, tmp_path, capsys):
    rc = memsim_main(["sweep", "--axis", "seq=128", "--backend", "local", flag, "tcp://127.0.0.1:1",
                      "--out", str(tmp_path / "y")])
    err = capsys.readouterr().err
    assert rc == 2 and "--backend dask" in err, err


def test_memsim_decode_takes_the_shared_heads_flag(capsys):
    """--heads (every other command's name for the query heads) and decode's older --heads-q are one option."""
    import json
    from memsim.cli import main
    outs = []
    for flag in ("--heads", "--heads-q"):
        assert main(["decode", flag, "16", "--heads-kv", "4", "--batches", "1", "--contexts", "1024",
                     "--head-dim", "64", "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0] == outs[1] and outs[0], outs
