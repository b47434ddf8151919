"""Synthetic measurements and predictions for tests and CPU dry runs (never real data).

The byte counts follow the byte contract roughly (global = the case's nominal traffic), so
plots look like plots; records are marked provenance.gpu = "FAKE" so they can never be
mistaken for measurements.
"""
from __future__ import annotations

from .ncu import LEVEL_KEYS
from .records import FORMAT


def _nominal(case) -> dict:
    p, s = case.problem, case.schedule
    io = p.q_bytes() * 2 + p.kv_bytes()
    if s.algorithm == "naive":
        io += 4 * p.batch * p.heads_q * p.seq_q * p.seq_kv * s.sp_bytes(p)
    elif s.algorithm == "flash1":
        io += 2 * p.q_bytes() * max(1, p.seq_kv // s.block_n)
    flops = p.nominal_flops(s.phase)
    return {"global_read_bytes": 0.8 * io, "global_write_bytes": 0.2 * io, "l2_read_bytes": 0.7 * io,
            "l2_write_bytes": 0.2 * io, "dram_read_bytes": 0.3 * io, "dram_write_bytes": 0.15 * io,
            "time_s": max(flops / 300e12, io / 2.5e12), "flops": flops, "exp_count": 0.0}


def fake_record(case, scale: float = 1.0) -> dict:
    """A measurement-shaped record for `case` (one launch per kernel_launches entry)."""
    names = case.launch_names()
    tot = {k: v * scale for k, v in _nominal(case).items() if k in LEVEL_KEYS}
    kernels = [{"name": n, "kernel": "_" + n, **{k: v / len(names) for k, v in tot.items()}} for n in names]
    return {"format": FORMAT, "case": case.name, "hardware": case.hardware, "problem": case.problem.to_dict(),
            "schedule": case.schedule.to_dict(), "tags": list(case.tags), "kernels": kernels,
            "total": {**tot, "ncu_time_s": tot["time_s"]}, "timing": {},
            "provenance": {"gpu": "FAKE", "date": "2026-01-01T00:00:00+00:00", "command": "fake", "ncu": "fake"}}


def fake_predict(error: float = 0.0):
    """predict(case) returning the fake nominal numbers times (1 + error)."""
    def predict(case):
        names = case.launch_names()
        tot = {k: v * (1 + error) for k, v in _nominal(case).items()}
        return {"hardware": case.hardware, "kernels": [{"name": n, **{k: v / len(names) for k, v in tot.items()}}
                                                       for n in names], "total": tot}
    return predict
