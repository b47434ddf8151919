"""The model's half of the Hopper registry entries (`memsim.algorithms_hopper`): hopper fwd.

hopper_fwd visits flash2_fwd's tiles in flash2_fwd's order, so its CTA steps are flash2's
(`memsim.workloads._flash2_fwd`): Q_i once, K_j + V_j per visible block, O_i + lse_i at the end.

What the model says about the Hopper mechanisms (memsim/MODEL.md, "hopper"):
* TMA loads: the same global bytes as flash2's tiles (the copy engine clips ragged tiles at the
  head's last row, as flash2's masks do); they reach L2 as whole tiles, which is what the model's
  block-granular L2 already assumes.
* warp specialisation: a producer warpgroup issues tile j+1's loads while the consumers compute
  tile j -- the engine's pipelined CTA (``num_stages >= 2``: the next step's loads are booked when the
  current step's compute starts).  The model does not look further ahead than one tile, and it does
  not model the producer's register budget or the consumers' issue rate separately from the compiled
  kernel's (`memsim.costs` reads the compiled loop of whatever kernel the key names).
* persistent CTAs: the hopper kernel has none yet (one CTA per tile, like flash2), so nothing to model.
"""
from __future__ import annotations

from .workloads import _Ctx, _flash2_fwd, workload


@workload("hopper", "fwd")
def _hopper_fwd_work(c: _Ctx) -> dict:
    return {"hopper_fwd": lambda co: _flash2_fwd(c, co)}
