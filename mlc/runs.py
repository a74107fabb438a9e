"""Runs by config. `runs/<scale>/<detector>-<hash>/` holds a run's config, step log, checkpoint,
provenance and metrics; `results/<scale>/<detector>-<hash>.json` is its small committed record
(config, metrics, timing, provenance, per-epoch losses). A run whose record exists in either
place is read, never trained again. Records are written last and atomically, so a record's
presence means the run finished.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from mlc import paths
from mlc.config import RunConfig, config_from_json
from mlc.engine import train
from mlc.util import distributed
from mlc.util.io import atomic_write_text
from mlc.util.lock import file_lock
from mlc.version import code_version

PACKAGES = ("torch", "torchvision", "pycocotools", "numpy")


def git_commit() -> str:
    """The repository's commit, with '+dirty' when tracked files are modified; 'unknown' outside."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=paths.REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance() -> dict:
    """Code version, package versions and machine, for a run's record."""
    return {"git_commit": git_commit(), "code_version": code_version(),
            "python": platform.python_version(),
            "packages": {p: metadata.version(p) for p in PACKAGES},
            "machine": platform.machine(), "cpus": _cpu_count(),
            "threads": torch.get_num_threads(),  # CPU results depend on it (summation order)
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def epoch_curve(log: Path) -> list[dict]:
    """Mean of every logged loss term per epoch, and the epoch's last lr."""
    by_epoch: dict[int, list[dict]] = {}
    for line in Path(log).read_text().splitlines():
        entry = json.loads(line)
        by_epoch.setdefault(entry["epoch"], []).append(entry)
    curve = []
    for epoch, entries in sorted(by_epoch.items()):
        keys = [k for k in entries[0] if k not in ("step", "epoch", "lr")]
        curve.append({"epoch": epoch + 1, "lr": entries[-1]["lr"], "steps": len(entries),
                      **{k: round(sum(e[k] for e in entries) / len(entries), 5) for k in keys}})
    return curve


def record_paths(cfg: RunConfig, runs_root: Path | None = None,
                 results_root: Path | None = None) -> tuple[Path, Path]:
    """(run folder, committed record file) of a config."""
    results = Path(results_root or paths.results_root()) / cfg.scale / f"{cfg.name}.json"
    return cfg.run_dir(runs_root or paths.runs_root()), results


def load_record(cfg: RunConfig, runs_root: Path | None = None,
                results_root: Path | None = None) -> dict | None:
    """The finished run's record, from its run folder or the committed results, else None."""
    run_dir, result = record_paths(cfg, runs_root, results_root)
    for path, source in ((run_dir / "metrics.json", "run folder"), (result, "committed results")):
        if path.exists():
            return {**json.loads(path.read_text()), "source": source}
    return None


def get_or_train(cfg: RunConfig, runs_root: Path | None = None, data_root: Path | None = None,
                 device: str | None = None, progress: bool = True,
                 stop_after_epoch: int | None = None, resume: bool = True,
                 results_root: Path | None = None, allow_training: bool = True) -> dict | None:
    """The run's record: read if it exists, else trained (resuming a checkpoint), unless
    allow_training is False, in which case a missing run gives None.

    A single process holds a lock on the run folder while it checks and trains, so that a
    second process asking for the same run waits and then reads the record. (Under torchrun
    every rank trains together; two torchrun jobs must not ask for one run at once.)
    """
    run_dir, result = record_paths(cfg, runs_root, results_root)
    done = load_record(cfg, runs_root, results_root)
    if done is not None and not result.exists():  # killed before the committed copy was written
        atomic_write_text(result, (run_dir / "metrics.json").read_text())
    if done is not None or not allow_training:
        return None if done is None else {**done, "trained_now": False}
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return _train_and_record(cfg, run_dir, result, data_root, device, progress,
                                 stop_after_epoch, resume)
    with file_lock(run_dir / ".lock"):
        done = load_record(cfg, runs_root, results_root)  # another process may have finished it
        if done is not None:
            return {**done, "trained_now": False}
        for stale in run_dir.glob(".*.tmp"):  # left by a write that was killed
            stale.unlink()
        return _train_and_record(cfg, run_dir, result, data_root, device, progress,
                                 stop_after_epoch, resume)


def _train_and_record(cfg: RunConfig, run_dir: Path, result: Path, data_root: Path | None,
                      device: str | None, progress: bool, stop_after_epoch: int | None,
                      resume: bool) -> dict | None:
    """Train the run and write its record (provenance, metrics.json, the committed copy)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_json(), indent=2))
    out = train(cfg, run_dir, data_root or paths.data_root(), device=device, resume=resume,
                stop_after_epoch=stop_after_epoch, progress=progress)
    if "metrics" not in out:
        return {**out, "config": cfg.to_json(), "run_dir": str(run_dir)}
    metrics = out.pop("metrics")
    if metrics is None:  # not rank 0: rank 0 writes the record
        distributed.barrier()
        return None
    record = {"name": cfg.name, "config": cfg.to_json(), "metrics": metrics, "run": out,
              "curve": epoch_curve(run_dir / "log.jsonl"), "provenance": provenance()}
    text = json.dumps(record, indent=1)
    atomic_write_text(run_dir / "provenance.json", json.dumps(record["provenance"], indent=2))
    atomic_write_text(run_dir / "metrics.json", text)  # its presence marks the run done
    atomic_write_text(result, text)
    distributed.barrier()
    return {**record, "source": "run folder", "trained_now": True}


def read_config(run_dir: Path) -> RunConfig:
    """The config a run folder was made with."""
    return config_from_json(json.loads((Path(run_dir) / "config.json").read_text()))
