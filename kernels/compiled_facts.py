"""Compiled-kernel facts without a GPU: registers, spills and shared memory of every launch, per architecture.

    python -m kernels.compiled_facts [--suite] [--random N --seed S ...] [--defaults] [--arch sm90] [--jobs 2]

For each case, the registry's launcher (`kernels.registry.launcher_for`) runs on "meta" tensors (shapes
and dtypes, no memory) with `JITFunction.run` intercepted: every launch is captured with its exact
arguments instead of running.  Each captured launch is then specialised exactly as the JIT would on a
GPU (Triton's own binder: pointer alignment, integer divisibility and ==1 constants) and compiled with
`triton.compile(..., target=GPUTarget("cuda", 90, 32))`; the PTX goes through the bundled ptxas with
Triton's own flags (``-lineinfo -v --gpu-name=sm_90a``), whose report gives the registers per thread,
the stack frame (local memory per thread: what CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES says on the GPU, and
Triton's n_spills x 4) and the spill store/load bytes; shared memory is Triton's metadata.shared.  The
tile loop's instruction mix comes from the SASS (`kernels.sass`) when it can be read.

The table, ``memsim/presets/compiled/<arch>.json`` (read by `memsim.compiled.lookup`, stdlib), is
incremental: entries already there are not compiled again; every write is a locked read-merge-write
(fcntl) and atomic, so several processes may fill it at once.  Two problems with one `memsim.compiled.key`
must compile to the same specialisation; a clash is an error naming both.

TRITON_INTERPRET must be unset (the interpreter has no compiled kernels): this module removes it
before triton is imported when run as a program.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # before triton is imported: compiling needs real JITFunctions
    os.environ.pop("TRITON_INTERPRET", None)

ARCHS = {"sm90": (90, "sm_90a")}
#: the memsim preset whose calibration supplies the issue replay's figures (memsim.warp_issue) per architecture
ARCH_PRESET = {"sm90": "h100-sxm"}
#: the replay runs 1..this many co-resident CTAs (beyond, memsim.costs scales the last figure linearly: the SM is
#: then issue- or pipe-bound, not latency-bound)
MAX_REPLAY_CTAS = 8
_PTXAS = re.compile(r"Used (\d+) registers")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


class CompiledFactsError(RuntimeError):
    pass


# --- capture ------------------------------------------------------------------------------------
def capture(problem, schedule) -> list[tuple]:
    """[(JITFunction, args, kwargs, grid)] of every launch of (problem, schedule), in order, not run."""
    import torch
    from triton import knobs
    from triton.runtime.jit import JITFunction

    from kernels.registry import launcher_for
    if knobs.runtime.interpret:
        raise CompiledFactsError("TRITON_INTERPRET is set: the kernels are interpreted, nothing compiles; run "
                                 "`python -m kernels.compiled_facts` (it unsets it) or unset it before importing "
                                 "triton")
    from kernels._common import TORCH_DTYPES
    p = problem
    dt = TORCH_DTYPES[p.dtype]
    meta = dict(device="meta", dtype=dt)
    q = torch.empty(p.batch, p.heads_q, p.seq_q, p.head_dim, **meta)
    k = torch.empty(p.batch, p.heads_kv, p.seq_kv, p.head_dim, **meta)
    v = torch.empty(p.batch, p.heads_kv, p.seq_kv, p.head_dim, **meta)
    calls = []
    orig = JITFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        calls.append((self, args, kwargs, grid))
        return None

    JITFunction.run = run
    try:
        L = launcher_for(schedule.algorithm, schedule.phase)
        if schedule.phase == "fwd":
            L.run(p, schedule, q, k, v)
        else:
            saved = {}
            for name, spec in L.needs.items():
                shape, sdt, _ = spec(p, schedule)
                saved[name] = torch.empty(tuple(shape), device="meta", dtype=sdt)
            o = torch.empty_like(q)
            do = torch.empty_like(q)
            L.run(p, schedule, q, k, v, o, do, saved)
    finally:
        JITFunction.run = orig
    return calls


def _specialise(jf, args, kwargs, target):
    """(ASTSource, options) exactly as JITFunction.run would build them on a GPU of `target`."""
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature
    backend = make_backend(target)
    binder = create_function_from_signature(jf.signature, jf.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = jf._pack_args(backend, kwargs, bound_args, specialization, options)
    if jf.is_gluon():  # a Gluon kernel (kernels/hopper_gluon.py) compiles through Gluon's own front end
        from triton.experimental.gluon._runtime import GluonASTSource
        return GluonASTSource(jf, signature, constexprs, attrs), options
    return ASTSource(jf, signature, constexprs, attrs), options


def _flat_signature(signature: dict) -> tuple[dict, dict]:
    """({leaf name: type}, {Triton's argument path: flat index}) with tuple arguments flattened: a tuple
    parameter's leaves count as positional arguments of their own, named name[i] (the forward kernels take the
    strides of a tensor as one (batch, head, row) tuple; their leaves specialise as the scalars did)."""
    names, index = {}, {}

    def leaves(name, ty, path):
        if isinstance(ty, tuple):
            for i, t in enumerate(ty):
                leaves(f"{name}[{i}]", t, (*path, i))
        else:
            index[path] = len(names)
            names[name] = ty
    for i, (name, ty) in enumerate(signature.items()):
        leaves(str(name), ty, (i,))
    return names, index


def _spec_text(src, options) -> str:
    """A stable text of what was compiled (signature, constants, attributes, warps, stages); tuple arguments
    flattened (`_flat_signature`), so constants and attributes are keyed by flat argument index "(i,)"."""
    sig, index = _flat_signature(src.signature)

    def flat(path):  # Triton's argument path -> "(flat index,)"
        return str((index[path],)) if path in index else str(path)
    cons = {flat(k): (v.__name__ if hasattr(v, "__name__") else repr(v)) for k, v in src.constants.items()}
    attrs = {flat(k): repr(v) for k, v in src.attrs.items()}
    return json.dumps({"signature": {k: str(v) for k, v in sig.items()}, "constants": cons,
                       "attrs": attrs, "num_warps": options.num_warps, "num_stages": options.num_stages},
                      sort_keys=True)


def same_specialisation(a: str | None, b: str | None) -> bool:
    """Whether two `_spec_text`s name one specialisation: argument names aside (the stride tuples of the
    forward kernels were scalars named stride_qb, ... when the table's forward entries were compiled)."""
    if a == b:
        return True
    try:
        da, db = json.loads(a), json.loads(b)
    except (TypeError, ValueError):
        return False
    for d in (da, db):
        d["signature"] = sorted(d.get("signature", {}).values())
    return da == db


def ptxas_report(ptx: str, arch: str, options) -> dict:
    """Run the bundled ptxas on `ptx` as Triton does (-lineinfo -v --gpu-name=...), parse its report."""
    from triton.backends.nvidia.compiler import get_ptxas
    cap, gpu_name = ARCHS[arch]
    exe = get_ptxas(cap).path
    fmad = [] if getattr(options, "enable_fp_fusion", True) else ["--fmad=false"]
    extra = options.ptx_options.split(" ") if getattr(options, "ptx_options", None) else []
    with tempfile.TemporaryDirectory(prefix="cfacts-") as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        cmd = [exe, "-lineinfo", *fmad, "-v", *extra, f"--gpu-name={gpu_name}", str(src), "-o", str(Path(d) / "k.o")]
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise CompiledFactsError(f"ptxas failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    text = p.stderr + p.stdout
    r, s = _PTXAS.search(text), _SPILL.search(text)
    if not r or not s:
        raise CompiledFactsError(f"cannot read the ptxas report: {text.strip()[-500:]}")
    return {"regs_per_thread": int(r.group(1)), "local_bytes_per_thread": int(s.group(1)),
            "spill_store_bytes": int(s.group(2)), "spill_load_bytes": int(s.group(3)),
            "ptxas": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:-3])) + " k.ptx"}


def compile_launch(jf, args, kwargs, arch: str = "sm90") -> dict:
    """The facts of one captured launch."""
    import triton
    from triton.backends.compiler import GPUTarget
    cap, _ = ARCHS[arch]
    target = GPUTarget("cuda", cap, 32)
    src, options = _specialise(jf, args, kwargs, target)
    t0 = time.time()
    ck = triton.compile(src, target=target, options=options.__dict__)
    rep = ptxas_report(ck.asm["ptx"], arch, options)
    out = {"kernel": ck.name, **rep, "shared_bytes": int(ck.metadata.shared), "num_warps": int(options.num_warps),
           "launched_warps": int(ck.metadata.num_warps),
           "num_stages": int(options.num_stages), "source": f"ptxas {ARCHS[arch][1]}, triton {triton.__version__}",
           "compile_s": round(time.time() - t0, 2), "specialisation": _spec_text(src, options)}
    try:
        from kernels.sass import disassemble, tile_loop
        text = disassemble(ck.asm["cubin"])
        lp = tile_loop(text)
        out["loop"] = lp.to_dict() if lp is not None else None
        from kernels.sass import l1_load_factor, l1_split_factor, l1_split_piece_bytes
        out["l1_load_factor"] = l1_load_factor(text)
        out["l1_split_factor"] = l1_split_factor(text)
        out["l1_split_piece_bytes"] = l1_split_piece_bytes(text)
        from kernels.sass import l1_wide_pieces
        out["l1_wide_pieces"] = l1_wide_pieces(text)
        if out.get("local_bytes_per_thread"):
            out["local_regions"] = _regions_of(text, lp)
        out["code_bytes"] = _code_bytes(text)
        out["issue"] = issue_facts(text, arch, num_warps=out["num_warps"], regs=out["regs_per_thread"],
                                   shared=out["shared_bytes"], launched_warps=out["launched_warps"],
                                   walk="persistent" in ck.name)
    except Exception as e:  # the loop profile is extra; never lose the registers for it
        out.setdefault("loop", None)
        out["loop_error"] = f"{type(e).__name__}: {e}"[:200]
    try:
        out["stat_loads"] = _stat_loads_of(ck)
    except Exception as e:  # extra too
        out["stat_loads_error"] = f"{type(e).__name__}: {e}"[:200]
    return out


def _stat_loads_of(ck) -> list | None:
    """kernels.stat_loads.stat_loads of a compiled kernel (its TTGIR and SASS; the warps its layouts are for)."""
    from kernels.sass import disassemble
    from kernels.stat_loads import stat_loads, ttgir_num_warps
    ttgir = ck.asm["ttgir"]
    return stat_loads(ttgir, disassemble(ck.asm["cubin"]), num_warps=ttgir_num_warps(ttgir))


def refresh_stat_loads(arch: str, *, launch_prefix: str = "", shard: str = "0/1", command: str = "") -> int:
    """Every entry (of `launch_prefix`) gets `stat_loads` (kernels.stat_loads) from its launch compiled again
    (Triton's cache makes that a lookup); nothing else changes.  Returns the failures."""
    return _refresh_fields(arch, lambda k_, e: k_.startswith(launch_prefix),
                           lambda text, e, ck: {"stat_loads": _stat_loads_of(ck)},
                           shard=shard, command=command, what="stat_loads", with_kernel=True)


def issue_facts(sass_text: str, arch: str, *, num_warps: int, regs: int, shared: int,
                known: dict | None = None, launched_warps: int | None = None, walk: bool = False) -> dict | None:
    """`kernels.sass.issue_profile` with the preset's calibrated figures, for 1..min(resident CTAs,
    MAX_REPLAY_CTAS) CTAs per SM (None without an `issue_latency` calibration).  `launched_warps`: the warps the
    compiled kernel launches per CTA (`metadata.num_warps`: 12 for a warp-specialised `num_warps=4` kernel --
    two consumer warpgroups and a producer), which decide the resident CTAs; default `num_warps`."""
    import memsim
    from kernels.sass import issue_profile
    from memsim.calibration import calibration_for
    from memsim.costs import ctas_per_sm
    hw = memsim.load_hardware(ARCH_PRESET[arch])
    cal = calibration_for(hw)
    if cal.issue is None:
        return None
    per_sm, _ = ctas_per_sm(hw, shared, launched_warps or num_warps, regs)
    return issue_profile(sass_text, num_warps=num_warps, max_ctas=max(1, min(per_sm, MAX_REPLAY_CTAS)), lat=cal.issue,
                         known=known, walk=walk)


def _entry_launch(e: dict, arch: str) -> tuple:
    """(jf, args, kwargs, src, options, same) for a table entry's launch, captured again from the problem and schedule
    it records and specialised for `arch`; `same`: it still specialises as the entry records.  CompiledFactsError
    when the case no longer has that launch."""
    from triton.backends.compiler import GPUTarget

    from memsim.schedule import problem_from_dict, schedule_from_dict
    p, s = problem_from_dict(e["problem"]), schedule_from_dict(e["schedule"])
    for jf, args, kwargs, _grid in capture(p, s):
        name = jf.__name__[1:] if jf.__name__.startswith("_") else jf.__name__
        if name == e["launch"]:
            src, options = _specialise(jf, args, kwargs, GPUTarget("cuda", ARCHS[arch][0], 32))
            return jf, args, kwargs, src, options, same_specialisation(e.get("specialisation"), _spec_text(src, options))
    raise CompiledFactsError(f"no launch {e['launch']!r} in the case's launches")


def _compile_entry(e: dict, arch: str):
    """The entry's launch compiled again (Triton's cache makes that a lookup), refusing one that no longer
    specialises as the entry records."""
    import triton
    from triton.backends.compiler import GPUTarget
    _jf, _args, _kwargs, src, options, same = _entry_launch(e, arch)
    if not same:
        raise CompiledFactsError("the kernel no longer specialises as the entry records")
    return triton.compile(src, target=GPUTarget("cuda", ARCHS[arch][0], 32), options=options.__dict__)


def refresh_issue(arch: str, *, shard: str = "0/1", command: str = "", cases=None, launch_prefix: str = "",
                  force: bool = False) -> int:
    """Recompute the table entries' `issue` figures (the replay of their SASS with today's calibration) where
    they are missing or were computed with other figures: each entry's launch compiled again from the problem
    and schedule it records (Triton's cache makes that a lookup for unchanged kernels); registers and spills are
    left as they are.  `cases`: only the entries of these (name, problem, schedule).  `force`: every entry (of
    `launch_prefix`), current or not, replayed from scratch (nothing copied from its old figures) -- after a fix of
    the SASS reading that the fingerprint does not see.  Returns the failures."""
    import memsim
    from kernels.sass import disassemble
    from memsim.calibration import calibration_for
    from memsim.compiled import load_table
    cal = calibration_for(memsim.load_hardware(ARCH_PRESET[arch]))
    want = cal.issue.fingerprint() if cal.issue is not None else None
    table = load_table(arch)
    from kernels.sass import PROFILE_VERSION
    keys = sorted(k_ for k_, e in table.items()
                  if force or ((e.get("issue") or {}).get("latencies"), (e.get("issue") or {}).get("profile"))
                  != (want, PROFILE_VERSION))
    if cases is not None:
        mine = _case_keys(cases)
        keys = [k_ for k_ in keys if k_ in mine]
    if launch_prefix:
        keys = [k_ for k_ in keys if k_.startswith(launch_prefix)]
    # entries replayed with other figures first (the model cannot use them: it falls back to instruction counts),
    # then the ones only an older profile's reading; small kernels before large ones (a 100k-instruction unrolled
    # loop takes minutes to emulate and replay)
    keys.sort(key=lambda k_: ((table[k_].get("issue") or {}).get("latencies") == want,
                              (table[k_].get("issue") or {}).get("tile_instructions") or 0, k_))
    i, k = (int(x) for x in shard.split("/"))
    keys = keys[i::k]
    failed = 0
    pending: dict = {}
    for j, key_ in enumerate(keys, 1):
        e = table[key_]
        t0 = time.time()
        try:
            ck = _compile_entry(e, arch)
            text = disassemble(ck.asm["cubin"])
            from kernels.sass import tile_loop
            lp = tile_loop(text)
            loop = lp.to_dict() if lp is not None else None
            old = e.get("issue") or {}
            same_loop = (loop or {}).get("label") == (e.get("loop") or {}).get("label")
            # what the previous figures already hold is copied (kernels.sass.issue_profile's `known`)
            launched = int(ck.metadata.num_warps)
            facts = issue_facts(text, arch, num_warps=e["num_warps"], regs=e["regs_per_thread"],
                                shared=e["shared_bytes"], known=old if same_loop and not force else None,
                                launched_warps=launched, walk="persistent" in ck.name)
            pending[key_] = {"issue": facts, "loop": loop, "launched_warps": launched, "issue_stale": None}
            print(f"[{j}/{len(keys)}] {key_}: issue replayed ({time.time() - t0:.1f} s)", file=sys.stderr, flush=True)
        except Exception as ex:  # one entry must not stop the others
            failed += 1
            print(f"[{j}/{len(keys)}] {key_}: FAILED {type(ex).__name__}: {str(ex)[:200]}", file=sys.stderr, flush=True)
        if len(pending) >= 25 or (j == len(keys) and pending):
            _locked_update(arch, pending, command=command)
            pending = {}
    return failed


# --- the table ----------------------------------------------------------------------------------
def recompile_changed(arch: str, *, launch_prefix: str = "", shard: str = "0/1", command: str = "",
                      force: bool = False) -> int:
    """Entries whose launch no longer specialises as they record (its kernel gained or lost a parameter since it
    was compiled: `--refresh-issue` refuses those) compiled again from the problem and schedule they record, and
    replaced whole (registers, spills, shared memory, loop, issue figures).  `force`: every entry of the prefix (a
    kernel whose code changed behind the same parameters: a registry setting such as hopper_fa3 bwd's STAT_SMEM).
    Returns the failures."""
    from memsim.compiled import load_table
    table = load_table(arch)
    keys = sorted(k_ for k_ in table if k_.startswith(launch_prefix))
    i, k = (int(x) for x in shard.split("/"))
    failed, n = 0, 0
    for key_ in keys[i::k]:
        e = table[key_]
        try:
            jf, args, kwargs, _src, _options, same = _entry_launch(e, arch)
            if same and not force:
                continue
            new = compile_launch(jf, args, kwargs, arch)
            new.update(launch=e["launch"], case=e.get("case", ""), problem=e["problem"], schedule=e["schedule"])
            _locked_replace(arch, key_, new, command=command)
            n += 1
            print(f"{key_}: compiled again ({new['regs_per_thread']} regs, {new['shared_bytes']} B shared)",
                  file=sys.stderr, flush=True)
        except Exception as ex:  # one entry must not stop the others
            failed += 1
            print(f"{key_}: FAILED {type(ex).__name__}: {str(ex)[:200]}", file=sys.stderr, flush=True)
    print(f"{n} entries compiled again, {failed} failed", file=sys.stderr)
    return failed


def refresh_l1_loads(arch: str, *, launch_prefix: str = "", shard: str = "0/1", command: str = "") -> int:
    """Every entry (of `launch_prefix`) gets `l1_load_factor`, `l1_split_factor` and `l1_split_piece_bytes` (kernels.sass)
    from its launch compiled
    again (Triton's cache makes that a lookup); nothing else changes.  Returns the failures."""
    from kernels.sass import l1_load_factor, l1_split_factor, l1_split_piece_bytes, l1_wide_pieces
    return _refresh_fields(arch, lambda k_, e: k_.startswith(launch_prefix),
                           lambda text: {"l1_load_factor": l1_load_factor(text), "l1_split_factor": l1_split_factor(text),
                                         "l1_split_piece_bytes": l1_split_piece_bytes(text),
                                         "l1_wide_pieces": l1_wide_pieces(text)},
                           shard=shard, command=command,
                           what="l1_load_factor, l1_split_factor, l1_split_piece_bytes, l1_wide_pieces")


def _refresh_fields(arch: str, select, fields_of, *, shard: str, command: str, what: str, batch: int = 50,
                    with_entry: bool = False, with_kernel: bool = False) -> int:
    """The entries `select(key, entry)` picks (this shard's share) get `fields_of(their SASS text)` (`with_entry`:
    `fields_of(text, entry)`; `with_kernel`: `fields_of(text, entry, the compiled kernel)`) from their launch compiled again (Triton's cache makes that a lookup), written in
    batches under the table's lock; nothing else changes.  Returns the failures."""
    from kernels.sass import disassemble
    from memsim.compiled import load_table
    table = load_table(arch)
    keys = sorted(k_ for k_, e in table.items() if select(k_, e))
    i, k = (int(x) for x in shard.split("/"))
    failed, pending = 0, {}
    for key_ in keys[i::k]:
        try:
            ck = _compile_entry(table[key_], arch)
            text = disassemble(ck.asm["cubin"])
            pending[key_] = (fields_of(text, table[key_], ck) if with_kernel else
                             fields_of(text, table[key_]) if with_entry else fields_of(text))
        except Exception as ex:  # one entry must not stop the others
            failed += 1
            print(f"{key_}: FAILED {type(ex).__name__}: {str(ex)[:200]}", file=sys.stderr, flush=True)
        if len(pending) >= batch:
            _locked_update(arch, pending, command=command)
            pending = {}
    if pending:
        _locked_update(arch, pending, command=command)
    print(f"{what} set on {len(keys[i::k]) - failed} entries, {failed} failed", file=sys.stderr)
    return failed


def _code_bytes(text: str) -> int:
    """The kernel's SASS in bytes (16 per instruction, every instruction of `disassemble`'s text): what a launch
    fetches from DRAM after ncu's L2 flush (memsim/MODEL.md "the kernel's code")."""
    from kernels.sass import scan
    return 16 * len(scan(text)[1])


def refresh_code_bytes(arch: str, *, shard: str = "0/1", command: str = "", force: bool = False) -> int:
    """Every entry (without `force` only those that lack it) gets `code_bytes` from its launch compiled again
    (Triton's cache makes that a lookup, ~0.6 s an entry); nothing else changes.  Returns the failures."""
    return _refresh_fields(arch, lambda k_, e: force or "code_bytes" not in e,
                           lambda text: {"code_bytes": _code_bytes(text)}, shard=shard, command=command,
                           what="code_bytes")


def _case_keys(cases) -> set:
    """The table keys of every launch of `cases` [(name, problem, schedule)]."""
    from memsim.compiled import key as table_key
    from memsim.schedule import kernel_launches
    return {table_key(L.name, p, s) for _, p, s in cases for L in kernel_launches(p, s)}


def _needs_band(e: dict) -> bool:
    """An entry whose SASS replay is current, not warp-specialised, and has no band figures yet -- or a spilling
    kernel's band read before `band_local_bytes` (and the select rule for `band_masked`) existed."""
    rep = e.get("issue")
    if not (isinstance(rep, dict) and rep.get("tile_cycles") and "groups" not in rep):
        return False
    if "band_instructions" not in rep:
        return True
    return bool(rep["band_instructions"] and e.get("local_bytes_per_thread") and "band_local_bytes" not in rep)


def refresh_band(arch: str, *, launch_prefix: str = "", shard: str = "0/1", command: str = "", cases=None) -> int:
    """Every entry (of `launch_prefix`; `cases`: of these (name, problem, schedule) only) replayed without its
    kernel's other tile loop gets the band figures (`kernels.sass.band_fields`: the masked copy of a K/V loop,
    replayed at the entry's replayed CTA counts with the preset's calibrated figures) in its `issue`; nothing else
    changes.  Returns the failures."""
    import memsim
    from kernels.sass import band_fields
    from memsim.calibration import calibration_for
    mine = None if cases is None else _case_keys(cases)
    cal = calibration_for(memsim.load_hardware(ARCH_PRESET[arch]))
    if cal.issue is None:
        raise CompiledFactsError(f"the {ARCH_PRESET[arch]} preset has no issue_latency calibration: nothing to replay")

    def fields(text: str, e: dict) -> dict:
        rep = e["issue"]
        band = band_fields(text, num_warps=e["num_warps"], max_ctas=len(rep["tile_cycles"]), lat=cal.issue)
        return {"issue": {**rep, **band}}
    return _refresh_fields(arch, lambda k_, e: (k_.startswith(launch_prefix) and _needs_band(e)
                                                and (mine is None or k_ in mine)), fields,
                           shard=shard, command=command, what="band figures", batch=20, with_entry=True)


def refresh_prologue(arch: str, *, launch_prefix: str = "", shard: str = "0/1", command: str = "",
                     force: bool = False, cases=None, loopless: bool = False) -> int:
    """Every entry with a current SASS replay that is not warp-specialised (of `launch_prefix`; without `force` only
    those that lack it; `loopless`: only those without a tile loop) gets `prologue_round_trips` in its `issue`
    (kernels.sass.prologue_round_trips: the load round trips a CTA waits for in a row before its first trip
    computes, or in all for a kernel without a tile loop) from its launch compiled again; nothing else changes
    (`cases`: of these (name, problem, schedule) only).  Returns the failures."""
    from memsim.compiled import MIN_LOOP_INSTRUCTIONS
    from kernels.sass import load_bytes_per_thread, prologue_round_trips

    def fields(text: str, e: dict) -> dict:
        rt = prologue_round_trips(text)
        got = {"prologue_round_trips": rt} if rt is not None else {}
        if rt is not None and e["issue"].get("tile_instructions", 0) < MIN_LOOP_INSTRUCTIONS:
            got["load_bytes_per_thread"] = load_bytes_per_thread(text)  # a ragged CTA's share of the chain
        return {"issue": {**e["issue"], **got}}

    mine = None if cases is None else _case_keys(cases)

    def pick(k_: str, e: dict) -> bool:
        rep = e.get("issue")
        return (k_.startswith(launch_prefix) and (mine is None or k_ in mine) and isinstance(rep, dict)
                and bool(rep.get("tile_cycles"))
                and (not loopless or rep.get("tile_instructions", 0) < MIN_LOOP_INSTRUCTIONS)
                and "groups" not in rep and (force or "prologue_round_trips" not in rep))
    return _refresh_fields(arch, pick, fields, shard=shard, command=command, what="prologue_round_trips",
                           batch=50, with_entry=True)


def _regions_of(text: str, lp) -> dict:
    """`kernels.sass.local_regions`, the regions with local traffic only."""
    from kernels.sass import local_regions
    return {r: v for r, v in local_regions(text, lp.label if lp is not None else None).items() if v != [0, 0]}


def refresh_local_regions(arch: str, *, launch_prefix: str = "", shard: str = "0/1", command: str = "",
                          force: bool = False) -> int:
    """Every entry with local memory (of `launch_prefix`; without `force` only those that lack it) gets
    `local_regions` (where its spill stores and reloads sit: `kernels.sass.local_regions`) from its launch compiled
    again (Triton's cache makes that a lookup); nothing else changes.  Returns the failures."""
    from kernels.sass import tile_loop
    return _refresh_fields(arch, lambda k_, e: (k_.startswith(launch_prefix) and e.get("local_bytes_per_thread")
                                                and (force or "local_regions" not in e)),
                           lambda text: {"local_regions": _regions_of(text, tile_loop(text))}, shard=shard,
                           command=command, what="local_regions", batch=20)


def _locked_replace(arch: str, key_: str, entry: dict, *, command: str) -> None:
    """Replace one entry whole under the table's lock (atomic write), whatever it specialised as before."""
    _locked_edit(arch, lambda entries: entries.__setitem__(key_, entry), command=command)


def _locked_edit(arch: str, edit, *, command: str) -> None:
    """edit(entries) on the table under its exclusive lock, then an atomic write with the command stamped."""
    import fcntl

    from memsim.io import write_json
    path = _table_path(arch)
    with open(Path(tempfile.gettempdir()) / f"compiled_facts_{arch}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = json.loads(path.read_text())
        edit(table["entries"])
        table["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        table["command"] = command
        write_json(path, table, overwrite=True)


def _table_path(arch):
    from memsim.compiled import table_path
    return table_path(arch)


def _locked_merge(arch: str, new: dict, *, command: str, replace: bool = False) -> dict:
    """Merge `new` entries into the table under an exclusive lock; atomic write; returns the table.
    `replace`: an entry already there (same specialisation) is replaced (a refresh of its SASS facts)."""
    import fcntl

    from memsim.compiled import FORMAT
    from memsim.io import write_json
    path = _table_path(arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / f"compiled_facts_{arch}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = json.loads(path.read_text()) if path.is_file() else {
            "format": FORMAT, "arch": arch, "entries": {}}
        for k, e in new.items():
            old = table["entries"].get(k)
            if old is not None and not same_specialisation(old.get("specialisation"), e.get("specialisation")):
                raise CompiledFactsError(f"key {k!r} compiles two ways: {old.get('case')} and {e.get('case')} share "
                                         f"the key but not Triton's specialisation; memsim.compiled.key must grow")
            if replace:
                table["entries"][k] = e
            else:
                table["entries"].setdefault(k, e)
        table["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        table["command"] = command
        write_json(path, table, overwrite=True)
    return table


def _locked_update(arch: str, updates: dict, *, command: str) -> None:
    """{key: {field: value}}: set those fields of existing entries (None: remove the field), under the table's lock
    (atomic write)."""
    def edit(entries):
        for key_, fields_ in updates.items():
            e = entries[key_]
            for f_, v_ in fields_.items():  # None removes the field (a cleared `issue_stale`)
                if v_ is None:
                    e.pop(f_, None)
                else:
                    e[f_] = v_
    _locked_edit(arch, edit, command=command)


def facts_for_case(problem, schedule, *, arch="sm90", have=None, case_name="") -> dict:
    """{key: entry} for every launch of the case that `have` (existing keys) lacks."""
    from memsim.compiled import key
    from memsim.schedule import kernel_launches
    names = [L.name for L in kernel_launches(problem, schedule)]
    todo = [n for n in names if key(n, problem, schedule) not in (have or {})]
    if not todo:
        return {}
    out = {}
    for jf, args, kwargs, grid in capture(problem, schedule):
        launch = jf.__name__[1:] if jf.__name__.startswith("_") else jf.__name__
        if launch not in todo:
            continue
        k = key(launch, problem, schedule)
        if k in out:
            continue
        e = compile_launch(jf, args, kwargs, arch)
        e.update(launch=launch, case=case_name, problem=problem.to_dict(), schedule=schedule.to_dict())
        out[k] = e
    return out


def cases_for(a) -> list:
    """(name, problem, schedule) of the chosen cases."""
    out = []
    if a.suite:
        from verification.suite import SUITE
        out += [(c.name, c.problem, c.schedule) for c in SUITE]
    for spec in a.random or []:
        from verification.sampling import draw
        n, seed = (int(x) for x in spec.split(":"))
        out += [(c.name, c.problem, c.schedule) for c in draw(n, seed).cases]
    for folder in a.data or []:
        from memsim.schedule import problem_from_dict, schedule_from_dict
        files = sorted(Path(folder).glob("*.json"))
        if not files:
            raise CompiledFactsError(f"--data {folder}: no <case>.json records there")
        for f in files:
            r = json.loads(f.read_text())
            if "problem" in r and "schedule" in r:
                out.append((f.stem, problem_from_dict(r["problem"]), schedule_from_dict(r["schedule"])))
    if a.defaults:
        from memsim.algorithms import registered, spec_for
        from memsim.schedule import AttentionProblem, Schedule
        for alg, phase in registered():
            sp = spec_for(alg, phase)
            if sp.problem_type is not AttentionProblem:
                continue
            for dt in ("fp16", "bf16", "fp32"):
                for d in (64, 128):
                    for causal in (False, True):
                        p = AttentionProblem(batch=4, heads_q=16, heads_kv=16, seq_q=4096, seq_kv=4096, head_dim=d,
                                             dtype=dt, causal=causal)
                        try:
                            s = Schedule(algorithm=alg, phase=phase, **sp.default_tiles(p, "gpu"))
                        except LookupError:
                            continue
                        out.append((f"default_{alg}_{phase}_{dt}_d{d}{'_causal' if causal else ''}", p, s))
    for path in a.cases_json or []:
        from memsim.schedule import problem_from_dict, schedule_from_dict
        d = json.loads(Path(path).read_text())
        for c in (d["cases"] if isinstance(d, dict) else d):
            out.append((c["name"], problem_from_dict(c["problem"]), schedule_from_dict(c["schedule"])))
    return out


def merge_from(arch: str, other_path, *, command: str = "") -> tuple[int, int]:
    """Bring another copy of the table (a clean worktree's, after --refresh-issue or compiling new cases there)
    into this one: entries this table lacks are added; an entry both have gets the other's `issue`, `loop` (and
    `launched_warps`, recorded since profile 9) where
    the other's issue profile is newer (or the same profile computed with other figures) -- never older.  Both must
    record the same specialisation for a key (else CompiledFactsError, as for any merge).  Returns (added,
    updated)."""
    from kernels.sass import PROFILE_VERSION
    from memsim.compiled import load_table
    from memsim.io import read_json  # plain or gzipped (benchmarks/results/tune-rank-compiled-sm90.json.gz)
    try:
        other = read_json(other_path)["entries"]
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise CompiledFactsError(f"--merge-from {other_path}: not a compiled-facts table ({e})") from None
    mine = load_table(arch)

    def prof(e):
        return (e.get("issue") or {}).get("profile", 0)
    # figures a refresh adds to a current profile (`refresh_band`, `refresh_prologue`)
    extra_keys = ("band_instructions", "band_masked", "band_cycles", "band_local_bytes", "prologue_round_trips")

    def newer_same_profile(e, m):
        """Same profile, other figures -- where they differ only by figures a refresh adds, the copy that has more
        of them."""
        a, b = e["issue"], m.get("issue") or {}
        if {k: v for k, v in a.items() if k not in extra_keys} == {k: v for k, v in b.items() if k not in extra_keys}:
            return sum(k in a for k in extra_keys) > sum(k in b for k in extra_keys)
        return True
    new = {k: e for k, e in other.items() if k not in mine}
    upd = {k: {"issue": e["issue"], "loop": e.get("loop"),
               # figures of today's profile clear a "why this entry is stale" note; older ones keep the other's
               "issue_stale": e.get("issue_stale") if prof(e) < PROFILE_VERSION else None,
               **({"launched_warps": e["launched_warps"]} if e.get("launched_warps") else {})}
           for k, e in other.items()
           if k in mine and e.get("issue") and prof(e) <= PROFILE_VERSION
           and (prof(e) > prof(mine[k]) or (prof(e) == prof(mine[k]) and e["issue"] != mine[k].get("issue")
                                            and newer_same_profile(e, mine[k])))
           and same_specialisation(mine[k].get("specialisation"), e.get("specialisation"))}
    if new:
        _locked_merge(arch, new, command=command)
    if upd:
        _locked_update(arch, upd, command=command)
    return len(new), len(upd)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m kernels.compiled_facts", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="sm90", choices=sorted(ARCHS))
    ap.add_argument("--suite", action="store_true", help="every case of verification/suite.py")
    ap.add_argument("--random", action="append", metavar="N:SEED", help="a random set (verification.sampling.draw)")
    ap.add_argument("--defaults", action="store_true", help="the registry's default schedules at d=64/128, "
                                                           "fp16/bf16/fp32, causal or not (B=4, H=16, N=4096)")
    ap.add_argument("--cases-json", action="append", metavar="FILE", help="cases from `cases --json` output")
    ap.add_argument("--data", action="append", metavar="DIR", help="the cases of measured records (a random-set "
                                                                 "folder of verification/data: <case>.json)")
    ap.add_argument("--refresh-local", action="store_true", help="compile again the launches the table has with "
                                                                "local memory (spills) and replace their entries "
                                                                "(new SASS facts such as local_reuse)")
    ap.add_argument("--refresh-issue", action="store_true", help="replay the SASS of every entry (or of the "
                    "given cases' entries) whose issue figures are missing or stale, with the preset's calibrated "
                    "figures (memsim.warp_issue), and store them")
    ap.add_argument("--launch-prefix", default="", metavar="NAME", help="with --refresh-issue: only the entries of "
                    "launches whose name starts with this (e.g. hopper_: the only kernels with device-built TMA "
                    "descriptors)")
    ap.add_argument("--recompile-changed", action="store_true", help="compile again, from scratch, the entries "
                    "(of --launch-prefix) whose kernel no longer specialises as they record, and replace them")
    ap.add_argument("--refresh-code-bytes", action="store_true", help="set every entry's code_bytes (its SASS size, "
                    "what a launch fetches from DRAM after an L2 flush) from its launch compiled again; nothing else "
                    "changes (without --force only entries that lack it)")
    ap.add_argument("--refresh-local-regions", action="store_true", help="set every entry's (of --launch-prefix) "
                    "with local memory local_regions: where its spill stores and reloads sit (kernels.sass."
                    "local_regions), from its launch compiled again; nothing else changes")
    ap.add_argument("--refresh-band", action="store_true", help="give every entry (of --launch-prefix) replayed "
                    "without them the figures of its kernel's other tile loop (kernels.sass.band_fields: the masked "
                    "copy of a K/V loop); nothing else changes")
    ap.add_argument("--refresh-prologue", action="store_true", help="give every entry (of --launch-prefix) with a "
                    "current replay, not warp-specialised, prologue_round_trips (kernels.sass.prologue_round_trips; "
                    "without --force only entries that lack it); nothing else changes")
    ap.add_argument("--loopless", action="store_true", help="with --refresh-prologue: only entries without a tile "
                    "loop (their round trips are the whole kernel's)")
    ap.add_argument("--refresh-l1-loads", action="store_true", help="set every entry's (of --launch-prefix) "
                    "l1_load_factor from its SASS (kernels.sass.l1_load_factor), nothing else")
    ap.add_argument("--refresh-stat-loads", action="store_true", help="set every entry's (of --launch-prefix) "
                    "stat_loads from its TTGIR and SASS (kernels.stat_loads), nothing else")
    ap.add_argument("--force", action="store_true", help="with --refresh-issue and --launch-prefix: replay current "
                    "entries too, from scratch (after a fix of the SASS reading the fingerprint does not see)")
    ap.add_argument("--shard", default="0/1", metavar="I/K", help="take every K-th case from the I-th (parallel runs)")
    ap.add_argument("--merge-from", metavar="TABLE", help="bring in another copy of the table (e.g. a clean "
                    "worktree's memsim/presets/compiled/<arch>.json): its new entries, and its issue figures where "
                    "they are newer; nothing is compiled")
    a = ap.parse_args(argv)
    if a.merge_from:
        try:
            added, updated = merge_from(a.arch, a.merge_from, command="python -m kernels.compiled_facts " + " ".join(argv))
        except CompiledFactsError as e:
            print(f"kernels.compiled_facts: error: {e}", file=sys.stderr)
            return 2
        print(f"{added} entries added, {updated} entries' issue figures updated from {a.merge_from}", file=sys.stderr)
        return 0
    def selected():
        """The cases --suite / --random / --data / --defaults / --cases-json name (None: no selection, every entry)."""
        return cases_for(a) if (a.suite or a.random or a.data or a.defaults or a.cases_json) else None
    if a.refresh_code_bytes:
        return 1 if refresh_code_bytes(a.arch, shard=a.shard, force=a.force,
                                       command="python -m kernels.compiled_facts " + " ".join(argv)) else 0
    if a.refresh_local_regions:
        return 1 if refresh_local_regions(a.arch, launch_prefix=a.launch_prefix, shard=a.shard, force=a.force,
                                          command="python -m kernels.compiled_facts " + " ".join(argv)) else 0
    if a.refresh_band:
        return 1 if refresh_band(a.arch, launch_prefix=a.launch_prefix, shard=a.shard, cases=selected(),
                                 command="python -m kernels.compiled_facts " + " ".join(argv)) else 0
    if a.refresh_prologue:
        return 1 if refresh_prologue(a.arch, launch_prefix=a.launch_prefix, shard=a.shard, force=a.force,
                                     cases=selected(), loopless=a.loopless,
                                     command="python -m kernels.compiled_facts " + " ".join(argv)) else 0
    if a.refresh_l1_loads:
        return 1 if refresh_l1_loads(a.arch, launch_prefix=a.launch_prefix, shard=a.shard,
                                     command="python -m kernels.compiled_facts " + " ".join(argv)) else 0
    if a.refresh_stat_loads:
        return 1 if refresh_stat_loads(a.arch, launch_prefix=a.launch_prefix, shard=a.shard,
                                       command="python -m kernels.compiled_facts " + " ".join(argv)) else 0
    if a.recompile_changed:
        return 1 if recompile_changed(a.arch, launch_prefix=a.launch_prefix, shard=a.shard, force=a.force,
                                      command="python -m kernels.compiled_facts " + " ".join(argv)) else 0
    if a.launch_prefix and not a.refresh_issue:
        print("kernels.compiled_facts: error: --launch-prefix selects entries for --refresh-issue; give both",
              file=sys.stderr)
        return 2
    if a.force and not (a.refresh_issue and a.launch_prefix):
        print("kernels.compiled_facts: error: --force replays current entries again: give it with --refresh-issue "
              "and a --launch-prefix (the whole table takes hours)", file=sys.stderr)
        return 2
    if a.refresh_issue:
        return 1 if refresh_issue(a.arch, shard=a.shard, cases=selected(), launch_prefix=a.launch_prefix, force=a.force,
                                  command="python -m kernels.compiled_facts " + " ".join(argv)) else 0
    try:
        cases = cases_for(a)
    except (CompiledFactsError, OSError, ValueError, KeyError) as e:
        print(f"kernels.compiled_facts: error: {e}", file=sys.stderr)
        return 2
    if not cases:
        print("kernels.compiled_facts: error: no cases: give --suite, --random N:SEED, --defaults, --data or --cases-json",
              file=sys.stderr)
        return 2
    i, kk = (int(x) for x in a.shard.split("/"))
    cases = cases[i::kk]
    cmd = "python -m kernels.compiled_facts " + " ".join(argv)
    from memsim.compiled import load_table
    failed = 0
    refreshed: set = set()
    for j, (name, p, s) in enumerate(cases, 1):
        t0 = time.time()
        try:
            have = load_table(a.arch)
            if a.refresh_local:  # spilling entries compile again, once per run
                have = {k: e for k, e in have.items() if not e.get("local_bytes_per_thread") or k in refreshed}
            new = facts_for_case(p, s, arch=a.arch, have=have, case_name=name)
            if new:
                _locked_merge(a.arch, new, command=cmd, replace=a.refresh_local)
                refreshed.update(new)
            summary = ", ".join(f"{e['launch']} {e['regs_per_thread']} regs {e['local_bytes_per_thread']} B local"
                                for e in new.values()) or "(already in the table)"
            print(f"[{j}/{len(cases)}] {name}: {summary} ({time.time() - t0:.1f} s)", file=sys.stderr, flush=True)
        except Exception as e:  # one case must not stop the others
            failed += 1
            print(f"[{j}/{len(cases)}] {name}: FAILED {type(e).__name__}: {str(e)[:300]}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
