"""Test configuration shared by the suites.

Without a CUDA GPU the Triton kernels run in Triton's CPU interpreter: TRITON_INTERPRET=1 must be in
the environment before triton (or kernels) is first imported, so it is set here, at collection time.
With a GPU the same tests run on the device, unchanged.  `gpu`-marked tests skip without one.
"""
from __future__ import annotations

import os

# One CPU thread per process for torch (OpenMP) and numpy (OpenBLAS), unless the caller chose: the tests' tensors
# are tiny (the interpreter's tiles, float64 references of a few heads), where a second thread only adds hand-off
# cost.  Measured on the 2-core machine (2026-11-26): tests/test_reliability_exactness.py + test_kernels_contract.py
# 52.5 -> 34.5 CPU seconds; one exactness case 0.14 -> 0.03 s of CPU.  Set before torch or numpy is imported, so
# the case runners that the dry runs start inherit it.  No tolerance changes; a CPU reduction may round its last bit
# differently with one thread than with two, as it may on another machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


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

#: what the session runs with; a test (or a module it imports) that changes it for good breaks every later kernel test
_INTERPRET_AT_START = os.environ.get("TRITON_INTERPRET")


@pytest.fixture(autouse=True)
def _triton_interpret_unchanged(request):
    """Fail at once, naming the culprit, when a previous test left TRITON_INTERPRET changed (monkeypatch's changes
    are undone before this runs): the CI of 2026-11-26 07:25 lost 33 kernel tests to a benchmark module that popped
    it on import."""
    now = os.environ.get("TRITON_INTERPRET")
    if now != _INTERPRET_AT_START:
        os.environ.pop("TRITON_INTERPRET", None)
        if _INTERPRET_AT_START is not None:
            os.environ["TRITON_INTERPRET"] = _INTERPRET_AT_START
        pytest.fail(f"TRITON_INTERPRET is {now!r}, the session started with {_INTERPRET_AT_START!r}: a test that ran "
                    f"before {request.node.nodeid} changed it without undoing it (restored now)")
    yield


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
