"""Nsight Compute (ncu): the command line, the CSV it prints, and per-launch traffic records.

Stdlib only (no torch), so the parser and the command builder run and are tested anywhere.

How a suite is measured (see `measure_cases`): one ncu process per group of cases runs
``python -m verification.caserunner --mode ncu`` over the group in sequence.  The runner
warms every case up (Triton compilation, autotuning) *before* calling
``torch.cuda.profiler.start()``, launches the case's measured pass once, synchronises and
calls ``stop()``; ncu runs with ``--profile-from-start off`` so only those launches are
profiled, with the default cache control (L1/L2 flushed before each kernel),
``--clock-control none`` and a kernel-name filter.  The CSV rows come back in launch order;
`assign_rows_to_cases` maps them back to cases by that order and checks every kernel name
against the case's `kernel_launches()`.

Levels (DESIGN.md "One record shape"):
- global  = SM <-> memory requests: LSU global loads/stores (``l1tex__t_bytes_pipe_lsu_mem_global_op_ld/st``)
            plus global reductions / atomics (no op_ld/op_st counter of their own among ours: the t-stage bytes
            left after global ld/st and local ld/st, ``atomic_bytes``; counted as writes, as the byte contract
            counts them; only for launches without TMA traffic, whose t-stage residue is something else)
            plus TMA bulk copies (``l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld``,
            ``l1tex__m_l1tex2xbar_write_bytes_mem_global_op_tma_st``), which bypass l1tex's t-stage;
            ``l1tex__t_bytes.sum`` (all LSU traffic through the t-stage) is kept as a cross-check.
- l2      = ``lts__t_sectors_srcunit_tex_op_read/write.sum`` x 32 bytes (TMA counts under srcunit_tex).
- dram    = ``dram__bytes_read/write.sum`` (writes under-count: ncu flushes before, not after, a kernel).
- time    = ``gpu__time_duration.sum``.
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

SECTOR_BYTES = 32

#: metric name -> what it is; the order is the order passed to ncu
METRICS = {
    "gpu__time_duration.sum": "kernel duration",
    "l1tex__t_bytes.sum": "all LSU bytes through the L1TEX t-stage (global+local; not TMA)",
    "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum": "global load bytes (LSU)",
    "l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum": "global store bytes (LSU)",
    "l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum": "global load bytes (TMA)",
    "l1tex__m_l1tex2xbar_write_bytes_mem_global_op_tma_st.sum": "global store bytes (TMA)",
    "lts__t_sectors_srcunit_tex_op_read.sum": "L2 read sectors from L1TEX/TMA",
    "lts__t_sectors_srcunit_tex_op_write.sum": "L2 write sectors from L1TEX/TMA",
    "dram__bytes_read.sum": "DRAM bytes read",
    "dram__bytes_write.sum": "DRAM bytes written",
    # register spills: what the tile loops store to and reload from local memory (at L1), so a record shows the
    # spill traffic the model predicts (memsim.costs: SASS counts per loop iteration) beside the L2 it reaches
    "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum": "local-memory load bytes (LSU: spill reloads)",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum": "local-memory store bytes (LSU: spill stores)",
    # global reductions and atomics (hopper bwd's dQ adds): writes of the byte contract, not in op_st (names checked
    # with ncu --query-metrics --chip gh100 on the card, 2026-11-26)
    "l1tex__t_bytes_pipe_lsu_mem_global_op_red.sum": "global reduction bytes (LSU: RED)",
    "l1tex__t_bytes_pipe_lsu_mem_global_op_atom.sum": "global atomic bytes (LSU: ATOM)",
}

#: the record keys shared with memsim's SimResult.to_dict()
LEVEL_KEYS = ("global_read_bytes", "global_write_bytes", "l2_read_bytes", "l2_write_bytes",
              "dram_read_bytes", "dram_write_bytes", "time_s")

KERNEL_PREFIX = "_"  # Triton function names are the launch names with this prefix (notes/TEAM.md)
def _registered_kernel_regex() -> str:
    """Kernels of every registered algorithm: launch names prefixed with "_" (DESIGN.md), e.g. ^_(flash2|...)_."""
    try:
        from memsim.algorithms import registered
        algs = sorted({a for a, _ in registered()})
    except Exception:  # the registry is stdlib; this only guards a broken checkout
        algs = ["flash1", "flash2", "naive"]
    return r"^_(" + "|".join(algs) + r")_"


DEFAULT_KERNEL_REGEX = _registered_kernel_regex()


class NcuError(RuntimeError):
    """ncu could not measure; the message says why and how to fix it."""


# --- units -------------------------------------------------------------------------------
_SI = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BIN = {"Ki": 1024.0, "Mi": 1024.0 ** 2, "Gi": 1024.0 ** 3, "Ti": 1024.0 ** 4}
_TIME = {"ns": 1e-9, "nsecond": 1e-9, "us": 1e-6, "usecond": 1e-6, "ms": 1e-3, "msecond": 1e-3,
         "s": 1.0, "second": 1.0}


def parse_number(text: str) -> float | None:
    """'100,689,152' -> 100689152.0; '1.5' -> 1.5; 'n/a' or '' -> None."""
    t = text.strip().replace(",", "").replace("\u202f", "").replace(" ", "")
    if t in ("", "n/a", "N/A", "-", "(!)n/a"):
        return None
    try:
        return float(t)
    except ValueError:
        raise ValueError(f"not a number in the ncu CSV: {text!r}") from None


def unit_scale(unit: str) -> tuple[float, str]:
    """(factor, base unit) so that value * factor is in bytes, seconds or plain counts.

    byte/Kbyte/Mbyte/Gbyte (powers of 1000), KiB/MiB/GiB (1024), ns/us/ms/s and
    nsecond/usecond/msecond/second, counts with an SI prefix (sector, Ksector, request...)."""
    u = unit.strip()
    if u in _TIME:
        return _TIME[u], "second"
    if u.endswith("B") and u[:-1] in _BIN:  # KiB, MiB
        return _BIN[u[:-1]], "byte"
    m = re.fullmatch(r"([KMGT]?)(byte|bytes)", u)
    if m:
        return _SI[m.group(1)], "byte"
    m = re.fullmatch(r"([KMGT]?)([a-z%][A-Za-z_/%]*)", u)
    if m and m.group(2) not in ("s",):
        return _SI[m.group(1)], m.group(2)
    if u == "":
        return 1.0, ""
    return 1.0, u


def normalise(value: str, unit: str) -> tuple[float | None, str]:
    v = parse_number(value)
    f, base = unit_scale(unit)
    return (None if v is None else v * f), base


# --- CSV ---------------------------------------------------------------------------------
@dataclass
class KernelRow:
    """One profiled kernel launch (all its metric rows folded together)."""

    id: int
    name: str
    grid: str = ""
    block: str = ""
    metrics: dict = field(default_factory=dict)  # metric name -> value in bytes / seconds / counts
    units: dict = field(default_factory=dict)    # metric name -> base unit


def _header_index(lines: list[str]) -> int:
    for i, line in enumerate(lines):
        if line.startswith('"ID"') and "Metric Name" in line:
            return i
    return -1


def parse_csv(text: str) -> list[KernelRow]:
    """Parse `ncu --csv` output (details page, one row per metric) into launches in order.

    Tolerates the ==PROF==/==WARNING== lines and program output around the table."""
    lines = text.splitlines()
    h = _header_index(lines)
    if h < 0:
        return []
    table = [lines[h]] + [ln for ln in lines[h + 1:] if ln.startswith('"')]
    reader = csv.DictReader(io.StringIO("\n".join(table)))
    out: dict[int, KernelRow] = {}
    for row in reader:
        try:
            kid = int(row["ID"])
        except (KeyError, TypeError, ValueError):
            continue
        kr = out.get(kid)
        if kr is None:
            kr = out[kid] = KernelRow(kid, row.get("Kernel Name", ""), row.get("Grid Size", ""),
                                      row.get("Block Size", ""))
        name = row.get("Metric Name")
        if not name:
            continue
        value, base = normalise(row.get("Metric Value", ""), row.get("Metric Unit", ""))
        kr.metrics[name] = value
        kr.units[name] = base
    return [out[k] for k in sorted(out)]


def _get(m: dict, name: str):
    v = m.get(name)
    return None if v is None else float(v)


def _add(*vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def atomic_bytes(m: dict) -> float | None:
    """Global reduction / atomic bytes of one launch: ncu's op_red + op_atom bytes where the record has them, else
    l1tex__t_bytes minus the global and local LSU loads and stores (the t-stage's other global traffic: RED / ATOM).  None without the local counters (records before
    2026-11-26 01:00 UTC) or with TMA traffic (a TMA kernel's t-stage holds a residue of its own: hopper_fwd
    0.1-1.3 MB with no atomics)."""
    red, atom = (_get(m, "l1tex__t_bytes_pipe_lsu_mem_global_op_red.sum"),
                 _get(m, "l1tex__t_bytes_pipe_lsu_mem_global_op_atom.sum"))
    if red is not None or atom is not None:  # measured directly (records from 2026-11-26 04:40 UTC on)
        return (red or 0.0) + (atom or 0.0)
    vals = [_get(m, k) for k in ("l1tex__t_bytes.sum", "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum",
                                 "l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum",
                                 "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum",
                                 "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum")]
    if any(v is None for v in vals):
        return None
    if (_get(m, "l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum") or 0.0) or \
            (_get(m, "l1tex__m_l1tex2xbar_write_bytes_mem_global_op_tma_st.sum") or 0.0):
        return None
    t, ld, st, lld, lst = vals
    return max(0.0, t - ld - st - lld - lst)


def launch_record(row: KernelRow) -> dict:
    """Per-launch record in the model's keys (bytes, seconds); None where a metric is missing."""
    m = row.metrics
    lsu_ld = _get(m, "l1tex__t_bytes_pipe_lsu_mem_global_op_ld.sum")
    lsu_st = _get(m, "l1tex__t_bytes_pipe_lsu_mem_global_op_st.sum")
    tma_ld = _get(m, "l1tex__m_xbar2l1tex_read_bytes_mem_global_op_tma_ld.sum")
    tma_st = _get(m, "l1tex__m_l1tex2xbar_write_bytes_mem_global_op_tma_st.sum")
    t_bytes = _get(m, "l1tex__t_bytes.sum")
    rd = _add(lsu_ld, tma_ld) if lsu_ld is not None else None
    atom = atomic_bytes(m)
    wr = _add(lsu_st, tma_st, atom) if lsu_st is not None else None
    l2r = _get(m, "lts__t_sectors_srcunit_tex_op_read.sum")
    l2w = _get(m, "lts__t_sectors_srcunit_tex_op_write.sum")
    rec = {
        "name": row.name[len(KERNEL_PREFIX):] if row.name.startswith(KERNEL_PREFIX) else row.name,
        "kernel": row.name,
        "global_read_bytes": rd,
        "global_write_bytes": wr,
        "l2_read_bytes": None if l2r is None else l2r * SECTOR_BYTES,
        "l2_write_bytes": None if l2w is None else l2w * SECTOR_BYTES,
        "dram_read_bytes": _get(m, "dram__bytes_read.sum"),
        "dram_write_bytes": _get(m, "dram__bytes_write.sum"),
        "time_s": _get(m, "gpu__time_duration.sum"),
        # cross-check: all LSU traffic through the t-stage plus TMA = global read + write
        "global_bytes_l1tex_t": None if t_bytes is None else t_bytes + (tma_ld or 0.0) + (tma_st or 0.0),
        "global_atomic_bytes": atom,
        "grid": row.grid,
        "block": row.block,
        "metrics": dict(m),
    }
    return rec


def sum_records(kernels: list[dict]) -> dict:
    """Totals over launches, None for a key any launch lacks."""
    tot = {}
    for k in LEVEL_KEYS + ("global_bytes_l1tex_t",):
        vals = [r.get(k) for r in kernels]
        tot[k] = None if (not vals or any(v is None for v in vals)) else float(sum(vals))
    return tot


def assign_rows_to_cases(rows: list[KernelRow], expected: list[tuple[str, list[str]]]) -> dict[str, list[KernelRow]]:
    """Map profiled launches back to cases by order.

    expected: [(case name, [launch names in order]), ...] for the cases the runner finished,
    in the order it ran them.  Each launch name must match the kernel name (with or without
    the leading underscore).  Raises NcuError on any mismatch, naming the case and position."""
    out: dict[str, list[KernelRow]] = {}
    i = 0
    for case, names in expected:
        got = []
        for j, want in enumerate(names):
            if i >= len(rows):
                raise NcuError(f"ncu profiled {len(rows)} launches but case {case!r} expects launch #{j} "
                               f"{want!r} after them: some kernels were not profiled (see the ncu log)")
            r = rows[i]
            if r.name not in (want, KERNEL_PREFIX + want):
                raise NcuError(f"case {case!r}, launch #{j}: expected kernel {KERNEL_PREFIX + want!r}, ncu row "
                               f"{r.id} is {r.name!r}; the kernel names do not follow kernel_launches()")
            got.append(r)
            i += 1
        out[case] = got
    if i != len(rows):
        extra = ", ".join(sorted({r.name for r in rows[i:]}))
        raise NcuError(f"ncu profiled {len(rows) - i} launches more than the cases expect ({extra}); "
                       f"a case launches kernels its schedule does not list")
    return out


def assign_rows_by_launches(rows: list[KernelRow], done: list[dict],
                            kernel_regex: str = DEFAULT_KERNEL_REGEX) -> tuple[dict[str, list[KernelRow]], dict[str, str]]:
    """Like `assign_rows_to_cases`, but a case whose kernels differ from its schedule's launches
    fails alone instead of sinking the run.

    done: the case runner's lines in run order ({"case", "ok", "launches" (the schedule's),
    "launched" (what Triton actually launched inside the profiled region, or None)}).
    Rows are sliced per case by what was launched (the schedule's list where the runner could
    not record launches); a case whose launched names differ from its schedule's is returned
    in the errors, its rows skipped.  Raises NcuError only when the rows and the launches
    cannot be aligned at all."""
    pat = re.compile(kernel_regex)
    expected, errors, sliced = [], {}, {}
    for d in done:
        if not d.get("ok"):
            continue
        launched = d.get("launched")
        names = [n[len(KERNEL_PREFIX):] if n.startswith(KERNEL_PREFIX) else n
                 for n in (launched if launched is not None else [KERNEL_PREFIX + x for x in d["launches"]])
                 if pat.search(n)]
        expected.append((d["case"], names))
        if names != list(d["launches"]):
            errors[d["case"]] = (f"the kernels launched {names} but the schedule's kernel_launches() lists "
                                 f"{list(d['launches'])}: kernels and model disagree, not compared")
    mapped = assign_rows_to_cases(rows, expected)
    for case, rs in mapped.items():
        if case not in errors:
            sliced[case] = rs
    return sliced, errors


# --- the command line ----------------------------------------------------------------------
def ncu_path() -> str:
    exe = os.environ.get("NCU") or shutil.which("ncu")
    if not exe:
        for cand in ("/usr/local/cuda/bin/ncu", "/opt/nvidia/nsight-compute/ncu"):
            if os.path.exists(cand):
                return cand
        raise NcuError("ncu (Nsight Compute) is not on the PATH: install Nsight Compute (it ships with the CUDA "
                       "toolkit, e.g. /usr/local/cuda/bin/ncu) and add it to PATH, or set NCU=/path/to/ncu")
    return exe


def ncu_version(exe: str | None = None) -> str | None:
    try:
        out = subprocess.run([exe or ncu_path(), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError, NcuError):
        return None
    m = re.search(r"Version\s+(\S+)", out)
    return m.group(1) if m else (out.strip().splitlines()[-1] if out.strip() else None)


def available_metrics(chip: str, exe: str | None = None) -> set[str] | None:
    """Base metric names ncu knows for `chip` (e.g. 'gh100'), or None if it cannot say."""
    try:
        p = subprocess.run([exe or ncu_path(), "--query-metrics", "--chip", chip], capture_output=True,
                           text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    names = set(re.findall(r"^\s*([a-z0-9]+__[A-Za-z0-9_]+)", p.stdout, flags=re.M))
    return names or None


def filter_metrics(metrics: list[str], known: set[str] | None) -> tuple[list[str], list[str]]:
    """(kept, dropped): drop metrics whose base name ncu does not list for this chip."""
    if not known:
        return list(metrics), []
    kept, dropped = [], []
    for m in metrics:
        base = re.sub(r"\.(sum|avg|max|min)(\..*)?$", "", m)
        (kept if base in known else dropped).append(m)
    return kept, dropped


OPTIONAL_OPTIONS = ("--print-units", "--log-file", "--profile-from-start")


def supported_options(exe: str | None = None) -> set[str]:
    """Which of OPTIONAL_OPTIONS this ncu's --help lists (all of them if it cannot say)."""
    try:
        text = subprocess.run([exe or ncu_path(), "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    if "--metrics" not in text:
        return set(OPTIONAL_OPTIONS)
    return {o for o in OPTIONAL_OPTIONS if o in text}


def build_command(program: list[str], *, metrics: list[str] | None = None, kernel_regex: str = DEFAULT_KERNEL_REGEX,
                  log_file: str | None = None, exe: str | None = None, from_start: bool = False,
                  options: set[str] | None = None) -> list[str]:
    """The ncu command line: default cache control (flush before each kernel), clocks unlocked,
    only launches between cudaProfilerStart/Stop, only kernels matching `kernel_regex`, values in
    base units (bytes, ns: no rounding to 3 digits)."""
    opts = set(OPTIONAL_OPTIONS) if options is None else options
    cmd = [exe or ncu_path(), "--csv", "--clock-control", "none",
           "--metrics", ",".join(metrics or list(METRICS)), "-k", f"regex:{kernel_regex}"]
    if "--print-units" in opts:
        cmd[2:2] = ["--print-units", "base"]
    if not from_start:
        if "--profile-from-start" not in opts:
            raise NcuError("this ncu has no --profile-from-start option, so warm-up launches cannot be excluded; "
                           "use Nsight Compute 2020.1 or newer")
        cmd += ["--profile-from-start", "off"]
    if log_file and "--log-file" in opts:
        cmd += ["--log-file", log_file]
    return cmd + list(program)


_ERRORS = [
    ("ERR_NVGPUCTRPERM", "the GPU performance counters are not permitted for this user (ERR_NVGPUCTRPERM): run as "
     "root, or load the driver with NVreg_RestrictProfilingToAdminUsers=0 "
     "(see https://developer.nvidia.com/ERR_NVGPUCTRPERM)"),
    ("LibraryNotLoaded", "ncu could not load its profiling library (LibraryNotLoaded): this machine's runtime "
     "does not expose the counters (seen under gVisor); use a machine where ncu works (Firecracker, bare metal)"),
    ("Failed to find metric", "ncu does not know one of the metrics on this GPU: rerun with --metrics listing only "
     "those `ncu --query-metrics` shows"),
    ("No CUDA-capable device", "no GPU: ncu needs a CUDA device; run this on the GPU machine"),
    ("no CUDA GPUs are available", "no GPU: ncu needs a CUDA device; run this on the GPU machine"),
    ("CUDA driver version is insufficient", "the CUDA driver is older than the runtime; update the driver"),
]


def diagnose(text: str, returncode: int | None = None) -> str | None:
    """A one-line explanation (with the fix) for a failed ncu run, or None if nothing is recognised."""
    for key, msg in _ERRORS:
        if key in text:
            return msg
    if "No kernels were profiled" in text:
        return ("ncu profiled no kernel: the kernel-name filter matched nothing, or the program never called "
                "torch.cuda.profiler.start(); check the kernel names (launch names prefixed with '_')")
    if returncode not in (None, 0):
        errs = [ln for ln in text.splitlines() if "==ERROR==" in ln]
        if errs:
            return "ncu failed: " + errs[0].split("==ERROR==", 1)[1].strip()
    return None


def run_ncu(program: list[str], *, log_file: str, metrics: list[str] | None = None,
            kernel_regex: str = DEFAULT_KERNEL_REGEX, timeout_s: float | None = None, env: dict | None = None,
            echo=None, options: set[str] | None = None, report: str | None = None,
            report_reader: str = "csv") -> tuple[list[KernelRow], str]:
    """Run `program` under ncu; return (profiled launches in order, ncu's full text output).

    report: also keep ncu's own report at this path (.ncu-rep, opens in the Nsight Compute GUI);
    the rows are then read back from it (`read_report`: "csv" = `ncu --import ... --csv`, "module" =
    Nsight Compute's ncu_report Python module), as ncu prints none while exporting.

    Raises NcuError with a fix for the known failures.  Rows already printed are returned
    even when the program failed part-way (the caller maps the cases that finished)."""
    exe = ncu_path()
    cmd = build_command([*export_options(report), *program] if report else program, metrics=metrics,
                        kernel_regex=kernel_regex, log_file=log_file, exe=exe, options=options)
    if echo:
        echo("$ " + " ".join(cmd))
    import threading
    lines: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            errors="replace")

    def pump():  # show the runner's progress live, keep everything for the diagnosis
        for line in proc.stdout:
            lines.append(line)
            if echo:
                echo(line.rstrip("\n"))

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = "timeout"
    t.join(timeout=10)
    stdout, stderr = "".join(lines), ""
    log = ""
    if os.path.exists(log_file):
        with open(log_file, errors="replace") as f:
            log = f.read()
    text = "\n".join([log, stdout, stderr])
    try:  # everything ncu and the program printed, for the diagnosis afterwards
        with open(log_file + ".all", "w") as f:
            f.write(" ".join(cmd) + "\n" + text)
    except OSError:
        pass
    rows = parse_csv(log) or parse_csv(stdout)
    if not rows and report and os.path.exists(report):
        rows = read_report(report, reader=report_reader, exe=exe, options=options, metrics=metrics)
    why = diagnose(text, None if rc == "timeout" else rc)
    if rc == "timeout" and not rows:
        raise NcuError(f"ncu ran past its {timeout_s:.0f} s limit before printing results; measure fewer cases "
                       f"(--cases) or raise --ncu-timeout")
    if not rows:
        raise NcuError(why or f"ncu printed no results (exit status {rc}); the last lines were:\n"
                       + "\n".join(text.strip().splitlines()[-15:]))
    if why and rc not in (0,):
        if echo:
            echo(f"warning: {why}")
    return rows, text


# --- ncu's own report file (.ncu-rep) beside the CSV: `verification measure --ncu-rep` ----------
# (added for issue 10; open a kept report with `ncu-ui <file>.ncu-rep`, or print it again with
# `ncu --import <file>.ncu-rep --page details --csv`)
REPORT_SUFFIX = ".ncu-rep"


def export_options(report: str) -> list[str]:
    """Options that make ncu save its full report at `report` (which must end in .ncu-rep)."""
    if not str(report).endswith(REPORT_SUFFIX):
        raise ValueError(f"an ncu report path must end in {REPORT_SUFFIX}, got {report!r}")
    return ["--export", str(report), "--force-overwrite"]


def import_command(report: str, *, exe: str | None = None, options: set[str] | None = None) -> list[str]:
    """The ncu command that prints a saved report as the same details-page CSV as a live run."""
    opts = set(OPTIONAL_OPTIONS) if options is None else options
    cmd = [exe or ncu_path(), "--import", str(report), "--csv", "--page", "details"]
    if "--print-units" in opts:
        cmd += ["--print-units", "base"]
    return cmd


def rows_from_report(report: str, *, exe: str | None = None, options: set[str] | None = None,
                     timeout_s: float = 600) -> list[KernelRow]:
    """The launches of a saved .ncu-rep report, parsed like a live run's CSV."""
    cmd = import_command(report, exe=exe, options=options)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as e:
        raise NcuError(f"could not read the ncu report {report}: {e}") from None
    rows = parse_csv(r.stdout)
    if not rows:
        raise NcuError(f"ncu printed no results from the report {report} (exit status {r.returncode}): "
                       + (diagnose(r.stdout + r.stderr, r.returncode) or (r.stderr.strip().splitlines() or ["?"])[-1]))
    return rows


# --- reading a report with Nsight Compute's own Python module (ncu_report) ----------------------
# ncu ships `extras/python/ncu_report.py` (+ its native library) in its install folder; it is not on
# sys.path by default.  `report_module()` finds it from ncu's location; `rows_from_report_module`
# reads the same metrics the CSV holds, into the same KernelRow, so either reader feeds launch_record.
REPORT_MODULE = "ncu_report"
REPORT_READERS = ("csv", "module")
#: a folder holding ncu_report.py, tried first (for an ncu installed somewhere odd)
REPORT_MODULE_ENV = "NCU_REPORT_PYTHON"


def report_module_dirs(exe: str | None = None) -> list[str]:
    """Folders where ncu_report.py may be, most likely first: $NCU_REPORT_PYTHON, then extras/python
    beside ncu (the path on PATH and its resolved target: CUDA's bin/ncu is often a link or a wrapper
    script into nsight-compute-<version>/), then nsight-compute*/ beside CUDA's bin/ and under
    /opt/nvidia/nsight-compute/."""
    import glob
    dirs: list[str] = []
    if os.environ.get(REPORT_MODULE_ENV):
        dirs.append(os.environ[REPORT_MODULE_ENV])
    try:
        exe = exe or ncu_path()
    except NcuError:
        exe = None
    if exe:
        for d in (os.path.dirname(os.path.abspath(exe)), os.path.dirname(os.path.realpath(exe))):
            dirs.append(os.path.join(d, "extras", "python"))
            parent = os.path.dirname(d)  # .../cuda/bin -> .../cuda/nsight-compute-2025.3.1/extras/python
            dirs += sorted(glob.glob(os.path.join(parent, "nsight-compute*", "extras", "python")), reverse=True)
    dirs += sorted(glob.glob("/opt/nvidia/nsight-compute/*/extras/python"), reverse=True)
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def report_module(exe: str | None = None):
    """(ncu_report module, where it came from) or (None, why not)."""
    import importlib
    import sys
    if REPORT_MODULE in sys.modules:
        mod = sys.modules[REPORT_MODULE]
        return mod, getattr(mod, "__file__", "already imported")
    tried = []
    for d in report_module_dirs(exe):
        if not os.path.isfile(os.path.join(d, REPORT_MODULE + ".py")):
            tried.append(d)
            continue
        sys.path.insert(0, d)
        try:
            mod = importlib.import_module(REPORT_MODULE)
        except Exception as e:  # a native library that does not load here: say so, use the CSV
            sys.path.remove(d)
            sys.modules.pop(REPORT_MODULE, None)
            return None, f"{d}/{REPORT_MODULE}.py did not import ({type(e).__name__}: {e})"
        return mod, getattr(mod, "__file__", d)
    return None, ("Nsight Compute's ncu_report module was not found (looked in " + ", ".join(tried or ["nothing"])
                  + f"); set {REPORT_MODULE_ENV} to its extras/python folder")


def _dims(action, prefix: str) -> str:
    """'(x, y, z)' like the CSV's Grid Size / Block Size, from launch__grid_dim_x.. ('' if absent)."""
    vals = []
    try:
        for ax in "xyz":
            m = action.metric_by_name(f"{prefix}_{ax}")
            if m is None:
                return ""
            vals.append(int(m.as_double()))
    except Exception:  # the launch facts are a convenience, not a measurement
        return ""
    return "(" + ", ".join(map(str, vals)) + ")"


def rows_from_report_module(report: str, module, metrics: list[str] | None = None) -> list[KernelRow]:
    """The launches of a .ncu-rep report read with the ncu_report module: every action of every
    range in order (the CSV's ID order), the `metrics` (default METRICS) each action holds, values
    scaled to bytes / seconds / counts by their unit like the CSV's."""
    if not os.path.isfile(report):
        raise NcuError(f"no ncu report at {report}")
    try:
        ctx = module.load_report(str(report))
    except Exception as e:
        raise NcuError(f"ncu_report could not load {report}: {type(e).__name__}: {e}") from None
    names = list(metrics or METRICS)
    rows: list[KernelRow] = []
    for ri in range(ctx.num_ranges()):
        rng = ctx.range_by_idx(ri)
        for ai in range(rng.num_actions()):
            a = rng.action_by_idx(ai)
            row = KernelRow(len(rows), str(a.name()), _dims(a, "launch__grid_dim"), _dims(a, "launch__block_dim"))
            for name in names:
                m = a.metric_by_name(name)
                if m is None:
                    continue
                unit = m.unit() if hasattr(m, "unit") else ""
                f, base = unit_scale(unit or "")
                has = m.has_value() if hasattr(m, "has_value") else True
                row.metrics[name] = float(m.as_double()) * f if has else None  # the CSV's "n/a"
                row.units[name] = base
            rows.append(row)
    if not rows:
        raise NcuError(f"the ncu report {report} holds no profiled launch")
    return rows


def read_report(report: str, *, reader: str = "csv", exe: str | None = None, options: set[str] | None = None,
                metrics: list[str] | None = None) -> list[KernelRow]:
    """The launches of a saved report: reader "csv" (`ncu --import ... --csv`, the same details page as a
    live run) or "module" (ncu_report; NcuError naming why when it cannot be imported)."""
    if reader == "csv":
        return rows_from_report(report, exe=exe, options=options)
    if reader == "module":
        mod, why = report_module(exe)
        if mod is None:
            raise NcuError(f"cannot read {report} with the ncu_report module: {why}; use the csv reader")
        return rows_from_report_module(report, mod, metrics)
    raise ValueError(f"unknown report reader {reader!r}; allowed: {', '.join(REPORT_READERS)}")
