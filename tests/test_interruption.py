"""kill -9 in an epoch, in a checkpoint write and in a results write, and two workers asking for
one run: real subprocesses. The resumed run must end exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mlc.config import make_config

ARGS = ["train", "--detector", "fcos", "--scale", "smoke", "--quiet",
        "--set", "epochs=5", "--set", "lr_steps=[4]"]
CFG = make_config("fcos", "smoke", epochs=5, lr_steps=[4])

# Runs the CLI in a process that SIGKILLs itself in the middle of a chosen write.
DYING = """
import os, signal, sys
import torch
import mlc.util.io as mio

def die(f):
    f.write(b"half a file"); f.flush(); os.kill(os.getpid(), signal.SIGKILL)

saves = {"n": 0}
real_save = torch.save
def dying_save(obj, f, *args, **kwargs):
    saves["n"] += 1
    if saves["n"] == int(os.environ.get("KILL_ON_SAVE", 0)):
        die(f)
    return real_save(obj, f, *args, **kwargs)
torch.save = dying_save

real_write = mio.atomic_write
def dying_write(path, write):
    if path.name == os.environ.get("KILL_ON_WRITE"):
        return real_write(path, die)
    return real_write(path, write)
mio.atomic_write = dying_write

from mlc.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _env(root: Path, **extra) -> dict:
    return {**os.environ, "MLC_RUNS": str(root / "runs"), "MLC_RESULTS": str(root / "results"),
            **extra}


def _cli(root: Path, script: str | None = None, **extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", script, *ARGS] if script else [sys.executable, "-m", "mlc", *ARGS]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(root, **extra), timeout=600)


def _run_dir(root: Path) -> Path:
    return root / "runs" / "smoke" / CFG.name


def _weights(root: Path) -> dict:
    return torch.load(_run_dir(root) / "checkpoint.pt", weights_only=False)["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    res = _cli(root)
    assert res.returncode == 0, res.stderr
    return root, json.loads(res.stdout)


def _assert_same_as_reference(root: Path, out: dict, reference) -> None:
    ref_root, ref = reference
    assert out["metrics"] == ref["metrics"]
    a, b = _weights(root), _weights(ref_root)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (_run_dir(root) / "log.jsonl").read_text() == (_run_dir(ref_root) / "log.jsonl").read_text()
    assert not list(_run_dir(root).glob(".*.tmp")), "a half-written file was left behind"


def test_kill_during_an_epoch(tmp_path, reference):
    proc = subprocess.Popen([sys.executable, "-m", "mlc", *ARGS], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = _run_dir(tmp_path) / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 5:  # in the third epoch
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (_run_dir(tmp_path) / "metrics.json").exists()
    res = _cli(tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["trained_now"] and out["run"]["steps_this_call"] < 10
    _assert_same_as_reference(tmp_path, out, reference)


def test_kill_during_a_checkpoint_write(tmp_path, reference):
    res = _cli(tmp_path, DYING, KILL_ON_SAVE="3")  # dies writing the third epoch's checkpoint
    assert res.returncode == -signal.SIGKILL
    state = torch.load(_run_dir(tmp_path) / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 2  # the last whole checkpoint; the half one never replaced it
    res = _cli(tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["run"]["steps_this_call"] == 6  # epochs 3-5 of 2 steps each
    _assert_same_as_reference(tmp_path, out, reference)


def test_kill_during_the_results_write(tmp_path, reference):
    res = _cli(tmp_path, DYING, KILL_ON_WRITE="metrics.json")
    assert res.returncode == -signal.SIGKILL
    assert not (_run_dir(tmp_path) / "metrics.json").exists()
    res = _cli(tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert json.loads((_run_dir(tmp_path) / "metrics.json").read_text())["metrics"] == out["metrics"]
    _assert_same_as_reference(tmp_path, out, reference)


def test_two_workers_asking_for_one_run_train_it_once(tmp_path, reference):
    procs = [subprocess.Popen([sys.executable, "-m", "mlc", *ARGS], env=_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        outs.append(json.loads(stdout))
    assert sorted(o["trained_now"] for o in outs) == [False, True]
    assert outs[0]["metrics"] == outs[1]["metrics"]
    steps = [json.loads(line)["step"] for line in
             (_run_dir(tmp_path) / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(10))
    _assert_same_as_reference(tmp_path, outs[0], reference)


def test_a_resumed_run_says_where_it_resumes(tmp_path):
    first = subprocess.run([sys.executable, "-m", "mlc", *ARGS, "--stop-after-epoch", "2"],
                           capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert first.returncode == 0, first.stderr
    again = _cli(tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resuming {CFG.name} from epoch 2, step " in again.stderr


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    """A training set smaller than one batch: the run stops before any work is saved, and its
    folder (config, lock) is removed rather than left for the next call to trip over."""
    result = subprocess.run([sys.executable, "-m", "mlc", *ARGS, "--set", "batch_size=64"],
                            capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert "fewer than one batch (64)" in line and "--set batch_size=" in line
    assert not list((tmp_path / "runs" / "smoke").glob("fcos-*"))
