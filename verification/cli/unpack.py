"""Extract measurements.tar.gz (from `measure --bundle`) into <root>/<gpu slug>/.
"""
from __future__ import annotations

from . import common as C

NAME = "unpack"
SUMMARY = "a bundle from the GPU machine -> verification/data/<gpu>/ (see verification/DEVICE.md)"
DESCRIPTION = __doc__ + "\n" + C.EPILOG_NO_OVERWRITE


def add_arguments(p):
    from .. import records as R
    p.add_argument("bundle", help="the .tar.gz written by measure --bundle")
    p.add_argument("--root", default=str(R.DATA_ROOT), help="data root (default verification/data)")
    p.add_argument("--archive-old", action="store_true")
    C.add_json(p)


#: what records.check_free says for `measure`; unpack measures nothing and has no --data-dir
_MEASURE_WORDING = "; nothing was measured. "


def run(a):
    from pathlib import Path

    from memsim.io import OutputExistsError
    from .. import records as R
    if Path(a.bundle).is_dir():
        raise C.UsageError(f"bundle {a.bundle} is a folder; give the .tar.gz that `measure --bundle` wrote")
    C.check_out(a.root, "--root", folder=True, example="verification/data")
    try:
        dest, cases = R.unpack(a.bundle, a.root, archive_old=a.archive_old)
    except R.DataError as e:
        raise C.UsageError(str(e)) from None
    except OutputExistsError as e:
        head = str(e).split(_MEASURE_WORDING)[0]
        raise C.UsageError(f"{head}; nothing was written. Pass --archive-old to move them into its archive/<date>/ "
                           f"folder first, or --root to unpack elsewhere") from None
    if a.json:
        C.print_json({"data_dir": str(dest), "cases": cases})
    else:
        print(f"unpacked {len(cases)} measurement(s) into {dest}")
        print(f"next: python -m verification report --hw h100-sxm --data {dest} --out reports/h100-sxm")
    return 0
