"""memsim.sweep: points of hardware x problem x schedule axes, streamed to a journal, resumable,
published as a whole set with the user's umask; the local process backend matches serial runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memsim import AttentionProblem, Schedule, load_hardware, simulate
from memsim import sweep_store
from memsim.sweep import SweepError, SweepSpec, evaluate, run_sweep

BASE = {"batch": 1, "heads": 2, "head_dim": 64}


def _spec(**axes):
    return SweepSpec(base=BASE, axes=axes or {"l2_bytes": [1 << 16, 50 << 20], "seq": [128, 384],
                                             "algorithm": ["naive", "flash2"]})


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "sim_wall_s"} for r in rows]


def test_points_are_the_product_last_axis_fastest():
    spec = SweepSpec(axes={"seq": [1, 2], "algorithm": ["naive", "flash2", "flash1"]})
    pts = list(spec.points())
    assert spec.n_points == len(pts) == 6
    assert [p[1]["algorithm"] for p in pts[:3]] == ["naive", "flash2", "flash1"]
    assert [i for i, _ in pts] == list(range(6))


@pytest.mark.parametrize("axes,match", [
    ({}, "at least one axis"),
    ({"l2_size": [1]}, "unknown sweep name 'l2_size'"),
    ({"hw.seq": [1]}, "qualified names"),
    ({"seq": []}, "no values"),
    ({"seq": [1, 1]}, "repeats"),
    ({"seq": 128}, "must be a list"),
    ({"seq": [float("nan")]}, "not finite"),
])
def test_bad_spec_is_refused(axes, match):
    with pytest.raises(SweepError, match=match):
        SweepSpec(axes=axes)


def test_each_point_is_what_simulate_gives():
    """Hardware, problem and schedule axes reach the model: every row equals a direct simulate()."""
    spec = _spec()
    result = run_sweep(spec, workers=1, progress=False)
    assert len(result.rows) == spec.n_points
    hw0 = load_hardware("h100-sxm")
    for row in result.rows:
        seq = row["seq"]
        p = AttentionProblem(batch=1, heads_q=2, heads_kv=2, seq_q=seq, seq_kv=seq, head_dim=64)
        r = simulate(p, Schedule(algorithm=row["algorithm"]), hw0.with_overrides(l2_bytes=row["l2_bytes"]))
        assert row["status"] == "ok", row
        for key in ("global_read_bytes", "dram_read_bytes", "dram_write_bytes", "time_s"):
            assert row[key] == r.total[key], (row, key)
    # the hardware axis matters somewhere (otherwise this test could not tell it was ignored)
    by = {(r["seq"], r["algorithm"], r["l2_bytes"]): r["dram_read_bytes"] for r in result.rows}
    assert any(by[(s, a, 1 << 16)] != by[(s, a, 50 << 20)] for s in (128, 384) for a in ("naive", "flash2"))


def test_bad_points_are_recorded_not_fatal(monkeypatch):
    import memsim.sim as sim
    real = sim.simulate

    def flaky(problem, schedule, hardware, **kw):
        if problem.seq_q == 384 and schedule.algorithm == "flash2":
            raise RuntimeError("injected bug")
        return real(problem, schedule, hardware, **kw)

    monkeypatch.setattr(sim, "simulate", flaky)
    spec = SweepSpec(base=BASE, axes={"seq": [128, 384], "algorithm": ["naive", "flash2"], "block_n": [64, 1024]})
    rows = run_sweep(spec, workers=1, progress=False).rows
    status = {(r["seq"], r["algorithm"], r["block_n"]): r["status"] for r in rows}
    assert status[(384, "flash2", 64)] == "error"
    assert "RuntimeError: injected bug" in rows[[r["point"] for r in rows].index(6)]["error"]
    assert status[(128, "flash2", 1024)] == "refused"  # tiles that do not fit the SRAM
    assert status[(128, "naive", 64)] == "ok"


def test_local_processes_match_serial():
    spec = _spec()
    serial = run_sweep(spec, workers=1, progress=False)
    local = run_sweep(spec, workers=2, progress=False, batch_size=1)
    assert _strip(local.rows) == _strip(serial.rows)


def test_streams_publishes_and_keeps_umask(tmp_path):
    old = os.umask(0o027)
    try:
        result = run_sweep(_spec(), tmp_path / "s" / "l2", workers=1, progress=False,
                           extra_files=lambda rows: {"txt": f"{len(rows)} points\n"})
    finally:
        os.umask(old)
    files = result.files
    assert set(files) >= {"csv", "json", "txt"}
    for path in files.values():
        assert path.stat().st_mode & 0o777 == 0o640, path
    doc = json.loads(files["json"].read_text())
    assert len(doc["rows"]) == 8 and doc["counts"]["ok"] == 8 and doc["fingerprint"] == _spec().fingerprint()
    assert files["txt"].read_text() == "8 points\n"
    assert not (tmp_path / "s" / "l2.partial.jsonl").exists()
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(p.name for p in files.values())
    with pytest.raises(SweepError, match="already exists"):
        run_sweep(_spec(), tmp_path / "s" / "l2", workers=1, progress=False)


class _StopAfter:
    """simulate() that raises KeyboardInterrupt on call number `n` (counts every call)."""

    def __init__(self, n):
        import memsim.sim as sim
        self.n, self.calls, self.real = n, 0, sim.simulate

    def __call__(self, *a, **kw):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.real(*a, **kw)


def test_interrupt_keeps_finished_points_and_resume_recomputes_none(tmp_path, monkeypatch):
    import memsim.sim as sim
    spec, out = _spec(), tmp_path / "r"
    stop = _StopAfter(6)
    monkeypatch.setattr(sim, "simulate", stop)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, workers=1, progress=False, batch_size=1)
    journal = tmp_path / "r.partial.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 5  # header + the five finished points
    assert not any((tmp_path / f"r.{s}").exists() for s in ("csv", "json"))
    with pytest.raises(SweepError, match="--resume"):
        run_sweep(spec, out, workers=1, progress=False)
    counting = _StopAfter(10 ** 9)
    monkeypatch.setattr(sim, "simulate", counting)
    resumed = run_sweep(spec, out, workers=1, progress=False, resume=True)
    assert counting.calls == spec.n_points - 5 and resumed.resumed_points == 5
    monkeypatch.setattr(sim, "simulate", stop.real)
    assert _strip(resumed.rows) == _strip(run_sweep(spec, workers=1, progress=False).rows)
    assert not journal.exists()


def test_resume_drops_a_line_cut_short_and_refuses_another_sweep(tmp_path, monkeypatch):
    import memsim.sim as sim
    spec, out = _spec(), tmp_path / "c"
    monkeypatch.setattr(sim, "simulate", _StopAfter(4))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, workers=1, progress=False, batch_size=1)
    journal = tmp_path / "c.partial.jsonl"
    with open(journal, "a") as f:
        f.write('{"point": 7, "stat')  # a crash in the middle of a write
    other = _spec(seq=[128, 256], algorithm=["flash2"])
    monkeypatch.undo()
    with pytest.raises(SweepError, match="another sweep"):
        run_sweep(other, out, workers=1, progress=False, resume=True)
    result = run_sweep(spec, out, workers=1, progress=False, resume=True)
    assert result.resumed_points == 3 and len(result.rows) == spec.n_points
    assert all(r["status"] == "ok" for r in result.rows)


def test_a_second_writer_is_refused(tmp_path):
    import fcntl
    spec, out = _spec(), tmp_path / "busy"
    journal = tmp_path / "busy.partial.jsonl"
    journal.write_text("")
    with open(journal) as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(SweepError, match="another sweep is writing"):
            run_sweep(spec, out, workers=1, progress=False, resume=True)


def test_publication_is_whole_or_nothing(tmp_path, monkeypatch):
    spec, out = _spec(), tmp_path / "w"
    first = run_sweep(spec, out, workers=1, progress=False, extra_files=lambda rows: {"png": b"old"})
    before = {s: p.read_bytes() for s, p in first.files.items()}

    def broken(rows):
        raise OSError("disk full while drawing")

    with pytest.raises(OSError, match="disk full"):
        run_sweep(spec, out, workers=1, progress=False, force=True, extra_files=broken)
    assert {s: p.read_bytes() for s, p in first.files.items()} == before  # old set intact
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".staged")]
    assert (tmp_path / "w.partial.jsonl").exists()  # the finished points are kept for --resume

    # a crash between two renames: the next run completes the publication first
    real_replace, calls = os.replace, []

    def crash_on_second(src, dst):
        if str(dst).endswith((".json", ".csv", ".png")) and not str(dst).endswith("publish.json"):
            calls.append(dst)
            if len(calls) == 2:
                raise KeyboardInterrupt("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, workers=1, progress=False, force=True, resume=True,
                  extra_files=lambda rows: {"png": b"new"})
    monkeypatch.setattr(os, "replace", real_replace)
    assert (tmp_path / "w.publish.json").exists()
    assert sweep_store.recover_publish(out)
    assert (tmp_path / "w.png").read_bytes() == b"new"
    assert not (tmp_path / "w.publish.json").exists() and not (tmp_path / "w.partial.jsonl").exists()
    doc = json.loads((tmp_path / "w.json").read_text())
    assert len(doc["rows"]) == spec.n_points


@pytest.mark.parametrize("prefix", ["", "dir/", ".", ".."])
def test_bad_prefix(prefix):
    with pytest.raises(SweepError, match="file prefix"):
        run_sweep(_spec(), prefix, workers=1, progress=False)


def test_sigterm_keeps_finished_points(tmp_path):
    """A sweep killed with SIGTERM keeps what finished; --resume completes it to the same set."""
    out = tmp_path / "t"
    code = ("import sys; from memsim.sweep import SweepSpec, run_sweep\n"
            f"spec = SweepSpec(base={BASE!r}, axes={{'seq': [128, 256, 384, 512, 640, 768, 896, 1024], "
            "'algorithm': ['naive', 'flash2'], 'num_warps': [1, 2, 4, 8]})\n"
            f"run_sweep(spec, {str(out)!r}, workers=1, progress=False, batch_size=1)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "t.partial.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the sweep ended before it could be interrupted: {proc.stderr.read()}"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode != 0 and "points kept in" in err, err
    kept = len(journal.read_text().splitlines()) - 1
    assert kept >= 3 and not (tmp_path / "t.csv").exists()
    spec = SweepSpec(base=BASE, axes={"seq": [128, 256, 384, 512, 640, 768, 896, 1024],
                                      "algorithm": ["naive", "flash2"], "num_warps": [1, 2, 4, 8]})
    result = run_sweep(spec, out, workers=1, progress=False, resume=True)
    assert result.resumed_points == kept and len(result.rows) == spec.n_points


def test_evaluate_refuses_bad_hardware_value():
    row = evaluate(SweepSpec(axes={"l2_bytes": [-1]}).to_dict(), 0, {"l2_bytes": -1})
    assert row["status"] == "refused" and "l2_bytes" in row["error"]


def test_command_line_hardware_axis_and_resume_flags(tmp_path, capsys):
    from memsim.cli import main
    out = tmp_path / "cli"
    argv = ["sweep", "--axis", "l2_bytes=65536,52428800", "--param", "seq", "--values", "128,256",
            "--algorithms", "naive,flash2", "--batch", "1", "--heads", "2", "--workers", "1", "--out", str(out)]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "8/8 points simulated" in cap.out and "8/8" in cap.err  # progress on stderr (ours or tqdm's)
    import csv
    rows = list(csv.DictReader(open(f"{out}.csv")))
    assert {r["l2_bytes"] for r in rows} == {"65536", "52428800"} and len(rows) == 8
    assert open(f"{out}.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert main([*argv, "--resume"]) == 2 and "--force" in capsys.readouterr().err
    assert main(["sweep", "--axis", "l2_size=1", "--out", str(tmp_path / "x")]) == 2
    assert "unknown sweep name 'l2_size'" in capsys.readouterr().err
    assert main(["sweep", "--axis", "seq=128", "--backend", "local", "--scheduler", "tcp://127.0.0.1:1",
                 "--out", str(tmp_path / "y")]) == 2
    assert "--backend dask" in capsys.readouterr().err


@pytest.mark.parametrize("n,size,workers", [(1000, 32, 2), (7, 32, 2), (100, 4, 3), (1, 32, 8), (65, 32, 1)])
def test_guided_batches_cover_every_point_once_and_shrink_to_single_points(n, size, workers):
    from memsim.sweep import batches
    got = list(batches([(i, {}) for i in range(n)], size, workers=workers))
    sizes = [len(b) for b in got]
    assert [p for b in got for p, _ in b] == list(range(n)), sizes
    assert max(sizes) <= size and sizes == sorted(sizes, reverse=True) and sizes[-1] == 1, sizes
    # no batch holds more than a quarter per worker of what was left when it was cut (the tail balances)
    left = n
    for s in sizes:
        assert s <= max(1, -(-left // (4 * workers))), (s, left, sizes)
        left -= s


def test_points_on_the_same_hardware_share_one_hardware_object(monkeypatch):
    """The model caches per Hardware object (calibration): equal overrides must give the same object, and the
    preset's calibration file must not be read again for every point."""
    import memsim.calibration as CAL
    from memsim.sweep import _point_hardware, settings_for
    spec = SweepSpec(axes={"l2_bytes": [25 << 20, 50 << 20], "seq": [128, 256]},
                     base={"batch": 1, "heads": 1, "head_dim": 64}).to_dict()
    a = _point_hardware("h100-sxm", (("l2_bytes", 25 << 20),))
    assert a is _point_hardware("h100-sxm", (("l2_bytes", 25 << 20),))
    assert a == load_hardware("h100-sxm").with_overrides(l2_bytes=25 << 20)
    reads = []
    real = CAL.json.loads
    monkeypatch.setattr(CAL.json, "loads", lambda *x, **k: reads.append(1) or real(*x, **k))
    rows = [evaluate(spec, i, v) for i, v in SweepSpec.from_dict(spec).points()]
    assert all(r["status"] == "ok" for r in rows) and len(reads) <= 1, (len(reads), rows[0])
    assert settings_for(spec, {"l2_bytes": 1})[0] == {"l2_bytes": 1}


def _tiny_spec():
    return SweepSpec(axes={"seq": [64, 128], "algorithm": ["naive", "flash2"]},
                     base={"batch": 1, "heads": 1, "head_dim": 32, "block_m": 32, "block_n": 32})


def test_progress_falls_back_to_the_plain_line_without_tqdm(monkeypatch):
    import io
    from memsim import sweep as SW
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    buf = io.StringIO()
    run_sweep(_tiny_spec(), workers=1, stream=buf)
    assert "4/4 points" in buf.getvalue() and buf.getvalue().endswith("\n")
    with pytest.raises(ImportError, match="pip install tqdm"):
        SW.make_progress(4, use_tqdm=True)


def test_progress_uses_tqdm_when_installed():
    import io
    tqdm = pytest.importorskip("tqdm")
    from memsim import sweep as SW
    buf = io.StringIO()
    run_sweep(_tiny_spec(), workers=1, stream=buf)
    text = buf.getvalue()
    assert "4/4" in text and "point/s" in text and "100%|" in text and "ETA" not in text, text  # tqdm's, not ours
    assert isinstance(SW.make_progress(4, stream=io.StringIO()), SW.TqdmProgress) and tqdm
    assert isinstance(SW.make_progress(4, enabled=False), SW.Progress)
