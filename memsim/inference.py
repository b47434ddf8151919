"""Inference attention vocabulary: decode and prefill-with-cache over a (paged) KV cache. Stdlib only.

`DecodeProblem` says what is computed: per-sequence query lengths (1 for decode, a few for
speculative decode, a chunk for chunked prefill) attending to per-sequence cached lengths, GQA
(``heads_q`` a multiple of ``heads_kv``), an optional page size (a paged cache named by a block
table, as in vLLM).  Queries are aligned bottom-right against each sequence's cache: query row r of
sequence b (0 <= r < nq_b) sits at cache position L_b - nq_b + r and sees keys c <= L_b - nq_b + r.
A row that sees no key (nq_b > L_b, or an empty cache) has output 0.

`DecodeSchedule` says how: the split count (flash-decoding), whether all query heads of one KV head
share a CTA (GQA packing), the K/V tile, warps and pipeline stages.  `decode_launches()` gives the
launches; the Triton kernels (kernels/decode.py) launch exactly them and the model
(memsim/workloads_decode.py) replays them.

Byte contract (e = element bytes, d = head_dim, S = num_splits, G = heads_q / heads_kv, g = query
heads per CTA (G packed, 1 not), rows = g * nq_b; statistics fp32 = 4 bytes).  Per sequence b the
keys are cut into S chunks of ``chunk_b = ceil(ceil(L_b / S) / block_n) * block_n`` keys; split s
covers keys [s * chunk_b, min((s + 1) * chunk_b, L_b)) and is *non-empty* when that range is;
n_b = ceil(L_b / chunk_b) splits are non-empty (0 when L_b = 0).

decode_split -- grid (S, B * units), units = heads_kv (packed) or heads_q; one CTA per
    (split, sequence, unit).  A non-empty split reads its query rows once (rows x d x e), and for
    every key of its range K and V once (d x e each); a paged cache also reads the block-table
    entry (4 bytes) of every page the range touches (with page_prefetch, the entries of the tile after
    the last one are not loaded: masked).  With S = 1 it writes O (rows x d x e) -- also
    for an empty cache (zeros, nothing read).  With S > 1 it writes a partial result: O_s (rows x d
    x 4, normalised) and its log2-sum-exp (rows x 4) into a workspace; an empty split moves nothing.
decode_combine -- only when S > 1; grid (rows, B * units), rows = g * max nq: one CTA per output row.
    It reads the row's n_b partials ((d + 1) x 4 bytes each; up to 32 per round trip) and writes the
    row of O (d x e); n_b = 0 writes zeros.  (A row past nq_b of a shorter query is not launched in
    the kernels, whose q has one length for the batch.)
Extra device memory: the workspace, B * units * S * g * max_nq * (d + 1) * 4 bytes (S > 1).

GQA packing is the IO lever at decode: packed, K/V are read once per KV head; unpacked, once per
query head (G times as many bytes).  Paging changes no byte count of K/V: a cache row of one head is
d x e contiguous bytes at a stride of heads_kv x d x e in both layouts; it adds the block table.

The split count: `auto_num_splits` ranks candidate counts with the closed-form time of
`estimate_time_s` (the model's mechanism in closed form: a CTA streams at most
``inflight_bytes / mem_latency_s``, all CTAs share the DRAM rate, a launch costs its overhead, and
the combine launch reads and writes the partials).  memsim's SimPy model ranks them by simulation
(`memsim.workloads_decode.rank_num_splits`); the kernels use this stdlib rule (no simpy there).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .schedule import DTYPE_BYTES, KERNEL_HEAD_DIMS, STAT_BYTES, Launch, ScheduleError, cdiv

__all__ = ["DecodeProblem", "DecodeSchedule", "decode_launches", "decode_sram_bytes_per_cta", "split_ranges",
           "split_chunk", "nonempty_splits", "block_m_for", "decode_extra_device_bytes", "DeviceFacts",
           "estimate_time_s", "auto_num_splits", "SPLIT_CANDIDATES", "decode_problem_from_dict",
           "decode_schedule_from_dict", "DECODE_LAUNCH_NAMES"]

DECODE_LAUNCH_NAMES = ("decode_split", "decode_combine")
#: split counts the rules rank (bounded per problem by the longest cache in K/V tiles)
SPLIT_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def _pos_int(owner, name, v, allow_zero=False):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ScheduleError(f"{owner}.{name} must be an int, got {v!r} ({type(v).__name__})")
    if v < 0 or (v == 0 and not allow_zero):
        raise ScheduleError(f"{owner}.{name} must be {'>= 0' if allow_zero else 'positive'}, got {v}")


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


@dataclass(frozen=True)
class DecodeProblem:
    """Attention of a few new query tokens per sequence over each sequence's KV cache (bottom-right)."""

    heads_q: int
    heads_kv: int
    head_dim: int
    #: query tokens per sequence (>= 1)
    seqlens_q: tuple
    #: cached tokens per sequence (>= 0); the keys each sequence attends to
    seqlens_kv: tuple
    dtype: str = "bf16"
    #: tokens per page of a paged cache; None = contiguous (B, capacity, heads_kv, d)
    page_size: int | None = None
    scale: float | None = None
    #: tokens the cache can hold per sequence (Ncache, or pages per sequence x page_size); None = max(seqlens_kv)
    capacity_kv: int | None = None

    def __post_init__(self):
        o = "DecodeProblem"
        for n in ("heads_q", "heads_kv", "head_dim"):
            _pos_int(o, n, getattr(self, n))
        if self.heads_q % self.heads_kv:
            raise ScheduleError(f"{o}.heads_q ({self.heads_q}) must be a multiple of heads_kv ({self.heads_kv})")
        for n in ("seqlens_q", "seqlens_kv"):
            v = getattr(self, n)
            if isinstance(v, list):
                v = tuple(v)
                object.__setattr__(self, n, v)
            if not isinstance(v, tuple) or not v:
                raise ScheduleError(f"{o}.{n} must be a non-empty tuple of ints (one per sequence), got {v!r}")
            for x in v:
                _pos_int(o, n + " entry", x, allow_zero=(n == "seqlens_kv"))
        if len(self.seqlens_q) != len(self.seqlens_kv):
            raise ScheduleError(f"{o}: seqlens_q has {len(self.seqlens_q)} sequences but seqlens_kv has "
                                f"{len(self.seqlens_kv)}; give one length of each per sequence")
        if self.dtype not in DTYPE_BYTES:
            raise ScheduleError(f"{o}.dtype = {self.dtype!r} is not one of {', '.join(map(repr, DTYPE_BYTES))}")
        if self.page_size is not None:
            _pos_int(o, "page_size", self.page_size)
        if self.capacity_kv is None:
            object.__setattr__(self, "capacity_kv", max(self.seqlens_kv))
        else:
            _pos_int(o, "capacity_kv", self.capacity_kv, allow_zero=True)
            if self.capacity_kv < max(self.seqlens_kv):
                raise ScheduleError(f"{o}: a cache length {max(self.seqlens_kv)} exceeds capacity_kv {self.capacity_kv}")
        if self.scale is None:
            object.__setattr__(self, "scale", 1.0 / math.sqrt(self.head_dim))
        elif not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise ScheduleError(f"{o}.scale must be a positive finite number, got {self.scale!r}")
        else:
            object.__setattr__(self, "scale", float(self.scale))

    @classmethod
    def uniform(cls, batch: int, heads_q: int, heads_kv: int, head_dim: int, seq_kv: int, seq_q: int = 1,
                **kw) -> "DecodeProblem":
        """Every sequence with the same query and cache length."""
        _pos_int("DecodeProblem.uniform", "batch", batch)
        return cls(heads_q, heads_kv, head_dim, (seq_q,) * batch, (seq_kv,) * batch, **kw)

    @property
    def batch(self) -> int:
        return len(self.seqlens_kv)

    @property
    def group_size(self) -> int:
        return self.heads_q // self.heads_kv

    @property
    def element_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def max_seq_q(self) -> int:
        return max(self.seqlens_q)

    @property
    def paged(self) -> bool:
        return self.page_size is not None

    def kv_bytes(self) -> int:
        """K and V of every cached token (what any decode must read once)."""
        return 2 * self.heads_kv * sum(self.seqlens_kv) * self.head_dim * self.element_bytes

    def q_bytes(self) -> int:
        return self.heads_q * sum(self.seqlens_q) * self.head_dim * self.element_bytes

    def visible_keys(self, b: int, r: int) -> int:
        """Keys query row r of sequence b sees (bottom-right alignment)."""
        return max(0, min(self.seqlens_kv[b], self.seqlens_kv[b] - self.seqlens_q[b] + r + 1))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seqlens_q"], d["seqlens_kv"] = list(self.seqlens_q), list(self.seqlens_kv)
        return d


@dataclass(frozen=True)
class DecodeSchedule:
    """How a DecodeProblem is computed: splits, GQA packing, K/V tile, warps, stages."""

    algorithm: str = "decode"
    phase: str = "fwd"
    #: chunks the keys of each sequence are cut into (flash-decoding); 1 = no combine launch
    num_splits: int = 1
    #: all query heads of one KV head in one CTA (K/V read once per KV head); False = one CTA per query head
    pack_gqa: bool = True
    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 3
    #: paged cache: load the next tile's block-table entries one iteration ahead (same bytes)
    page_prefetch: bool = False

    def __post_init__(self):
        o = "DecodeSchedule"
        if self.algorithm != "decode":
            raise ScheduleError(f"{o}.algorithm must be 'decode', got {self.algorithm!r}")
        if self.phase != "fwd":
            raise ScheduleError(f"{o}.phase must be 'fwd' (decode has no backward), got {self.phase!r}")
        for n in ("num_splits", "block_n", "num_warps", "num_stages"):
            _pos_int(o, n, getattr(self, n))
        for n in ("pack_gqa", "page_prefetch"):
            if not isinstance(getattr(self, n), bool):
                raise ScheduleError(f"{o}.{n} must be a bool, got {getattr(self, n)!r}")
        if not _pow2(self.block_n) or self.block_n < 16:
            raise ScheduleError(f"{o}.block_n must be a power of two >= 16, got {self.block_n}")
        if not _pow2(self.num_warps) or self.num_warps > 32:
            raise ScheduleError(f"{o}.num_warps must be a power of two in 1..32, got {self.num_warps}")
        if self.num_stages > 8:
            raise ScheduleError(f"{o}.num_stages must be 1..8, got {self.num_stages}")

    def to_dict(self) -> dict:
        return asdict(self)


def _from_dict(cls, d: dict):
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ScheduleError(f"unknown {cls.__name__} field(s) {sorted(unknown)}; allowed: {sorted(names)}")
    d = dict(d)
    for k in ("seqlens_q", "seqlens_kv"):
        if k in d and isinstance(d[k], list):
            d[k] = tuple(d[k])
    return cls(**d)


def decode_problem_from_dict(d: dict) -> DecodeProblem:
    return _from_dict(DecodeProblem, d)


def decode_schedule_from_dict(d: dict) -> DecodeSchedule:
    return _from_dict(DecodeSchedule, d)


# --- sizes of the launches ------------------------------------------------------------------------
def heads_per_cta(p: DecodeProblem, s: DecodeSchedule) -> int:
    return p.group_size if s.pack_gqa else 1


def units_per_seq(p: DecodeProblem, s: DecodeSchedule) -> int:
    """CTAs per (split, sequence): KV heads when packed, query heads when not."""
    return p.heads_kv if s.pack_gqa else p.heads_q


def block_m_for(rows: int) -> int:
    """Row tile of a CTA: the next power of two >= rows, at least 16 (tensor-core dots)."""
    return max(16, 1 << max(0, math.ceil(math.log2(max(1, rows)))))


def split_chunk(seq_kv: int, num_splits: int, block_n: int) -> int:
    """Keys per split of one sequence (a multiple of block_n; 0 for an empty cache)."""
    return cdiv(cdiv(seq_kv, num_splits), block_n) * block_n if seq_kv > 0 else 0


def nonempty_splits(seq_kv: int, num_splits: int, block_n: int) -> int:
    c = split_chunk(seq_kv, num_splits, block_n)
    return cdiv(seq_kv, c) if c else 0


def split_ranges(seq_kv: int, num_splits: int, block_n: int) -> list:
    """[(k0, k1)] of the non-empty splits of a sequence with `seq_kv` cached keys."""
    c = split_chunk(seq_kv, num_splits, block_n)
    return [(k0, min(k0 + c, seq_kv)) for k0 in range(0, seq_kv, c)] if c else []


def decode_sram_bytes_per_cta(p: DecodeProblem, s: DecodeSchedule) -> int:
    """Shared memory of a split CTA: the query tile resident, num_stages x (K tile + V tile) streamed."""
    e, d = p.element_bytes, p.head_dim
    bm = block_m_for(heads_per_cta(p, s) * p.max_seq_q)
    return bm * d * e + s.num_stages * 2 * s.block_n * d * e


def decode_launches(p: DecodeProblem, s: DecodeSchedule) -> tuple:
    """The launches of `s` on `p` in execution order (module doc)."""
    if not isinstance(p, DecodeProblem) or not isinstance(s, DecodeSchedule):
        raise TypeError("decode_launches takes a DecodeProblem and a DecodeSchedule")
    n_units = p.batch * units_per_seq(p, s)
    smem = decode_sram_bytes_per_cta(p, s)
    out = [Launch("decode_split", (s.num_splits, n_units, 1), ("split", "unit", "one"), smem)]
    if s.num_splits > 1:
        rows = heads_per_cta(p, s) * p.max_seq_q
        out.append(Launch("decode_combine", (rows, n_units, 1), ("row", "unit", "one"), 0))
    return tuple(out)


def decode_extra_device_bytes(p: DecodeProblem, s: DecodeSchedule) -> int:
    if s.num_splits == 1:
        return 0
    rows = heads_per_cta(p, s) * p.max_seq_q
    return p.batch * units_per_seq(p, s) * s.num_splits * rows * (p.head_dim + 1) * STAT_BYTES


def check_kernel_head_dim(p: DecodeProblem) -> None:
    if p.head_dim not in KERNEL_HEAD_DIMS:
        raise ScheduleError(f"head_dim {p.head_dim} is not supported by the kernels; supported: {KERNEL_HEAD_DIMS}")


# --- the split-count rule (closed form of the model's mechanism) --------------------------------------
@dataclass(frozen=True)
class DeviceFacts:
    """The figures the split rule needs (from a memsim hardware preset: `from_hardware`)."""

    num_sms: int
    dram_Bps: float
    mem_latency_s: float
    launch_overhead_s: float
    smem_per_sm_bytes: int
    smem_reserved_per_block_bytes: int
    max_ctas_per_sm: int
    max_warps_per_sm: int
    name: str = ""

    @classmethod
    def from_hardware(cls, hw, num_sms: int | None = None) -> "DeviceFacts":
        """mem_latency_s is the decode stream latency of memsim/decode_calibration.toml where the preset has one."""
        return cls(num_sms or hw.num_sms, hw.dram_bw_Bps * hw.dram_efficiency, stream_latency_s(hw)[0],
                   hw.launch_overhead_s, hw.smem_per_sm_bytes, hw.smem_reserved_per_block_bytes,
                   hw.max_ctas_per_sm, hw.max_warps_per_sm, hw.name)

    def ctas_per_sm(self, smem: int, warps: int) -> int:
        return max(1, min(self.max_ctas_per_sm, self.smem_per_sm_bytes // (smem + self.smem_reserved_per_block_bytes),
                          self.max_warps_per_sm // warps))


CALIBRATION_FILE = __import__("pathlib").Path(__file__).resolve().parent / "decode_calibration.toml"


def stream_latency_s(hw) -> tuple:
    """(loaded round-trip time of a decode CTA's K/V stream, its source) for hardware `hw`; presets
    without a decode calibration fall back to their `mem_latency_s` (an unloaded latency: optimistic)."""
    import tomllib
    try:
        with open(CALIBRATION_FILE, "rb") as f:
            cal = tomllib.load(f)
    except OSError:
        cal = {}
    entry = cal.get(hw.name)
    if entry:
        return float(entry["stream_latency_s"]), entry.get("source", str(CALIBRATION_FILE))
    return hw.mem_latency_s, f"{hw.name} mem_latency_s (no decode calibration in {CALIBRATION_FILE.name})"


def inflight_bytes_per_cta(p: DecodeProblem, s: DecodeSchedule) -> int:
    """K/V bytes one split CTA keeps in flight: (num_stages - 1) tiles ahead, at least one
    (Triton's software pipeline prefetches num_stages - 1 iterations)."""
    return max(1, s.num_stages - 1) * 2 * s.block_n * p.head_dim * p.element_bytes


def estimate_time_s(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> dict:
    """Closed-form GPU time of the launches (no host time), and the terms that decide it.

    Split launch: every CTA streams its bytes at most at r = inflight / latency (Little's law; a paged
    cache without page_prefetch needs two round trips per tile: r / 2); the CTAs run in waves over
    num_sms x ctas_per_sm slots; all share the DRAM rate; one latency fills the pipeline.
    time = overhead + latency + max(total bytes / DRAM rate, slowest slot's chain of CTAs).
    Combine: overhead + one latency per 32 partials + (partials read + O written) / DRAM rate.
    f.mem_latency_s is the loaded stream latency (DeviceFacts.from_hardware)."""
    e, d = p.element_bytes, p.head_dim
    g = heads_per_cta(p, s)
    units = units_per_seq(p, s)
    rounds = 2 if (p.paged and not s.page_prefetch) else 1
    rate = inflight_bytes_per_cta(p, s) / (rounds * f.mem_latency_s)
    slots = f.num_sms * f.ctas_per_sm(decode_sram_bytes_per_cta(p, s), s.num_warps)
    cta_t, total = [], 0
    for b in range(p.batch):
        q = g * p.seqlens_q[b] * d * e
        for k0, k1 in split_ranges(p.seqlens_kv[b], s.num_splits, s.block_n):
            nb = q + 2 * (k1 - k0) * d * e
            total += nb * units
            cta_t += [nb / rate] * units
    t_chain = _slot_makespan(cta_t, slots)
    t_split = f.launch_overhead_s + f.mem_latency_s + max(total / f.dram_Bps, t_chain)
    t_comb = 0.0
    if s.num_splits > 1:
        part = sum(nonempty_splits(L, s.num_splits, s.block_n) * g * nq * (d + 1) * STAT_BYTES
                   for L, nq in zip(p.seqlens_kv, p.seqlens_q)) * units
        out = sum(p.seqlens_q) * p.heads_q * d * e
        rounds_c = cdiv(s.num_splits, 32)
        t_comb = f.launch_overhead_s + f.mem_latency_s * rounds_c + (part + out) / f.dram_Bps
    return {"time_s": t_split + t_comb, "split_s": t_split, "combine_s": t_comb, "ctas": len(cta_t),
            "slots": slots, "cta_rate_Bps": rate, "kv_bytes": total}


def _slot_makespan(times: list, slots: int) -> float:
    """When the last of CTAs with these durations ends, handed out longest first to the first free of
    `slots` slots (identical CTAs: whole waves)."""
    if not times:
        return 0.0
    if min(times) == max(times):
        return cdiv(len(times), slots) * times[0]
    import heapq
    heap = [0.0] * min(slots, len(times))
    for t in sorted(times, reverse=True):
        heapq.heapreplace(heap, heap[0] + t)
    return max(heap)


def candidate_splits(p: DecodeProblem, s: DecodeSchedule) -> list:
    longest = cdiv(max(p.capacity_kv, 1), s.block_n)
    return [c for c in SPLIT_CANDIDATES if c <= max(1, longest)]


def auto_num_splits(p: DecodeProblem, s: DecodeSchedule, f: DeviceFacts) -> tuple:
    """(best split count, why): the candidate with the least `estimate_time_s` (ties: fewer splits).

    The kernels call it with the cache *capacity* as every sequence's length (no device sync)."""
    from dataclasses import replace
    rows = []
    for c in candidate_splits(p, s):
        est = estimate_time_s(p, replace(s, num_splits=c), f)
        rows.append((est["time_s"], c, est))
    best_t = min(r[0] for r in rows)
    t, c, est = next(r for r in rows if r[0] <= best_t * (1 + 1e-9))
    one = rows[0][0]
    why = (f"num_splits={c}: {est['ctas']} CTAs on {est['slots']} slots, each streaming at most "
           f"{est['cta_rate_Bps'] / 1e9:.0f} GB/s; predicted {t * 1e6:.1f} us (split {est['split_s'] * 1e6:.1f} + "
           f"combine {est['combine_s'] * 1e6:.1f}) vs {one * 1e6:.1f} us with 1 split ({f.name or 'device'})")
    return c, why
