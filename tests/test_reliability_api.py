"""Issue 11 audit (2026-11-26): bad arguments to the Python entry points are clear one-line errors."""
from __future__ import annotations

import pytest
import torch

import kernels


@pytest.mark.parametrize("window", [5, (-1,), "(-1, -1)", None])
def test_flash_attn_window_size_must_be_a_pair(window):
    """window_size=5 was "TypeError: 'int' object is not iterable"."""
    q = torch.randn(1, 16, 2, 16)
    with pytest.raises(TypeError, match=r"window_size must be a \(left, right\) pair"):
        kernels.flash_attn_func(q, q, q, window_size=window)


# --- issue 11 item 1 (audit 2026-11-26, second pass): flags are real bools in every public API -------------------
BAD_FLAGS = ["no", "False", 0, 1, None, 0.0]


def _qkv(n=8, d=16):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 2, n, d, generator=g) for _ in range(3)]


def _decode_inputs():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 2, 16, generator=g)
    kc, vc = (torch.randn(1, 32, 2, 16, generator=g) for _ in range(2))
    return q, kc, vc, torch.tensor([20], dtype=torch.int32)


def _sim_args():
    from memsim.schedule import AttentionProblem, Schedule
    return AttentionProblem(1, 2, 2, 64, 64, 16), Schedule()


FLAG_CALLS = {
    # reference("no") computed causal attention; naive_same_dtype (the rule's yardstick) too
    "kernels.reference(causal=)": ("causal", lambda v: kernels.reference(*_qkv(), causal=v)),
    "kernels.naive_same_dtype(causal=)": ("causal", lambda v: kernels.naive_same_dtype(*_qkv(), causal=v)),
    # decode(check_values="no") skipped nothing but was accepted; "no" and not capturing is truthy
    "kernels.decode(check_values=)": ("check_values", lambda v: kernels.decode(*_decode_inputs(), check_values=v)),
    "kernels.decode_plan(check_values=)": ("check_values",
                                           lambda v: kernels.decode_plan(*_decode_inputs(), check_values=v)),
    "memsim.simulate(flush_l2=)": ("flush_l2", lambda v: __import__("memsim").simulate(*_sim_args(), flush_l2=v)),
    "memsim.simulate(sectors=)": ("sectors", lambda v: __import__("memsim").simulate(*_sim_args(), sectors=v)),
}


@pytest.mark.parametrize("value", BAD_FLAGS, ids=repr)
@pytest.mark.parametrize("call", list(FLAG_CALLS))
def test_flags_must_be_real_bools(call, value):
    """Each of these took a truthy string or an int as a flag (kernels.reference(causal="no") computed causal
    attention); now: TypeError naming the argument and saying True or False."""
    name, fn = FLAG_CALLS[call]
    with pytest.raises(TypeError, match=rf"^{name} must be True or False, got {__import__('re').escape(repr(value))}"):
        fn(value)


def test_reference_still_takes_real_bools():
    q, k, v = _qkv()
    o_nc, _ = kernels.reference(q, k, v, causal=False)
    o_c, _ = kernels.reference(q, k, v, causal=True)
    assert not torch.equal(o_nc, o_c)


def test_run_sweep_flags_use_the_shared_check(tmp_path, monkeypatch):
    """run_sweep(force="no") was already refused (memsim/sweep.py since 2bcac12); it now uses the shared
    memsim.schedule.require_bool, so its message names the type like the others."""
    from memsim.sweep import SweepSpec, run_sweep
    monkeypatch.chdir(tmp_path)
    spec = SweepSpec(axes={"seq": [64]}, base={"batch": 1, "heads": 1, "head_dim": 16})
    for flag in ("force", "resume", "progress"):
        with pytest.raises(TypeError, match=rf"^{flag} must be True or False, got 'no' \(str\)"):
            run_sweep(spec, "o", **{flag: "no"})
    assert list(tmp_path.iterdir()) == []


def test_one_shared_bool_check():
    """kernels.api's flag check and the memsim checks are one function (memsim.schedule.require_bool)."""
    from kernels.api import _check_flag
    from memsim.schedule import require_bool
    assert require_bool("x", True) is True and _check_flag("x", False) is False
    with pytest.raises(TypeError, match=r"^x must be True or False, got 'no' \(str\)$"):
        require_bool("x", "no")


# --- issue 11 (audit 2026-11-26, second pass): numbers and schedules that were accepted --------------------------
@pytest.mark.parametrize("scale", [True, False, "0.5", float("nan"), 0.0, -1.0])
def test_decode_scale_must_be_a_positive_number(scale):
    """kernels.decode(scale=True) ran with scale 1.0 (DecodeProblem took the bool as a number)."""
    with pytest.raises((TypeError, ValueError), match=r"^scale must be a"):
        kernels.decode(*_decode_inputs(), scale=scale)


@pytest.mark.parametrize("value", [float("nan"), -1, 0, True, "10"], ids=repr)
def test_simulate_max_seconds_must_be_a_positive_number_or_none(value):
    """simulate(max_seconds=nan) turned the limit off (every comparison with nan is False); -1 refused
    everything as "about 0 s"."""
    import memsim
    with pytest.raises(ValueError, match=r"^max_seconds must be a positive number of CPU seconds, or None"):
        memsim.simulate(*_sim_args(), max_seconds=value)


def test_simulate_max_seconds_none_and_inf_still_run():
    import memsim
    for v in (None, float("inf"), 10, 0.5):
        assert memsim.simulate(*_sim_args(), max_seconds=v).total["time_s"] > 0


@pytest.mark.parametrize("alg, phase", [("flash2", "fwd"), ("flash2", "bwd"), ("flash1", "fwd")])
def test_sp_dtype_is_naive_only(alg, phase):
    """Schedule("flash2", sp_dtype="fp32") was accepted: sp_dtype is the element type of the S and P that
    naive writes to HBM, and means nothing for an algorithm that keeps them on chip."""
    from memsim.schedule import Schedule, ScheduleError
    with pytest.raises(ScheduleError, match=rf"{alg} keeps S and P on chip, so its sp_dtype must be None"):
        Schedule(alg, phase, sp_dtype="fp32")
    assert Schedule(alg, phase).sp_dtype is None
    assert Schedule("naive", phase if alg != "flash1" else "fwd", sp_dtype="fp32").sp_dtype == "fp32"


# --- issue 11 item 7 (audit 2026-11-26, second pass): an explicit grain is refused with its estimate -------------
BIG = dict(batch=4, heads_q=16, heads_kv=16, seq_q=65536, seq_kv=65536, head_dim=64)  # `memsim simulate --seq 65536`


@pytest.mark.parametrize("kw", [dict(grain="tile"), dict(grain="run", run_blocks=1), dict(grain="tile", ctas_per_event=1, heads_per_event=1)],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_explicit_grain_over_the_limit_is_refused_with_the_estimate(kw):
    """An explicit grain on a large problem ran for ~15 min (progress bar only) where auto refuses the absurd
    up front; now the plan asked for is refused with its estimate, what auto would take, and the override."""
    import time

    import memsim
    from memsim.grain import SimulationTooLarge
    from memsim.schedule import AttentionProblem, Schedule
    p = AttentionProblem(**BIG)
    t = time.perf_counter()
    with pytest.raises(SimulationTooLarge) as e:
        memsim.simulate(p, Schedule(), "h100-sxm", **kw)
    assert time.perf_counter() - t < 5  # refused up front, nothing simulated
    msg = str(e.value)
    assert "at the grain asked for: about" in msg and "s of CPU" in msg and "over the 10 s limit" in msg
    assert "grain='auto'" in msg and "max_seconds=None (--allow-slow)" in msg and "\n" not in msg


def test_explicit_grain_within_the_limit_or_with_no_limit_is_kept():
    from memsim.grain import plan_grain
    from memsim.hardware import load_hardware
    from memsim.schedule import AttentionProblem, Schedule
    hw = load_hardware("h100-sxm")
    plan = plan_grain(AttentionProblem(**BIG), Schedule(), hw, "tile", max_seconds=None)  # estimated, not refused
    assert plan.grain == "tile" and plan.estimated_s > 10
    small = plan_grain(AttentionProblem(1, 2, 2, 256, 256, 32), Schedule(), hw, "tile")
    assert small.grain == "tile" and small.estimated_s < 10


# --- found by the audit (second pass), fixed in the third pass: kernels.backward/forward arguments --------------
def _fwd_of(problem_kw, device, alg="flash2"):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 32, 16, generator=g).to(device) for _ in range(3))
    p = kernels.problem_for(q, k, v, **problem_kw)
    return q, k, v, p, kernels.forward(p, kernels.default_schedule(p, alg, "fwd", q.device), q, k, v)


@pytest.mark.parametrize("other, field", [(dict(causal=True), "causal"), (dict(scale=0.5), "scale"),
                                          (dict(causal=True, causal_align="bottom_right"), "causal_align")])
def test_backward_refuses_a_forward_of_another_problem(device, other, field):
    """kernels.backward(causal_problem, ..., fwd_of_the_plain_problem) returned the gradients of the wrong
    attention, silently (same shapes, so every tensor check passed).  Now ForwardResult records its problem and
    backward refuses another one in one line naming the differing fields (forward's value, then this one's)."""
    q, k, v, plain, fwd = _fwd_of({}, device)
    assert fwd.problem == plain
    other_p = kernels.problem_for(q, k, v, **other)
    with pytest.raises(ValueError, match=rf"^fwd was computed for another problem: .*{field} .*\(fwd\) vs .*\(here\)") as e:
        kernels.backward(other_p, kernels.default_schedule(other_p, "flash2", "bwd", q.device), q, k, v, fwd.o,
                         torch.randn_like(q), fwd)
    assert "\n" not in str(e.value)


def test_backward_of_its_own_forward_still_runs(device):
    """The same problem (and a ForwardResult built by hand, positionally, with no problem) still runs."""
    from kernels.registry import ForwardResult
    q, k, v, p, fwd = _fwd_of(dict(causal=True), device)
    bs = kernels.default_schedule(p, "flash2", "bwd", q.device)
    do = torch.randn_like(q)
    dq, dk, dv = kernels.backward(kernels.problem_for(q, k, v, causal=True), bs, q, k, v, fwd.o, do, fwd)
    by_hand = ForwardResult(fwd.o, fwd.lse, fwd.saved, fwd.schedule)  # the positional form of kernels/api.py
    assert by_hand.problem is None
    dq2, _, _ = kernels.backward(p, bs, q, k, v, fwd.o, do, by_hand)
    assert torch.equal(dq, dq2)


def test_naive_forward_records_its_problem_too(device):
    q, k, v, p, fwd = _fwd_of(dict(causal=True), device, alg="naive")
    assert fwd.problem == p


@pytest.mark.parametrize("as_what", ["dict", "tuple", "none"])
def test_forward_refuses_a_problem_that_is_not_an_attention_problem(as_what):
    """kernels.forward(problem.to_dict(), ...) was "AttributeError: 'dict' object has no attribute 'batch'"."""
    q = torch.randn(1, 2, 16, 16)
    p = kernels.problem_for(q, q, q)
    bad = {"dict": p.to_dict(), "tuple": tuple(p.to_dict().values()), "none": None}[as_what]
    fs = kernels.default_schedule(p, "flash2", "fwd", q.device)
    with pytest.raises(TypeError, match=r"^problem must be a memsim.schedule.AttentionProblem, got .*problem_from_dict"):
        kernels.forward(bad, fs, q, q, q)
    fwd = kernels.forward(p, fs, q, q, q)
    bs = kernels.default_schedule(p, "flash2", "bwd", q.device)
    with pytest.raises(TypeError, match=r"^problem must be a memsim.schedule.AttentionProblem"):
        kernels.backward(bad, bs, q, q, q, fwd.o, torch.randn_like(q), fwd)


def test_forward_and_backward_refuse_a_schedule_that_is_not_a_schedule():
    q = torch.randn(1, 2, 16, 16)
    p = kernels.problem_for(q, q, q)
    fs = kernels.default_schedule(p, "flash2", "fwd", q.device)
    with pytest.raises(TypeError, match=r"^schedule must be a memsim.schedule.Schedule, got dict .*schedule_from_dict"):
        kernels.forward(p, fs.to_dict(), q, q, q)
    fwd = kernels.forward(p, fs, q, q, q)
    with pytest.raises(TypeError, match=r"^schedule must be a memsim.schedule.Schedule, got str"):
        kernels.backward(p, "flash2", q, q, q, fwd.o, torch.randn_like(q), fwd)


# --- the other flags of the second pass's search (flush_l2, overwrite, backward) and DecodeProblem(scale=) ---------
def _decode_sim(flush_l2):
    from memsim.inference import DecodeProblem, DecodeSchedule
    from memsim.workloads_decode import simulate_decode
    return simulate_decode(DecodeProblem.uniform(1, 2, 2, 64, 256), DecodeSchedule(), flush_l2=flush_l2)


def _publish(tmp_path, overwrite):
    from memsim.sweep_store import publish_files
    return publish_files(tmp_path / "s", {"csv": "a\n"}, overwrite=overwrite)


MORE_FLAG_CALLS = {
    "memsim.workloads_decode.simulate_decode(flush_l2=)": ("flush_l2", lambda v, t: _decode_sim(v)),
    "memsim.sweep_store.publish_files(overwrite=)": ("overwrite", lambda v, t: _publish(t, v)),
    "kernels.testing.run_case(backward=)": ("backward", lambda v, t: __import__("kernels.testing").testing.run_case(
        "flash2", (1, 2, 2, 16, 16, 16), "fp32", "cpu", backward=v, verbose=False)),
}


@pytest.mark.parametrize("value", BAD_FLAGS, ids=repr)
@pytest.mark.parametrize("call", list(MORE_FLAG_CALLS))
def test_more_flags_must_be_real_bools(call, value, tmp_path):
    """simulate_decode(flush_l2="no"), publish_files(overwrite="no") and run_case(backward="no") were accepted
    ("no" is truthy); now the shared memsim.schedule.require_bool refuses them before any work."""
    name, fn = MORE_FLAG_CALLS[call]
    with pytest.raises(TypeError, match=rf"^{name} must be True or False, got {__import__('re').escape(repr(value))}"):
        fn(value, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_more_flags_still_take_real_bools(tmp_path):
    assert _decode_sim(False)["total"] and _decode_sim(True)["total"]
    assert set(_publish(tmp_path, False)) >= {"csv"}
    assert set(_publish(tmp_path, True)) >= {"csv"}


@pytest.mark.parametrize("scale", [True, False])
def test_decode_problem_scale_must_not_be_a_bool(scale):
    """DecodeProblem(..., scale=True) was taken as scale 1.0 (AttentionProblem(scale=True) is refused)."""
    from memsim.inference import DecodeProblem
    from memsim.schedule import ScheduleError
    with pytest.raises(ScheduleError, match=r"^DecodeProblem.scale must be a positive finite number, got (True|False)$"):
        DecodeProblem(2, 2, 64, (1,), (256,), scale=scale)
    assert DecodeProblem(2, 2, 64, (1,), (256,), scale=1).scale == 1.0


@pytest.mark.parametrize("kw", [dict(retune="no"), dict(overwrite="no"), dict(nearest=0)])
def test_autotune_flags_must_be_real_bools(kw):
    """kernels.autotune read "no" as True (re-tuned and overwrote the cache entry): refused before any work."""
    q = torch.zeros(1, 1, 16, 16)
    with pytest.raises(TypeError, match=next(iter(kw))):
        kernels.autotune(q, q, q, **kw)


def test_tuned_schedule_nearest_must_be_a_real_bool():
    from kernels.autotune import tuned_schedule
    from memsim.schedule import AttentionProblem
    with pytest.raises(TypeError, match="nearest must be True or False"):
        tuned_schedule(AttentionProblem(1, 1, 1, 16, 16, 16), nearest="no")
