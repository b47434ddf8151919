"""The hopper backward (kernels/hopper_bwd.py: dQ by fp32 atomic adds inside the dK/dV pass) against the float64
reference, by DESIGN.md's rule (the same rule and shapes as the other kernels).  Runs in Triton's CPU interpreter
(atomic adds are interpreted) and unchanged on a GPU; the GPU run of this file is the card's exactness evidence
(benchmarks/hopper_gpu.sh)."""
import pytest
import torch

import kernels
from kernels.testing import SHAPES, check_rule, make_inputs, poisoned_allocations, seed_of, yardsticks
from memsim.schedule import Schedule


def _run(shape, dtype, device, *, causal=False, align="top_left", blocks=(16, 16), warps=None, stages=1,
         layout="contiguous", scale=None, input_scale=1.0, grid_order="q_fastest", fwd_alg="flash2", alg="hopper"):
    B, Hq, Hkv, Nq, Nkv, d = shape
    q, k, v, do = make_inputs(B, Hq, Hkv, Nq, Nkv, d, dtype, device,
                              seed_of(alg + "_bwd", shape, dtype, causal, align, blocks, layout, scale, fwd_alg),
                              layout, input_scale)
    p = kernels.problem_for(q, k, v, causal=causal, scale=scale, causal_align=align)
    w = warps or (4 if device == "cuda" else 1)
    s = Schedule(alg, "bwd", blocks[0], blocks[1], w, stages, grid_order)
    kw = dict(causal=causal, scale=scale, causal_align=align)
    with poisoned_allocations():
        fs = kernels.default_schedule(p, fwd_alg, "fwd", device)
        f = kernels.forward(p, fs, q, k, v)
        grads = kernels.backward(p, s, q, k, v, f.o, do, f)
    ref = kernels.reference(q, k, v, do=do, **kw)
    ys = yardsticks(q, k, v, do=do, **kw)
    for name, g, gr in zip(("dq", "dk", "dv"), grads, ref[2:]):
        assert torch.isfinite(g).all(), name
        check_rule(name, g, gr, dtype=dtype, **ys[name])
    return grads


MASKS = [(False, "top_left"), (True, "top_left"), (True, "bottom_right")]


@pytest.mark.parametrize("mask", MASKS, ids=["full", "causal_tl", "causal_br"])
@pytest.mark.parametrize("shape_id", ["n1", "n113_gqa", "n203", "q113_kv17_mqa", "q33_kv47_gqa"])
def test_hopper_bwd_shapes(shape_id, mask, device):
    dtype = ("fp16", "bf16")[list(SHAPES).index(shape_id) % 2]
    _run(SHAPES[shape_id], dtype, device, causal=mask[0], align=mask[1])


@pytest.mark.parametrize("d", [64, 128])
def test_hopper_bwd_head_dims(d, device):
    _run((1, 2, 1, 33, 47, d), "bf16", device, causal=True, blocks=(16, 32))


@pytest.mark.parametrize("blocks", [(16, 32), (32, 16)], ids=lambda b: f"{b[0]}x{b[1]}")
def test_hopper_bwd_blocks_and_fp32(blocks, device):
    _run((1, 1, 1, 77, 113, 16), "fp32", device, causal=True, align="bottom_right", blocks=blocks)


@pytest.mark.parametrize("layout", ["bnhd", "wide"])
def test_hopper_bwd_strided_inputs(layout, device):
    _run((2, 2, 1, 33, 40, 32), "fp16", device, layout=layout, causal=True)


def test_hopper_bwd_fully_masked_rows_heads_fastest(device):
    """Rows that see no key: zero gradients, never NaN (their lse is -inf)."""
    dq, dk, dv = _run((1, 2, 2, 50, 9, 16), "fp16", device, causal=True, align="bottom_right", input_scale=6.0,
                      scale=1.0, grid_order="heads_fastest")
    assert (dq[:, :, :41].float() == 0).all()


def test_hopper_bwd_after_hopper_forward(device):
    """The hopper forward's saved lse feeds the hopper backward (kernels.attention pairs them by default)."""
    _run((1, 2, 1, 40, 33, 32), "bf16", device, causal=True, fwd_alg="hopper")


@pytest.mark.parametrize("alg", ["hopper", "hopper_ws"])
def test_hopper_bwd_through_attention_autograd(alg, device):
    """kernels.attention with a (forward, backward) pair: autograd reaches the fused backward (hopper) or the
    warp-specialised one after the persistent forward (hopper_ws, 32 rows: the tiles divide the lengths)."""
    n = 37 if alg == "hopper" else 32
    q, k, v, do = make_inputs(1, 2, 2, n, n, 16, "fp16", device, seed_of("hopper_bwd_autograd", alg))
    q, k, v = (t.clone().requires_grad_(True) for t in (q, k, v))
    p = kernels.problem_for(q.detach(), k.detach(), v.detach(), causal=True)
    w = 4 if device == "cuda" else 1
    if alg == "hopper":
        pair = (kernels.default_schedule(p, "flash2", "fwd", device), Schedule("hopper", "bwd", 16, 16, w, 1))
    else:
        pair = (Schedule("hopper_ws", "fwd", 16, 16, w, 1), Schedule("hopper_ws", "bwd", 16, 32, w, 1))
    kernels.attention(q, k, v, is_causal=True, schedule=pair).backward(do)
    assert kernels.last_schedule() == pair
    ref = kernels.reference(q.detach(), k.detach(), v.detach(), causal=True, do=do)
    ys = yardsticks(q.detach(), k.detach(), v.detach(), causal=True, do=do)
    for name, t, gr in zip(("dq", "dk", "dv"), (q, k, v), ref[2:]):
        check_rule(name, t.grad, gr, dtype="fp16", **ys[name])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU tile shapes (the benchmark's candidates)")
@pytest.mark.parametrize("tiles", [(64, 128, 8, 2)], ids=str)  # the others: the benchmark's gate
@pytest.mark.parametrize("d", [64, 128])
def test_hopper_bwd_gpu_tiles(tiles, d):
    bm, bn, w, st = tiles
    for causal in (False, True):
        _run((2, 4, 2, 1000, 1000, d), "bf16", "cuda", causal=causal, blocks=(bm, bn), warps=w, stages=st)


@pytest.mark.parametrize("mask", MASKS[:2], ids=["full", "causal_tl"])
def test_hopper_bwd_tma_paths(mask, device, monkeypatch):
    """The TMA paths (LOADS='tma': descriptor loads, also in the interpreter; DQ_REDUCE='tma': bulk reduce-add, on an
    sm_90 GPU only) are exact too."""
    import kernels.hopper_bwd as hb
    monkeypatch.setattr(hb, "LOADS", "tma")
    monkeypatch.setattr(hb, "DQ_REDUCE", "tma")
    _run(SHAPES["q33_kv47_gqa"], "fp16", device, causal=mask[0], align=mask[1], blocks=(16, 32))


def test_hopper_bwd_load_path_rule(device, monkeypatch):
    import kernels.hopper_bwd as hb
    assert (hb.LOADS, hb.DQ_REDUCE) == ("pointer", "atomic")  # the defaults: measured faster on the H100 (run2)
    q = torch.randn(1, 2, 8, 64, device=device, dtype=torch.float16)
    assert not hb.loads_by_tma(q, q)
    monkeypatch.setattr(hb, "LOADS", "tma")
    if device == "cpu" or torch.cuda.get_device_capability() >= (9, 0):
        assert hb.loads_by_tma(q, q)
    odd = torch.randn(1, 2, 8, 65, device=device, dtype=torch.float16)[..., :64]  # 130-byte rows: no descriptor
    assert not hb.loads_by_tma(odd, q) and not hb.loads_by_tma(q, odd)
    assert not hb.dq_reduce_by_tma(torch.device("cpu"))  # the interpreter has no TMA reduce


@pytest.mark.parametrize("knob, value", [("LOADS", "cp.async"), ("DQ_REDUCE", "red")])
def test_hopper_bwd_switches_refuse_unknown_values(knob, value, monkeypatch):
    import kernels.hopper_bwd as hb
    monkeypatch.setattr(hb, knob, value)
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match=knob):
        hb.loads_by_tma(q, q) if knob == "LOADS" else hb.dq_reduce_by_tma(q.device)


# --- the "ws" experiment (LOOP = "ws": hung on the H100 in run3, interpreter only) and the registry algorithm
# hopper_ws bwd (its warp-specialised dK/dV pass + flash2's dQ pass: "ws+f2dq", exact on the H100 in run4)
@pytest.mark.skipif(torch.cuda.is_available(), reason="LOOP='ws' hung on the H100 (run3)")
@pytest.mark.parametrize("mask", MASKS, ids=["full", "causal_tl", "causal_br"])
@pytest.mark.parametrize("shape_id", ["q33_kv47_gqa", "n113_gqa"])
def test_hopper_bwd_ws_experiment(shape_id, mask, device, monkeypatch):
    """LOOP='ws' (the warp-specialised dK/dV and dQ passes; TMA for every tile) is exact in the interpreter: ragged rows
    and columns, GQA (one loop over the group's heads), both causal alignments."""
    import kernels.hopper_bwd as hb
    monkeypatch.setattr(hb, "LOOP", "ws")
    monkeypatch.setattr(hb, "WS_DQ_TILES", {"ws": (16, 16, 1, 1)})
    _run(SHAPES[shape_id], "bf16", device, causal=mask[0], align=mask[1], blocks=(16, 32), warps=1, stages=1)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("mask", MASKS, ids=["full", "causal_tl", "causal_br"])
@pytest.mark.parametrize("shape_id", ["q33_kv47_gqa", "n113_gqa", "q113_kv17_mqa"])
def test_hopper_ws_bwd(shape_id, mask, dtype, device):
    """hopper_ws bwd is exact: ragged rows and columns, GQA/MQA, both causal alignments, fp16 and bf16; on a GPU with
    the tiles it is timed with (64x128 w4 s2: a producer and two consumer warpgroups)."""
    blocks, warps, stages = ((64, 128), 4, 2) if device == "cuda" else ((16, 32), 1, 1)
    _run(SHAPES[shape_id], dtype, device, causal=mask[0], align=mask[1], blocks=blocks, warps=warps, stages=stages,
         alg="hopper_ws")


def test_hopper_ws_bwd_other_paths(device):
    """fp32 (the dK/dV loop not warp-specialised); heads_fastest with (B, N, H, d) views (TMA takes any 16-byte
    strides); after hopper_ws's persistent forward; rows that see no key (zero gradients, never NaN)."""
    w = 4 if device == "cuda" else 1
    _run((1, 1, 1, 77, 113, 16), "fp32", device, causal=True, align="bottom_right", blocks=(16, 32), warps=w,
         alg="hopper_ws")
    _run((2, 2, 1, 33, 40, 32), "fp16", device, layout="bnhd", causal=True, blocks=(16, 32), warps=w,
         grid_order="heads_fastest", alg="hopper_ws")
    _run((1, 4, 2, 128, 256, 64), "bf16", device, causal=True, blocks=(32, 32), warps=w, fwd_alg="hopper_ws",
         alg="hopper_ws")
    dq, _, _ = _run((1, 2, 2, 50, 9, 16), "fp16", device, causal=True, align="bottom_right", input_scale=6.0,
                    scale=1.0, blocks=(16, 32), warps=w, alg="hopper_ws")
    assert (dq[:, :, :41].float() == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU tile shapes (the benchmark's candidates)")
@pytest.mark.parametrize("d", [64, 128])
def test_hopper_ws_bwd_gpu_tiles(d):
    for causal in (False, True):
        _run((2, 4, 2, 1000, 1000, d), "bf16", "cuda", causal=causal, blocks=(64, 128), warps=4, stages=2,
             alg="hopper_ws")


def test_hopper_ws_bwd_launches_and_layout_rule():
    """The three launches of the registry entry, the dQ pass's tiles (half the K/V rows, at least 16), the SRAM
    formula, the extra memory of the padded statistics, and the TMA layout rule with a clear error (what the launcher
    checks first)."""
    import kernels.hopper_bwd as hb
    from memsim.algorithms import spec_for
    from memsim.algorithms_hopper import ws_dq_schedule
    from memsim.schedule import AttentionProblem, kernel_launches
    p = AttentionProblem(2, 8, 2, 1000, 1000, 128, "bf16", True)
    s = Schedule("hopper_ws", "bwd", 64, 128, 4, 2)
    got = [(L.name, L.grid) for L in kernel_launches(p, s)]
    assert got == [("flash2_bwd_preprocess", (16, 16, 1)), ("hopper_bwd_dkdv_ws", (8, 4, 1)),
                   ("flash2_bwd_dq", (16, 16, 1))]
    assert ws_dq_schedule(s).block_n == 64 and ws_dq_schedule(Schedule("hopper_ws", "bwd", 16, 16)).block_n == 16
    from memsim.schedule import sram_bytes_per_cta
    assert sram_bytes_per_cta(p, s) == 148928 - 448  # the sm_90a compile of the dK/dV pass (run5) less its mbarriers
    ex = spec_for("hopper_ws", "bwd").extra_device_bytes
    assert ex(p, s) == 2 * 16 * 1000 * 4  # 1000 % 4 == 0: no padded copies
    assert ex(AttentionProblem(2, 8, 2, 1001, 1000, 128, "bf16"), s) == 2 * 16 * 1001 * 4 + 2 * 16 * 1004 * 4
    odd = torch.randn(1, 2, 8, 65, dtype=torch.float16)[..., :64]  # 130-byte rows: no descriptor
    with pytest.raises(ValueError, match=r"hopper_ws bwd loads k through TMA.*\(1040, 520, 65, 1\)"):
        hb.check_ws_layout("k", odd)
    hb.check_ws_layout("q", torch.randn(1, 2, 8, 64, dtype=torch.float16))  # fine: nothing raised


def test_hopper_bwd_loop_values(monkeypatch):
    import kernels.hopper_bwd as hb
    from memsim.schedule import AttentionProblem
    assert hb.LOOP == "split"  # the default: the fused pass (the "ws" experiment is a benchmark switch)
    q = torch.randn(1, 2, 8, 64, dtype=torch.float16)
    p16, p32 = (AttentionProblem(1, 2, 2, 8, 8, 64, dt) for dt in ("fp16", "fp32"))
    assert not hb.loop_ws(p16, q, q)
    monkeypatch.setattr(hb, "LOOP", "ws")
    assert hb.loop_ws(p16, q, q) and not hb.loop_ws(p32, q.float(), q.float())
    odd = torch.randn(1, 2, 8, 65, dtype=torch.float16)[..., :64]  # 130-byte rows: no descriptor
    assert not hb.loop_ws(p16, odd, q)
    for bad, msg in (("gluon", "must be 'split' or 'ws'"), ("ws+f2dq", "registry algorithm hopper_ws")):
        monkeypatch.setattr(hb, "LOOP", bad)
        with pytest.raises(ValueError, match=msg):
            hb.loop_ws(p16, q, q)


def test_hopper_bwd_ws_refusal_on_gpu(monkeypatch):
    """On a GPU, LOOP='ws' is refused unless WS_ON_GPU (it hung in run3)."""
    import types

    import kernels.hopper_bwd as hb
    from memsim.schedule import AttentionProblem
    monkeypatch.setattr(hb, "_tma_layout", lambda *t: True)
    fake = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"))
    p = AttentionProblem(1, 2, 2, 64, 64, 64, "bf16")
    monkeypatch.setattr(hb, "LOOP", "ws")
    with pytest.raises(NotImplementedError, match="hung"):
        hb.loop_ws(p, fake, fake)
    monkeypatch.setattr(hb, "WS_ON_GPU", True)
    assert hb.loop_ws(p, fake, fake)


# --- hopper_ws bwd's TMA alignment rule (session 7: random set N's case r26112612_002, 16x64 w4 s3, faulted with
# "misaligned address" on the H100; benchmarks/results/hopper-h100-2026-11-26-ws-bwd-misaligned.json)
#: (dtype, block_m, block_n, num_warps, num_stages) -> refused?  16-row lse/delta tiles are 64 bytes; refused where
#: Triton 3.6 multi-buffers them (num_stages >= 3, or the warp-specialised loop: w4 s2 in a 2-byte dtype)
WS_ALIGN = [
    ("fp16", 16, 64, 4, 3, True),    # set N's case
    ("bf16", 16, 64, 8, 4, True),
    ("fp32", 16, 64, 4, 3, True),    # fp32 runs the same TMA loads, software-pipelined
    ("fp16", 16, 128, 4, 2, True),   # warp-specialised: 2 buffers
    ("bf16", 16, 32, 4, 2, True),
    ("fp16", 16, 64, 4, 1, False),   # one buffer, 128-byte aligned
    ("fp16", 16, 64, 8, 2, False),   # not warp-specialised: one buffer
    ("fp32", 16, 64, 4, 2, False),   # fp32 is never warp-specialised
    ("fp16", 32, 64, 4, 3, False),   # 128-byte tiles: every buffer aligned
    ("bf16", 32, 128, 4, 2, False),
    ("fp16", 64, 128, 4, 2, False),  # the measured default
]


@pytest.mark.parametrize("dtype, bm, bn, w, st, refused", WS_ALIGN,
                         ids=[f"{t[0]}-{t[1]}x{t[2]}w{t[3]}s{t[4]}-{'refused' if t[5] else 'ok'}" for t in WS_ALIGN])
def test_hopper_ws_bwd_refuses_misaligned_stat_tiles(dtype, bm, bn, w, st, refused):
    """The registry refuses (kernel_launches, check_fits and the SRAM formula: one rule, `check_ws_bwd`) exactly the
    hopper_ws bwd schedules whose multi-buffered 16-row lse/delta TMA tiles break TMA's 128-byte alignment, with a
    ValueError that says why and what is allowed; the launcher refuses before launching anything."""
    from memsim.schedule import AttentionProblem, ScheduleError, check_fits, kernel_launches, sram_bytes_per_cta
    p = AttentionProblem(2, 26, 2, 256, 256, 64, dtype)
    s = Schedule("hopper_ws", "bwd", bm, bn, w, st, "heads_fastest")
    calls = (lambda: kernel_launches(p, s), lambda: sram_bytes_per_cta(p, s), lambda: check_fits(p, s, 10 ** 9))
    if not refused:
        assert [L.name for L in kernel_launches(p, s)] == ["flash2_bwd_preprocess", "hopper_bwd_dkdv_ws",
                                                           "flash2_bwd_dq"], "an allowed schedule must launch"
        for c in calls:
            c()
        return
    for c in calls:
        with pytest.raises(ScheduleError) as e:
            c()
        msg = str(e.value)
        assert isinstance(e.value, ValueError)
        for part in (f"block_m={bm}", "128-byte aligned", "misaligned address", "Allowed: block_m >= 32",
                     "num_stages=1"):
            assert part in msg, f"the refusal should say {part!r}: {msg}"
    from kernels.registry import launcher_for
    q, k = torch.zeros(2, 26, 256, 64), torch.zeros(2, 2, 256, 64)
    with pytest.raises(ScheduleError, match="Allowed: block_m >= 32"):  # the launcher's first step: no launch
        launcher_for("hopper_ws", "bwd").run(p, s, q, k, k, q, q, {"lse": torch.zeros(2, 26, 256)})


def test_sampler_rejects_what_the_registry_refuses(monkeypatch):
    """verification.sampling draws no schedule the registry refuses: set N's faulting hopper_ws backward (seed 26112612
    drew it at index 2 before the rule) offered as the sampler's first draw is rejected ("refused by the registry")
    and every case drawn launches.  (The draw itself is not pinned: seed 26112612's draw changed again when
    hopper_fa3 joined the registry, 2026-11-26.)"""
    import verification.sampling as sampling
    from memsim.schedule import AttentionProblem, ScheduleError, kernel_launches
    refused = (AttentionProblem(2, 26, 2, 256, 256, 256, "fp16", False),
               Schedule("hopper_ws", "bwd", 16, 64, 4, 3, "heads_fastest"))
    with pytest.raises(ScheduleError):
        kernel_launches(*refused)
    real, calls = sampling._draw_one, []

    def first_the_refused(rng, keys, hw):
        calls.append(1)
        return refused if len(calls) == 1 else real(rng, keys, hw)
    monkeypatch.setattr(sampling, "_draw_one", first_the_refused)
    rs = sampling.draw(16, 26112612)
    assert rs.rejected.get("refused by the registry", 0) >= 1, rs.rejected
    assert not any((c.problem, c.schedule) == refused for c in rs.cases)
    for c in rs.cases:
        kernel_launches(c.problem, c.schedule)  # raises for a refused schedule


#: hopper_ws bwd schedules at set N's crashing shape (d=256, GQA 13) that the registry allows: exact on the card
D256_ALLOWED = [(32, 64, 4, 3), (16, 64, 4, 1), (16, 64, 8, 2), (32, 64, 8, 2), (64, 64, 4, 2)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="d=256 tiles on the GPU (the interpreter: d <= 64 above)")
@pytest.mark.parametrize("dtype, causal", [("fp16", False), ("bf16", True)], ids=["fp16-full", "bf16-causal"])
@pytest.mark.parametrize("tiles", D256_ALLOWED, ids=lambda t: "{}x{}w{}s{}".format(*t))
def test_hopper_ws_bwd_d256_gpu(tiles, dtype, causal):
    """Set N's case r26112612_002 (B=2, Hq=26, Hkv=2, N=256, d=256, heads_fastest) with the neighbouring schedules the
    registry allows -- 32-row tiles at the case's 3 stages, 16-row tiles with one stat buffer, the warp-specialised
    64x64 -- meets the rule on the card."""
    bm, bn, w, st = tiles
    _run((2, 26, 2, 256, 256, 256), dtype, "cuda", causal=causal, blocks=(bm, bn), warps=w, stages=st,
         grid_order="heads_fastest", alg="hopper_ws")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the refusal keeps the CUDA context healthy")
def test_hopper_ws_bwd_refused_schedule_leaves_the_gpu_usable():
    """Set N's exact case now raises a clear ValueError before any launch, and the process's GPU still works."""
    from memsim.schedule import ScheduleError
    with pytest.raises(ScheduleError, match="misaligned"):
        _run((2, 26, 2, 256, 256, 256), "fp16", "cuda", blocks=(16, 64), warps=4, stages=3,
             grid_order="heads_fastest", alg="hopper_ws")
    torch.cuda.synchronize()
    _run((2, 26, 2, 256, 256, 256), "fp16", "cuda", blocks=(32, 64), warps=4, stages=3, grid_order="heads_fastest",
         alg="hopper_ws")
