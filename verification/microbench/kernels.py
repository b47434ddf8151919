"""Triton bodies of the calibration microbenchmarks (one fact each; see verification/calibrate.py).

Every kernel name starts with ``_mb_`` (the ncu kernel filter of the calibration passes).
"""
import triton
import triton.language as tl

from kernels._tl import grid_ids


@triton.jit
def _globaltimer():
    """The GPU's global nanosecond timer (%globaltimer), read once per thread."""
    return tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False,
                                     pack=1)


@triton.jit
def _mb_empty(x_ptr, flag):
    """Does nothing (the store never happens: flag is 0): launch cost only."""
    if flag != 0:
        tl.store(x_ptr, 1.0)


@triton.jit
def _mb_empty_args(x_ptr, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18,
                   a19, a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, flag):
    """Does nothing, with 32 arguments like the attention launches (flash2_bwd_dkdv has 30+)."""
    if flag != 0:
        tl.store(x_ptr, 1.0)


@triton.jit
def _mb_exp2(x_ptr, out_ptr, n_iter, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    """n_iter * UNROLL dependent exp2 per element, BLOCK independent elements per CTA.
    x -> exp2(-x) keeps values in [0.5, 1]; exp2 count per launch = n_elements * n_iter * UNROLL."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    for _ in range(n_iter):
        for _u in tl.static_range(UNROLL):
            x = tl.math.exp2(-x)
    tl.store(out_ptr + offs, x)


@triton.jit
def _mb_gemm(a_ptr, b_ptr, c_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
             PREC: tl.constexpr):
    """C = A @ B (row-major, sizes multiples of the blocks), fp32 accumulation, tl.dot(input_precision=PREC)."""
    pid = tl.program_id(0)
    grid_n = N // BN
    pm = pid // grid_n
    pn = pid % grid_n
    rm = pm * BM + tl.arange(0, BM)
    rn = pn * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    a_ptrs = a_ptr + rm[:, None].to(tl.int64) * K + rk[None, :]
    b_ptrs = b_ptr + rk[:, None].to(tl.int64) * N + rn[None, :]
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for _ in range(0, K, BK):
        a = tl.load(a_ptrs)
        b = tl.load(b_ptrs)
        acc = tl.dot(a, b, acc, input_precision=PREC)
        a_ptrs += BK
        b_ptrs += BK * N
    tl.store(c_ptr + rm[:, None].to(tl.int64) * N + rn[None, :], acc.to(c_ptr.dtype.element_ty))


@triton.jit
def _mb_write_spin(out_ptr, n_chunks, spin_ns, CHUNK: tl.constexpr, SPIN: tl.constexpr):
    """Persistent CTAs (grid <= #SMs, one wave) write chunks pid, pid+G, ... of fresh fp32 output
    (n_chunks x CHUNK elements in all, each written once), then, if SPIN, keep running spin_ns ns."""
    pid = tl.program_id(0)
    g = tl.num_programs(0)
    offs = tl.arange(0, CHUNK)
    for c in range(pid, n_chunks, g):
        tl.store(out_ptr + c.to(tl.int64) * CHUNK + offs, (offs + c).to(tl.float32))
    if SPIN:  # (a constexpr, so spin_us = 0 compiles no timer code at all)
        t0 = _globaltimer()
        t = t0
        while t - t0 < spin_ns:
            t = _globaltimer()


@triton.jit
def _mb_shared_read(src_ptr, out_ptr, n_tiles, start_step, delay_ns, TILE: tl.constexpr, DELAY: tl.constexpr):
    """G CTAs (grid = G) each read the SAME n_tiles tiles of TILE fp32 elements in order, CTA c
    starting at tile (c * start_step) mod n_tiles (start_step 0 = lockstep), and write one tile.
    DELAY: CTA c first waits c * delay_ns ns (then reads from tile 0, like lockstep, but later)."""
    pid = tl.program_id(0)
    if DELAY:
        w0 = _globaltimer()
        w = w0
        while w - w0 < pid * delay_ns:
            w = _globaltimer()
    start = (pid * start_step) % n_tiles
    offs = tl.arange(0, TILE)
    acc = tl.zeros([TILE], dtype=tl.float32)
    for i in range(n_tiles):
        t = (start + i) % n_tiles
        acc += tl.load(src_ptr + t.to(tl.int64) * TILE + offs)
    tl.store(out_ptr + pid.to(tl.int64) * TILE + offs, acc)


@triton.jit
def _mb_spill(src_ptr, out_ptr, n_iter, ROWS: tl.constexpr, COLS: tl.constexpr):
    """A ROWS x COLS fp32 tile per CTA kept live across n_iter passes that each need all of it
    (row sums fed back): ROWS*COLS/(32*num_warps) values per thread; past ~200 the compiler spills."""
    pid = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
    x = tl.load(src_ptr + pid * ROWS * COLS + offs)
    for _ in range(n_iter):
        s = tl.sum(x, axis=1)
        x = x * 0.5 + s[:, None] * 0.001
    tl.store(out_ptr + pid * ROWS * COLS + offs, x)


@triton.jit
def _mb_stream_groups(src_ptr, out_ptr, n_tiles, n_groups, n_readers, GROUPS_FASTEST: tl.constexpr,
                      TILE: tl.constexpr):
    """n_groups working sets of n_tiles x TILE fp32 each, each streamed in full by n_readers CTAs
    (like the Q blocks of one head streaming its K/V).  GROUPS_FASTEST: grid axis 0 is the group
    (heads_fastest: resident CTAs belong to different groups); else axis 0 is the reader."""
    g, r = grid_ids(GROUPS_FASTEST)  # axis 0 is the group when GROUPS_FASTEST, else the reader
    base = src_ptr + g.to(tl.int64) * n_tiles * TILE
    offs = tl.arange(0, TILE)
    acc = tl.zeros([TILE], dtype=tl.float32)
    for t in range(n_tiles):
        acc += tl.load(base + t * TILE + offs)
    tl.store(out_ptr + (g.to(tl.int64) * n_readers + r) * TILE + offs, acc)


@triton.jit
def _mb_dependent_loop(buf_ptr, n_iter, TILE: tl.constexpr, ROUNDTRIP: tl.constexpr):
    """One CTA per SM (grid = #SMs), each on its own TILE fp32 region of an L2-resident buffer, n_iter
    iterations.  ROUNDTRIP: load the tile from L2 (.cg, L1 bypassed), update it, store it back and
    barrier -- the next iteration reads what this one wrote, so nothing overlaps (flash1's workspace
    loop); else: load only (.cg), iterations independent: the SM's L2 read bandwidth."""
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * TILE + tl.arange(0, TILE)
    acc = tl.zeros([TILE], dtype=tl.float32)
    for _ in range(n_iter):
        x = tl.load(buf_ptr + offs, cache_modifier=".cg")
        if ROUNDTRIP:
            tl.store(buf_ptr + offs, x * 0.5 + 1.0)
            tl.debug_barrier()
        else:
            acc += x
    if not ROUNDTRIP:
        tl.store(buf_ptr + offs, acc)


@triton.jit
def _mb_pitched_copy(src_ptr, dst_ptr, n_rows, pitch, ROWS: tl.constexpr, COLS: tl.constexpr):
    """Copy ROWS x COLS tiles of a row-major matrix whose rows are `pitch` elements apart (COLS <= pitch):
    the access pattern of naive attention's S/P tiles when seq_kv is odd.  A pitch that is not a multiple of
    16 bytes makes Triton issue narrow, misaligned accesses; ncu counts the 32-byte sectors they touch."""
    pid = tl.program_id(0)
    rows = pid * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, COLS)
    offs = rows[:, None].to(tl.int64) * pitch + cols[None, :]
    mask = rows[:, None] < n_rows
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=mask, other=0.0), mask=mask)


@triton.jit
def _smid(ON_GPU: tl.constexpr):
    """The SM this CTA runs on (%smid); in the interpreter (ON_GPU False) the program id stands in."""
    if ON_GPU:
        return tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=False, pack=1)
    else:
        return tl.program_id(0)


@triton.jit
def _mb_sm_group_read(src_ptr, out_ptr, who_ptr, start_ptr, count_ptr, n_tiles,
                      m0, m1, m2, m3, m4, m5, TILE: tl.constexpr, ON_GPU: tl.constexpr):
    """Which SMs' reads of the same lines merge before the L2: the first CTA to arrive on each SM whose id is
    in the chosen set (bit smid of the 32-bit words m0..m5) reads the SAME n_tiles tiles of TILE fp32 in order
    (lockstep: every reader starts at tile 0 at dispatch); every other CTA only records itself and exits.
    Launch more CTAs than SMs so every SM gets one.  Per CTA: who[2 pid] = smid, who[2 pid + 1] = 1 if it read;
    start[pid] = %globaltimer when it started reading (0 if it did not).  count[smid] counts the CTAs that came
    to each SM (an atomic: the first one, ticket 0, is the SM's reader).  Nothing stays in SRAM; each reader's
    iteration reads one tile (TILE x 4 bytes) through L1 into registers."""
    pid = tl.program_id(0)
    sm = _smid(ON_GPU)
    ticket = tl.atomic_add(count_ptr + sm, 1)
    w = sm // 32
    word = tl.where(w == 0, m0, tl.where(w == 1, m1, tl.where(w == 2, m2, tl.where(w == 3, m3,
                    tl.where(w == 4, m4, m5))))).to(tl.int64)
    chosen = ((word >> (sm % 32).to(tl.int64)) & 1) != 0
    read = chosen & (ticket == 0)
    tl.store(who_ptr + 2 * pid, sm)
    tl.store(who_ptr + 2 * pid + 1, read.to(tl.int32))
    if read:
        if ON_GPU:
            tl.store(start_ptr + pid, _globaltimer())
        else:
            tl.store(start_ptr + pid, pid.to(tl.int64) + 1)
        offs = tl.arange(0, TILE)
        acc = tl.zeros([TILE], dtype=tl.float32)
        for t in range(n_tiles):
            acc += tl.load(src_ptr + t * TILE + offs)
        tl.store(out_ptr + sm.to(tl.int64) * TILE + offs, acc)


@triton.jit
def _mb_stream_rows(src_ptr, table_ptr, out_ptr, times_ptr, n_tiles, row_stride, HEADS: tl.constexpr,
                    BLOCK_N: tl.constexpr, D: tl.constexpr, PAGE_ROWS: tl.constexpr, ON_GPU: tl.constexpr):
    """_mb_stream with a KV-cache layout: CTA c streams the rows of ONE head (c % HEADS) of a cache whose rows of
    D fp16 are row_stride elements apart (heads interleaved: row_stride = HEADS x D), like a decode CTA; PAGE_ROWS
    > 0: the cache is paged -- row k of the CTA's sequence lives in page table[seq, k // PAGE_ROWS] (loaded per
    row, like decode's small pages), pages scattered over the pool.  SRAM: num_stages tiles (pipelined loads
    into tl.dot); registers: the 16 x D accumulator."""
    pid = tl.program_id(0)
    if ON_GPU:
        t0 = _globaltimer()
    seq = pid // HEADS
    head = pid % HEADS
    rows = tl.arange(0, BLOCK_N)
    cols = tl.arange(0, D)
    p = tl.full([16, BLOCK_N], 1.0, dtype=tl.float16)
    acc = tl.zeros([16, D], dtype=tl.float32)
    for t in range(n_tiles):
        k = t * BLOCK_N + rows
        if PAGE_ROWS > 0:
            pages_per_seq = n_tiles * BLOCK_N // PAGE_ROWS
            page = tl.load(table_ptr + seq * pages_per_seq + k // PAGE_ROWS).to(tl.int64)
            row = page * PAGE_ROWS + k % PAGE_ROWS
        else:
            row = seq.to(tl.int64) * n_tiles * BLOCK_N + k
        x = tl.load(src_ptr + row[:, None] * row_stride + head * D + cols[None, :])
        acc = tl.dot(p, x, acc)
    tl.store(out_ptr + pid.to(tl.int64) * 16 * D + tl.arange(0, 16)[:, None] * D + cols[None, :], acc)
    if ON_GPU:
        t1 = _globaltimer()
        tl.store(times_ptr + 3 * pid, t0)
        tl.store(times_ptr + 3 * pid + 1, t1)
        tl.store(times_ptr + 3 * pid + 2, _smid(ON_GPU).to(tl.int64))


@triton.jit
def _mb_stream(src_ptr, out_ptr, times_ptr, n_tiles, BLOCK_N: tl.constexpr, D: tl.constexpr,
               ON_GPU: tl.constexpr):
    """DRAM streaming with a chosen number of bytes in flight per CTA: CTA c streams its OWN n_tiles
    contiguous tiles of BLOCK_N x D fp16 (no two CTAs touch the same line) into a tl.dot, as a decode CTA streams
    its K/V tiles; the loads feed the dot, so Triton's pipeliner keeps num_stages - 1 tiles in flight through
    shared memory (SRAM: num_stages tiles; registers: the 16 x D fp32 accumulator).  times[3c..3c+2] =
    %globaltimer at start and end, and the SM id (the run's concurrency is read off them)."""
    pid = tl.program_id(0)
    if ON_GPU:
        t0 = _globaltimer()
    base = src_ptr + pid.to(tl.int64) * n_tiles * BLOCK_N * D
    offs = tl.arange(0, BLOCK_N)[:, None] * D + tl.arange(0, D)[None, :]
    p = tl.full([16, BLOCK_N], 1.0, dtype=tl.float16)
    acc = tl.zeros([16, D], dtype=tl.float32)
    for t in range(n_tiles):
        k = tl.load(base + t * (BLOCK_N * D) + offs)  # (t * tile < 2**31 elements: 4 MB per CTA)
        acc = tl.dot(p, k, acc)
    tl.store(out_ptr + pid.to(tl.int64) * 16 * D + tl.arange(0, 16)[:, None] * D + tl.arange(0, D)[None, :], acc)
    if ON_GPU:
        t1 = _globaltimer()
        tl.store(times_ptr + 3 * pid, t0)
        tl.store(times_ptr + 3 * pid + 1, t1)
        tl.store(times_ptr + 3 * pid + 2, _smid(ON_GPU).to(tl.int64))
