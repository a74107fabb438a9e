"""Shared fixtures: every test writes runs and generated data under a temporary folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Set before any kernel (nbval) or subprocess starts, so that nothing writes into the repo.
_TMP = Path(tempfile.mkdtemp(prefix="mlc-tests-"))
os.environ.setdefault("MLC_RUNS", str(_TMP / "runs"))
os.environ.setdefault("MLC_DATA", str(_TMP / "data"))
os.environ.setdefault("MLC_RESULTS", str(_TMP / "results"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    return Path(os.environ["MLC_DATA"])


@pytest.fixture(scope="session")
def smoke_sets(data_root):
    """The smoke-scale train and val sets, generated once per session."""
    from mlc.data.build import datasets

    return datasets("smoke", data_root, seed=0)
