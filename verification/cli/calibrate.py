"""``python -m verification calibrate``: hardware facts from microbenchmarks (verification/calibrate.py)."""
from __future__ import annotations

from . import common as C

NAME = "calibrate"
SUMMARY = "GPU: microbenchmarks (copy, matmul, exp, launch, L2 write-back/merging, spills) -> <hw>.calibration.json"




def DESCRIPTION():
    from .. import calibrate as K
    return K.__doc__ + ("\nExample (GPU machine): PYTHONPATH=. python3 -m verification calibrate --hw h100-sxm --out "
                        "$OUT/h100-sxm.calibration.json --log-dir $OUT\n"
                        "Here, no GPU: python -m verification calibrate --hw h100-sxm --dry-run")


def add_arguments(p):
    from .. import calibrate as K
    K.add_arguments(p)


def run(a):
    from .. import calibrate as K
    C.check_preset(a.hw)
    if a.out is not None:  # checked before any microbenchmark runs (an empty --out is not "the default file")
        C.check_out(a.out, "--out", folder=False, example="$OUT/h100-sxm.calibration.json")
    if a.log_dir is not None:
        C.check_out(a.log_dir, "--log-dir", folder=True, example="$OUT")
    return K.command(a, a.argv[1:] if a.argv and a.argv[0] == NAME else a.argv)
