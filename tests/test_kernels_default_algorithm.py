"""The default forward is the fastest exact one for the device (kernels.api.fastest_forward_algorithm), and
`kernels.last_schedule()` shows what ran (issue 9 item 6)."""
from __future__ import annotations

import pytest
import torch

import kernels
from kernels.api import HOPPER_FASTEST, fastest_forward_algorithm


def test_last_schedule_reports_what_the_default_ran(device):
    q, k, v = (torch.randn(1, 2, 32, 16, device=device) for _ in range(3))
    kernels.attention(q, k, v)
    fwd, bwd = kernels.last_schedule()
    # d=16 fp32: flash2 on every device (the Hopper forward is the default only at d=128 fp16/bf16)
    assert (fwd.algorithm, fwd.phase, bwd.algorithm, bwd.phase) == ("flash2", "fwd", "flash2", "bwd")
    s = kernels.Schedule("naive", "fwd", block_m=16, block_n=16, num_warps=1, num_stages=1)
    kernels.attention(q, k, v, schedule=s)
    assert kernels.last_schedule()[0] == s


@pytest.mark.parametrize("d, dtype", [(128, torch.bfloat16), (64, torch.bfloat16), (128, torch.float32)])
def test_cpu_tensors_get_flash2(d, dtype):
    """CPU tensors (the interpreter) always get flash2."""
    q = torch.zeros(1, 1, 8, d, dtype=dtype)
    p = kernels.AttentionProblem(1, 1, 1, 8, 8, d, dtype={torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype])
    assert fastest_forward_algorithm(p, q, q, q) == "flash2"


def test_the_hopper_rule_names_what_was_measured():
    assert HOPPER_FASTEST["head_dims"] == (128,) and "fp32" not in HOPPER_FASTEST["dtypes"]


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0),
                    reason="needs a Hopper GPU")
def test_hopper_default_on_hopper_gpus():
    q, k, v = (torch.randn(1, 2, 256, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    p = kernels.problem_for(q, k, v)
    assert fastest_forward_algorithm(p, q, k, v) == "hopper"
    odd = torch.randn(1, 2, 256, 129, device="cuda", dtype=torch.bfloat16)[..., :128]  # 258-byte rows: no TMA
    assert fastest_forward_algorithm(p, odd, k, v) == "flash2"
    o = kernels.attention(q, k, v)
    assert kernels.last_schedule()[0].algorithm == "hopper"
    ref, _ = kernels.reference(q, k, v)
    assert (o.double() - ref).abs().max().item() < 2e-2
