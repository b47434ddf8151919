"""The model's half of the Hopper registry entries (`memsim.algorithms_hopper`): hopper fwd and bwd.

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
* persistent CTAs (hopper_ws fwd): a CTA's steps are the steps of its tiles in its order
  (`memsim.algorithms_hopper.persistent_tiles`), so the engine sees 132 long CTAs instead of one per tile; the
  producer's load of tile t+1's Q_i during tile t's last step is the engine's pipelined next step, as within a tile.
  Not modelled: folding heads (`memsim.grain`, heads_per_event > 1) assumes CTAs of one head -- a persistent CTA
  mixes heads.
* longest first (causal): grid position p computes Q block Mb - 1 - p; the CTA list the engine dispatches is in
  that order, so the tail of short CTAs is where the kernel has it.
"""
from __future__ import annotations

from .algorithms_hopper import (FA3_BWD_LOCKSTEP, fa3_applies, fa3_bwd_applies, fa3_bwd_dq_fuse, fa3_bwd_dq_zero_ws,
                                fa3_persistent, fa3_tiles, longest_first, persistent,
                                persistent_tiles, ws_dq_schedule)
from .workloads import (LaunchModelSpec, Tensor, _Ctx, _flash2_bwd_dkdv, _flash2_bwd_dq, _flash2_bwd_pre,
                        _flash2_fwd, _runs, masked_by_kv_block, masked_by_q_block, workload)


def _tma(c: _Ctx, steps, masked=None, stage_loop: bool = True) -> LaunchModelSpec:
    """A launch whose tiles move as TMA boxes of head_dim-wide rows (Q, K, V, dO: d x element bytes each);
    `masked`: its CTAs' trips of the masked loop copy (LaunchModelSpec.masked_tiles); `stage_loop`: its loop is a
    ring of num_stages buffers (LaunchModelSpec.stage_loop)."""
    return LaunchModelSpec(steps, tma_row_bytes=c.d * c.e, masked_tiles=masked, stage_loop=stage_loop)


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
    if longest_first(c.p):  # causal: grid position p computes Q block Mb - 1 - p (kernels/hopper.py)
        order = lambda co: dict(co, q_block=c.mb - 1 - co["q_block"])  # noqa: E731
    else:
        order = lambda co: co  # noqa: E731
    masked = lambda co: c.masked_q(order(co)["q_block"])  # noqa: E731
    if not c.sectors:  # simulate(..., sectors=False): the byte contract, no transfer granularity
        return {"hopper_fwd": _tma(c, lambda co: _flash2_fwd(c, order(co)), masked)}
    return {"hopper_fwd": _tma(c, lambda co: _tma_steps(_flash2_fwd(c, order(co))), masked)}


# --- hopper bwd: the dK/dV pass with dQ's atomic adds; preprocess also zeroes dQacc; a conversion pass --------
def _dqacc(c: _Ctx) -> Tensor:
    """dQacc (fp32, rows x d x 4 per row) cut like Q; its reductions happen in L2 (counted as writes)."""
    if not hasattr(c, "_dqacc"):
        c._dqacc = Tensor("dQacc", c.bm, c.p.seq_q, c.d * 4, c.R)
    return c._dqacc


def _hopper_bwd_pre(c: _Ctx, co: dict) -> list:
    i, h = co["q_block"], co["bh"]
    (st,) = _flash2_bwd_pre(c, co)
    st[1] = st[1] + _dqacc(c).range((h,), i, i + 1)
    return [st]


def _hopper_bwd_dkdvdq(c: _Ctx, co: dict) -> list:
    """flash2's dK/dV steps (Q_i, dO_i, lse_i, delta_i read per visible Q block) plus, per step, the atomic adds of
    dS K_j into dQacc of the step's Q blocks and one more matmul (2 r c d FLOPs per tile: 10 r c d in all)."""
    j, hk = co["kv_block"], co["bh_kv"]
    cols = c.K.rows_in(j, j + 1)
    acc = _dqacc(c)
    steps = []
    pro = c.K.range((hk,), j, j + 1) + c.V.range((hk,), j, j + 1)
    for h in c.q_heads(hk):
        for i0, i1 in _runs(c.imin(j), c.mb, c.R):
            rows = c.Q.rows_in(i0, i1)
            reads = (pro + c.Q.range((h,), i0, i1) + c.dO.range((h,), i0, i1)
                     + c.LSE.range((h,), i0, i1) + c.DELTA.range((h,), i0, i1))
            steps.append([reads, acc.range((h,), i0, i1), 10 * rows * cols * c.d, rows * cols, i1 - i0])
            pro = []
    if not steps:  # every block masked: the operands still read, no trip of the tile loop (0 tiles)
        steps.append([pro, [], 0, 0, 0])
    steps[-1][1] = steps[-1][1] + c.dK.range((hk,), j, j + 1) + c.dV.range((hk,), j, j + 1)
    return steps


def _dqacc_sharers(c: _Ctx) -> float:
    """CTAs that add into the same dQacc Q block at the same time, averaged over the adds: the K/V-block CTAs of a
    head start together and walk their Q blocks one a trip (`_hopper_bwd_dkdvdq`: each query head of the group in
    turn, from its first visible Q block), so at trip t the CTAs on Q block i of head h are those whose walk is there
    then -- all of them at once without a mask (every walk starts at block 0), a few with a causal one (the walks
    start along the diagonal).  sum n^2 / sum n over (trip, head, block), n the CTAs there (>= 1)."""
    # at trip t = h (mb - imin) + i - imin a walk is on (h, i): two walks meet on a block at the same trip exactly
    # when they start on the same Q block, so n is the number of walks with the same first block, for each of
    # the blocks that group visits
    from collections import Counter
    starts = Counter(c.imin(j) for j in range(c.nb))
    adds = {i0: k * c.G * (c.mb - i0) for i0, k in starts.items()}  # the adds of a group: k walks, its blocks
    total = sum(adds.values())
    return sum(starts[i0] * n for i0, n in adds.items()) / total if total else 1.0


def _dqacc_rows(c: _Ctx) -> dict:
    """dQacc as the conversion loads it (LaunchWork.split_load_tensors): rows of d fp32 values, a Q block's valid rows
    a tile.  Its layout is the dQ store's (8 bf16 / fp16 elements a thread), so each thread's 32-byte fp32 chunk comes
    as two 16-byte loads, each touching every sector of its lanes' chunks (kernels.sass: the compiled kernel says
    whether it splits; fp32 dQ does not)."""
    row = c.d * 4
    return {"dQacc": (row, row, 4, row, min(c.bm, c.p.seq_q))}


def _hopper_bwd_convert(c: _Ctx, co: dict) -> list:
    i, h = co["q_block"], co["bh"]
    return [[_dqacc(c).range((h,), i, i + 1), c.dQ.range((h,), i, i + 1), 0, 0, 1]]


@workload("hopper", "bwd")
def _hopper_bwd_work(c: _Ctx) -> dict:
    return {"hopper_bwd_preprocess": lambda co: _hopper_bwd_pre(c, co),
            "hopper_bwd_dkdvdq": LaunchModelSpec(lambda co: _hopper_bwd_dkdvdq(c, co),
                                                 masked_tiles=masked_by_kv_block(c),
                                                 reduce_adds=("dQacc", _dqacc_sharers(c)), stat_load_tensors=c.stat_rows(),
                                                 stage_loop=True),
            "hopper_bwd_dq_convert": LaunchModelSpec(lambda co: _hopper_bwd_convert(c, co),
                                                     split_load_tensors=_dqacc_rows(c))}


# --- hopper_ws: a persistent forward; a warp-specialised dK/dV pass + flash2's dQ pass ------------------------
def _persistent_fwd(c: _Ctx, tiles=persistent_tiles, stage_loop: bool = True) -> LaunchModelSpec:
    """A persistent forward launch (hopper_ws, hopper_fa3's walks): each CTA the flash2_fwd steps of its tiles, in
    the order `tiles(p, s, cta)` gives (`persistent_tiles`; hopper_fa3: `fa3_tiles`), moved as TMA boxes."""
    def cta(co):
        steps = []
        for m, h in tiles(c.p, c.s, co["cta"]):
            st = _flash2_fwd(c, {"q_block": m, "bh": h})
            steps += _tma_steps(st) if c.sectors else st
        return steps
    return _tma(c, cta, stage_loop=stage_loop)


@workload("hopper_ws", "fwd")
def _hopper_ws_fwd_work(c: _Ctx) -> dict:
    if not persistent(c.p, c.s):  # ragged lengths: hopper's per-tile launch
        return _hopper_fwd_work(c)
    return {"hopper_fwd_persistent": _persistent_fwd(c)}


@workload("hopper_ws", "bwd")
def _hopper_ws_bwd_work(c: _Ctx) -> dict:
    """flash2's preprocess and dK/dV steps (the WS pass moves flash2_dkdv's bytes), and flash2's dQ steps at the dQ
    pass's tiles: a second context with block_n / 2 K/V rows.  Its K and V are cut into those smaller blocks, so the
    two passes name K/V lines under different keys (the L2 does not see the dQ pass re-read what the dK/dV pass left;
    at the benchmark's sizes K+V = 128 MB > the 50 MB L2 anyway)."""
    cq = _Ctx(c.p, ws_dq_schedule(c.s), c.R, c.sectors)
    for name in ("K", "V"):
        t = getattr(cq, name)
        t.name = f"{name}@dq"
    return {"flash2_bwd_preprocess": lambda co: _flash2_bwd_pre(c, co),
            "hopper_bwd_dkdv_ws": _tma(c, lambda co: _flash2_bwd_dkdv(c, co)),
            "flash2_bwd_dq": LaunchModelSpec(lambda co: _flash2_bwd_dq(cq, co), masked_tiles=masked_by_q_block(cq),
                                             stat_load_tensors=cq.stat_rows(), stage_loop=True)}


# --- hopper_fa3 fwd: hopper_fwd's tiles and order (longest first when causal) under its own launch name ---------
@workload("hopper_fa3", "fwd")
def _hopper_fa3_fwd_work(c: _Ctx) -> dict:
    """FA3's structure moves flash2_fwd's bytes per tile.  The persistent walk (`fa3_persistent`): each CTA the steps
    of its tiles in `fa3_tiles`' order (non-causal: `persistent_tiles`', as hopper_ws fwd; causal: the balanced
    table `fa3_walk`); one CTA per tile: hopper_fwd's grid and order (longest first), its steps under the launch
    name ``hopper_fa3_fwd``.  Its producer warp, the two consumers' ping-pong and the
    in-group overlap are costs of the compiled kernel (memsim.costs reads them from the launch's compiled facts), not
    workload.  Ragged lengths and other schedules: hopper's launch."""
    if not fa3_applies(c.p, c.s):
        return _hopper_fwd_work(c)
    if not fa3_persistent(c.p, c.s):
        return {"hopper_fa3_fwd": _hopper_fwd_work(c)["hopper_fwd"]}
    return {"hopper_fa3_fwd": _persistent_fwd(c, fa3_tiles, stage_loop=False)}  # its Gluon ring: not num_stages


# --- hopper_fa3 bwd: hopper bwd's steps; its fused pass under the launch name ``hopper_fa3_bwd`` -----------------
def _fa3_bwd_lockstep(c: _Ctx, co: dict) -> list:
    """hopper_bwd_dkdvdq's steps with each (Q block, K/V block) step split in two: its loads and matmuls, then its
    exponentials and its dQacc reduce-adds (and, last, dK_j, dV_j) in a step of their own.  The per-step dS^T
    exchange -- warpgroup w's dQ columns need both warpgroups' dS^T rows, an mbarrier both arrive on -- keeps the two
    consumer warpgroups in lockstep: both run their exponentials, dS and the dQ tile's staging at the same time, so
    neither's elementwise work runs under the other's matmuls, and the engine's two-group overlap (a step computes
    for max(dot, exp, issue)) does not hold: the pass takes dot + exp per step (`FA3_BWD_LOCKSTEP`).  Bytes, FLOPs
    and exponentials unchanged."""
    out = []
    for reads, writes, flops, exps, tiles in _hopper_bwd_dkdvdq(c, co):
        if not tiles:
            out.append([reads, writes, flops, exps, tiles])
            continue
        out.append([reads, [], flops, 0, tiles])
        out.append([[], writes, 0, exps, 0])
    return out


@workload("hopper_fa3", "bwd")
def _hopper_fa3_bwd_work(c: _Ctx) -> dict:
    """The Gluon pass moves hopper_bwd_dkdvdq's bytes in its order (per CTA: K_j, V_j, then per q head of the group
    and visible Q block i: Q_i, dO_i by TMA, lse_i, delta_i by plain loads, dS K_j atomically into dQacc_i; dK_j,
    dV_j at the end).  Its producer warp and the two consumers' overlap are costs of the compiled kernel (memsim.costs
    reads them from the launch's compiled facts).  Other schedules: hopper bwd's launches."""
    w = _hopper_bwd_work(c)
    if not fa3_bwd_applies(c.p, c.s):
        return w
    steps = _fa3_bwd_lockstep if FA3_BWD_LOCKSTEP else _hopper_bwd_dkdvdq
    if fa3_bwd_dq_fuse(c.p, c.s):
        zero = fa3_bwd_dq_zero_ws(c.p, c.s)
        pre = (lambda co: _flash2_bwd_pre(c, co)) if zero else w["hopper_bwd_preprocess"]
        return {"hopper_bwd_preprocess": pre,
                "hopper_fa3_bwd": _tma(c, lambda co: steps(c, co) + _fa3_bwd_fused_convert(c, co, zero),
                                       stage_loop=False)}
    return {"hopper_bwd_preprocess": w["hopper_bwd_preprocess"],
            "hopper_fa3_bwd": _tma(c, lambda co: steps(c, co), stage_loop=False),
            "hopper_bwd_dq_convert": w["hopper_bwd_dq_convert"]}


def _fa3_bwd_fused_convert(c: _Ctx, co: dict, zero: bool) -> list:
    """The folded dQ conversion (`fa3_bwd_dq_fuse`): the last CTA of a batch*head_kv to finish -- the longest, K/V
    block 0, when causal; else the last dispatched, K/V block nb - 1 -- reads dQacc of every q head of the group
    (from the L2 where its reduce-adds left it) and writes dQ, and with the zeroed workspace zeros over dQacc; in the
    kernel each column half goes to whichever warpgroup arrives last, the model books both halves on that CTA."""
    last = 0 if c.p.causal else c.nb - 1
    if co["kv_block"] != last:
        return []
    acc = _dqacc(c)
    out = []
    for h in c.q_heads(co["bh_kv"]):
        writes = c.dQ.range((h,), 0, c.mb) + (acc.range((h,), 0, c.mb) if zero else [])
        out.append([acc.range((h,), 0, c.mb), writes, 0, 0, 0])
    return out
