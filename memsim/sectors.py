"""Sector granularity of rows whose pitch is not a multiple of 16 bytes (stdlib only).

The L1 and the L2 move 32-byte sectors.  A warp's load or store instruction covers, in one row of a
tile, 32 lanes x one element of contiguous bytes (W = 64 bytes in fp16/bf16, 128 in fp32: measured, see
below), and each row's instructions start at the row's address: an access of W bytes starting o bytes
into a sector touches floor((o + W - 1) / 32) - floor(o / 32) + 1 sectors.  When the row pitch is not a
multiple of 32 bytes, the rows start at offsets that cycle through the multiples of gcd(pitch, 32).  The naive kernels' S / P / dP matrices have a row pitch of
``seq_kv x element`` bytes, so at odd ``seq_kv`` their rows start at offsets that cycle through the
multiples of gcd(pitch, 32) and each instruction costs more sectors than its bytes (fp16 64-byte
accesses at even offsets: 2.94 sectors instead of 2, x1.47).

Measured by ``verification calibrate`` row_alignment (``_mb_pitched_copy``, 64-column tiles at pitches
of 4096..4104 elements, H100, 2026-11-25): l1tex global bytes / contract = 1.469, 1.4375, 1.375, 1.25 (fp16)
and 1.219, 1.1875, 1.125, 1.0 (fp32) at pitches +1, +2, +4, +8 elements, each equal to this rule
(tests/test_memsim_sectors.py).  Traffic counted at the L1 and
L2 levels is in sectors; what the L2 holds and writes back (DRAM) is the bytes themselves.
"""
from __future__ import annotations

from functools import lru_cache
from math import gcd


def sectors_touched(offset_bytes: int, nbytes: int, sector_bytes: int = 32) -> int:
    """Sectors an access of `nbytes` starting `offset_bytes` into a sector touches."""
    if nbytes <= 0:
        return 0
    return (offset_bytes + nbytes - 1) // sector_bytes - offset_bytes // sector_bytes + 1


def _whole_sectors(pitch_bytes: int, segment_bytes: int, lane_bytes: int, lanes: int, sector_bytes: int,
                   rows_share_instructions: bool) -> bool:
    """The layouts whose instructions move whole sectors only (no sector beyond the bytes, none in part)."""
    if pitch_bytes % sector_bytes == 0 and segment_bytes % sector_bytes == 0:
        return True
    if pitch_bytes == lane_bytes:
        return True  # rows of one element: the compiler sees the unit stride and runs its lanes along the rows
    # the row kernels' whole rows shorter than one instruction: lanes cover several rows
    return rows_share_instructions and segment_bytes >= pitch_bytes and pitch_bytes < lanes * lane_bytes


def _row_sectors(pitch_bytes: int, segment_bytes: int, lane_bytes: int, lanes: int, sector_bytes: int):
    """(sectors touched, of them touched in part, rows) over one period of row start offsets, each row's
    instructions its own: a row shorter than a sector still moves a whole sector (set D: 4-key fp16 rows, 8 bytes,
    cost 32 -- the naive tile kernels moved 4x the S/P bytes)."""
    width = min(segment_bytes, lanes * lane_bytes)
    period = sector_bytes // gcd(pitch_bytes % sector_bytes, sector_bytes)
    moved = part = 0
    for r in range(period):
        base = (r * pitch_bytes) % sector_bytes
        done = 0
        while done < segment_bytes:
            w = min(width, segment_bytes - done)
            moved += sectors_touched((base + done) % sector_bytes, w, sector_bytes)
            part += partial_sectors((base + done) % sector_bytes, w, sector_bytes)
            done += w
    return moved, part, period


def row_sector_factor(pitch_bytes: int, segment_bytes: int, lane_bytes: int, *, lanes: int = 32,
                      sector_bytes: int = 32, rows_share_instructions: bool = False) -> float:
    """Sector bytes moved per byte for a tile whose rows are `segment_bytes` long, at `pitch_bytes` apart.

    Each warp instruction covers ``min(segment, lanes x lane_bytes)`` bytes of a row; the factor is the
    mean over one period of row start offsets (1.0 when the pitch is a multiple of the sector: every row
    starts on a sector; 1.25 for 64-byte vector accesses at a pitch of 16 mod 32).  `rows_share_instructions`:
    the layout puts several short rows in one instruction (the naive row kernels' whole-row tiles)."""
    if pitch_bytes <= 0 or segment_bytes <= 0 or lane_bytes <= 0:
        raise ValueError(f"row_sector_factor: pitch, segment and lane bytes must be positive, got "
                         f"{pitch_bytes}, {segment_bytes}, {lane_bytes}")
    if _whole_sectors(pitch_bytes, segment_bytes, lane_bytes, lanes, sector_bytes, rows_share_instructions):
        return 1.0
    moved, _, period = _row_sectors(pitch_bytes, segment_bytes, lane_bytes, lanes, sector_bytes)
    return moved * sector_bytes / (period * segment_bytes)


def partial_sectors(offset_bytes: int, nbytes: int, sector_bytes: int = 32) -> int:
    """Sectors of an access of `nbytes` starting `offset_bytes` into a sector that it covers only in part."""
    if nbytes <= 0:
        return 0
    end = offset_bytes + nbytes
    first, last = offset_bytes // sector_bytes, (end - 1) // sector_bytes
    if first == last:
        return 0 if nbytes == sector_bytes else 1
    return int(offset_bytes % sector_bytes != 0) + int(end % sector_bytes != 0)


def row_partial_share(pitch_bytes: int, segment_bytes: int, lane_bytes: int, *, lanes: int = 32,
                      sector_bytes: int = 32, rows_share_instructions: bool = False) -> float:
    """Of the sectors that `row_sector_factor`'s rows move, the share each instruction covers only in part (a store
    to such a sector costs the L2 more than a whole one: `calibration.partial_store_cost_from`).  0.0 where the rule
    moves whole sectors (pitch and segment on the sector, one-element rows, rows sharing instructions)."""
    if _whole_sectors(pitch_bytes, segment_bytes, lane_bytes, lanes, sector_bytes, rows_share_instructions):
        return 0.0
    moved, part, _ = _row_sectors(pitch_bytes, segment_bytes, lane_bytes, lanes, sector_bytes)
    return part / moved if moved else 0.0


@lru_cache(maxsize=4096)
def split_load_count(pitch_bytes: int, segment_bytes: int, element_bytes: int, pieces: float,
                     piece_bytes: float, tile_row_bytes: int = 0, rows_valid: int = 1) -> float:
    """Bytes L1's tag stage counts for a tile's loads split into element-wide pieces (kernels.sass.l1_split_factor),
    per byte the model books for them (the rows' bytes x `row_sector_factor` at the element's lane width).

    A thread's chunk of `pieces` x `piece_bytes` bytes takes `pieces` warp instructions, piece j at +j x piece_bytes
    in every lane's chunk; each instruction counts the sectors its active lanes' pieces touch.  The lanes of a row's
    segment hold its chunks side by side, so a piece instruction touches about a chunk's share of the segment's
    sectors (aligned rows: the segment's sectors exactly; a row 4 bytes off the sector: a little more).  A lane's
    piece is active only where it holds valid columns (each piece has its own column predicate: a 2-element fp16 row
    issues 2 of 8; the row's last segment only its valid chunks).  Counted over a whole row of `pitch_bytes` (the
    S / P / dP row: seq_kv elements) in `segment_bytes` tiles, averaged over the row start offsets the pitch cycles
    through.  One instruction's lanes cover 32 x chunk bytes of the tile: with a tile row of `tile_row_bytes`
    (block_n x element) shorter than that, consecutive rows share the instruction and its sectors (a 3-key fp16 P,
    rows 6 B apart: 3 rows in one sector) -- up to `rows_valid` of them (the valid rows of a tile: min(block_m,
    seq_q)).  `piece_bytes` 0 (unknown): `pieces`."""
    if pieces <= 1.0:
        return 1.0
    if piece_bytes <= 0:
        return pieces
    k, w = int(round(pieces)), int(round(piece_bytes))
    chunk = k * w
    row, seg = pitch_bytes, max(1, segment_bytes)
    group = max(1, min(rows_valid, (32 * chunk) // tile_row_bytes)) if tile_row_bytes > 0 else 1
    period = 32 // gcd(row % 32, 32)
    counted = 0
    for r in range(0, period * group, group):
        for s0 in range(0, row, seg):
            valid = min(seg, row - s0)
            for j in range(k):
                touched = set()
                for g in range(group):
                    base = (r + g) * row
                    for c0 in range(0, valid, chunk):
                        if c0 + j * w >= valid:
                            break
                        a = base + s0 + c0 + j * w
                        touched.update(range(a // 32, (a + w - 1) // 32 + 1))
                counted += len(touched)
    booked = period * group * row * row_sector_factor(pitch_bytes, segment_bytes, element_bytes)
    return 32.0 * counted / booked


@lru_cache(maxsize=1024)
def stat_load_count(pitch_elements: int, rows: int, stat_loads: tuple) -> float:
    """Bytes L1's tag stage counts for a per-row statistic loaded by every warp (kernels.stat_loads: flash2 dK/dV's
    lse_i / delta_i, a `length`-element fp32 slice a trip), per byte the model books for it (the slice's valid
    elements x 4).

    `stat_loads`: (length, ((warps, (elements of each instruction, ..)), ..)) -- each warp instruction counts the
    32-byte sectors that the elements its active lanes load touch; a lane past the row's end is predicated off.  Over
    `rows` rows of `pitch_elements` (batch x heads rows of seq_q values) in slices of `length`: row r starts
    r x pitch x 4 bytes into the tensor, which starts on a sector, so the rows cycle through the offsets
    (r x pitch) mod 8 elements.  1.0 when every instruction's sectors are exactly the slice's bytes."""
    length, warps = stat_loads
    if pitch_elements <= 0 or length <= 0 or rows <= 0:
        return 1.0
    per_sector = 8  # fp32 elements in a 32-byte sector
    period = per_sector // gcd(pitch_elements % per_sector, per_sector)
    # rows per start offset: the first `period` rows' offsets, each repeated for every full period of the rows
    weight = {}
    for r in range(min(rows, period)):
        o = r * pitch_elements % per_sector
        weight[o] = weight.get(o, 0) + rows // period + (1 if r < rows % period else 0)
    blocks = [(b, min(length, pitch_elements - b)) for b in range(0, pitch_elements, length)]
    memo: dict = {}

    def counted(offset: int, valid: int) -> int:
        k = (offset, valid)
        if k not in memo:
            memo[k] = sum(n * len({(offset + e) // per_sector for e in ins if e < valid})
                          for n, instrs in warps for ins in instrs)
        return memo[k]
    sectors = booked = 0
    for o, n_rows in weight.items():
        for b, valid in blocks:
            sectors += n_rows * counted((o + b) % per_sector, valid)
            booked += n_rows * 4 * valid
    return 32.0 * sectors / booked if booked else 1.0
