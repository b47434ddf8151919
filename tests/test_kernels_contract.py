"""The kernels launch exactly the grids of memsim.schedule.kernel_launches, under the names '_' + launch."""
import numpy as np
import pytest

import kernels
import kernels.flash1
import kernels.flash2
import kernels.hopper
import kernels.hopper_bwd
import kernels.naive
from kernels.testing import make_inputs, seed_of
from memsim.algorithms import registered, spec_for
from memsim.schedule import AttentionProblem, Schedule, kernel_launches

#: every registered algorithm over AttentionProblem (the registry's keys, not a copy of them)
ATTENTION_ALGORITHMS = [a for a in dict.fromkeys(a for a, _ in registered())
                        if spec_for(a, "fwd").problem_type is AttentionProblem]

LAUNCH_KERNELS = {"_flash2_fwd", "_flash2_bwd_preprocess", "_flash2_bwd_dkdv", "_flash2_bwd_dq", "_flash1_fwd",
                  "_naive_qk", "_naive_softmax", "_naive_pv", "_naive_bwd_dv", "_naive_bwd_dp", "_naive_bwd_ds",
                  "_naive_bwd_dq", "_naive_bwd_dk", "_hopper_fwd", "_hopper_bwd_preprocess", "_hopper_bwd_dkdvdq",
                  "_hopper_bwd_dq_convert", "_hopper_fwd_persistent", "_hopper_bwd_dkdv_ws"}


class _Recorder:
    def __init__(self, jit_fn, log):
        self.jit_fn, self.log = jit_fn, log

    def __getitem__(self, grid):
        self.log.append((self.jit_fn.fn.__name__, tuple(grid)))
        return self.jit_fn[grid]


@pytest.fixture
def launches(monkeypatch):
    log = []
    for mod in (kernels.flash2, kernels.flash1, kernels.naive, kernels.hopper, kernels.hopper_bwd):
        for name in dir(mod):
            obj = getattr(mod, name)
            if name in LAUNCH_KERNELS:
                monkeypatch.setattr(mod, name, _Recorder(obj, log))
    return log


@pytest.mark.parametrize("grid_order", ["q_fastest", "heads_fastest"])
@pytest.mark.parametrize("alg", ATTENTION_ALGORITHMS)
def test_launch_grids_match_schedule(alg, grid_order, launches, device):
    q, k, v, do = make_inputs(2, 4, 2, 37, 45, 16, "fp16", device, seed_of("contract", alg, grid_order))
    p = kernels.problem_for(q, k, v, causal=True)
    warps = 4 if device == "cuda" else 1
    fs = Schedule(alg, "fwd", 16, 32, warps, 1, grid_order)
    fwd = kernels.forward(p, fs, q, k, v)
    want = [("_" + x.name, x.grid) for x in kernel_launches(p, fs)]
    if (alg, "bwd") in registered():  # flash1 has no backward of its own
        bs = Schedule(alg, "bwd", 32, 16, warps, 1, grid_order)
        kernels.backward(p, bs, q, k, v, fwd.o, do, fwd)
        want += [("_" + x.name, x.grid) for x in kernel_launches(p, bs)]
    got = [(name, tuple(g) + (1,) * (3 - len(g))) for name, g in launches]
    assert got == want


# --- bytes: every load/store the kernels issue, counted in the interpreter, equals the byte contract ----

@pytest.fixture
def byte_counter(monkeypatch):
    """Per launch name: bytes read and written by masked-in elements (interpreter only)."""
    from triton.runtime import interpreter as itp
    counts, current = {}, [None]

    def nbytes(ty, mask):  # a TensorHandle's ndarray, or a TMA descriptor's raw mask (a memoryview of one)
        return int(np.asarray(mask).sum()) * (ty.primitive_bitwidth // 8)

    orig_load, orig_store = itp.InterpreterBuilder.create_masked_load, itp.InterpreterBuilder.create_masked_store

    def load(self, ptrs, mask, other, *a, **kw):  # TMA descriptor loads come here too, with keywords
        counts[current[0]][0] += nbytes(ptrs.get_element_ty(), mask.data)
        return orig_load(self, ptrs, mask, other, *a, **kw)

    def store(self, ptrs, value, mask, *a, **kw):
        counts[current[0]][1] += nbytes(value.dtype.scalar, mask.data)
        return orig_store(self, ptrs, value, mask, *a, **kw)

    orig_rmw = itp.InterpreterBuilder.create_atomic_rmw

    def rmw(self, op, ptr, val, mask, *a, **kw):  # an atomic add (hopper bwd's dQ) counts as written bytes
        counts[current[0]][1] += nbytes(val.dtype.scalar, mask.data)
        return orig_rmw(self, op, ptr, val, mask, *a, **kw)

    monkeypatch.setattr(itp.InterpreterBuilder, "create_atomic_rmw", rmw)
    monkeypatch.setattr(itp.InterpreterBuilder, "create_masked_load", load)
    monkeypatch.setattr(itp.InterpreterBuilder, "create_masked_store", store)

    class Named:
        def __init__(self, jit_fn):
            self.jit_fn = jit_fn

        def __getitem__(self, grid):
            def launch(*a, **kw):
                current[0] = self.jit_fn.fn.__name__[1:]
                counts.setdefault(current[0], [0, 0])
                return self.jit_fn[grid](*a, **kw)
            return launch

    for mod in (kernels.flash2, kernels.flash1, kernels.naive, kernels.hopper, kernels.hopper_bwd):
        for name in dir(mod):
            if name in LAUNCH_KERNELS:
                monkeypatch.setattr(mod, name, Named(getattr(mod, name)))
    return counts


CONTRACT_CASES = {
    "square": ((2, 2, 2, 40, 40, 16), False, "top_left"),
    "ragged_gqa_causal": ((1, 4, 2, 37, 45, 16), True, "top_left"),
    "q_gt_kv_bottom_right": ((1, 2, 1, 70, 23, 16), True, "bottom_right"),
    "q_lt_kv_top_left": ((1, 2, 2, 20, 70, 16), True, "top_left"),
}


@pytest.mark.skipif("not __import__('kernels').interpreting()", reason="counts bytes in Triton's interpreter")
@pytest.mark.parametrize("blocks", [(16, 32), (32, 16)], ids=lambda b: f"{b[0]}x{b[1]}")
@pytest.mark.parametrize("case", list(CONTRACT_CASES))
@pytest.mark.parametrize("alg", ATTENTION_ALGORITHMS)
def test_bytes_match_contract(alg, case, blocks, byte_counter, device):
    """Global bytes read/written per launch == memsim.analytic's closed forms of the schedule.py contract."""
    from memsim.analytic import launch_counts
    shape, causal, align = CONTRACT_CASES[case]
    q, k, v, do = make_inputs(*shape, "fp16", device, seed_of("bytes", alg, case))
    p = kernels.problem_for(q, k, v, causal=causal, causal_align=align)
    fs = Schedule(alg, "fwd", blocks[0], blocks[1], 1, 1)
    fwd = kernels.forward(p, fs, q, k, v)
    want = {n: (c["global_read_bytes"], c["global_write_bytes"]) for n, c in launch_counts(p, fs).items()}
    if (alg, "bwd") in registered():  # flash1 has no backward of its own
        bs = Schedule(alg, "bwd", blocks[0], blocks[1], 1, 1)
        kernels.backward(p, bs, q, k, v, fwd.o, do, fwd)
        want.update({n: (c["global_read_bytes"], c["global_write_bytes"]) for n, c in launch_counts(p, bs).items()})
    got = {n: tuple(c) for n, c in byte_counter.items()}
    assert got == want
