"""Runs through the Slurm code path (mlc.cluster) on submitit's local executor: the same records
as the local pool's, a job timed out mid-run requeued and resumed from its checkpoint, and a
status that reads each run's state back from its record and its job's files."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("submitit")

from mlc import cluster  # noqa: E402
from mlc.config import make_config  # noqa: E402
from mlc.launch import train_missing  # noqa: E402
from mlc.util import io  # noqa: E402

GRID = [make_config("fcos", "smoke", seed=0), make_config("rpn", "smoke", seed=1)]


def _use(root: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLC_RUNS", str(root / "runs"))
    monkeypatch.setenv("MLC_RESULTS", str(root / "results"))


def _wait(configs, options, seconds: float = 300) -> list[dict]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        rows = cluster.status(configs, options)
        if not any(r["state"] == "queued or running" for r in rows):
            return rows
        time.sleep(1)
    raise AssertionError(f"jobs still running after {seconds} s: {rows}")


def _record(root: Path, cfg) -> dict:
    return json.loads((root / "results" / cfg.scale / f"{cfg.name}.json").read_text())


def test_a_smoke_grid_through_the_slurm_path_equals_the_pool(tmp_path, monkeypatch, exact_kernels):
    _use(tmp_path / "pool", monkeypatch)
    assert all(outcome == "trained" for _, _, outcome in train_missing(GRID, workers=2)[0])
    _use(tmp_path / "jobs", monkeypatch)
    options = cluster.ClusterOptions(cluster="local", folder=str(tmp_path / "jobs" / "submitit"),
                                     timeout_min=10)
    assert [r["state"] for r in cluster.status(GRID, options)] == ["missing", "missing"]
    submitted = cluster.submit(GRID, options)
    assert [s["name"] for s in submitted] == [c.name for c in GRID]
    assert "submitted 2 run(s)" in cluster.describe(submitted, options)
    assert cluster.submit(GRID, options) == []  # queued or running: not submitted twice
    rows = _wait(GRID, options)
    assert [r["state"] for r in rows] == ["done", "done"], rows
    for cfg in GRID:
        ours, theirs = _record(tmp_path / "jobs", cfg), _record(tmp_path / "pool", cfg)
        assert ours["provenance"]["threads"] == theirs["provenance"]["threads"] == 1
        if exact_kernels:
            assert ours["metrics"] == theirs["metrics"] and ours["curve"] == theirs["curve"]
    assert cluster.submit(GRID, options) == []  # done: never submitted again


def _task_pids(job_id: str) -> list[int]:
    """The processes submitit's local controller `job_id` started (the job's tasks)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if fields[1] == job_id and fields[0] != "Z":  # its parent, and not a zombie
            pids.append(int(stat.parent.name))
    return pids


def _signal_once_checkpointed(cfg, entry: dict, poll_s: float = 0.01, guard_s: float = 600) -> int:
    """Send the job submitit's timeout and preemption signal as soon as the run's first epoch
    checkpoint exists (an event, not a delay); returns the epoch the run had reached."""
    import torch

    checkpoint = cfg.run_dir(Path(os.environ["MLC_RUNS"])) / "checkpoint.pt"
    guard = time.monotonic() + guard_s  # a hang guard only: no verdict depends on it
    while not checkpoint.exists():
        assert time.monotonic() < guard, Path(entry["stderr"]).read_text()[-3000:]
        time.sleep(poll_s)
    (task,) = _task_pids(entry["job_id"])
    os.kill(task, signal.SIGUSR2)
    return torch.load(checkpoint, weights_only=False)["epoch"]


def test_a_signalled_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path, monkeypatch,
                                                                     exact_kernels):
    """A job sent Slurm's timeout and preemption signal mid-run (once its first checkpoint is
    written, so at any machine speed) is requeued and resumes from that checkpoint, to the same
    bits as a run left alone. The run is 300 epochs of a fraction of a second each: it cannot
    end between the checkpoint and the signal. No timer of submitit's fires (its limit is an
    hour): the signal is the test's."""
    cfg = make_config("fcos", "smoke", seed=2, epochs=300, lr_steps=[240])
    _use(tmp_path / "pool", monkeypatch)
    train_missing([cfg], workers=2)  # one thread, as every job trains
    _use(tmp_path / "jobs", monkeypatch)
    options = cluster.ClusterOptions(cluster="local", folder=str(tmp_path / "jobs" / "submitit"),
                                     timeout_min=60, max_num_timeout=2)
    (entry,) = cluster.submit([cfg], options)
    signalled_at = _signal_once_checkpointed(cfg, entry)
    (row,) = _wait([cfg], options, seconds=1800)
    log = Path(entry["stderr"]).read_text() + Path(entry["stdout"]).read_text()
    assert row["state"] == "done", f"{row}\n{log[-3000:]}"
    assert "Requeued job" in log, log[-3000:]
    resumed = re.search(rf"resuming {cfg.name} from epoch (\d+)", log)
    assert resumed and signalled_at <= int(resumed.group(1)) < cfg.epochs, log[-3000:]
    ours, theirs = _record(tmp_path / "jobs", cfg), _record(tmp_path / "pool", cfg)
    assert ours["run"]["steps_this_call"] < theirs["run"]["steps_this_call"]  # not from scratch
    if exact_kernels:  # resumed at an epoch boundary: the same bits as a run left alone
        assert ours["metrics"] == theirs["metrics"] and ours["curve"] == theirs["curve"]


def test_a_timeout_signal_during_a_write_is_handled_once_the_file_is_whole(tmp_path):
    """submitit's handler exits from wherever the signal lands (an exit inside torch.save's write
    aborted a job instead of requeuing it): held back while atomic_write writes, it runs after."""
    calls = []

    def exits(sig, frame):
        calls.append("handler")
        raise SystemExit(3)

    def write(f):
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(50):  # the handler has its chances mid-write
            f.write(b"x")
            time.sleep(0.002)
        calls.append("written")

    previous = signal.signal(signal.SIGUSR2, exits)
    try:
        cluster.defer_during_writes(signal.SIGUSR2, retry_s=0.05)
        with pytest.raises(SystemExit):
            io.atomic_write(tmp_path / "f", write)
            for _ in range(6000):  # until the re-sent signal's handler ends it (a hang guard)
                time.sleep(0.01)
        assert calls == ["written", "handler"] and (tmp_path / "f").read_bytes() == b"x" * 50
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_status_names_a_failed_run_with_the_end_of_its_log(tmp_path, monkeypatch):
    _use(tmp_path, monkeypatch)
    bad = make_config("fcos", "smoke", seed=3, batch_size=64)  # more than the 8 training images
    options = cluster.ClusterOptions(cluster="local", folder=str(tmp_path / "submitit"), timeout_min=5)
    cluster.submit([bad], options)
    (row,) = _wait([bad], options)
    assert row["state"] == "failed" and "fewer than one batch" in row["log"]
    report = cluster.status_report([row, {"name": "x", "seed": 0, "state": "missing"}])
    assert report.startswith("2 runs: 1 failed, 1 missing") and "fewer than one batch" in report


def test_jobs_folders_a_cluster_cannot_share_are_refused(tmp_path, monkeypatch):
    _use(tmp_path, monkeypatch)
    options = cluster.ClusterOptions(cluster="slurm", folder="/tmp/mlc-jobs-test")
    with pytest.raises(cluster.ConfigError, match="/tmp, which the nodes do not share"):
        cluster.check_shared(options)


def _registered(options, cfg, job_id: str, root: Path) -> None:
    """A registry entry as `submit` writes it, for a job that wrote no result."""
    path = options.jobs_folder() / "runs" / cfg.scale / f"{cfg.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    (root / "err.log").write_text("slurmstepd: error: *** JOB CANCELLED ***\n")
    path.write_text(json.dumps({"name": cfg.name, "scale": cfg.scale, "job_id": job_id,
                                "stdout": str(root / "out.log"), "stderr": str(root / "err.log"),
                                "result": str(root / "result.pkl")}))


@pytest.mark.parametrize("state, expected", [("PENDING", "queued or running"),
                                             ("RUNNING", "queued or running"),
                                             ("CANCELLED by 1000", "failed"), ("OUT_OF_MEMORY", "failed"),
                                             ("COMPLETED", "failed"), (None, "queued or running")])
def test_a_job_the_scheduler_ended_without_a_result_reads_failed(tmp_path, monkeypatch, state, expected):
    """A job cancelled, killed or out of memory never writes its result: `status` asks the
    scheduler (here its answer is given) and reads it failed, so `submit` sends it again; a job
    the scheduler does not know yet stays queued."""
    _use(tmp_path, monkeypatch)
    cfg = GRID[0]
    options = cluster.ClusterOptions(cluster="slurm", folder=str(tmp_path / "submitit"))
    _registered(options, cfg, "4242_0", tmp_path)
    (row,) = cluster.status([cfg], options, states={} if state is None else {"4242_0": state})
    assert row["state"] == expected
    if expected == "failed":
        assert row["log"].startswith(f"the job ended {state} without a result")
        assert "JOB CANCELLED" in row["log"]


def test_a_local_job_whose_process_is_gone_reads_failed(tmp_path, monkeypatch):
    import subprocess
    import sys

    _use(tmp_path, monkeypatch)
    cfg = GRID[1]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    options = cluster.ClusterOptions(cluster="local", folder=str(tmp_path / "submitit"))
    _registered(options, cfg, str(gone.pid), tmp_path)
    assert cluster.scheduler_states([str(gone.pid)], options) == {str(gone.pid): "FINISHED"}
    (row,) = cluster.status([cfg], options)
    assert row["state"] == "failed" and "ended FINISHED without a result" in row["log"]
    assert cluster.scheduler_states([str(os.getpid())], options) == {str(os.getpid()): "RUNNING"}
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # ended, not reaped: its parent lives
    stat, deadline = Path(f"/proc/{zombie.pid}/stat"), time.time() + 60
    while ") Z " not in stat.read_text() and time.time() < deadline:
        time.sleep(0.05)
    assert cluster.scheduler_states([str(zombie.pid)], options) == {str(zombie.pid): "FINISHED"}
    zombie.wait()
