"""Shared fixtures: every test writes runs and generated data under a temporary folder, and
every test and subprocess runs torch's CPU kernels at the pinned level (mlc.util.cpu)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mlc.util import cpu

cpu.pin()  # before any test module imports torch; subprocesses and kernels inherit it

# Set before any kernel (nbval) or subprocess starts, so that nothing writes into the repo. The
# committed results of the shapes scales (the book's, and the setting study's candidates) are
# seen read-only through links, for the book's notebooks in tests/book/ (nbval re-executes them
# against those results; they never train).
_TMP = Path(tempfile.mkdtemp(prefix="mlc-tests-"))
os.environ.setdefault("MLC_RUNS", str(_TMP / "runs"))
os.environ.setdefault("MLC_DATA", str(_TMP / "data"))
os.environ.setdefault("MLC_RESULTS", str(_TMP / "results"))
(_TMP / "tmp").mkdir()
os.environ["TMPDIR"] = str(_TMP / "tmp")  # subprocesses' temporary files (torchrun's among them)
for _committed in sorted((Path(__file__).resolve().parents[1] / "results").glob("shapes*")):
    _link = Path(os.environ["MLC_RESULTS"]) / _committed.name
    if _committed.is_dir() and not _link.exists():
        _link.parent.mkdir(parents=True, exist_ok=True)
        _link.symlink_to(_committed, target_is_directory=True)


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


def pytest_unconfigure(config):
    """Remove the session's temporary folder (about 200 MB of runs and data), stopping the
    background retraining first where a test selection never waited for it."""
    if RETRAIN and RETRAIN["process"].poll() is None:
        RETRAIN["process"].kill()
        RETRAIN["process"].wait()
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def exact_kernels() -> bool:
    """True when this process runs at the pinned kernel level, so that bits can be compared;
    False on a machine that cannot run it (then tests compare within a tolerance)."""
    if cpu.unpinnable_reason():
        return False
    cpu.check()  # raises if torch ran a kernel before the pin above
    return True
