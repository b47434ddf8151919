"""Property-based fuzz (hypothesis) of the kernels against the exactness rule (kernels/testing.py):
shapes (odd lengths, seq_q != seq_kv), strides (contiguous, (B,N,H,d) transposed, a slice of a wider
last dim), dtypes, causal alignments, GQA/MQA, logit scale, and schedules (algorithm x phase, tile
sizes, grid order).  Every case runs under poisoned allocations and must pass the rule for o (and
dq, dk, dv) and the lse check.

CI runs a small, derandomized budget on tiny interpreter shapes.  A longer run, with fresh random
draws each time (failures are shrunk and printed with the hypothesis seed to replay):

    FUZZ_EXAMPLES=500 python -m pytest -q tests/test_fuzz_kernels.py
"""
from __future__ import annotations

import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kernels.testing import run_case  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
CI_EXAMPLES = 12
FUZZ = settings(max_examples=EXAMPLES or CI_EXAMPLES, deadline=None, derandomize=not EXAMPLES,
                suppress_health_check=[HealthCheck.too_slow], print_blob=True)

ALG_PHASES = [("naive", False), ("naive", True), ("flash1", False), ("flash2", False), ("flash2", True)]


@st.composite
def cases(draw):
    alg, backward = draw(st.sampled_from(ALG_PHASES))
    hkv = draw(st.integers(1, 2))
    group = draw(st.sampled_from([1, 2]))
    nq = draw(st.integers(1, 40))
    nkv = draw(st.integers(1, 40))
    causal = draw(st.booleans())
    align = draw(st.sampled_from(["top_left", "bottom_right"])) if causal else "top_left"
    return dict(
        alg=alg, backward=backward,
        shape=(draw(st.integers(1, 2)), hkv * group, hkv, nq, nkv, draw(st.sampled_from([16, 32]))),
        dtype=draw(st.sampled_from(["fp16", "bf16", "fp32"])),
        causal=causal, align=align,
        layout=draw(st.sampled_from(["contiguous", "bnhd", "wide"])),
        blocks=draw(st.sampled_from([None, (16, 16), (32, 16), (16, 32), (32, 32)])),
        grid_order=draw(st.sampled_from(["q_fastest", "heads_fastest"])) if alg != "flash1" else "q_fastest",
        input_scale=draw(st.sampled_from([1.0, 4.0])),
    )


@FUZZ
@given(c=cases())
def test_fuzz_kernels_meet_the_rule(c, device):
    run_case(c["alg"], c["shape"], c["dtype"], device, causal=c["causal"], align=c["align"], blocks=c["blocks"],
             layout=c["layout"], input_scale=c["input_scale"], backward=c["backward"],
             grid_order=c["grid_order"], verbose=False)
