"""Command line of memsim: ``python -m memsim {simulate,compare,sweep,presets} ...`` (see --help).

The subcommands live in memsim/cli/ (one module each)."""
from __future__ import annotations

import sys

from .cli import build_parser, main  # noqa: F401  (public: tests and tools call main(argv))

if __name__ == "__main__":
    sys.exit(main())
