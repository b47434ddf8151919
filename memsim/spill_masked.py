"""Spill bytes of the masked copy of the tile loop (issue 8; notes/spills.md session 13).

flash2 and hopper compile each K/V (or Q) loop twice -- the blocks every row sees whole, and the masked ones (the
causal diagonal band, a ragged tail) -- and the two copies spill differently: ptxas allocates each on its own, and the
mask arithmetic changes what stays in registers.  The model books every trip at the local bytes of the one copy
`kernels.sass.tile_loop` picks.  ncu's local bytes per launch (`l1tex__t_bytes_pipe_lsu_mem_local_op_st/ld`, kept in
every random-set record) say each trip runs its own copy's STL / LDL, exactly:

* held-out S's r26112622_015 (`hopper_bwd_dkdvdq`, fp32, 12 Q blocks per K/V block, causal: 1 masked trip, 11
  whole): the picked loop is the MASKED copy (3560 B stored, 7324 B reloaded per thread per trip), the other copy
  1000 / 1784 B; ncu per thread per CTA 15488 / 27616 B = the straight code's 1060 / 668 + 1 x masked + 11 x whole
  (15620 / 27616) where the model booked 12 x masked (43780 / 88556): its spill L2 bytes 2.8x ncu's.
* held-out R's r26112621_015 (`flash2_bwd_dq`, fp32, one K/V block per Q block, causal: its only trip is masked):
  the picked loop is the WHOLE copy (28308 / 50432 B), the masked one 36960 / 70520 B; ncu 38736 / 72348 B = 1776 /
  1828 outside the loop + 1 x masked, exactly (the model: 0.78x).

The copy a trip runs is the workload's to say (`LaunchWork.cta_masked_tiles`: the CTA's masked trips); the entry
says what the other copy stores and reloads (``issue.band_local_bytes`` [store, load] per thread per trip, else the
entry's ``local_regions["other"]``, which is the band's bytes on every spilling non-warp-specialised kernel of the
Triton cache where both exist); which copy is masked follows the kernels' program order (`MASKED_SECOND`).
`trip_spill_factors` turns that into the factors per trip of each copy over the tile loop's bytes, `cta_spill_mix`
into one CTA's factor.  Stdlib only.
"""
from __future__ import annotations

#: MEMSIM_SPILL_BAND=0 turns the per-copy spill bytes off (the factors are None: every trip books the tile loop's
#: bytes); they act only in an engine that reads `cta_spill_mix` (the patch in notes/spills.md session 13)
BAND_ENV = "MEMSIM_SPILL_BAND"


def band_enabled() -> bool:
    import os
    return os.environ.get(BAND_ENV, "1") != "0"


#: the launches whose kernels compile their K/V (Q) loop twice -- MASKED=False and MASKED=True -- and whether the
#: masked copy comes SECOND in program order (kernels/flash2.py: the forward and dQ loops run the whole blocks first,
#: dK/dV its diagonal band first; kernels/hopper.py forward: whole first; kernels/hopper_bwd.py dK/dV/dQ: band first).
#: ptxas keeps that order and `kernels.sass.tile_loop` picks the first copy, so the other copy (the band) is the
#: masked one exactly when it comes second.  Checked on the SASS of the 126 spilling, non-warp-specialised kernels of
#: these launches in the Triton cache: the copy with the mask's selects (FSEL + SEL) is the masked one and comes where
#: this says in all 126 (the longer copy, `kernels.sass.band_profile`'s `band_masked`, is not the masked one in 14:
#: spill code lengthens the whole copy of fp32 kernels)
MASKED_SECOND = {"flash2_fwd": True, "flash2_bwd_dq": True, "hopper_fwd": True,
                 "flash2_bwd_dkdv": False, "hopper_bwd_dkdvdq": False}


def _launch(f) -> str:
    return getattr(f, "launch", None) or ""


def band_local_bytes(f) -> tuple | None:
    """(store, load) local bytes per thread of one trip of the kernel's other loop copy, or None (no band, or not
    known).  ``issue.band_local_bytes`` where the table has it; else, for a launch of `MASKED_SECOND` whose entry
    does not say it has no band (``issue.band_instructions`` == 0), ``local_regions["other"]`` when those bytes are
    not zero (the band's bytes on every cached kernel where both are)."""
    if f is None:
        return None
    iss = getattr(f, "issue", None) or {}
    b = iss.get("band_local_bytes")
    if b is not None:
        return (int(b[0]), int(b[1]))
    if iss.get("band_instructions") == 0 or _launch(f) not in MASKED_SECOND:
        return None
    o = (getattr(f, "local_regions", None) or {}).get("other")
    if not o or not (o[0] or o[1]):
        return None
    return (int(o[0]), int(o[1]))


def trip_spill_factors(f) -> tuple | None:
    """((whole copy: store, load), (masked copy: store, load)) -- one trip's local bytes of each copy over the tile
    loop's (one pair is (1.0, 1.0)); None where the entry has no band with spill bytes, the tile loop none of its own
    (nothing to scale), or the switch is off."""
    if f is None or not band_enabled():
        return None
    band = band_local_bytes(f)
    loop = getattr(f, "loop", None) or {}
    st, ld = loop.get("local_store_bytes") or 0, loop.get("local_load_bytes") or 0
    if band is None or st <= 0 or ld <= 0:
        return None
    # which copy is masked: the SASS reading's (`band_masked`: the copy with the mask's selects), else -- an entry
    # without band figures -- the kernels' program order (they agree on all 126 cached spilling kernels)
    masked = (getattr(f, "issue", None) or {}).get("band_masked")
    if masked is None:
        masked = MASKED_SECOND.get(_launch(f))
    if masked is None:
        return None
    other = (band[0] / st, band[1] / ld)
    if other == (1.0, 1.0):
        return None
    return ((1.0, 1.0), other) if masked else (other, (1.0, 1.0))


def cta_spill_mix(factors, masked_trips: float, trips: float) -> tuple:
    """(store, load) factor of one CTA's trips on the tile loop's per-trip spill bytes: its masked trips at the masked
    copy's, the rest at the whole copy's.  (1.0, 1.0) without factors or trips."""
    if not factors or trips <= 0:
        return (1.0, 1.0)
    share = min(1.0, max(0.0, masked_trips / trips))
    (us, ul), (ms, ml) = factors
    return (us + share * (ms - us), ul + share * (ml - ul))
