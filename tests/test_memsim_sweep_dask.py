"""The Dask backend: a local cluster of 2 workers gives the same set as serial runs (skipped cleanly
when dask[distributed], the `cluster` extra, is not installed)."""
from __future__ import annotations

import pytest

from memsim.sweep import SweepSpec, run_sweep

distributed = pytest.importorskip("distributed", reason="the dask backend needs the cluster extra: dask[distributed]")


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "sim_wall_s"} for r in rows]


def test_dask_local_cluster_of_two_matches_serial(tmp_path):
    spec = SweepSpec(base={"batch": 1, "heads": 2, "head_dim": 64},
                     axes={"smem_per_sm_bytes": [100 * 1024, 233472], "seq": [128, 384],
                           "algorithm": ["naive", "flash2"], "block_n": [64, 128]})
    serial = run_sweep(spec, workers=1, progress=False)
    dask = run_sweep(spec, tmp_path / "d", backend="dask", workers=2, progress=False, batch_size=2)
    assert dask.backend == "dask" and dask.files["csv"].exists()
    assert _strip(dask.rows) == _strip(serial.rows)
    assert {r["status"] for r in dask.rows} >= {"ok"}


def test_dask_backend_argument_errors():
    spec = SweepSpec(axes={"seq": [128]}, base={"batch": 1, "heads": 1})
    with pytest.raises(ValueError, match="--backend dask"):
        run_sweep(spec, backend="local", scheduler="tcp://127.0.0.1:1", progress=False)
    with pytest.raises(ValueError, match="unknown sweep backend"):
        run_sweep(spec, backend="ray", progress=False)
