"""A table of real torch SDPA calls, run unchanged through kernels.attention and (in flash-attn's
(B, N, H, d) layout) through kernels.flash_attn_func; outputs and gradients must meet the project's
exactness rule with torch SDPA itself as the yardstick: float64 SDPA is the reference, SDPA in the
input dtype is "the same math done plainly in the input dtype".  Calls we do not support must fail
with NotImplementedError (or SDPA's own kind of refusal) naming what is supported."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels.testing import check_rule, make_inputs, seed_of

# (id, (B, Hq, Hkv, Nq, Nkv, d), dtype, positional args after q, k, v, keyword args)
SUPPORTED = [
    ("plain_fp32", (1, 2, 2, 17, 17, 16), "fp32", (), {}),
    ("is_causal_fp16", (2, 2, 2, 23, 23, 32), "fp16", (), {"is_causal": True}),
    ("positional_causal_q_lt_kv_bf16", (1, 2, 2, 13, 29, 16), "bf16", (None, 0.0, True), {}),
    ("causal_q_gt_kv_fp32", (1, 1, 1, 29, 13, 16), "fp32", (), {"is_causal": True}),
    ("scale_fp16", (1, 2, 2, 19, 31, 32), "fp16", (), {"scale": 0.3}),
    ("explicit_defaults_fp32", (1, 2, 2, 9, 9, 16), "fp32", (),
     {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}),
    ("gqa_causal_fp16", (1, 4, 2, 21, 21, 16), "fp16", (), {"is_causal": True, "enable_gqa": True}),
    ("mqa_fp32", (2, 4, 1, 11, 27, 16), "fp32", (), {"enable_gqa": True}),
    ("gqa_flag_equal_heads_bf16", (1, 2, 2, 15, 15, 16), "bf16", (), {"enable_gqa": True}),
]

# (id, shape, positional, keyword args, exception of ours, message it must contain)
UNSUPPORTED = [
    ("bool_mask", (1, 2, 2, 8, 8, 16), (), {"attn_mask": "bool"}, NotImplementedError, "is_causal=True"),
    ("float_mask", (1, 2, 2, 8, 8, 16), (), {"attn_mask": "float"}, NotImplementedError, "attn_mask=None"),
    ("dropout", (1, 2, 2, 8, 8, 16), (), {"dropout_p": 0.1}, NotImplementedError, "dropout_p=0.0"),
    ("positional_dropout", (1, 2, 2, 8, 8, 16), (None, 0.5), {}, NotImplementedError, "dropout_p=0.0"),
]

# calls SDPA itself refuses: ours must refuse too
REFUSED_BY_BOTH = [
    ("gqa_without_flag", (1, 4, 2, 8, 8, 16), {}, ValueError, "enable_gqa=True"),
    ("gqa_not_dividing", (1, 3, 2, 8, 8, 16), {"enable_gqa": True}, ValueError, "multiple"),
    ("is_causal_str", (1, 2, 2, 8, 8, 16), {"is_causal": "no"}, TypeError, "True or False"),
    ("is_causal_int", (1, 2, 2, 8, 8, 16), {"is_causal": 1}, TypeError, "True or False"),
    ("enable_gqa_int", (1, 2, 2, 8, 8, 16), {"enable_gqa": 1}, TypeError, "True or False"),
]


def _inputs(case_id, shape, dtype, device, grad=True):
    B, Hq, Hkv, Nq, Nkv, d = shape
    q, k, v, do = make_inputs(B, Hq, Hkv, Nq, Nkv, d, dtype, device, seed_of("sdpa", case_id))
    if grad:
        for t in (q, k, v):
            t.requires_grad_(True)
    return q, k, v, do


def _sdpa_grads(q, k, v, do, args, kw, dtype=None):
    """Real torch SDPA forward and backward on copies of q, k, v (cast to `dtype` if given)."""
    leaves = [t.detach().to(dtype or t.dtype).requires_grad_(True) for t in (q, k, v)]
    o = F.scaled_dot_product_attention(*leaves, *args, **kw)
    o.backward(do.to(o.dtype))
    return o.detach(), [t.grad for t in leaves]


def _check_against_sdpa(o, grads, q, k, v, do, args, kw, dtype):
    o64, g64 = _sdpa_grads(q, k, v, do, args, kw, torch.float64)
    o_dt, g_dt = _sdpa_grads(q, k, v, do, args, kw)
    check_rule("o", o, o64, o_dt, dtype)
    for name, g, gr, gn in zip(("dq", "dk", "dv"), grads, g64, g_dt):
        assert g.shape == gr.shape, f"{name} shape {tuple(g.shape)} != SDPA's {tuple(gr.shape)}"
        check_rule(name, g, gr, gn, dtype)


@pytest.mark.parametrize("case_id,shape,dtype,args,kw", SUPPORTED, ids=[c[0] for c in SUPPORTED])
def test_sdpa_call_runs_unchanged(case_id, shape, dtype, args, kw, device):
    q, k, v, do = _inputs(case_id, shape, dtype, device)
    o = kernels.attention(q, k, v, *args, **kw)
    o.backward(do)
    _check_against_sdpa(o, [q.grad, k.grad, v.grad], q, k, v, do, args, kw, dtype)


def _bottom_right_mask(nq, nkv, device):
    return torch.ones(nq, nkv, dtype=torch.bool, device=device).tril(diagonal=nkv - nq)


@pytest.mark.parametrize("case_id,shape,dtype,args,kw", SUPPORTED, ids=[c[0] for c in SUPPORTED])
def test_flash_attn_layout_matches_sdpa(case_id, shape, dtype, args, kw, device):
    """The same call in flash-attn's form: (B, N, H, d) tensors, softmax_scale, causal (bottom-right
    when seq_q != seq_kv, compared to SDPA with that explicit boolean mask), GQA implicit."""
    call = dict(zip(("attn_mask", "dropout_p", "is_causal"), args), **kw)
    causal, scale = call.get("is_causal", False), call.get("scale")
    q, k, v, do = _inputs(case_id, shape, dtype, device)
    qt, kt, vt = (t.detach().transpose(1, 2).contiguous().requires_grad_(True) for t in (q, k, v))
    o = kernels.flash_attn_func(qt, kt, vt, softmax_scale=scale, causal=causal)
    assert o.shape == qt.shape
    o.backward(do.transpose(1, 2))
    sdpa_kw = {"scale": scale, "enable_gqa": shape[1] != shape[2]}
    Nq, Nkv = shape[3], shape[4]
    if causal and Nq != Nkv:
        sdpa_kw["attn_mask"] = _bottom_right_mask(Nq, Nkv, q.device)
    else:
        sdpa_kw["is_causal"] = causal
    grads = [t.grad.transpose(1, 2) for t in (qt, kt, vt)]
    _check_against_sdpa(o.transpose(1, 2), grads, q, k, v, do, (), sdpa_kw, dtype)


def _realise(kw, shape, device):
    kw = dict(kw)
    if kw.get("attn_mask") == "bool":
        kw["attn_mask"] = torch.ones(shape[3], shape[4], dtype=torch.bool, device=device).tril()
    elif kw.get("attn_mask") == "float":
        kw["attn_mask"] = torch.zeros(shape[3], shape[4], device=device)
    return kw


@pytest.mark.parametrize("case_id,shape,args,kw,exc,match", UNSUPPORTED, ids=[c[0] for c in UNSUPPORTED])
def test_unsupported_sdpa_call_names_the_alternative(case_id, shape, args, kw, exc, match, device):
    q, k, v, _ = _inputs(case_id, shape, "fp32", device, grad=False)
    kw = _realise(kw, shape, device)
    F.scaled_dot_product_attention(q, k, v, *args, **kw)  # a valid SDPA call ...
    with pytest.raises(exc, match=match.replace("(", r"\(").replace(")", r"\)")):
        kernels.attention(q, k, v, *args, **kw)  # ... that we refuse, saying what works


@pytest.mark.parametrize("case_id,shape,kw,exc,match", REFUSED_BY_BOTH, ids=[c[0] for c in REFUSED_BY_BOTH])
def test_call_sdpa_refuses_is_refused(case_id, shape, kw, exc, match, device):
    q, k, v, _ = _inputs(case_id, shape, "fp32", device, grad=False)
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        F.scaled_dot_product_attention(q, k, v, **kw)
    with pytest.raises(exc, match=match):
        kernels.attention(q, k, v, **kw)


def test_causal_alias_and_conflict(device):
    q, k, v, _ = _inputs("alias", (1, 2, 2, 12, 12, 16), "fp32", device, grad=False)
    torch.testing.assert_close(kernels.attention(q, k, v, causal=True), kernels.attention(q, k, v, is_causal=True),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="contradict"):
        kernels.attention(q, k, v, is_causal=True, causal=False)
    with pytest.raises(TypeError, match="causal must be True or False"):
        kernels.attention(q, k, v, causal="no")


@pytest.mark.parametrize("kw,exc,match", [
    ({"dropout_p": 0.1}, NotImplementedError, "dropout_p=0.0"),
    ({"window_size": (4, 0)}, NotImplementedError, "window_size"),
    ({"softcap": 30.0}, NotImplementedError, "softcap=0.0"),
    ({"alibi_slopes": "x"}, NotImplementedError, "alibi_slopes=None"),
    ({"return_attn_probs": True}, NotImplementedError, "return_attn_probs=False"),
    ({"causal": "yes"}, TypeError, "True or False"),
    ({"softmax_scale": -1.0}, ValueError, "positive"),
])
def test_flash_attn_func_unsupported(kw, exc, match, device):
    q, k, v, _ = _inputs("fa_bad", (1, 2, 2, 8, 8, 16), "fp32", device, grad=False)
    with pytest.raises(exc, match=match):
        kernels.flash_attn_func(q, k, v, **kw)


def test_layout_swap_detected_where_shapes_disagree(device):
    """flash-attn-layout (B, N, H, d) tensors with different query and key lengths, given to
    attention(): read as SDPA's layout their "heads" differ, so the call is refused with a pointer to
    flash_attn_func (and the reverse).  Equal lengths and heads cannot be detected (module doc)."""
    q, k, v, _ = _inputs("swap", (1, 2, 2, 12, 20, 16), "fp32", device, grad=False)
    qf, kf, vf = (t.transpose(1, 2).contiguous() for t in (q, k, v))  # (B, N, H, d)
    with pytest.raises(ValueError, match="flash_attn_func"):
        kernels.attention(qf, kf, vf)
    with pytest.raises(ValueError, match="flash_attn_func"):
        kernels.attention(qf, kf, vf, enable_gqa=True)  # 12 "heads" over 20: not a multiple
    with pytest.raises(ValueError, match="kernels.attention"):
        kernels.flash_attn_func(q, k, v)  # SDPA-layout tensors: 12 query "heads" over 20 key "heads"
