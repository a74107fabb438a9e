"""Where and how a result was made: code and package versions, the machine, its CPU kernel level
and thread count, and a kernel fingerprint that tells two machines' kernels apart; written into
every record (mlc.runs) and into the pretrained weights' record (mlc.models.pretrain).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from importlib import metadata

import torch

from mlc import paths
from mlc.util import cpu
from mlc.version import code_version

PACKAGES = ("torch", "torchvision", "pycocotools", "faster-coco-eval", "numpy")


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
    """Code version, package versions and machine, for a run's record. CPU results depend on
    the thread count (summation order) and on the kernels' vector ISA (mlc.util.cpu)."""
    return {"git_commit": git_commit(), "code_version": code_version(),
            "python": platform.python_version(),
            "packages": {p: metadata.version(p) for p in PACKAGES},
            "machine": platform.machine(), "cpus": _cpu_count(),
            "threads": torch.get_num_threads(), **cpu.level(),
            "kernel_fingerprint": kernel_fingerprint(torch.get_num_threads()),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


_FINGERPRINTS: dict[int, str] = {}  # by thread count, computed once per process tree


def kernel_fingerprint(threads: int) -> str:
    """Twelve hex digits over the gradients of one training step of the shapes-scale FCOS− and
    RPN on fixed random images, at this process's kernel level and `threads` threads. Two
    machines give the same digits when their CPU kernels round alike, which a bit-identical
    rerun needs beyond the ISA level (oneDNN and MKL also choose their blocking by the CPU's
    cache sizes). Computed in a fresh process, so that no process group or state of a run
    takes part."""
    if threads not in _FINGERPRINTS:
        env = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        code = "from mlc.runs import gradient_digest; print(gradient_digest())"
        _FINGERPRINTS[threads] = subprocess.run([sys.executable, "-c", code], env=env,
                                                capture_output=True, text=True,
                                                check=True).stdout.strip()
    return _FINGERPRINTS[threads]


def known_fingerprint(threads: int, digest: str) -> None:
    """Take a fingerprint the launching process computed: its workers run on the same machine,
    kernel level and thread count, so each need not spend seconds computing it again."""
    _FINGERPRINTS[threads] = digest


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


