"""The exactness rule and the numerics command (a few interpreter cases; the full table is
reports/numerics/numerics_interpreter.md, made by `python -m verification numerics`)."""
from __future__ import annotations

import json

import pytest
import torch

from verification import __main__ as CLI
from verification import numerics as NU


def test_same_rule_as_the_kernels_tests():
    from kernels.testing import check_rule
    g = torch.Generator().manual_seed(0)
    for dtype, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)):
        ref = torch.randn(2, 3, 17, 64, generator=g, dtype=torch.float64)
        naive = (ref + 1e-3 * torch.randn(ref.shape, generator=g, dtype=torch.float64)).to(dt)
        for k in (0.5, 1.9, 2.2, 4.0):
            out = (ref + k * (naive.double() - ref)).to(dt)
            ours = NU.rule(out, ref, naive, dtype, "o").passed
            try:
                check_rule("o", out, ref, naive, dtype, verbose=False)
                theirs = True
            except AssertionError:
                theirs = False
            assert ours == theirs, (dtype, k)


def test_rule_pass_fail_and_nonfinite():
    ref = torch.linspace(-1, 1, 64, dtype=torch.float64).reshape(1, 1, 1, 64)
    naive = (ref + 1e-3).to(torch.float16)
    good = (ref + 1.5e-3).to(torch.float16)
    bad = (ref + 5e-3).to(torch.float16)
    assert NU.rule(good, ref, naive, "fp16", "o").passed
    r = NU.rule(bad, ref, naive, "fp16", "o")
    assert not r.passed and r.max_err > r.tol
    nan = good.clone()
    nan[..., 3] = float("nan")
    r = NU.rule(nan, ref, naive, "fp16", "o")
    assert r.nonfinite == 1 and not r.passed


def test_rule_floor_for_an_exactly_zero_reference():
    ref = torch.zeros(1, 1, 1, 64, dtype=torch.float64)
    r = NU.rule(torch.full((1, 1, 1, 64), 5e-7), ref, torch.zeros(1, 1, 1, 64), "fp16", "dq")
    assert r.passed and r.tol == pytest.approx(8 * 2 ** -23)
    assert not NU.rule(torch.full((1, 1, 1, 64), 1e-4), ref, torch.zeros(1, 1, 1, 64), "fp16", "dq").passed


def test_the_matrix_covers_the_issue():
    for gpu in (False, True):
        cs = NU.build_cases(gpu)
        assert {(c.algorithm, c.phase) for c in cs} == set(NU.ALGS)
        assert {c.dtype for c in cs} == {"fp16", "bf16", "fp32"}
        assert any(c.heads_kv < c.heads_q for c in cs) and any(c.layout == "bnhd" for c in cs)
        assert any(c.seq_q == 113 for c in cs) and any(c.seq_q == 1 for c in cs)
        assert any(c.seq_q != c.seq_kv for c in cs)
        assert {c.causal_align for c in cs if c.causal} == {"top_left", "bottom_right"}
        assert len({c.id for c in cs}) == len(cs)
    assert {c.head_dim for c in NU.build_cases(True)} == {32, 64, 128}
    assert any(c.seq_q == 1023 for c in NU.build_cases(True))


def test_numerics_cli_small_run(tmp_path, capsys):
    rc = CLI.main(["numerics", "--filter", "flash2-fwd-fp16-d64-q113k113-h2-full", "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads(next(tmp_path.glob("numerics_*.json")).read_text())
    assert doc["cases"] >= 1 and doc["passed"] == doc["cases"] and doc["complete"] is True
    assert doc["rows"][0]["tensor"] == "o" and doc["rows"][0]["max_err"] <= doc["rows"][0]["tol"]
    assert "| pass |" in next(tmp_path.glob("numerics_*.md")).read_text()
    capsys.readouterr()
    rc = CLI.main(["numerics", "--filter", "flash2-fwd-fp16-d64-q113k113-h2-full", "--out", str(tmp_path)])
    assert rc == 2 and "--force" in capsys.readouterr().err
