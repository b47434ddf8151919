"""Decode cases of the validation suite (issue 12): measured with ncu like the others, compared with memsim.

    python -m verification.suite_decode cases                      # list the cases
    python -m verification.suite_decode measure --out DIR           # on the GPU: ncu over every case -> DIR/decode_ncu.json
    python -m verification.suite_decode compare FILE [--json OUT]   # anywhere: model vs measured, per case and level
    python -m verification.suite_decode predict --random N --seed S --out F   # freeze the model's predictions (CPU)
    python -m verification.suite_decode compare FILE --predictions F      # frozen predictions vs measured

The case list is stdlib only (memsim.inference).  `measure` runs `run` (this module, mode "run") under
ncu with the shared command line of verification.ncu (default cache control: caches flushed before
each kernel; --clock-control none; only launches between cudaProfilerStart/Stop; kernel regex
``^_decode_``), maps the rows back to cases by `decode_launches()` order, and writes one JSON file with
provenance.  `compare` predicts each case with memsim.workloads_decode.simulate_decode (flush_l2=True,
as ncu measures) and prints errors = predicted / measured - 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, replace

from memsim.inference import DecodeProblem, DecodeSchedule, DeviceFacts
from memsim.inference import auto_num_splits_mean_field  # the pre-session-12 rule: committed sets keep their S

from .suite import DEFAULT_HW, Case, UnknownCaseError, select_from

KERNEL_REGEX = r"^_decode_"
#: cases whose measurement the model was calibrated on: none since the stream latency comes from the dram_stream
#: microbenchmark (it came from decode_b1_n8192_s1 until 2026-11-25 23:00, memsim/decode_calibration.toml)
CALIBRATION_CASES: tuple = ()


@dataclass(frozen=True)
class DecodeCase(Case):
    """A decode case: the attention suite's `Case` (launch names from the registry's `kernel_launches`, which
    dispatches decode too) with a DecodeProblem and a DecodeSchedule; its spec also carries the tags."""
    problem: DecodeProblem
    schedule: DecodeSchedule

    def to_spec(self) -> dict:
        return super().to_spec() | {"tags": list(self.tags)}


def _auto(p: DecodeProblem, s: DecodeSchedule) -> DecodeSchedule:
    from memsim.hardware import load_hardware
    c = auto_num_splits_mean_field(p, s, DeviceFacts.from_hardware(load_hardware(DEFAULT_HW)))
    return replace(s, num_splits=c)


def build_decode_suite() -> list:
    """H100 decode shapes of issue 12 (bf16, d=128, 32 q heads, 8 KV heads) plus ragged, paged, unpacked."""
    C = []
    base = DecodeSchedule(block_n=64, num_warps=4, num_stages=3)

    def P(b, ctx, nq=1, page=None, lens=None, hkv=8):
        lens = tuple(lens) if lens else (ctx,) * b
        return DecodeProblem(32, hkv, 128, (nq,) * len(lens), lens, dtype="bf16", page_size=page)

    for b, ctx in ((1, 8192), (1, 131072), (8, 8192), (8, 32768), (64, 16384)):
        p = P(b, ctx)
        s = _auto(p, base)
        C.append(DecodeCase(f"decode_b{b}_n{ctx}_auto", p, s, tags=("bandwidth",), note=f"auto = {s.num_splits} splits"))
    # split sweep on the shape where splitting matters most
    p = P(1, 8192)
    for S in (1, 4, 16, 64):
        C.append(DecodeCase(f"decode_b1_n8192_s{S}", p, replace(base, num_splits=S), tags=("splits",)))
    for page in (16, 64):
        p = P(8, 32768, page=page)
        C.append(DecodeCase(f"decode_b8_n32768_paged{page}_s1", p, base, tags=("paged",)))
        C.append(DecodeCase(f"decode_b8_n32768_paged{page}_prefetch_s1", p, replace(base, page_prefetch=True),
                            tags=("paged",), note="block-table entries loaded one tile ahead"))
        C.append(DecodeCase(f"decode_b8_n32768_paged{page}_auto", p, _auto(p, base), tags=("paged",)))
    p = P(4, 0, lens=(1000, 5000, 17, 30000))
    C.append(DecodeCase("decode_ragged_b4_auto", p, _auto(p, base), tags=("ragged",)))
    p = P(8, 8192)
    C.append(DecodeCase("decode_b8_n8192_unpacked_s1", p, replace(base, pack_gqa=False), tags=("gqa",),
                        note="one CTA per query head: K/V read 4x"))
    p = P(8, 8192, nq=4)
    C.append(DecodeCase("decode_b8_n8192_q4_auto", p, _auto(p, base), tags=("spec",)))
    names = [c.name for c in C]
    assert len(names) == len(set(names))
    return C


DECODE_SUITE = build_decode_suite()
BY_NAME = {c.name: c for c in DECODE_SUITE}


# --- random decode cases (issue 8 item 3 / issue 12 item 4: decode in the random sets) ------------------------
#: the space of random decode cases: what kernels.decode supports (one query length per batch)
RANDOM_HEADS = ((32, 8), (32, 32), (32, 4), (16, 1), (64, 8), (8, 8))
RANDOM_HEAD_DIMS = (64, 128, 256)
RANDOM_PAGES = (None, None, 16, 64, 256)
#: KV cache bytes a random case may hold on the GPU, and the total over a set
RANDOM_CASE_KV_BYTES = 2 << 30
RANDOM_SET_KV_BYTES = 16 << 30


def _log_uniform_int(rng, lo: int, hi: int) -> int:
    import math
    return max(lo, min(hi, int(round(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))))


def draw_random(n: int, seed: int, hardware: str = DEFAULT_HW) -> list:
    """n random decode cases (deterministic in seed): batch 1-64 and cache lengths 0-131072 (log-uniform; ragged
    batches in a third of the draws, with empty and length-1 caches possible), GQA/MQA/MHA, head_dim 64/128/256,
    bf16/fp16, 1-4 query tokens, contiguous or 16/64/256-token pages (page_prefetch either way), packed or not,
    block_n 16-128, 2-4 stages, 4 or 8 warps, the split count from the rule (half the draws) or drawn.  A draw whose
    shared memory does not fit the preset or whose cache exceeds RANDOM_CASE_KV_BYTES (or the set's budget) is
    drawn again."""
    import random

    from memsim.hardware import load_hardware
    from memsim.inference import candidate_splits, decode_sram_bytes_per_cta
    if n < 0:
        raise ValueError(f"--random must be >= 0, got {n}")
    hw = load_hardware(hardware)
    facts = DeviceFacts.from_hardware(hw)
    rng = random.Random(seed)
    out, total, tries = [], 0, 0
    while len(out) < n:
        tries += 1
        if tries > 100 * (n + 1):
            raise RuntimeError(f"could not draw {n} decode cases within the budgets (seed {seed})")
        hq, hkv = rng.choice(RANDOM_HEADS)
        d = rng.choice(RANDOM_HEAD_DIMS)
        dt = rng.choice(("bf16", "fp16"))
        b = _log_uniform_int(rng, 1, 64)
        nq = rng.choice((1, 1, 1, 2, 4))
        if rng.random() < 1 / 3 and b > 1:
            lens = tuple(rng.choice((0, 1, _log_uniform_int(rng, 1, 131072))) if rng.random() < 0.15
                         else _log_uniform_int(rng, 1, 131072) for _ in range(b))
        else:
            lens = (_log_uniform_int(rng, 1, 131072),) * b
        page = rng.choice(RANDOM_PAGES)
        p = DecodeProblem(hq, hkv, d, (nq,) * b, lens, dtype=dt, page_size=page)
        s = DecodeSchedule(block_n=rng.choice((16, 32, 64, 64, 128)), num_stages=rng.choice((2, 3, 3, 4)),
                           num_warps=rng.choice((4, 4, 8)), pack_gqa=rng.random() < 0.85,
                           page_prefetch=page is not None and rng.random() < 0.5)
        if decode_sram_bytes_per_cta(p, s) > hw.smem_per_block_bytes:
            continue
        kv = 2 * p.batch * p.capacity_kv * hkv * d * p.element_bytes
        if kv > RANDOM_CASE_KV_BYTES or total + kv > RANDOM_SET_KV_BYTES:
            continue
        if rng.random() < 0.5:
            c = auto_num_splits_mean_field(p, s, facts)
            how = "auto"
        else:
            c = rng.choice(candidate_splits(p, s))
            how = "drawn"
        s = replace(s, num_splits=c)
        total += kv
        name = (f"dr{seed}_{len(out):03d}_b{b}_n{max(lens)}{'r' if len(set(lens)) > 1 else ''}_h{hq}x{hkv}_d{d}_{dt}"
                f"_q{nq}_p{page or 0}{'f' if s.page_prefetch else ''}_bn{s.block_n}_st{s.num_stages}_w{s.num_warps}"
                f"{'' if s.pack_gqa else '_unpacked'}_s{c}")
        out.append(DecodeCase(name, p, s, hardware, tags=("random", f"seed{seed}"), note=f"{how} splits"))
    return out


def select(patterns=None) -> list:
    """Decode cases by name, shell pattern or 'tag:...'; all when empty; an unknown one exits with a one-line error."""
    try:
        return select_from(DECODE_SUITE, patterns, "python -m verification.suite_decode cases")
    except UnknownCaseError as e:
        raise SystemExit(str(e)) from None


def case_from_record(rec: dict) -> DecodeCase:
    from memsim.inference import decode_problem_from_dict, decode_schedule_from_dict
    return DecodeCase(rec["case"], decode_problem_from_dict(rec["problem"]), decode_schedule_from_dict(rec["schedule"]),
                      rec.get("hardware", DEFAULT_HW), tuple(rec.get("tags", ())))


def load_specs(path: str) -> list:
    """The cases of a specs file (`cases --json`, or the decode_cases.json `measure` writes)."""
    with open(path) as f:
        specs = json.load(f)
    return [replace(case_from_record({"case": x["name"], **x}), note=x.get("note", "")) for x in specs]


# --- on the GPU -------------------------------------------------------------------------------------
def run_cases(names: list, log=sys.stderr, cases=None) -> None:
    """Warm every case up, then launch each once between cudaProfilerStart/Stop (what ncu profiles)."""
    import torch

    from kernels.decode_kv import decode_launch
    from kernels.decode_testing import make_problem_inputs
    for c in (cases if cases is not None else select(names)):
        ins = make_problem_inputs(c.problem, "cuda", seed=1)
        decode_launch(c.problem, c.schedule, *ins)  # compile outside the profiled region
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        decode_launch(c.problem, c.schedule, *ins)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
        print(json.dumps({"case": c.name, "ok": True, "launches": c.launch_names()}), flush=True)
        del ins
        torch.cuda.empty_cache()


def measure(out_dir: str, patterns=None, timeout_s: float = 240.0, command: str = "", cases=None) -> str:
    """ncu over the selected cases (or `cases`, e.g. a random draw); writes OUT_DIR/decode_ncu.json (one record per
    case) and returns its path."""
    from memsim.io import base_provenance, write_json

    from . import ncu
    cases = cases if cases is not None else select(patterns)
    os.makedirs(out_dir, exist_ok=True)
    log = os.path.join(out_dir, "decode_ncu.log")
    specs = os.path.join(out_dir, "decode_cases.json")
    write_json(specs, [c.to_spec() | {"note": c.note} for c in cases], overwrite=True)
    prog = [sys.executable, "-m", "verification.suite_decode", "run", "--cases-json", specs]
    rows, text = ncu.run_ncu(prog, log_file=log, kernel_regex=KERNEL_REGEX, timeout_s=timeout_s, echo=print)
    done = [json.loads(ln) for ln in text.splitlines() if ln.startswith('{"case"')]
    finished = [c for c in cases if c.name in {d["case"] for d in done}]
    mapped = ncu.assign_rows_to_cases(rows, [(c.name, c.launch_names()) for c in finished])
    prov = base_provenance(command or " ".join(sys.argv))
    prov["ncu"] = ncu.ncu_version()
    try:
        import torch
        import triton
        prov.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                    cuda=torch.version.cuda)
    except Exception as exc:  # provenance is best effort, never a reason to lose measurements
        prov["provenance_error"] = repr(exc)
    recs = []
    for c in finished:
        ks = [ncu.launch_record(r) for r in mapped[c.name]]
        for k in ks:
            k.pop("metrics", None)
        recs.append({"case": c.name, "problem": c.problem.to_dict(), "schedule": c.schedule.to_dict(),
                     "hardware": c.hardware, "tags": list(c.tags), "kernels": ks, "total": ncu.sum_records(ks)})
    path = os.path.join(out_dir, "decode_ncu.json")
    write_json(path, {"provenance": prov, "records": recs, "missing": [c.name for c in cases if c not in finished]},
               overwrite=True)
    return path


# --- anywhere: model vs measured --------------------------------------------------------------------
LEVELS = ("global_read_bytes", "global_write_bytes", "l2_read_bytes", "dram_read_bytes", "dram_write_bytes",
          "dram_bytes", "time_s")
#: levels that are sums of measured levels (issue 12's "DRAM bytes": what the DRAM moved, read + write)
SUM_LEVELS = {"dram_bytes": ("dram_read_bytes", "dram_write_bytes")}


def predict(cases: list, command: str = "") -> dict:
    """Frozen predictions of `cases` (what `compare --predictions` reads): provenance (the model's git commit),
    and per case its spec and simulate_decode's totals and kernels (L2 flushed before each kernel, as ncu does)."""
    from memsim.io import base_provenance
    from memsim.workloads_decode import simulate_decode
    out = {}
    for c in cases:
        r = simulate_decode(c.problem, c.schedule, c.hardware, flush_l2=True)
        out[c.name] = {"spec": c.to_spec() | {"note": c.note}, "total": r["total"],
                       "kernels": [{k: v for k, v in x.items()} for x in r["kernels"]],
                       "memory_source": r["memory_source"]}
    return {"provenance": base_provenance(command or " ".join(sys.argv)), "predictions": out}


class FrozenMismatch(ValueError):
    """A measured case that the frozen predictions do not hold (or hold for another problem/schedule)."""


def _frozen(predictions: dict, c: DecodeCase) -> dict:
    hit = predictions["predictions"].get(c.name)
    if hit is None:
        raise FrozenMismatch(f"case {c.name} has no frozen prediction (the predictions file holds "
                         f"{len(predictions['predictions'])} cases of another draw?)")
    spec = hit["spec"]
    if spec["problem"] != c.problem.to_dict() or spec["schedule"] != c.schedule.to_dict():
        raise FrozenMismatch(f"case {c.name}: the measured problem/schedule differ from the frozen prediction's")
    return hit


def compare(path: str, predictions: dict | None = None) -> list:
    """[{case, level: (predicted, measured, error)}] for every record of a decode_ncu.json file; predicted by
    the model now, or taken from frozen `predictions` (`predict`), which must hold every measured case."""
    from memsim.workloads_decode import simulate_decode
    with open(path) as f:
        data = json.load(f)
    out = []
    for rec in data["records"]:
        c = case_from_record(rec)
        pred = (_frozen(predictions, c) if predictions is not None
                else simulate_decode(c.problem, c.schedule, c.hardware, flush_l2=True))
        row = {"case": c.name, "num_splits": c.schedule.num_splits, "kv_bytes": c.problem.kv_bytes(),
               "calibration": c.name in CALIBRATION_CASES}
        for lv in LEVELS:
            if lv in SUM_LEVELS:
                parts = [rec["total"].get(x) for x in SUM_LEVELS[lv]]
                m = None if None in parts else sum(parts)
                pv = sum(pred["total"][x] for x in SUM_LEVELS[lv])
            else:
                m = rec["total"].get(lv)
                pv = pred["total"]["gpu_time_s" if lv == "time_s" else lv]
            row[lv] = (pv, m, (pv / m - 1.0) if m else None)
        row["measured_kv_read_Bps"] = c.problem.kv_bytes() / rec["total"]["time_s"] if rec["total"].get("time_s") else None
        out.append(row)
    return out


def _fmt(rows) -> str:
    lines = [f"{'case':40s} {'S':>3s} " + " ".join(f"{lv.replace('_bytes', ''):>18s}" for lv in LEVELS)]
    for r in rows:
        cells = []
        for lv in LEVELS:
            pv, m, e = r[lv]
            cells.append(f"{'n/a':>18s}" if e is None else f"{e * 100:+7.1f}% ({m:9.3g})")
        lines.append(f"{r['case']:40s} {r['num_splits']:3d} " + " ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verification.suite_decode", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("cases", help="list the decode cases")
    cs = sub.choices["cases"]
    cs.add_argument("--random", type=int, default=None, help="list N random decode cases instead (with --seed)")
    cs.add_argument("--seed", type=int, default=1)
    cs.add_argument("--json", default=None, help="also write the case specs here (kernels.decode_compiled --specs)")
    r = sub.add_parser("run", help="(inside ncu) launch the cases once each between profiler start/stop")
    r.add_argument("--cases", default="")
    r.add_argument("--cases-json", default=None, help="case specs written by measure (random draws)")
    m = sub.add_parser("measure", help="ncu over the cases (GPU)")
    m.add_argument("--out", required=True)
    m.add_argument("--cases", default="")
    m.add_argument("--random", type=int, default=None, help="measure N random decode cases (with --seed)")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--cases-json", default=None, help="measure exactly these case specs (e.g. a frozen draw's)")
    m.add_argument("--timeout", type=float, default=240.0)
    pr = sub.add_parser("predict", help="freeze the model's predictions of a random draw (or case specs)")
    pr.add_argument("--random", type=int, default=None)
    pr.add_argument("--seed", type=int, default=1)
    pr.add_argument("--cases-json", default=None, help="case specs (suite_decode cases --json / measure)")
    pr.add_argument("--out", required=True, help="predictions JSON (refused if it exists)")
    c = sub.add_parser("compare", help="model vs a decode_ncu.json")
    c.add_argument("file")
    c.add_argument("--json", default=None, help="write the rows as JSON here")
    c.add_argument("--predictions", default=None, help="frozen predictions (predict) instead of the model now")
    a = ap.parse_args(argv)
    if a.cmd == "cases":
        listed = draw_random(a.random, a.seed) if a.random is not None else DECODE_SUITE
        for cs in listed:
            print(f"{cs.name:40s} S={cs.schedule.num_splits:<3d} kv={cs.problem.kv_bytes() / 1e6:9.1f} MB  {cs.note}")
        if a.json:
            from memsim.io import write_json
            write_json(a.json, [c.to_spec() | {"note": c.note} for c in listed])
    elif a.cmd == "run":
        if a.cases_json:
            run_cases([], cases=load_specs(a.cases_json))
        else:
            run_cases([x for x in a.cases.split(",") if x])
    elif a.cmd == "measure":
        rnd = draw_random(a.random, a.seed) if a.random is not None else None
        if a.cases_json:
            rnd = load_specs(a.cases_json)
        print(measure(a.out, [x for x in a.cases.split(",") if x] or None, a.timeout, cases=rnd))
    elif a.cmd == "predict":
        if (a.random is None) == (a.cases_json is None):
            raise SystemExit("predict: give exactly one of --random N (with --seed) or --cases-json F")
        listed = load_specs(a.cases_json) if a.cases_json else draw_random(a.random, a.seed)
        from memsim.io import write_json
        write_json(a.out, predict(listed))
        print(f"froze {len(listed)} predictions in {a.out}")
    else:
        frozen = None
        if a.predictions:
            with open(a.predictions) as f:
                frozen = json.load(f)
        rows = compare(a.file, frozen)
        print(_fmt(rows))
        if a.json:
            from memsim.io import write_json
            write_json(a.json, {"source": a.file, "rows": rows}, overwrite=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
