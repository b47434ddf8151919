"""Where a launch's local memory (register spills) lives: L1, L2 or DRAM.

A spilling kernel stores and reloads the same per-thread slots every loop iteration.  The hardware
gives each resident thread its own local-memory slot, so the bytes that compete for the caches are
the *resident* threads' slots, not the whole grid's:

* **L1.**  Each SM's unified L1/shared memory (``Hardware.l1_shared_per_sm_bytes``) is split by the
  driver into a shared-memory carve-out -- the smallest of ``Hardware.smem_carveouts_bytes`` that holds
  the resident CTAs' shared memory and their 1 KB reservations -- and an L1 data cache that gets the
  rest.  If the SM's local footprint (resident CTAs x threads x local bytes per thread) fits that L1,
  the reloads hit it (measured: ``verification calibrate`` spills, 64 B per thread: reloads reach L2
  at 0.0002 per byte, `Calibration.l2_read_per_spill_load_byte`); if it does not, the iteration's sweep
  over the slots evicts each slot before it is reloaded and every reload goes to L2.  Stores always go
  through to L2 (write-through L1; `Calibration.l2_write_per_spill_store_byte`).
* **L2 and DRAM.**  The whole GPU's local footprint (resident slots on all used SMs) competes for the
  L2.  The L2 keeps at most `Calibration.l2_dirty_bytes` dirty (measured, l2_writeback); while the
  footprint fits, spill stores merge into dirty lines and never reach DRAM inside the kernel.  Past it,
  lines are cleaned and evicted in an order the slots' sweep does not control: in the steady state a
  stored line is still dirty when stored again with probability dirty / footprint, so a fraction
  1 - dirty / footprint of the spill stores is written back; likewise 1 - L2 / footprint of the reloads
  that reach L2 miss it.  (This is the steady state of a cache that replaces lines independently of
  their reuse order; the calibration's spills points with footprints across 22 and 50 MB test it,
  memsim/MODEL.md.)

Stdlib only; the numbers come from `Hardware` and `Calibration`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalMemory:
    """The local-memory placement of one launch (see module doc)."""

    #: resident CTAs per SM x threads x local bytes per thread
    footprint_per_sm_bytes: int
    #: the same summed over the SMs the grid occupies
    footprint_bytes: int
    #: the L1 data cache left beside the shared-memory carve-out (0 = unknown hardware)
    l1_data_bytes: int
    #: do the reloads miss L1 (the footprint per SM exceeds the L1 data cache)?
    reloads_reach_l2: bool
    #: fraction of the spill stores reaching L2 that are written back to DRAM inside the kernel
    dram_write_fraction: float
    #: fraction of the reloads reaching L2 that miss it (DRAM reads)
    dram_read_fraction: float

    def explain(self) -> str:
        mb = 1 << 20
        where = "reloads miss L1" if self.reloads_reach_l2 else "reloads hit L1"
        return (f"local memory {self.footprint_per_sm_bytes / 1024:.0f} KB per SM vs L1 {self.l1_data_bytes / 1024:.0f} KB"
                f" ({where}); {self.footprint_bytes / mb:.1f} MB on the GPU: "
                f"{self.dram_write_fraction:.0%} of spill stores written back, {self.dram_read_fraction:.0%} of reloads "
                f"from DRAM")


def carveout_bytes(hw, smem_per_cta_bytes: int, ctas_per_sm: int) -> int:
    """The shared-memory carve-out the driver picks: the smallest that holds the resident CTAs."""
    need = ctas_per_sm * (smem_per_cta_bytes + hw.smem_reserved_per_block_bytes) if smem_per_cta_bytes else 0
    for c in hw.smem_carveouts_bytes:
        if c >= need:
            return c
    return hw.smem_carveouts_bytes[-1] if hw.smem_carveouts_bytes else need


def l1_data_bytes(hw, smem_per_cta_bytes: int, ctas_per_sm: int) -> int:
    """The L1 data cache of an SM running `ctas_per_sm` CTAs of `smem_per_cta_bytes` (0 if unknown)."""
    if not hw.l1_shared_per_sm_bytes:
        return 0
    return max(0, hw.l1_shared_per_sm_bytes - carveout_bytes(hw, smem_per_cta_bytes, ctas_per_sm))


def _overflow(capacity: int | None, footprint: int) -> float:
    if not capacity or footprint <= capacity:
        return 0.0
    return 1.0 - capacity / footprint


def local_memory(hw, cal, *, local_bytes_per_thread: int, threads: int, ctas_per_sm: int, num_ctas: int,
                 smem_per_cta_bytes: int) -> LocalMemory:
    """Place one launch's local memory (module doc)."""
    if local_bytes_per_thread < 0 or threads <= 0 or ctas_per_sm <= 0 or num_ctas <= 0:
        raise ValueError(f"local_memory: need local_bytes_per_thread >= 0 and positive threads, ctas_per_sm, "
                         f"num_ctas; got {local_bytes_per_thread}, {threads}, {ctas_per_sm}, {num_ctas}")
    per_cta = local_bytes_per_thread * threads
    per_sm = min(ctas_per_sm, num_ctas) * per_cta
    resident = min(num_ctas, ctas_per_sm * hw.num_sms)
    total = resident * per_cta
    l1 = l1_data_bytes(hw, smem_per_cta_bytes, ctas_per_sm)
    reach = bool(l1) and per_sm > l1
    dirty = cal.l2_dirty_bytes if cal.l2_dirty_bytes is not None else hw.l2_effective_bytes
    return LocalMemory(footprint_per_sm_bytes=per_sm, footprint_bytes=total, l1_data_bytes=l1,
                       reloads_reach_l2=reach,
                       dram_write_fraction=_overflow(dirty, total),
                       dram_read_fraction=_overflow(hw.l2_bytes, total) if reach else 0.0)
