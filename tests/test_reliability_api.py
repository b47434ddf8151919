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
