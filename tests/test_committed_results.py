"""The committed shapes results are what this code computes: the cheapest of them to train is
retrained from scratch, on the thread count it was made with, with other kernel levels in its
environment, which the CLI's pin must override (mlc.util.cpu).

Bits can match only where the CPU kernels round as on the machine that made the record: the same
ISA level (the pin) and the same blocking (oneDNN and MKL block by cache sizes), which the
record's kernel fingerprint tells (mlc.provenance.kernel_fingerprint). There the metrics and every
epoch's losses must be equal; elsewhere that check is skipped with the reason, and the metrics
must lie within the committed seeds' spread, as any rerun must. (The retraining starts in the
background when collected; see conftest.py.)
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from mlc.config import config_from_json
from mlc.launch import cli_args
from mlc.provenance import kernel_fingerprint
from mlc.util import cpu
from mlc.version import code_version

RESULTS = Path(__file__).resolve().parents[1] / "results" / "shapes"


def cheapest_committed() -> dict | None:
    """The committed record of this code version that takes the least time to train and
    evaluate, from its whole schedule's step time (a resumed run's own call can be short; None
    if there is none): among those made where the CPU kernels round as here (the same kernel
    fingerprint), so that the bits can be compared, where there are such records."""
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    current = [r for r in records if r["provenance"]["code_version"] == code_version()
               and "threads" in r["provenance"]]
    alike = [r for r in current if r["provenance"].get("kernel_fingerprint")
             == kernel_fingerprint(r["provenance"]["threads"])]
    return min(alike or current, key=lambda r: r["run"]["seconds_per_step"] * r["run"]["steps_total"]
               + r["run"]["eval_seconds"], default=None)


def start_retraining(root: Path) -> dict:
    """Start training the chosen run into empty run and result folders; {record, process}."""
    record = cheapest_committed()
    if record is None:
        return {}
    cfg = config_from_json(record["config"])
    threads = str(record["provenance"]["threads"])
    env = {**os.environ, "MLC_RUNS": str(root / "runs"), "MLC_RESULTS": str(root / "results"),
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if cpu.unpinnable_reason() is None:  # levels the pin must win over
        env.update(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41",
                   MKL_ENABLE_INSTRUCTIONS="SSE4_2")
    root.mkdir(parents=True, exist_ok=True)
    (root / "results").mkdir(exist_ok=True)  # a pretrained run reads the committed weights
    (root / "results" / "pretrained").symlink_to(RESULTS.parent / "pretrained")
    log = (root / "train.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "mlc", "train", "--quiet", *cli_args(cfg)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    return {"record": record, "process": process, "root": root}


def _retrained() -> tuple[dict, dict]:
    """(committed record, retrained record), once the background retraining has finished."""
    from conftest import RETRAIN

    if not RETRAIN:
        pytest.skip(f"no committed shapes result of code version {code_version()} to retrain")
    committed, root = RETRAIN["record"], RETRAIN["root"]
    rc = RETRAIN["process"].wait(timeout=1800)
    assert rc == 0, (root / "train.log").read_text()[-2000:]
    retrained = json.loads((root / "results" / "shapes" / f"{committed['name']}.json").read_text())
    assert retrained["name"] == committed["name"]
    if cpu.unpinnable_reason() is None:  # the pin won over the levels in its environment
        made = retrained["provenance"]
        assert cpu.is_pinned(made), made
    return committed, retrained


def test_a_committed_run_retrains_to_the_same_bits():
    committed, retrained = _retrained()
    theirs = committed["provenance"].get("kernel_fingerprint")
    ours = retrained["provenance"]["kernel_fingerprint"]
    if theirs != ours:
        pytest.skip(f"bits can match only where the CPU kernels round alike: kernel fingerprint "
                    f"{ours} here, {theirs or 'not recorded'} where {committed['name']} was made "
                    f"({committed['provenance'].get('cpu_model', 'CPU not recorded')}, "
                    f"{committed['provenance']['date'][:10]})")
    assert retrained["metrics"] == committed["metrics"]
    assert retrained["curve"] == committed["curve"]  # every epoch's mean losses too


def test_a_committed_run_retrains_within_the_seed_spread():
    committed, retrained = _retrained()
    off = outside_seed_spread(retrained, committed, seed_siblings(committed))
    assert not off, f"retrained metrics outside the committed seeds' spread: {off}"


def seed_siblings(record: dict) -> list[dict]:
    """The committed records of the same config but another seed."""
    same = {k: v for k, v in record["config"].items() if k != "seed"}
    return [r for r in (json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json")))
            if {k: v for k, v in r["config"].items() if k != "seed"} == same
            and r["config"]["seed"] != record["config"]["seed"]]


def headline_metrics(metrics: dict) -> dict[str, float]:
    """The numbers a table reads: AP, AP50, AP75 or AR100-1000, and the divergence."""
    keys = ("AP", "AP50", "AP75", "AR100", "AR300", "AR1000")
    out = {k: metrics[k] for k in keys if k in metrics}
    out["divergence"] = metrics["divergence"]["mean"]
    return out


def outside_seed_spread(retrained: dict, committed: dict, siblings: list[dict]) -> dict:
    """The headline metrics whose retrained value differs from the committed one by more than
    3·√2·s, s the sample std over the committed seeds (this record and its siblings): a rerun
    on other kernels is as far from the record as another seed, and the difference of two
    seeds has std √2·σ. {key: (retrained, committed, bound)}; needs at least one sibling."""
    assert siblings, f"no other seed of {committed['name']} is committed to measure the spread"
    ours, theirs = headline_metrics(retrained["metrics"]), headline_metrics(committed["metrics"])
    seeds = [headline_metrics(r["metrics"]) for r in [committed, *siblings]]
    off = {}
    for key, value in theirs.items():
        bound = 3 * math.sqrt(2) * statistics.stdev(s[key] for s in seeds)
        if abs(ours[key] - value) > bound:
            off[key] = (ours[key], value, round(bound, 5))
    return off


def test_the_seed_spread_tolerance_accepts_a_seed_and_refuses_a_broken_run():
    """The check used where bits cannot match: another committed seed passes, a run far off fails."""
    record = cheapest_committed() or json.loads(next(iter(sorted(RESULTS.glob("rpn-*.json")))).read_text())
    siblings = seed_siblings(record)
    assert len(siblings) >= 2
    assert not outside_seed_spread(siblings[0], record, siblings)
    broken = json.loads(json.dumps(record))
    for key in headline_metrics(broken["metrics"]):
        if key != "divergence":
            broken["metrics"][key] -= 20.0
    moved = set(headline_metrics(broken["metrics"])) - {"divergence"}
    assert moved and set(outside_seed_spread(broken, record, siblings)) == moved
