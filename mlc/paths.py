"""Where data and runs live: under the repository by default, or where MLC_DATA / MLC_RUNS say."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("MLC_DATA", REPO_ROOT / "data"))


def runs_root() -> Path:
    """Checkpoints and full logs (ignored by git)."""
    return Path(os.environ.get("MLC_RUNS", REPO_ROOT / "runs"))


def results_root() -> Path:
    """One small JSON per finished run (committed, so the book renders without training)."""
    return Path(os.environ.get("MLC_RESULTS", REPO_ROOT / "results"))
