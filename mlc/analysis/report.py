"""What the notebooks show: runs asked for by config, tables of mean +/- std over seeds, loss
curves, and a provenance line saying which runs were trained now and which were read."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import pandas as pd

from mlc.analysis.stats import mean_std
from mlc.analysis.tables import per_seed
from mlc.config import RunConfig
from mlc.runs import get_or_train
from mlc.util import cpu


def collect(configs: Iterable[RunConfig], allow_training: bool = True,
            device: str | None = None) -> list[dict]:
    """For each config, {config, record}; record is None for a missing run when training is off.

    A line per run trained here goes to stderr as it finishes, then one line counting the runs
    read and those not run (papermill's --log-output shows them while `make reproduce` runs).
    """
    out, read, missing = [], 0, 0
    configs = list(configs)
    for cfg in configs:
        t0 = time.perf_counter()
        record = get_or_train(cfg, device=device, progress=False, allow_training=allow_training)
        if record is None:
            missing += 1
        elif record["trained_now"]:
            print(f"{cfg.scale} {cfg.name} seed {cfg.seed}: trained in "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        else:
            read += 1
        out.append({"config": cfg, "record": record})
    if configs:
        print(f"{len(configs)} runs: {read} read from their records"
              + (f", {missing} not run (training off)" if missing else ""),
              file=sys.stderr, flush=True)
    return out


def summary_table(runs: list[dict], metrics: Iterable[str], label: str = "detector") -> pd.DataFrame:
    """One row per value of config field `label`: each metric as mean ± sample std over seeds."""
    metrics = list(metrics)
    rows: dict[str, dict] = {}
    for run in runs:
        key = getattr(run["config"], label)
        row = rows.setdefault(key, {m: [] for m in metrics} | {"seeds": []})
        if run["record"] is not None:
            row["seeds"].append(run["config"].seed)
            for m in metrics:
                if m in run["record"]["metrics"]:
                    row[m].append(run["record"]["metrics"][m])
    table = pd.DataFrame(
        {key: {**{m: mean_std(row[m]) for m in metrics},
               "seeds": ",".join(map(str, row["seeds"])) or "-"} for key, row in rows.items()}
    ).T
    table.index.name = label
    return table


def loss_curves(runs: list[dict]) -> pd.DataFrame:
    """Per-epoch mean training loss of every finished run, long form."""
    rows = []
    for run in runs:
        if run["record"] is None:
            continue
        cfg = run["config"]
        for point in run["record"]["curve"]:
            rows.append({"detector": cfg.detector, "seed": cfg.seed, "epoch": point["epoch"],
                         "loss": point["loss"]})
    return pd.DataFrame(rows, columns=["detector", "seed", "epoch", "loss"])


def term_curves(grid: list[dict], runs: list[dict]) -> pd.DataFrame:
    """Per-epoch mean of every loss term of every finished run of a grid, long form: the run's
    row label, detector, seed, epoch, term, value and the epoch MLC's terms start at."""
    rows = []
    for run in runs:
        if run["record"] is None:
            continue
        cfg = run["config"]
        key = "AR100" if cfg.detector == "rpn" else "AP"
        label = next((r["label"] for r in grid if per_seed([run], r, key)), None)
        for point in run["record"]["curve"] if label is not None else ():
            for term, value in point.items():
                if term not in ("epoch", "lr", "steps"):
                    rows.append({"run": label, "detector": cfg.detector, "seed": cfg.seed,
                                 "epoch": point["epoch"], "term": term, "value": value,
                                 "start": cfg.mlc_start_epoch})
    return pd.DataFrame(rows, columns=["run", "detector", "seed", "epoch", "term", "value", "start"])


def provenance_line(runs: list[dict], made_by: str) -> str:
    """One line under a table or figure: what made it, from which runs, trained now or read."""
    if not runs:
        return f"Made by {made_by}: no run at this scale."
    done = [r["record"] for r in runs if r["record"] is not None]
    now = sum(r["trained_now"] for r in done)
    commits = sorted({r["provenance"]["git_commit"][:10] for r in done})
    dates = sorted({r["provenance"]["date"][:10] for r in done})
    missing = len(runs) - len(done)
    scales = sorted({r["config"].scale for r in runs})
    kernels = {}
    for r in done:
        made = r["provenance"]
        key = (f"{made.get('threads', '?')} thread(s), kernel fingerprint "
               f"{made.get('kernel_fingerprint', '?')}")
        kernels[key] = kernels.get(key, 0) + 1
    apart = ("" if len(kernels) <= 1 else
             "; **not comparable bit for bit**: trained at " + ", ".join(
                 f"{key} ({n} run{'s' * (n != 1)})" for key, n in sorted(kernels.items()))
             + " (CPU results depend on both: train a new row with `mlc runs`, one thread per run)")
    return (f"Made by {made_by} from {len(done)} run(s) at scale {', '.join(scales)}: "
            f"{now} trained by this notebook, {len(done) - now} read from their result files"
            + (f", {missing} not run" if missing else "")
            + (f"; code {', '.join(commits)}; dated {', '.join(dates)}" if done else "") + apart + ".")


def what_was_run(runs: list[dict], scale: str, seeds: list[int]) -> pd.DataFrame:
    """The first page's "what was run": runs needed and finished, seeds, devices, training
    hours, the training and evaluation code versions with the validation set's size, and the
    CPU each was trained on with its kernel levels, thread count and kernel fingerprint
    (records made before these were kept say "not recorded")."""
    done = [r["record"] for r in runs if r["record"] is not None]
    extra = sorted({r["config"].seed for r in runs} - set(seeds))

    def counted(values: list[str]) -> str:
        counts = {v: values.count(v) for v in sorted(set(values))}
        if len(counts) == 1:
            return next(iter(counts))
        return "; ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in counts.items()) or "-"

    def made(key: str) -> list[str]:
        return [str(r["provenance"].get(key, "not recorded")) for r in done]

    levels = [", ".join(f"{lib} {r['provenance'][key]}" for lib, key in cpu.LIBRARIES.items())
              if "aten_capability" in r["provenance"] else "not recorded" for r in done]
    rows = {
        "runs needed": len(runs),
        "runs finished": len(done),
        "seeds": ", ".join(map(str, seeds)) + (f"; {extra[0]}-{extra[-1]} for the claims that "
                                                "needed more (grids.DECIDING)" if extra else ""),
        "devices": counted([r["run"]["device"] for r in done]),
        "training hours": round(sum(r["run"]["train_seconds_this_call"] for r in done) / 3600, 2),
        "training code versions": counted(made("code_version")),
        "evaluation": counted([f"code {r['evaluation']['evaluation_version']} on "
                               f"{r['evaluation']['val_images']} images" if "evaluation" in r
                               else "not recorded" for r in done]),
        "CPU": counted(made("cpu_model")),
        "CPU kernels": counted(levels),
        "threads per run": counted(made("threads")),
        "kernel fingerprint": counted(made("kernel_fingerprint")),
    }
    return pd.DataFrame({f"scale {scale}": rows})


def benchmark_ratios(reports: list[dict]) -> tuple[pd.DataFrame, float | None]:
    """MLC's cost from `python -m mlc bench` reports (their JSON, merged in order, a later
    report's figures replacing an earlier one's): each variant's time as a ratio to its
    detector's baseline, with the target beside it; and the batched Otsu's speed-up over the
    per-object scikit-image loop (None when no report timed it)."""
    training: dict[str, dict] = {}
    inference: dict[str, dict] = {}
    otsu = None
    for report in reports:
        training.update(report.get("training", {}))
        inference.update(report.get("inference", {}))
        otsu = report.get("otsu") or otsu
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for det, t in training.items():
        for variant in ("ML", "IUR", "ML+IUR"):
            row = (f"training step, {variant}", "≤ 1.05" if variant == "ML+IUR" else "")
            rows.setdefault(row, {})[det] = f"{t[variant] / t['baseline']:.3f}"
    for key, t in inference.items():
        det, thresh = key.split("@")
        row = (f"inference with IUR, score threshold {thresh}", "≤ 1.02")
        rows.setdefault(row, {})[det] = f"{t['IUR'] / t['baseline']:.3f}"
    names = {"fcos": "FCOS", "fcos_minus": "FCOS−", "retinanet": "RetinaNet", "rpn": "RPN"}
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("").rename(columns=names)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["time, ratio to the baseline", "target"])
    return table, None if otsu is None else otsu["loop"] / otsu["batched"]
