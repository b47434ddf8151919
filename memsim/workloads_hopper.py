"""The model's half of the Hopper registry entries (`memsim.algorithms_hopper`): hopper fwd.

hopper_fwd visits flash2_fwd's tiles in flash2_fwd's order, so its CTA steps are flash2's
(`memsim.workloads._flash2_fwd`): Q_i once, K_j + V_j per visible block, O_i + lse_i at the end.

What the model says about the Hopper mechanisms (memsim/MODEL.md, "hopper"):
* TMA loads: the byte contract is flash2's (the copy engine fills the rows of a box past the head's
  last row with zeros instead of reading them), but the traffic is whole boxes: on the H100 the TMA
  load bytes (``l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld``) of a ragged tile are its full
  box -- set C (2026-11-25): 9 query rows in a 64-row box moved 64/9 = 7.11x the contract, and the
  9-row Q boxes of a 1152-key case the 38.9 MB predicted by counting boxes.  So the global and L2
  traffic of a load counts the last partial block as a full one; what the L2 holds and reads from
  DRAM are the rows that exist.  TMA stores clip (measured: writes = the contract).
* warp specialisation: a producer warpgroup issues tile j+1's loads while the consumers compute
  tile j -- the engine's pipelined CTA (``num_stages >= 2``: the next step's loads are booked when the
  current step's compute starts).  The model does not look further ahead than one tile, and it does
  not model the producer's register budget or the consumers' issue rate separately from the compiled
  kernel's (`memsim.costs` reads the compiled loop of whatever kernel the key names).
* persistent CTAs: the hopper kernel has none yet (one CTA per tile, like flash2), so nothing to model.
"""
from __future__ import annotations

from .workloads import _Ctx, _flash2_fwd, workload


def _whole_box(acc):
    """A load access whose last (partial) block moves as a whole TMA box: traffic + (full - last) bytes."""
    key, mask, nb, full, lastbit, lastbytes = acc
    if lastbit >= 0 and (mask >> lastbit) & 1:
        return (key, mask, nb + full - lastbytes, full, lastbit, lastbytes)
    return acc


def _tma_steps(steps: list) -> list:
    return [[[_whole_box(a) for a in st[0]], *st[1:]] for st in steps]


@workload("hopper", "fwd")
def _hopper_fwd_work(c: _Ctx) -> dict:
    if not c.sectors:  # simulate(..., sectors=False): the byte contract, no transfer granularity
        return {"hopper_fwd": lambda co: _flash2_fwd(c, co)}
    return {"hopper_fwd": lambda co: _tma_steps(_flash2_fwd(c, co))}
