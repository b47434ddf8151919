"""Test configuration shared by the suites.

Without a CUDA GPU the Triton kernels run in Triton's CPU interpreter: TRITON_INTERPRET=1 must be in
the environment before triton (or kernels) is first imported, so it is set here, at collection time.
With a GPU the same tests run on the device, unchanged.  `gpu`-marked tests skip without one.
"""
from __future__ import annotations

import os


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:  # memsim-only environments
        return False
    return torch.cuda.is_available()


HAS_CUDA = _has_cuda()
if not HAS_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device():
    """'cuda' when a GPU is present, else 'cpu' (kernels then run in the Triton interpreter)."""
    return "cuda" if HAS_CUDA else "cpu"
