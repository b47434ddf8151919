"""Ablation: run any `python -m verification ...` command with the warp issue replay switched off.

The model then uses the instruction-count issue limit and no per-CTA fixed cost (memsim.costs without
`Calibration.issue`), which is the model before the replay (commit f786e53).  Used to report a held-out set
twice, with and without the mechanism, from the same committed code:

    python benchmarks/ablate_issue_replay.py fidelity --freeze G.without-replay.json --random 16 --seed 11262 --set G
"""
from __future__ import annotations

import sys
from dataclasses import replace

import memsim.calibration as calibration
import memsim.sim as sim

_real = calibration.calibration_for


def _without_replay(hw):
    return replace(_real(hw), issue=None)


calibration.calibration_for = _without_replay
sim.calibration_for = _without_replay

if __name__ == "__main__":
    from verification.__main__ import main
    sys.exit(main(sys.argv[1:]))
