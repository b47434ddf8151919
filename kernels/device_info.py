"""Provenance of a GPU run: card, driver, CUDA, torch, triton, date, command (reusable by verification/).

    from kernels.device_info import provenance, gpu_slug
    provenance("python benchmarks/attention.py ...")  -> dict
    gpu_slug()                                        -> "nvidia-h100-80gb-hbm3" (or "cpu")
"""
from __future__ import annotations

import re
import shutil
import subprocess


def _run(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def gpu_name(device=None) -> str:
    import torch
    if not torch.cuda.is_available():
        return "cpu"
    return torch.cuda.get_device_name(device)


def gpu_slug(device=None) -> str:
    """File-name form of the GPU name: lower case, runs of other characters turned into '-'."""
    return re.sub(r"[^a-z0-9]+", "-", gpu_name(device).lower()).strip("-") or "unknown"


def driver_version() -> str | None:
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0].strip() if out else None


def ncu_version() -> str | None:
    out = _run(["ncu", "--version"])
    return out.splitlines()[-1].strip() if out else None


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


def provenance(command: str | None = None, device=None, with_ncu: bool = False) -> dict:
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
    if with_ncu:
        prov["ncu"] = ncu_version()
    return prov
