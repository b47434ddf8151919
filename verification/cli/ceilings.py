"""Predict every stored case, print each level's worst |error|, and with --write set each ceiling in
tolerances.toml to today's worst (rounded up, never below the target). A ceiling only goes down; --allow-raise
overrides (say why in the commit).
"""
from __future__ import annotations

from . import common as C

NAME = "ceilings"
SUMMARY = "today's worst model error per level; --write lowers the CI ceilings in tolerances.toml"


def add_arguments(p):
    p.add_argument("--data", required=True, help="measurement folder verification/data/<gpu>")
    C.add_hw(p)
    p.add_argument("--tolerances", default=C.TOLERANCES)
    p.add_argument("--write", action="store_true", help="rewrite the ceilings in the tolerances file")
    p.add_argument("--allow-raise", action="store_true", help="allow a ceiling to go up")
    C.add_json(p)


def run(a):
    from .. import compare as CMP
    from .. import records as R
    from ..report import memsim_predictor
    from ..suite import case_from_record
    C.check_preset(a.hw)
    try:
        recs = R.load_records(C.check_data(a.data))
        levels = CMP.load_tolerances(a.tolerances)
    except (R.DataError, CMP.ToleranceError) as e:
        raise C.UsageError(str(e)) from None
    predict = memsim_predictor(a.hw)
    pairs = [(r["case"], r, predict(case_from_record(r))) for r in recs]
    summ = CMP.summarise(CMP.compare_records(pairs, levels), levels)
    out = {k: {"worst_abs_error": s.worst_abs_error, "worst_case": s.worst_case, "target": s.target,
               "ceiling": s.ceiling, "proposed": None if s.worst_abs_error is None else
               CMP.proposed_ceiling(s.worst_abs_error, s.target)} for k, s in summ.items()}
    changes = {}
    if a.write:
        try:
            changes = CMP.update_ceilings(a.tolerances, summ, allow_raise=a.allow_raise)
        except CMP.ToleranceError as e:
            raise C.UsageError(str(e)) from None
    if a.json:
        C.print_json({"levels": out, "changed": changes})
    else:
        for s in summ.values():
            print(s.line())
        for k, (o, n) in changes.items():
            print(f"{k}: ceiling {o} -> {n}")
        if a.write and not changes:
            print("no ceiling changed")
    return 0
