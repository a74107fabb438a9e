"""Where a result's noise comes from: the seed of training, the finite validation set and the
machine. The seed's share is the spread over seeds; the validation set's is read from each run's
headline metric on the two halves of the validation images (independent halves: the whole set's
value has about a quarter of the variance of their difference); the machine's from runs
retrained with the CPU's own kernels in place of the pinned ones (`mlc.util.cpu`), the same
config and seed.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd

from mlc.analysis.tables import metric, per_seed


def seed_spread(runs: list[dict], row: dict, key: str) -> float | None:
    """Sample std over seeds of a grid row's metric (None with fewer than two seeds)."""
    values = [v for v in per_seed(runs, row, key).values() if v is not None]
    return statistics.stdev(values) if len(values) >= 2 else None


def eval_set_spread(runs: list[dict], row: dict, key: str) -> float | None:
    """The std a finite validation set puts into a row's headline metric: the root of the mean
    squared difference between the two halves' values, over 2 (None without halves)."""
    diffs = [a - b for a, b in _halves(runs, row, key).values()]
    return math.sqrt(statistics.fmean(d * d for d in diffs)) / 2 if diffs else None


def _halves(runs: list[dict], row: dict, key: str) -> dict[int, list[float]]:
    """{seed: [value on the even half, on the odd half]} of a row's runs that have both."""
    out = {}
    for run in runs:
        if per_seed([run], row, key):
            halves = metric(run["record"], f"val_halves.{key}")
            if halves and None not in halves:
                out[run["config"].seed] = halves
    return out


def gain_spreads(runs: list[dict], row: dict, base: dict, key: str) -> dict[str, float | None]:
    """The noise in a method's paired gain over its baseline: the std of the per-seed gains
    (seed) and the validation set's share, from the gain on each half (root mean squared
    difference of the two halves' gains, over 2)."""
    ours, theirs = per_seed(runs, row, key), per_seed(runs, base, key)
    gains = [ours[s] - theirs[s] for s in ours if s in theirs and None not in (ours[s], theirs[s])]
    h_ours, h_theirs = _halves(runs, row, key), _halves(runs, base, key)
    diffs = [(h_ours[s][0] - h_theirs[s][0]) - (h_ours[s][1] - h_theirs[s][1])
             for s in h_ours if s in h_theirs]
    return {"seed": statistics.stdev(gains) if len(gains) >= 2 else None,
            "validation set": math.sqrt(statistics.fmean(d * d for d in diffs)) / 2 if diffs
            else None}


def gain_noise_table(runs: list[dict], pairs: list[tuple[dict, dict]]) -> pd.DataFrame:
    """Per (method row, baseline row): the std of the paired gain over seeds and the validation
    set's share of it (rows carry their headline `key`)."""
    out = {}
    for row, base in pairs:
        spreads = gain_spreads(runs, row, base, row["key"])
        out[f"{row['label']} − {base['label']}"] = {
            "metric": row["key"], "std of the gain over seeds": _fmt(spreads["seed"]),
            "std of the gain from the validation set": _fmt(spreads["validation set"])}
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "gain"
    return table


def machine_differences(runs: list[dict], row: dict, key: str, other_root: Path) -> list[float]:
    """Per seed of a row that was also trained with other kernels (its record under
    `other_root`/<scale>/<run name>.json): that run's value minus the pinned run's. Both must
    have been trained with the same thread count."""
    out = []
    for run in runs:
        if not per_seed([run], row, key):
            continue
        cfg = run["config"]
        path = Path(other_root) / cfg.scale / f"{cfg.name}.json"
        if path.exists():
            record = json.loads(path.read_text())
            threads = (record.get("provenance", {}).get("threads"),
                       run["record"].get("provenance", {}).get("threads"))
            if threads[0] != threads[1]:
                raise ValueError(f"{path} was trained with {threads[0]} thread(s), the pinned run "
                                 f"with {threads[1]}: their difference is not the kernels' alone")
            out.append(metric(record, key) - metric(run["record"], key))
    return out


def noise_table(runs: list[dict], rows: list[dict], other_root: Path) -> pd.DataFrame:
    """Per row (each with its headline `key`): the std over seeds, the validation set's std, the
    machine's differences (each retrained seed's, in points) and the std they imply, and which
    of the three is largest."""
    out = {}
    for row in rows:
        key = row["key"]
        machine = machine_differences(runs, row, key, other_root)
        seeds = per_seed(runs, row, key)
        spreads = {"seed": seed_spread(runs, row, key),
                   "validation set": eval_set_spread(runs, row, key),
                   # a difference of two runs has sqrt(2) times the std of one
                   "machine": math.sqrt(statistics.fmean(d * d for d in machine) / 2)
                   if machine else None}
        known = {k: v for k, v in spreads.items() if v is not None}
        out[row["label"]] = {
            "metric": key, "seeds": len(seeds),
            "std over seeds": _fmt(spreads["seed"]),
            "std from the validation set": _fmt(spreads["validation set"]),
            "other kernels − pinned": ", ".join(f"{d:+.2f}" for d in machine) or "not run",
            "std from the machine": _fmt(spreads["machine"]),
            "largest": max(known, key=known.get) if len(known) >= 2 else "n/a",
        }
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "run"
    return table


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
