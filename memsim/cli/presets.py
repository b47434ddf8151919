"""The hardware presets and their main figures (every figure's source: the [sources] table of
memsim/presets/<name>.toml).
"""
from __future__ import annotations

from . import common as C

NAME = "presets"
SUMMARY = "list the hardware presets and their main figures"


def add_arguments(p) -> None:
    pass


def run(a) -> int:
    from ..hardware import load_hardware, preset_names
    rows = []
    for n in preset_names():
        h = load_hardware(n)
        rows.append([n, h.num_sms, f"{h.clock_Hz / 1e9:.2f}", f"{h.dram_bw_Bps / 1e12:.2f}", f"{h.l2_bytes / 2**20:.0f}",
                     f"{h.smem_per_block_bytes / 1024:.0f}", f"{h.tensor_flops_per_s('fp16') / 1e12:.0f}",
                     h.description])
    print(C.fmt_table(["preset", "SMs", "GHz", "DRAM TB/s", "L2 MiB", "smem/CTA KiB", "fp16 TFLOP/s", "card"], rows))
    print("every figure's source: the [sources] table of memsim/presets/<name>.toml")
    return 0
