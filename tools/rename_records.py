"""Rename committed records (their run folders and figure data with them) to their configs' names
under the current code.

A run's name carries the training code's version, so any change to that code renames every run.
Where the change leaves a config's computation as it was (a new option off by default, a new
field of a scale), its records are still that config's results: this renames them, keeps the name
and code version each was trained as under `provenance.trained_as`, and stamps the current code
version. Use it only for such a change, and check it with the exact-retrain test
(tests/test_committed_results.py) at a kernel fingerprint of the committed records.

    .venv/bin/python tools/rename_records.py [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mlc import paths
from mlc.config import config_from_json
from mlc.util.io import atomic_write_text
from mlc.version import code_version


def rename(results: Path, runs: Path, dry_run: bool) -> int:
    """Rename every record under `results` whose name is not its config's; returns the count."""
    count = 0
    for path in sorted(p for p in results.rglob("*.json") if "figures" not in p.parts):
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or "config" not in record or "name" not in record:
            continue
        cfg = config_from_json(record["config"])
        if cfg.name == record["name"]:
            continue
        count += 1
        print(f"{path.relative_to(results)}: {record['name']} -> {cfg.name}")
        if dry_run:
            continue
        made = record["provenance"]
        made.setdefault("trained_as", {"name": record["name"], "code_version": made["code_version"]})
        made["code_version"] = code_version()
        old_name, record["name"] = record["name"], cfg.name
        atomic_write_text(path.with_name(f"{cfg.name}.json"), json.dumps(record, indent=1))
        path.unlink()
        figure = path.parent / "figures" / f"{old_name}.json"
        if figure.is_file():  # the run's figure data (mlc.figures) goes with it
            data = json.loads(figure.read_text())
            data["run"] = cfg.name
            atomic_write_text(figure.with_name(f"{cfg.name}.json"), json.dumps(data, indent=1))
            figure.unlink()
        run_dir = runs / path.parent.relative_to(results) / old_name
        if run_dir.is_dir():
            os.replace(run_dir, run_dir.with_name(cfg.name))
    return count


def rename_unfinished(runs: Path, dry_run: bool) -> int:
    """Rename run folders that have no record yet (a run stopped mid-way) to their configs' names,
    so that they resume rather than start again; returns the count."""
    count = 0
    for config in sorted(runs.glob("*/*/config.json")):
        run_dir = config.parent
        name = config_from_json(json.loads(config.read_text())).name
        if name == run_dir.name or (run_dir / "metrics.json").exists():
            continue
        count += 1
        print(f"{run_dir.relative_to(runs)} -> {name} (unfinished)")
        if not dry_run:
            os.replace(run_dir, run_dir.with_name(name))
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print what would be renamed")
    args = parser.parse_args()
    n = rename(paths.results_root(), paths.runs_root(), args.dry_run)
    print(f"{n} record(s) {'to rename' if args.dry_run else 'renamed'}")
    n = rename_unfinished(paths.runs_root(), args.dry_run)
    print(f"{n} unfinished run folder(s) {'to rename' if args.dry_run else 'renamed'}")


if __name__ == "__main__":
    main()
