"""python -m verification: exactness, Nsight Compute measurements, model-vs-hardware reports.

The subcommands live in verification/cli/ (one module each; `python -m verification --help` lists them).
"""
from __future__ import annotations

import sys

from .cli import build_parser, main  # noqa: F401  (public: tests and tools call main(argv))
from .cli.common import UsageError  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
