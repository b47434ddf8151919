#!/usr/bin/env bash
# verification/ncu_rep_check.sh: on the GPU machine, check `verification measure --ncu-rep` end to end
# (issue 10 item 3) by reading one small suite case's metrics three ways and comparing them:
#   live    : the CSV ncu prints: run B's own log if this ncu prints it while exporting, else run A (a
#             separate ncu process WITHOUT --export, started only then)
#   import  : `ncu --import <report> --csv --page details` of the report kept by run B (--ncu-rep)
#   module  : Nsight Compute's ncu_report Python module (extras/python beside ncu) on the same report
# (plus "live_b": run B's own log, in case this ncu prints the CSV while exporting).
#
#   set -o pipefail; PYTHONPATH=. bash verification/ncu_rep_check.sh 2>&1 | tail -40
#
# Needs $OUT (folder for the results), ncu on PATH, a GPU; about 25-60 s (one or two short measure runs, no
# timing pass). Writes under $OUT: ncu_rep_check.json (the three readings per launch and level, relative
# differences, where ncu and ncu_report were found), ncu_rep_check.ncu-rep (if < 1 MB),
# ncu_rep_check.import.csv and ncu_rep_check.live.csv (small), measure_a.log, measure_b.log.
# Exit status: 0 = all three readings found and import == module exactly; 1 = a reading missing or the
# two readers of the same report disagree (the JSON and the last lines say which); 2 = could not run.
# Prints a 5-line table last (level, the three values of the case's first launch, the largest relative
# difference).  Lead: commit ncu_rep_check.{ncu-rep,import.csv,live.csv,json} to tests/fixtures/ncu/report/
# (then tests/test_verification_ncu_report.py compares them without a GPU; the JSON says which run is "live").
set -u -o pipefail

die() { echo "ncu_rep_check: error: $*" >&2; exit 2; }
[ -n "${OUT:-}" ] || die "OUT is not set: give the folder the results go to (OUT=/tmp/out bash $0)"
mkdir -p "$OUT" || die "cannot create OUT=$OUT"
[ -f verification/measure.py ] || die "run from the repository root (verification/measure.py not found in $PWD)"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
CASE=${CASE:-flash2_fwd_d64_n512}   # one launch, ~2 ms under ncu; any suite case name works
NCU_BIN=$(command -v ncu || true)
[ -n "${NCU:-}" ] && NCU_BIN=$NCU
[ -n "$NCU_BIN" ] || die "ncu is not on PATH (and NCU is not set)"
echo "ncu: $NCU_BIN -> $(readlink -f "$NCU_BIN") ($("$NCU_BIN" --version 2>/dev/null | tail -1))"
W=$(mktemp -d /tmp/ncu_rep_check.XXXXXX) || die "mktemp failed"

run_measure() {  # $1 = a|b, rest = extra flags
  local tag=$1; shift
  timeout 150 "$PY" -m verification measure --hw h100-sxm --cases "$CASE" --data-dir "$W/$tag/{gpu}" --no-timing \
      --ncu-timeout 120 "$@" > "$OUT/measure_$tag.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "measure run $tag failed (exit $rc); its last lines:" >&2
    tail -15 "$OUT/measure_$tag.log" >&2
  fi
  return $rc
}

echo "run B: $CASE with --ncu-rep"
run_measure b --ncu-rep || die "run B failed; see $OUT/measure_b.log"
# does this ncu print the CSV while exporting? then run B's own log is the live reading (same run) and run A
# (a second ncu process, ~20 s) is skipped
LIVE_B=$("$PY" -c "import glob,sys; from verification import ncu as N; fs=glob.glob(sys.argv[1]); \
print(len(N.parse_csv(open(fs[0], errors='replace').read())) if len(fs) == 1 else 0)" "$W/b/*/raw/ncu_*.log") \
  || die "could not read run B's ncu log under $W/b"
if [ "$LIVE_B" -gt 0 ]; then
  echo "run B's log holds the live CSV ($LIVE_B launches): run A skipped"
else
  echo "run A: $CASE without --ncu-rep (live CSV; ncu printed none while exporting)"
  run_measure a || die "run A failed; see $OUT/measure_a.log"
fi

"$PY" - "$W" "$CASE" "$OUT" <<'EOF'
import glob, json, os, sys
from verification import ncu as N
from memsim.io import write_atomic, write_json

w, case, out = sys.argv[1:4]
LEVELS = N.LEVEL_KEYS


def one(pattern, what):
    got = sorted(glob.glob(pattern))
    if len(got) != 1:
        sys.exit(f"ncu_rep_check: error: expected one {what} ({pattern}), found {got}")
    return got[0]


have_a = bool(glob.glob(f"{w}/a/*/{case}.json"))
src = "a" if have_a else "b"  # where the live CSV comes from (see the shell part)
rec_a = json.load(open(one(f"{w}/{src}/*/{case}.json", f"record of run {src.upper()}")))
rec_b_path = one(f"{w}/b/*/{case}.json", "record of run B")
rec_b = json.load(open(rec_b_path))
gdir_b = os.path.dirname(rec_b_path)
result = {"case": case, "ncu": N.ncu_path(), "ncu_resolved": os.path.realpath(N.ncu_path()),
          "ncu_version": N.ncu_version(), "gpu": rec_b["provenance"].get("gpu"), "readings": {}, "errors": {}}
if not rec_b.get("ncu_reports"):
    sys.exit("ncu_rep_check: error: run B's record names no ncu_reports: --ncu-rep did not keep a report")
report = os.path.join(gdir_b, rec_b["ncu_reports"][0])
result["report_bytes"] = os.path.getsize(report)

# live (run A, or run B when it printed the CSV while exporting): the CSV ncu printed into the log kept in raw/
log_a = one(f"{w}/{src}/*/raw/ncu_*.log", f"ncu log of run {src.upper()}")
result["live_from"] = "run A (separate ncu process, no --export)" if have_a else "run B itself (CSV printed while exporting)"
text_a = open(log_a, errors="replace").read()
rows = {"live": N.parse_csv(text_a)}
live_csv = "\n".join(ln for ln in text_a.splitlines() if ln.startswith('"')) + "\n"
write_atomic(f"{out}/ncu_rep_check.live.csv", live_csv, overwrite=True)
# live_b: does this ncu also print the CSV while exporting? (then run_ncu never needs the report)
rows["live_b"] = N.parse_csv(open(one(f"{w}/b/*/raw/ncu_*.log", "ncu log of run B"), errors="replace").read())
# import: ncu --import <report> --csv --page details
import subprocess
cmd = N.import_command(report, options=N.supported_options())
p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=120)
write_atomic(f"{out}/ncu_rep_check.import.csv", p.stdout, overwrite=True)
rows["import"] = N.parse_csv(p.stdout)
if not rows["import"]:
    result["errors"]["import"] = f"exit {p.returncode}: {p.stderr.strip()[-400:]}"
# module: ncu_report from extras/python
mod, where = N.report_module()
result["ncu_report_module"] = where
if mod is None:
    rows["module"] = []
    result["errors"]["module"] = where
else:
    try:
        rows["module"] = N.rows_from_report_module(report, mod)
    except Exception as e:
        rows["module"] = []
        result["errors"]["module"] = f"{type(e).__name__}: {e}"

for way, rs in rows.items():
    result["readings"][way] = [{"name": r.name, "grid": r.grid, "block": r.block,
                                **{k: N.launch_record(r)[k] for k in LEVELS}, "metrics": r.metrics,
                                "units": r.units} for r in rs]
# the records themselves (what measure wrote): run B read its rows back from the report
result["record_a_total"] = rec_a["total"]
result["record_b_total"] = rec_b["total"]


def rel(a, b):
    if a is None or b is None:
        return None
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


diffs = {}
ref = result["readings"].get("import") or []
for way in ("live", "live_b", "module"):
    got = result["readings"].get(way) or []
    if not got or not ref:
        continue
    if [g["name"] for g in got] != [r["name"] for r in ref]:
        result["errors"][way] = f"launch names differ: {[g['name'] for g in got]} vs import {[r['name'] for r in ref]}"
        continue
    diffs[way] = {k: max((rel(g[k], r[k]) or 0.0) for g, r in zip(got, ref)) for k in LEVELS}
    # every raw metric too (module vs import must be identical: same file, two readers)
    diffs[way]["all_metrics_max"] = max((rel(g["metrics"].get(m), v) or 0.0)
                                        for g, r in zip(got, ref) for m, v in r["metrics"].items())
result["max_rel_diff_vs_import"] = diffs
same_report_ok = "module" in diffs and diffs["module"]["all_metrics_max"] <= 1e-12
result["verdict"] = {
    "three_readings": all(result["readings"].get(w) for w in ("live", "import", "module")),
    "import_equals_module": same_report_ok,
    "note": "when live is run A (a separate ncu process), its DRAM bytes and times may differ by run-to-run "
            "noise; global and L2 bytes of this deterministic kernel should be equal",
}
if result["report_bytes"] < 1_000_000:
    write_atomic(f"{out}/ncu_rep_check.ncu-rep", open(report, "rb").read(), overwrite=True)
write_json(f"{out}/ncu_rep_check.json", result, overwrite=True)
for way, e in result["errors"].items():
    print(f"{way}: {e}")
print(f"report {result['report_bytes']} bytes; ncu_report: {where}; live_b rows: {len(rows['live_b'])}")
print(f"verdict: {json.dumps(result['verdict'])}")


def cell(way, k):
    rs = result["readings"].get(way) or []
    v = rs[0][k] if rs else None
    return "-" if v is None else f"{v:.6g}"


print(f"{'level (launch 0)':<18} {'live (run ' + src.upper() + ')':>14} {'import':>14} {'ncu_report':>14} {'max rel diff':>12}")
for k in ("global_read_bytes", "l2_read_bytes", "dram_read_bytes", "time_s"):
    d = [diffs[w][k] for w in diffs if w != "live_b"]
    print(f"{k:<18} {cell('live', k):>14} {cell('import', k):>14} {cell('module', k):>14} "
          f"{(f'{max(d):.2e}' if d else '-'):>12}")
sys.exit(0 if result["verdict"]["three_readings"] and same_report_ok else 1)
EOF
