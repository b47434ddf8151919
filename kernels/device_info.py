"""Provenance of a GPU run: card, driver, CUDA, torch, triton, date, command (reusable by verification/).

nvidia-smi is asked through memsim.io.nvidia_smi (stdlib), torch through the functions here; the ncu
version comes from verification.ncu.ncu_version.

    from kernels.device_info import provenance, gpu_slug
    provenance("python benchmarks/attention.py ...")  -> dict
    gpu_slug()                                        -> "nvidia-h100-80gb-hbm3" (or "cpu")
"""
from __future__ import annotations

from memsim.io import gpu_slug as _slug
from memsim.io import nvidia_smi


def gpu_name(device=None) -> str:
    import torch
    if not torch.cuda.is_available():
        return "cpu"
    return torch.cuda.get_device_name(device)


def gpu_slug(device=None) -> str:
    """File-name form of this device's GPU name (memsim.io.gpu_slug; "cpu" without a GPU)."""
    try:
        return _slug(gpu_name(device))
    except ValueError:
        return "unknown"


def driver_version() -> str | None:
    return nvidia_smi("driver_version")


def device_facts(device=None) -> dict:
    import torch
    if not torch.cuda.is_available():
        return {"gpu": "cpu"}
    p = torch.cuda.get_device_properties(device)
    return {
        "gpu": p.name,
        "sm_count": p.multi_processor_count,
        "compute_capability": f"{p.major}.{p.minor}",
        "memory_bytes": p.total_memory,
        "l2_bytes": getattr(p, "L2_cache_size", None),
        "smem_per_block_optin_bytes": getattr(p, "shared_memory_per_block_optin", None),
    }


def provenance(command: str | None = None, device=None) -> dict:
    """Everything needed to reproduce or judge a measurement, as a JSON-ready dict."""
    import torch
    import triton
    from memsim.io import base_provenance
    prov = base_provenance(command)
    prov.update(device_facts(device))
    prov.update({
        "driver": driver_version(),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    })
    return prov
