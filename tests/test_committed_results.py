"""The committed shapes results are what this code computes: the cheapest of them to train is
retrained from scratch, on the thread count it was made with, and must give the very same
metrics. (It starts in the background when collected; see conftest.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlc.config import config_from_json
from mlc.launch import cli_args
from mlc.version import code_version

RESULTS = Path(__file__).resolve().parents[1] / "results" / "shapes"


def cheapest_committed() -> dict | None:
    """The committed record of this code version that took the least time to train and
    evaluate (None if there is none)."""
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    current = [r for r in records if r["provenance"]["code_version"] == code_version()
               and "threads" in r["provenance"]]
    return min(current, key=lambda r: r["run"]["train_seconds_this_call"] + r["run"]["eval_seconds"],
               default=None)


def start_retraining(root: Path) -> dict:
    """Start training the chosen run into empty run and result folders; {record, process}."""
    record = cheapest_committed()
    if record is None:
        return {}
    cfg = config_from_json(record["config"])
    threads = str(record["provenance"]["threads"])
    env = {**os.environ, "MLC_RUNS": str(root / "runs"), "MLC_RESULTS": str(root / "results"),
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "train.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "mlc", "train", "--quiet", *cli_args(cfg)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    return {"record": record, "process": process, "root": root}


def test_a_committed_run_retrains_to_the_same_metrics():
    from conftest import RETRAIN

    if not RETRAIN:
        pytest.skip(f"no committed shapes result of code version {code_version()} to retrain")
    committed, root = RETRAIN["record"], RETRAIN["root"]
    rc = RETRAIN["process"].wait(timeout=1800)
    assert rc == 0, (root / "train.log").read_text()[-2000:]
    retrained = json.loads((root / "results" / "shapes" / f"{committed['name']}.json").read_text())
    assert retrained["name"] == committed["name"]
    assert retrained["metrics"] == committed["metrics"]
    assert retrained["curve"] == committed["curve"]  # every epoch's mean losses too
