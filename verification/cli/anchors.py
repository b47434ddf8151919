"""``python -m verification anchors``: memsim against the real H100 ncu fixtures (no GPU)."""
from __future__ import annotations

from . import common as C

NAME = "anchors"
SUMMARY = "no GPU: memsim against the real H100 ncu fixtures of the probe kernel (a preliminary check)"




def DESCRIPTION():
    from .. import anchors as A
    return A.__doc__ + "\nExample: python -m verification anchors --out reports/h100-sxm/anchors.md"


def add_arguments(p):
    C.add_hw(p)
    p.add_argument("--out", help="write the Markdown table here (replaced)")
    C.add_json(p)


def run(a):
    from .. import anchors as A
    if a.out is not None:  # anchors writes one Markdown file
        C.check_out(a.out, "--out", folder=False, example="reports/h100-sxm/anchors.md")
    try:
        import memsim
        hw = memsim.load_hardware(a.hw)
    except Exception as e:
        raise C.UsageError(str(e)) from None
    rows = A.compare_anchors(lambda p, s: memsim.simulate(p, s, hw).to_dict())
    md = A.to_markdown(rows)
    if a.out:
        from memsim.io import write_atomic
        write_atomic(a.out, md, overwrite=True)
        C.echo(f"wrote {a.out}")
    if a.json:
        C.print_json(rows)
    elif not a.out:
        print(md)
    return 0
