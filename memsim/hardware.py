"""Hardware as data: presets in ``memsim/presets/*.toml``, one conversion function.

A preset (or a user's TOML file) is a flat table of unit-suffixed keys plus a
``[tensor_flops_per_sm_per_cycle]`` table (one entry per dtype) and a
``[sources]`` table saying where every figure comes from (datasheet, guide, or
"measured: ..." on a named card).  A user file may start with
``extends = "h100-sxm"`` and override only some keys; figures it sets without a
source are recorded as coming from that file.

    >>> hw = load_hardware("h100-sxm")
    >>> hw.with_overrides(l2_bytes=1024).l2_bytes
    1024

`hardware_from_dict` is the only place a table becomes a `Hardware`; the
figures themselves live only in the TOML files.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent / "presets"


class HardwareError(ValueError):
    """A hardware description that is missing a key, has a bad value, or contradicts itself."""


@dataclass(frozen=True)
class Hardware:
    name: str
    num_sms: int
    clock_Hz: float
    dram_bw_Bps: float
    #: fraction of dram_bw_Bps a streaming kernel achieves
    dram_efficiency: float
    l2_bytes: int
    l2_bw_Bps: float
    smem_per_sm_bytes: int
    smem_per_block_bytes: int
    smem_reserved_per_block_bytes: int
    max_ctas_per_sm: int
    max_warps_per_sm: int
    regs_per_sm: int
    #: SFU exp2 results per clock per SM
    exp_per_sm_per_cycle: float
    #: dot FLOP per clock per SM by problem dtype, on the unit our kernels use (fp16/bf16: tensor cores;
    #: fp32: IEEE dots on the FMA pipes)
    tensor_flops_per_sm_per_cycle: dict
    #: fraction of the tensor peak a well-tuned matmul reaches
    tensor_efficiency: float
    mem_latency_s: float
    launch_overhead_s: float
    #: host (CPU) time to issue one kernel launch from Python; a pass is host-bound when its kernels
    #: are shorter: pass time = max(sum of kernel times, launches x host_launch_s)
    host_launch_s: float
    regs_per_thread: int
    #: L2 read requests / global (L1) read bytes: requests merged in L1 never reach L2
    l2_read_request_fraction: float
    #: fraction of l2_bytes that behaves as one LRU cache for this access pattern
    l2_effective_fraction: float
    #: fraction of the dirty bytes still in L2 when a kernel ends that the L2 has already written to DRAM
    #: during the kernel (background cleaning); the rest is written after it (not that kernel's DRAM writes)
    l2_eager_writeback_fraction: float
    #: +- fraction of pseudo-random spread in CTA compute times (0 = identical CTAs)
    cta_time_jitter: float
    description: str = ""
    #: warp instructions the SM's schedulers issue per clock (4 schedulers, one each): the issue limit of a
    #: tile loop whose instruction count (kernels.sass) exceeds what its dots and exps take
    warp_issue_per_sm_per_cycle: float = 4.0
    #: the SM's unified L1 data cache + shared memory (0: unknown; then spill reloads are assumed to hit L1)
    l1_shared_per_sm_bytes: int = 0
    #: the shared-memory carve-outs the driver can choose (bytes, ascending); the L1 keeps the rest
    smem_carveouts_bytes: tuple = ()
    sources: dict = field(default_factory=dict, compare=False)

    # --- derived figures ------------------------------------------------------------
    def tensor_flops_per_s(self, dtype: str) -> float:
        """Datasheet dense tensor FLOP/s of the whole chip for `dtype`."""
        return self.tensor_flops_per_sm_per_cycle[dtype] * self.num_sms * self.clock_Hz

    def exp_per_s(self) -> float:
        return self.exp_per_sm_per_cycle * self.num_sms * self.clock_Hz

    @property
    def dram_achievable_Bps(self) -> float:
        return self.dram_bw_Bps * self.dram_efficiency

    @property
    def l2_effective_bytes(self) -> int:
        return max(1, int(self.l2_bytes * self.l2_effective_fraction))

    def ctas_per_sm(self, smem_per_cta: int, num_warps: int) -> tuple[int, str]:
        """How many CTAs of this size can be resident on one SM, and which limit decides."""
        threads = num_warps * 32
        limits = {
            "max_ctas_per_sm": self.max_ctas_per_sm,
            "shared memory": self.smem_per_sm_bytes // (smem_per_cta + self.smem_reserved_per_block_bytes),
            "warps": self.max_warps_per_sm // num_warps,
            "registers": self.regs_per_sm // (threads * self.regs_per_thread),
        }
        which = min(limits, key=limits.get)
        return limits[which], which

    def with_overrides(self, **changes) -> "Hardware":
        """A copy with some figures changed (validated like a file); sources say 'override'."""
        d = self.to_dict()
        d.update(changes)
        srcs = dict(self.sources)
        srcs.update({k: "override" for k in changes})
        d["sources"] = srcs
        return hardware_from_dict(d, origin="override")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tensor_flops_per_sm_per_cycle"] = dict(self.tensor_flops_per_sm_per_cycle)
        d["smem_carveouts_bytes"] = list(self.smem_carveouts_bytes)  # a TOML / JSON array
        return d


_INT_KEYS = ("num_sms", "l2_bytes", "smem_per_sm_bytes", "smem_per_block_bytes",
             "max_ctas_per_sm", "max_warps_per_sm", "regs_per_sm", "regs_per_thread")
_POS_FLOAT_KEYS = ("clock_Hz", "dram_bw_Bps", "l2_bw_Bps", "exp_per_sm_per_cycle")
_FRACTION_KEYS = ("dram_efficiency", "tensor_efficiency", "l2_read_request_fraction", "l2_effective_fraction")
_NONNEG_KEYS = ("smem_reserved_per_block_bytes", "mem_latency_s", "launch_overhead_s", "host_launch_s",
                "cta_time_jitter", "l2_eager_writeback_fraction")
_DTYPES = ("fp16", "bf16", "fp32")


def _field_names():
    return [f.name for f in dataclasses.fields(Hardware)]


def hardware_from_dict(d: dict, origin: str = "<dict>") -> Hardware:
    """The one conversion from a table of figures to a validated `Hardware`."""
    d = dict(d)
    sources = d.pop("sources", {}) or {}
    if not isinstance(sources, dict):
        raise HardwareError(f"{origin}: [sources] must be a table of strings, got {sources!r}")
    sources = dict(sources)
    d.pop("extends", None)
    names = _field_names()
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise HardwareError(f"{origin}: unknown key(s) {unknown}; allowed keys: {sorted(set(names) - {'sources'})}")
    optional = {f.name for f in dataclasses.fields(Hardware) if f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING}
    required = [n for n in names if n not in optional]
    missing = [n for n in required if n not in d]
    if missing:
        raise HardwareError(f"{origin}: missing key(s) {missing}")
    for k in _INT_KEYS:
        v = d[k]
        if isinstance(v, float) and v.is_integer():
            v = d[k] = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise HardwareError(f"{origin}: {k} must be a positive integer, got {v!r}")
    for k in _POS_FLOAT_KEYS:
        v = d[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise HardwareError(f"{origin}: {k} must be a positive number, got {v!r}")
        d[k] = float(v)
    for k in _FRACTION_KEYS:
        v = d[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise HardwareError(f"{origin}: {k} must be a fraction in (0, 1], got {v!r}")
        d[k] = float(v)
    for k in _NONNEG_KEYS:
        v = d[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise HardwareError(f"{origin}: {k} must be a non-negative number, got {v!r}")
    if d["l2_eager_writeback_fraction"] > 1:
        raise HardwareError(f"{origin}: l2_eager_writeback_fraction must be in [0, 1], got {d['l2_eager_writeback_fraction']!r}")
    if d["cta_time_jitter"] >= 1:
        raise HardwareError(f"{origin}: cta_time_jitter must be below 1, got {d['cta_time_jitter']!r}")
    d["smem_reserved_per_block_bytes"] = int(d["smem_reserved_per_block_bytes"])
    _check_l1(d, origin)
    tf = d["tensor_flops_per_sm_per_cycle"]
    if not isinstance(tf, dict):
        raise HardwareError(f"{origin}: tensor_flops_per_sm_per_cycle must be a table with keys {list(_DTYPES)}")
    bad = sorted(set(tf) - set(_DTYPES))
    if bad:
        raise HardwareError(f"{origin}: tensor_flops_per_sm_per_cycle has unknown dtype(s) {bad}; allowed {list(_DTYPES)}")
    for dt in _DTYPES:
        v = tf.get(dt)
        if v is None:
            raise HardwareError(f"{origin}: missing key tensor_flops_per_sm_per_cycle.{dt}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise HardwareError(f"{origin}: tensor_flops_per_sm_per_cycle.{dt} must be a positive finite number, "
                                f"got {v!r}")
    d["tensor_flops_per_sm_per_cycle"] = {dt: float(tf[dt]) for dt in _DTYPES}
    if not isinstance(d["name"], str) or not d["name"]:
        raise HardwareError(f"{origin}: name must be a non-empty string")
    if not isinstance(d.get("description", ""), str):
        raise HardwareError(f"{origin}: description must be a string, got {d['description']!r}")
    # contradictions
    if d["smem_per_block_bytes"] > d["smem_per_sm_bytes"]:
        raise HardwareError(f"{origin}: smem_per_block_bytes ({d['smem_per_block_bytes']}) exceeds "
                            f"smem_per_sm_bytes ({d['smem_per_sm_bytes']})")
    if d["regs_per_thread"] * 32 > d["regs_per_sm"]:
        raise HardwareError(f"{origin}: regs_per_thread ({d['regs_per_thread']}) x 32 exceeds regs_per_sm ({d['regs_per_sm']})")
    _check_sources(sources, origin)
    for k in required:
        sources.setdefault(k, f"from {origin}")
    return Hardware(**d, sources=sources)


def _check_l1(d: dict, origin: str) -> None:
    """The unified L1/shared size and the carve-outs: both given or neither, carve-outs ascending and within it."""
    l1 = d.get("l1_shared_per_sm_bytes", 0)
    cv = d.get("smem_carveouts_bytes", ())
    if isinstance(l1, float) and l1.is_integer():
        l1 = int(l1)
    if isinstance(l1, bool) or not isinstance(l1, int) or l1 < 0:
        raise HardwareError(f"{origin}: l1_shared_per_sm_bytes must be a non-negative integer (0 = unknown), got {l1!r}")
    if not isinstance(cv, (list, tuple)) or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in cv):
        raise HardwareError(f"{origin}: smem_carveouts_bytes must be a list of non-negative integers (bytes), got {cv!r}")
    cv = tuple(cv)
    if list(cv) != sorted(set(cv)):
        raise HardwareError(f"{origin}: smem_carveouts_bytes must be strictly ascending, got {list(cv)}")
    if bool(l1) != bool(cv):
        raise HardwareError(f"{origin}: give both l1_shared_per_sm_bytes and smem_carveouts_bytes, or neither")
    if cv and (cv[-1] > l1 or cv[-1] < d["smem_per_sm_bytes"]):
        raise HardwareError(f"{origin}: the largest carve-out ({cv[-1]}) must lie between smem_per_sm_bytes "
                            f"({d['smem_per_sm_bytes']}) and l1_shared_per_sm_bytes ({l1})")
    d["l1_shared_per_sm_bytes"], d["smem_carveouts_bytes"] = l1, cv


def _check_sources(sources: dict, origin: str) -> None:
    """[sources] may only name the figures, each with a string."""
    bad = sorted(set(sources) - (set(_field_names()) - {"sources"}))
    if bad:
        raise HardwareError(f"{origin}: [sources] names unknown key(s) {bad}; it may name the figures: "
                            f"{sorted(set(_field_names()) - {'sources'})}")
    for k, v in sources.items():
        if not isinstance(v, str):
            raise HardwareError(f"{origin}: [sources] {k} must be a string saying where the figure comes from, "
                                f"got {v!r}")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise HardwareError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise HardwareError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); a hardware file is TOML") from None
    except OSError as e:
        raise HardwareError(f"cannot read hardware file {path}: {e.strerror}") from None


def _is_path(s: str) -> bool:
    return s.endswith(".toml") or "/" in s or "\\" in s


def _resolve(name_or_path, relative_to: Path | None) -> Path:
    """The file of a preset name or a path; a relative path in a file's `extends` is taken from that
    file's own folder."""
    s = str(name_or_path)
    if not _is_path(s) and not (relative_to is None and Path(s).is_file()):
        path = PRESET_DIR / f"{s}.toml"
        if not path.is_file():
            raise HardwareError(f"unknown hardware preset {s!r}; presets: {', '.join(preset_names())} "
                                f"(or pass a path to a .toml file)")
        return path
    path = Path(s)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.is_dir():
        raise HardwareError(f"hardware file {path} is a folder; give a .toml file or a preset: "
                            f"{', '.join(preset_names())}")
    if not path.is_file():
        raise HardwareError(f"hardware file {path} does not exist; presets: {', '.join(preset_names())}")
    return path


def load_hardware(name_or_path) -> Hardware:
    """A preset by name (``h100-sxm``, ``a100-40gb``, ...) or any ``.toml`` file path."""
    if isinstance(name_or_path, Hardware):
        return name_or_path
    return _load(_resolve(name_or_path, None), ())


def _load(path: Path, chain: tuple) -> Hardware:
    key = path.resolve()
    if key in chain:
        names = " -> ".join(str(p) for p in (*chain, key))
        raise HardwareError(f"{path}: 'extends' goes round in a circle ({names}); a file may extend a preset or "
                            f"another file, never itself")
    d = _read_toml(path)
    base = d.get("extends")
    if base is None:
        return hardware_from_dict(d, origin=str(path))
    if not isinstance(base, str) or not base:
        raise HardwareError(f"{path}: extends must be a preset name or a .toml path, got {base!r}")
    parent = _load(_resolve(base, path.parent), (*chain, key)).to_dict()
    srcs = parent.pop("sources")
    own_srcs = d.pop("sources", {}) or {}
    if not isinstance(own_srcs, dict):
        raise HardwareError(f"{path}: [sources] must be a table of strings")
    _check_sources(own_srcs, str(path))
    d.pop("extends")
    unknown = sorted(set(d) - set(_field_names()))
    if unknown:
        raise HardwareError(f"{path}: unknown key(s) {unknown}; allowed keys: {sorted(set(_field_names()) - {'sources'})}")
    for k in d:
        srcs[k] = own_srcs.get(k, f"from {path}")
    if isinstance(d.get("tensor_flops_per_sm_per_cycle"), dict):
        merged = dict(parent["tensor_flops_per_sm_per_cycle"])
        merged.update(d["tensor_flops_per_sm_per_cycle"])
        d["tensor_flops_per_sm_per_cycle"] = merged
    parent.update(d)
    parent["sources"] = srcs
    return hardware_from_dict(parent, origin=str(path))
