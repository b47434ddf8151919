"""Registry entry of decode (issue 12): ("decode", "fwd") over a DecodeProblem (memsim/inference.py). Stdlib only.

The launches, SRAM, extra memory and byte contract live in memsim.inference (the vocabulary) and
memsim.analytic_decode (the closed form); this module only registers them.  The other two halves:
``@workload("decode", "fwd")`` in memsim/workloads_decode.py and ``@launcher("decode", "fwd")`` in
kernels/decode_kv.py.  Its time model is `memsim.workloads_decode.simulate_decode` (a per-CTA stream
mechanism the attention engine does not have), not `memsim.simulate`.
"""
from __future__ import annotations

from .algorithms import AlgorithmSpec, DefaultSchedule, register
from .analytic_decode import decode_compulsory_dram_bytes, decode_launch_counts
from .inference import DecodeProblem, decode_extra_device_bytes, decode_launches, decode_sram_bytes_per_cta

DECODE_FWD = register(AlgorithmSpec(
    algorithm="decode",
    phase="fwd",
    launches=decode_launches,
    sram_bytes_per_cta=decode_sram_bytes_per_cta,
    contract=decode_launch_counts,
    compulsory_dram_bytes=decode_compulsory_dram_bytes,
    extra_device_bytes=decode_extra_device_bytes,
    # block_m is the row tile's minimum (the kernels size it from the query heads per CTA x Nq)
    default_schedules=(
        DefaultSchedule("gpu", ("fp16", "bf16", "fp32"), None, None, 16, 64, 4, 3,
                        source="benchmarks/results/decode-h100-run1.json tune rows: 64-key tiles, 3 stages"),
        DefaultSchedule("interpreter", ("fp16", "bf16", "fp32"), None, None, 16, 16, 1, 1,
                        source="small tiles for Triton's CPU interpreter"),
    ),
    problem_type=DecodeProblem,
    description="decode, fwd -- " + __import__("memsim.inference", fromlist=["x"]).__doc__.split(
        "Byte contract", 1)[1].split("GQA packing is", 1)[0].strip(),
))
