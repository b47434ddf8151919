"""python -m memsim: simulate, compare, sweep, presets; one-line errors, no tracebacks, no overwrites."""
import csv
import json
import subprocess
import sys

import pytest

from memsim.__main__ import main

SMALL = ["--batch", "1", "--heads", "2", "--seq", "512", "--head-dim", "32"]


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "python -m memsim compare" in out and "global" in out


def test_simulate_table(capsys):
    assert main(["simulate", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "flash2_fwd" in out and "closed-form global" in out


def test_simulate_json(capsys):
    assert main(["simulate", *SMALL, "--algorithm", "naive", "--phase", "bwd", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["hardware"] == "h100-sxm" and len(d["kernels"]) == 5
    assert d["total"]["global_read_bytes"] == sum(v["global_read_bytes"] for v in d["closed_form"].values())


def test_compare(capsys):
    assert main(["compare", *SMALL]) == 0
    out = capsys.readouterr().out
    for alg in ("naive", "flash1", "flash2"):
        assert alg in out


@pytest.mark.parametrize("argv, word", [
    (["simulate", "--seq", "0"], "seq_q"),
    (["simulate", "--batch", "-1"], "batch"),
    (["simulate", "--hw", "tpu9"], "h100-sxm"),
    (["simulate", "--heads", "6", "--heads-kv", "4"], "multiple"),
    (["simulate", "--block-m", "48"], "power of two"),
    (["simulate", "--head-dim", "256", "--block-m", "256", "--block-n", "256"], "bytes"),
    (["simulate", "--hw", "/no/such.toml"], "does not exist"),
    (["sweep", "--param", "seq", "--values", "a,b", "--out", "x"], "integers"),
    (["sweep", "--param", "seq", "--values", "64", "--algorithms", "flash9", "--out", "x"], "flash9"),
])
def test_bad_input_one_line_error(capsys, argv, word):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("memsim: error:") and "\n" not in err and word in err
    assert "Traceback" not in err


def test_unknown_algorithm_is_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--algorithm", "flash3"])
    assert e.value.code == 2


def test_sweep_writes_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "sw" / "seq"
    argv = ["sweep", "--param", "block_n", "--values", "16,32,1024", "--algorithms", "flash1,flash2",
            *SMALL, "--out", str(out)]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "refused" in cap.out and "[" in cap.err  # flash2 at block_n=1024 does not fit; progress bar on stderr
    rows = list(csv.DictReader(open(f"{out}.csv")))
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok", "refused"}
    d = json.loads(open(f"{out}.json").read())
    assert d["provenance"]["command"] and len(d["rows"]) == 6
    assert open(f"{out}.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    before = open(f"{out}.csv").read()
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert open(f"{out}.csv").read() == before
    assert main([*argv, "--force"]) == 0


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "memsim", "simulate", "--seq", "-5"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_compare_both_phases(capsys):
    assert main(["compare", *SMALL, "--phase", "both"]) == 0
    out = capsys.readouterr().out
    assert "fwd + bwd" in out and "flash1 has a forward pass only" in out
