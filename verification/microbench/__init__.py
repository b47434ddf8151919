"""Calibration microbenchmarks: small non-attention GPU programs, each isolating one hardware fact.

- `kernels`  : the @triton.jit bodies (all named ``_mb_*`` so an ncu kernel filter selects them)
- `programs` : one point of the plan -> a callable that runs it on the GPU (torch + triton)
- `runner`   : the GPU subprocess (``python -m verification.microbench.runner``) that times the
               timed facts or runs the ncu facts under Nsight Compute

The plan itself (which facts, which sizes) and the assembly of the calibration file live in
`verification.calibrate` (stdlib only, so `--dry-run` works without torch).
"""
