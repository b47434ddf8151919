"""``python -m verification numerics``: exactness of every kernel against the float64 reference."""
from __future__ import annotations

from pathlib import Path

from . import common as C

NAME = "numerics"
SUMMARY = "exactness of every kernel against the float64 reference (GPU, else Triton interpreter)"




def DESCRIPTION():
    from .. import numerics as NU
    return NU.__doc__ + ("\nExamples:\n  python -m verification numerics --out reports/numerics\n"
                         "  python -m verification numerics --filter flash2,bwd --limit 5")


def add_arguments(p):
    C.add_out(p, "folder for numerics_<gpu|interpreter>.md and .json (atomic writes)",
              "replace existing numerics files in --out")
    p.add_argument("--filter", help="comma-separated substrings a case id must all contain (e.g. flash2,bwd,fp16)")
    p.add_argument("--limit", type=int, help="run only the first N selected cases")
    p.add_argument("--list", action="store_true", help="list the case ids and exit")
    C.add_json(p, "print the full result table as JSON on stdout")


def _make_out(out: Path) -> None:
    """Create the --out folder (checked by C.check_out when the command starts) before any case runs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise C.UsageError(f"--out {out} cannot be created ({e.strerror or e})") from None


def run(a):
    if a.limit is not None and a.limit <= 0:
        raise C.UsageError(f"--limit must be a positive number of cases, got {a.limit}")
    if a.filter is not None and not [f for f in a.filter.split(",") if f.strip()]:
        raise C.UsageError("--filter is empty; give substrings of case ids, e.g. --filter flash2,bwd "
                           "(--list shows the ids)")
    # numerics_<mode>.md and .json go into a folder
    out = None if a.out is None else C.check_out(a.out, "--out", folder=True, example="reports/numerics")
    from .. import numerics as NU
    device, mode = NU.setup_backend()  # before triton is imported
    from memsim.io import base_provenance
    cases = NU.build_cases(mode == "gpu")
    if a.filter:
        cases = [c for c in cases if all(f in c.id for f in a.filter.split(","))]
        if not cases:
            raise C.UsageError(f"--filter {a.filter!r} matches no numerics case (ids look like "
                               f"'flash2-bwd-fp16-d64-q113k113-h2-causal-tl-b32x16')")
    if a.limit is not None:
        cases = cases[:a.limit]
    if a.list:
        for c in cases:
            print(c.id)
        return 0
    if out is not None:
        _make_out(out)
    C.echo(f"numerics: {len(cases)} case(s) on {mode} ({device})")
    import torch
    import triton
    prov = base_provenance(C.command_line(a.argv))
    prov.update(torch=torch.__version__, triton=triton.__version__, device=str(device),
                gpu=torch.cuda.get_device_name(0) if mode == "gpu" else None)
    if out is not None and not a.force:
        for f in (out / f"numerics_{mode}.json", out / f"numerics_{mode}.md"):
            if f.exists():
                raise C.UsageError(f"{f} already exists; pass --force to replace it, or another --out")

    def save(results):
        from memsim.io import write_atomic, write_json
        d = NU.to_json(results, mode, prov)
        d["complete"] = len(results) == len(cases)
        write_json(out / f"numerics_{mode}.json", d, overwrite=True)
        write_atomic(out / f"numerics_{mode}.md", NU.to_markdown(d), overwrite=True)

    def on_result(results):  # partial tables survive an interrupted run
        if out is not None and (len(results) % 10 == 0):
            save(results)
    results = NU.run_suite(cases, device, progress=None if a.json else C.echo, on_result=on_result)
    doc = NU.to_json(results, mode, prov)
    if out is not None:
        save(results)
        C.echo(f"wrote {out / f'numerics_{mode}.md'} and .json")
    if a.json:
        C.print_json(doc)
    C.echo(f"numerics ({mode}): {doc['passed']}/{doc['cases']} cases pass, {doc['failed']} fail"
           + (f", {doc['artefacts']} interpreter artefact(s)" if doc["artefacts"] else ""))
    return 0 if doc["failed"] == 0 else 1
