"""kernels.decode with queries of several lengths (cu_seqlens_q, packed q): exact under the project's rule on small
ragged shapes (length-0 and length-1 queries, empty caches, queries longer than their cache), the model's byte
contract for sequences with no query token, and clear errors for inconsistent shapes.

Runs in the Triton interpreter on CPU (small shapes) and unchanged on a GPU."""
import pytest
import torch

from kernels.decode_kv import decode, decode_plan
from kernels.decode_testing import (VARLEN_CASES, make_decode_inputs, make_varlen_inputs, run_varlen_case)
from memsim.inference import DecodeProblem, DecodeSchedule
from memsim.schedule import ScheduleError


@pytest.mark.parametrize("name", list(VARLEN_CASES))
def test_varlen_matches_reference(name, device):
    run_varlen_case(name, device, verbose=False)


@pytest.mark.parametrize("S", [1, 2])
def test_varlen_of_equal_lengths_is_the_padded_call(S, device):
    """Every sequence with the same query length: the packed call computes exactly what the (B, Nq, Hq, d) call
    does (same tiles, same order of operations), bit for bit."""
    q4, kc, vc, lens, _, _ = make_decode_inputs(3, 2, 4, 2, 16, [9, 33, 2], "fp16", device, 11)
    cu = torch.tensor([0, 2, 4, 6], dtype=torch.int32, device=q4.device)
    a = decode(q4, kc, vc, lens, num_splits=S)
    b = decode(q4.reshape(6, 4, 16), kc, vc, lens, cu_seqlens_q=cu, num_splits=S)
    assert torch.equal(a.reshape(6, 4, 16), b)


def test_varlen_no_query_token_in_the_batch(device):
    q, kc, vc, lens, _, _, cu = make_varlen_inputs([0, 0], 4, 2, 16, [5, 7], "fp16", device, 3)
    out = decode(q, kc, vc, lens, cu_seqlens_q=cu)
    assert out.shape == (0, 4, 16)
    with pytest.raises(ValueError, match="no query token"):
        decode_plan(q, kc, vc, lens, cu_seqlens_q=cu)


def test_varlen_plan_uses_max_seqlen_q(device):
    q, kc, vc, lens, _, _, cu = make_varlen_inputs([1, 3, 0], 4, 2, 16, [10, 20, 4], "fp16", device, 5)
    p, _, _ = decode_plan(q, kc, vc, lens, cu_seqlens_q=cu)
    assert p.seqlens_q == (3, 3, 3)
    p, _, _ = decode_plan(q, kc, vc, lens, cu_seqlens_q=cu, max_seqlen_q=5)
    assert p.seqlens_q == (5, 5, 5)


def _bad_varlen(device):
    return make_varlen_inputs([1, 2], 4, 2, 16, [10, 20], "fp16", device, 7)


BAD = {  # name: (call with the inputs changed, message)
    "q_4d_with_cu": (lambda q, k, v, l, cu: dict(q=q[None], cu_seqlens_q=cu), "must be 3-D"),
    "cu_int64": (lambda q, k, v, l, cu: dict(cu_seqlens_q=cu.long()), "int32 tensor of shape (3,)"),
    "cu_short": (lambda q, k, v, l, cu: dict(cu_seqlens_q=cu[:2]), "shape (3,)"),
    "cu_not_from_0": (lambda q, k, v, l, cu: dict(cu_seqlens_q=cu + 1), "from 0 to q.shape[0] = 3"),
    "cu_end": (lambda q, k, v, l, cu: dict(cu_seqlens_q=torch.tensor([0, 1, 2], dtype=torch.int32,
                                                                     device=cu.device)), "from 0 to q.shape[0] = 3"),
    "cu_decreasing_inside": (lambda q, k, v, l, cu: dict(cu_seqlens_q=torch.tensor([0, 4, 3], dtype=torch.int32,
                                                                                   device=cu.device)), "must not decrease"),
    "max_too_small": (lambda q, k, v, l, cu: dict(cu_seqlens_q=cu, max_seqlen_q=1), "more than max_seqlen_q = 1"),
    "max_negative": (lambda q, k, v, l, cu: dict(cu_seqlens_q=cu, max_seqlen_q=-1), "non-negative int"),
    "max_bool": (lambda q, k, v, l, cu: dict(cu_seqlens_q=cu, max_seqlen_q=True), "non-negative int"),
    "max_without_cu": (lambda q, k, v, l, cu: dict(q=q[None], max_seqlen_q=2), "goes with cu_seqlens_q"),
    "no_values_no_max": (lambda q, k, v, l, cu: dict(cu_seqlens_q=cu, check_values=False), "max_seqlen_q is needed"),
    "batch_mismatch": (lambda q, k, v, l, cu: dict(cu_seqlens_q=torch.tensor([0, 1, 2, 3], dtype=torch.int32,
                                                                             device=cu.device)), "shape (3,)"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_varlen_errors(name, device):
    q, k, v, l, _, _, cu = _bad_varlen(device)
    f, msg = BAD[name]
    kw = f(q, k, v, l, cu)
    qq = kw.pop("q", q)
    with pytest.raises((ValueError, TypeError)) as ei:
        decode(qq, k, v, l, **kw)
    assert msg in str(ei.value), str(ei.value)


def test_cu_decreasing_message_names_the_entry(device):
    """A decrease inside the offsets (the ends right) is named by its index."""
    q, k, v, l, _, _, _ = make_varlen_inputs([2, 1, 1], 4, 2, 16, [10, 20, 5], "fp16", device, 9)
    cu = torch.tensor([0, 3, 2, 4], dtype=torch.int32, device=q.device)
    with pytest.raises(ValueError, match=r"must not decrease: cu_seqlens_q\[2\] = 2 < cu_seqlens_q\[1\] = 3"):
        decode(q, k, v, l, cu_seqlens_q=cu)


def test_model_reads_nothing_for_a_sequence_without_query_tokens():
    """The contract (memsim.analytic_decode) and the SimPy workload: a sequence with nq = 0 moves no byte; its
    cache length still counts for the capacity.  Removing it from the batch changes no byte count."""
    from memsim.analytic_decode import decode_launch_counts
    from memsim.workloads_decode import simulate_decode
    s = DecodeSchedule(num_splits=2)
    with_zero = DecodeProblem(8, 2, 64, (1, 0, 3), (300, 5000, 77), dtype="fp16")
    without = DecodeProblem(8, 2, 64, (1, 3), (300, 77), dtype="fp16", capacity_kv=5000)
    assert with_zero.read_seqlens_kv == (300, 0, 77)
    assert with_zero.kv_bytes() == without.kv_bytes()
    a, b = decode_launch_counts(with_zero, s), decode_launch_counts(without, s)
    assert a == b
    sa = simulate_decode(with_zero, s, "h100-sxm")
    sb = simulate_decode(without, s, "h100-sxm")
    for k in ("global_read_bytes", "global_write_bytes"):
        assert sa["total"][k] == sb["total"][k]
        assert sa["total"][k] == sum(v[k] for v in a.values())


def test_problem_needs_one_query_token():
    with pytest.raises(ScheduleError, match="no query token"):
        DecodeProblem(4, 2, 64, (0, 0), (10, 20))
    with pytest.raises(ScheduleError, match=">= 0"):
        DecodeProblem(4, 2, 64, (1, -1), (10, 20))
