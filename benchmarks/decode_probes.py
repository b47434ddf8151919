"""Session-9 decode probes (issue 12): real decode launches chosen to isolate two of the model's misses.

    python benchmarks/decode_probes.py --json F      # write the probe specs (what `suite_decode measure --cases-json` runs)
    python benchmarks/decode_probes.py --compare RUN/decode_ncu.json [--split|--combine]   # model vs measured, per launch

Two groups (bf16, contiguous unless named, bn64 / 3 stages / 4 warps, one query token):

* ``pc`` -- the COMBINE launch at 32 .. 8448 CTAs: 32 query / 8 KV heads, every split exactly one 64-key tile
  (cache S x 64 keys), so the split launch is short and the combine's CTA count (= batch x 32 rows) is the variable;
  S = 4 (BLOCK_S 16) and 32 (BLOCK_S 32), d = 64 / 128 / 256.  The held-out combines missed by -23..-33 % at
  1000-1800 CTAs and at d = 256 (notes/decode.md, session 9).
* ``pw`` -- the SPLIT launch at 10 waves (3960 CTAs of 16 query / 4 KV heads, 3 CTAs per SM): the `loop2` short
  points' contiguous S = 1 kernels (control, re-measured on the same card), the same per-CTA work split three ways
  (S = 3, 192 keys per split: partial writes instead of O), one tile per split, an empty fourth split, 16- and 64-row
  pages with prefetch, and a ragged batch (64 / 320 keys, mean 192).  Session 8 found the S = 1 kernels run
  faster than the model's wave hand-over says and three split / ragged / paged multi-wave cases slower: these points
  say which property (the partial writes, the empty splits, the pages, the raggedness) goes with the difference.

ncu as every decode case (`python -m verification.suite_decode measure --cases-json F --out DIR`): one launch per
case, caches flushed before every kernel, `--clock-control none`.  No GPU here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def probe_cases() -> list:
    """The probe cases (verification.suite_decode.DecodeCase), in measuring order."""
    sys.path.insert(0, ROOT)
    from memsim.inference import DecodeProblem, DecodeSchedule
    from verification.suite_decode import DecodeCase
    out = []

    def add(name, prob, sch, note):
        out.append(DecodeCase(name, prob, sch, "h100-sxm", ("probe", "session9"), note))

    for d, S, batches in ((128, 4, (1, 4, 16, 33, 66, 132, 264)), (128, 32, (1, 16, 66, 264)),
                          (256, 4, (1, 16, 66)), (256, 32, (1, 16, 66)), (64, 4, (16, 132))):
        bn = 64 if d <= 128 else 32
        for b in batches:
            add(f"pc_d{d}_s{S}_b{b}", DecodeProblem.uniform(b, 32, 8, d, S * bn, dtype="bf16"),
                DecodeSchedule(num_splits=S, block_n=bn), f"combine of {b * 32} CTAs, one tile per split")
    for d in (128, 256):
        add(f"pw_d{d}_s1_n192", DecodeProblem.uniform(990, 16, 4, d, 192, dtype="bf16"),
            DecodeSchedule(num_splits=1, block_n=64), "loop2 control: 3960 CTAs x 3 tiles")
        add(f"pw_d{d}_s3_n576", DecodeProblem.uniform(330, 16, 4, d, 576, dtype="bf16"),
            DecodeSchedule(num_splits=3, block_n=64), "3960 split CTAs x 3 tiles, partial writes")
    add("pw_d128_s1_n64", DecodeProblem.uniform(990, 16, 4, 128, 64, dtype="bf16"),
        DecodeSchedule(num_splits=1), "loop2 control: 3960 CTAs x 1 tile")
    add("pw_d128_s3_n192", DecodeProblem.uniform(330, 16, 4, 128, 192, dtype="bf16"),
        DecodeSchedule(num_splits=3), "3960 split CTAs x 1 tile")
    add("pw_d128_s4_n576", DecodeProblem.uniform(330, 16, 4, 128, 576, dtype="bf16"),
        DecodeSchedule(num_splits=4), "S = 4 over 9 tiles: 3 tiles, 3, 3 and an empty split")
    for page in (16, 64):
        add(f"pw_d128_s1_n192_p{page}f", DecodeProblem.uniform(990, 16, 4, 128, 192, dtype="bf16", page_size=page),
            DecodeSchedule(num_splits=1, page_prefetch=True), f"{page}-row pages + prefetch, 3960 CTAs x 3 tiles")
    lens = tuple(64 if i % 2 else 320 for i in range(990))
    add("pw_d128_s1_ragged", DecodeProblem(16, 4, 128, (1,) * 990, lens, dtype="bf16"),
        DecodeSchedule(num_splits=1), "ragged 64 / 320 keys (mean 192), 3960 CTAs")
    return out


#: the three development cases the first-step queue cap made worse (all 8 warps), re-measured beside the w8 probes
REMEASURED = (("reports/h100-sxm/decode/seed1126/decode_cases.json", "dr1126_015_"),
              ("reports/h100-sxm/decode/seed112602/decode_cases.json", "dr112602_014_"),
              ("reports/h100-sxm/decode/seed261126/decode_cases.json", "dr261126_011_"))


def probe_cases_w8() -> list:
    """The ``pw8`` group (session 9, second call): the multi-wave split probes at 8 warps beside their 4-warp twins
    (16 query / 4 KV heads, 3960 CTAs), lone CTAs (4) for the intercepts, and the three development cases the first
    step's queue cap made worse (all 8-warp multi-wave launches) measured again."""
    sys.path.insert(0, ROOT)
    from dataclasses import replace

    from memsim.inference import DecodeProblem, DecodeSchedule
    from verification.suite_decode import DecodeCase, load_specs
    out = []

    def add(name, prob, sch, note):
        out.append(DecodeCase(name, prob, sch, "h100-sxm", ("probe", "session9", "w8"), note))

    for d in (64, 128, 256):
        add(f"pw8_d{d}_s1_n192", DecodeProblem.uniform(990, 16, 4, d, 192, dtype="bf16"),
            DecodeSchedule(num_splits=1, num_warps=8), "8 warps: 3960 CTAs x 3 tiles")
    add("pw8_d128_s3_n576", DecodeProblem.uniform(330, 16, 4, 128, 576, dtype="bf16"),
        DecodeSchedule(num_splits=3, num_warps=8), "8 warps: 3960 split CTAs x 3 tiles")
    add("pw8_d128_s1_n64", DecodeProblem.uniform(990, 16, 4, 128, 64, dtype="bf16"),
        DecodeSchedule(num_splits=1, num_warps=8), "8 warps: 3960 CTAs x 1 tile")
    for w in (4, 8):
        add(f"pw{w}_d128_s1_n192_b1", DecodeProblem.uniform(1, 16, 4, 128, 192, dtype="bf16"),
            DecodeSchedule(num_splits=1, num_warps=w), f"{w} warps: 4 lone CTAs x 3 tiles")
    for path, prefix in REMEASURED:
        c = next(x for x in load_specs(os.path.join(ROOT, path)) if x.name.startswith(prefix))
        out.append(replace(c, name="re_" + c.name, tags=("probe", "session9", "remeasured")))
    return out


def compare(path: str, which: str | None = None, cases=None) -> list:
    """[(case, launch, measured s, predicted s, error, predicted launch)] per launch of a measured probe file, the
    model now; `cases`: only the records whose name passes this predicate (the others are not simulated)."""
    sys.path.insert(0, ROOT)
    from memsim.workloads_decode import simulate_decode
    from verification.suite_decode import case_from_record
    with open(path) as f:
        data = json.load(f)
    rows = []
    for rec in data["records"]:
        if cases is not None and not cases(rec["case"]):
            continue
        c = case_from_record(rec)
        pred = simulate_decode(c.problem, c.schedule, c.hardware, flush_l2=True)
        pk = {k["name"]: k for k in pred["kernels"]}
        for k in rec["kernels"]:
            name = k["name"].lstrip("_")
            if which and not name.endswith(which):
                continue
            pt = pk[name]["time_s"]
            rows.append((c.name, name, k["time_s"], pt, pt / k["time_s"] - 1, pk[name]))
    return rows


def combine_facts_of(path: str, hw_name: str = "h100-sxm") -> dict:
    """The combine figures of a measured probe run (the ``pc`` cases, S = 4 and 32):

    * ``slopes`` [[head dim, bytes per CTA, s], ...]: the slope of the measured combine time over CTAs per SM
      (num_ctas / SMs) of the points of one head dim and split count with >= 3.5 CTAs per SM (least squares; what
      each further CTA on an SM adds); ``interval_s`` {head dim: s}: the slope of the fewest partials (4) per head
      dim -- the part that is not the DRAM's (the model books the bytes on its DRAM link);
    * ``first_round`` [[bytes, s], ...]: at <= 1 CTA per SM, the measured combine time minus the launch
      (`launch_overhead_s`) and the sequence-length load before the partials (`dependent_loads_before_stream` x
      `mem_latency_s`), by the bytes a CTA reads (its non-empty partials x (d + 1) x 4); equal byte counts averaged.
    Nothing here is a decode case: the probes are one-tile splits chosen to vary the combine alone."""
    sys.path.insert(0, ROOT)
    from memsim.hardware import load_hardware
    from memsim.inference import DeviceFacts, dependent_loads_before_stream, nonempty_splits
    from verification.suite_decode import case_from_record
    hw = load_hardware(hw_name)
    f = DeviceFacts.from_hardware(hw)
    with open(path) as fh:
        data = json.load(fh)
    if "H100" not in (data.get("provenance") or {}).get("gpu", ""):
        raise ValueError(f"{path}: not an H100 run; the h100-sxm preset takes H100 runs only")
    slope_pts: dict = {}
    first: dict = {}
    rows = []
    for rec in data["records"]:
        if not rec["case"].startswith("pc_"):
            continue
        c = case_from_record(rec)
        k = next((x for x in rec["kernels"] if x["name"] == "decode_combine"), None)
        if k is None or not k.get("time_s"):
            continue
        p, s = c.problem, c.schedule
        ctas = p.batch * p.heads_q * p.max_seq_q
        per_sm = ctas / hw.num_sms
        nbytes = nonempty_splits(p.read_seqlens_kv[0], s.num_splits, s.block_n) * (p.head_dim + 1) * 4
        rows.append({"case": c.name, "ctas": ctas, "head_dim": p.head_dim, "num_splits": s.num_splits,
                     "bytes_per_cta": nbytes, "time_s": k["time_s"]})
        if per_sm >= 3.5:
            slope_pts.setdefault((p.head_dim, nbytes), []).append((per_sm, k["time_s"]))
        if per_sm <= 1.0:
            head = dependent_loads_before_stream(p, s, "decode_combine") * f.mem_latency_s
            first.setdefault(nbytes, []).append(k["time_s"] - hw.launch_overhead_s - head)
    slopes = []
    for (d, nbytes), pts in sorted(slope_pts.items()):
        if len(pts) >= 2:
            xs, ys = zip(*pts)
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            slopes.append([d, nbytes, sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)])
    # the fixed part: the fewest partials per head dim (4: 1-4 KB, an SM's DRAM share of it <= 0.2 us); the 32-partial
    # slopes (0.85 / 1.47 us at 16.5 / 33 KB) are about that + the bytes at the SM's DRAM share: the DRAM link's
    interval = {str(d): v for d, nb, v in sorted(slopes, key=lambda x: (x[0], -x[1]))}
    return {"run": os.path.relpath(os.path.abspath(path), ROOT), "interval_s": interval, "slopes": slopes,
            "first_round": [[b, statistics.mean(v)] for b, v in sorted(first.items())], "points": rows,
            "method": "benchmarks/decode_probes.py combine_facts_of: interval_s = least-squares slope of the "
                      "combine's ncu time over CTAs per SM (>= 3.5 per SM) per head dim and bytes per CTA (slopes), interval_s = the 4-partial slope per head dim; first_round = combine time at <= 1 CTA "
                      "per SM - launch_overhead_s - one mem_latency_s (the sequence-length load)"}


def merge_combine(path: str, table: str | None = None) -> dict:
    """Write `combine_facts_of(path)` into the compiled table's "measured_loop" (h100-sxm) as "combine"."""
    sys.path.insert(0, ROOT)
    from memsim import inference
    from memsim.io import write_json
    out = combine_facts_of(path)
    tpath = table or str(inference.COMPILED_FILE)
    with open(tpath) as fh:
        tab = json.load(fh)
    tab.setdefault("measured_loop", {}).setdefault("h100-sxm", {})["combine"] = out
    write_json(tpath, tab, overwrite=True)
    inference._COMPILED.clear()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the probe specs here")
    ap.add_argument("--w8", action="store_true", help="(--json) the pw8 group instead (8-warp multi-wave probes)")
    ap.add_argument("--compare", help="a measured decode_ncu.json of the probes")
    ap.add_argument("--split", action="store_true", help="(--compare) split launches only")
    ap.add_argument("--combine", action="store_true", help="(--compare) combine launches only")
    ap.add_argument("--merge-combine", metavar="RUN",
                    help="a measured probe run's decode_ncu.json: write its combine figures (`combine_facts_of`) "
                         "into memsim/decode_compiled_sm90.json (measured_loop, h100-sxm)")
    a = ap.parse_args(argv)
    if a.json:
        sys.path.insert(0, ROOT)
        from memsim.io import write_json
        cs = probe_cases_w8() if a.w8 else probe_cases()
        write_json(a.json, [c.to_spec() | {"tags": list(c.tags), "note": c.note} for c in cs], overwrite=False)
        print(f"{a.json}: {len(cs)} probe cases")
    if a.merge_combine:
        out = merge_combine(a.merge_combine)
        print("interval_s", {d: round(v * 1e6, 3) for d, v in out["interval_s"].items()}, "us; slopes",
              [(d, b, round(v * 1e6, 3)) for d, b, v in out["slopes"]], "us;",
              "first_round", [(b, round(t * 1e6, 2)) for b, t in out["first_round"]], "us")
    if a.compare:
        which = "split" if a.split else "combine" if a.combine else None
        rows = compare(a.compare, which)
        for case, name, mt, pt, e, k in rows:
            print(f"{case:28s} {name:15s} ctas {k['num_ctas']:6d} /SM {k['ctas_per_sm']:2d} "
                  f"meas {mt * 1e6:8.2f} us  pred {pt * 1e6:8.2f} us  {e * 100:+6.1f} %")
        if rows:
            print(f"median |error| {statistics.median(abs(r[4]) for r in rows) * 100:.1f} %, "
                  f"worst {max(abs(r[4]) for r in rows) * 100:.1f} % ({len(rows)} launches)")
    if not (a.json or a.compare or a.merge_combine):
        for c in probe_cases():
            print(c.name, "|", c.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
