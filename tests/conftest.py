"""Shared fixtures: every test writes runs and generated data under a temporary folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Set before any kernel (nbval) or subprocess starts, so that nothing writes into the repo. The
# committed shapes results are seen read-only through a link, for the book's notebooks in
# tests/book/ (nbval re-executes them against those results; they never train).
_TMP = Path(tempfile.mkdtemp(prefix="mlc-tests-"))
os.environ.setdefault("MLC_RUNS", str(_TMP / "runs"))
os.environ.setdefault("MLC_DATA", str(_TMP / "data"))
os.environ.setdefault("MLC_RESULTS", str(_TMP / "results"))
_COMMITTED = Path(__file__).resolve().parents[1] / "results" / "shapes"
if _COMMITTED.is_dir() and not (Path(os.environ["MLC_RESULTS"]) / "shapes").exists():
    (Path(os.environ["MLC_RESULTS"])).mkdir(parents=True, exist_ok=True)
    (Path(os.environ["MLC_RESULTS"]) / "shapes").symlink_to(_COMMITTED, target_is_directory=True)


@pytest.fixture(scope="session")
def data_root() -> Path:
    return Path(os.environ["MLC_DATA"])


@pytest.fixture(scope="session")
def smoke_sets(data_root):
    """The smoke-scale train and val sets, generated once per session."""
    from mlc.data.build import datasets

    return datasets("smoke", data_root, seed=0)


# The retraining of a committed result (tests/test_committed_results.py) takes minutes on one
# thread: it starts in the background as soon as the test is collected, beside the other tests.
RETRAIN: dict = {}


def pytest_collection_finish(session):
    if any(item.nodeid.startswith("tests/test_committed_results.py") for item in session.items):
        from test_committed_results import start_retraining

        RETRAIN.update(start_retraining(_TMP / "retrain"))
