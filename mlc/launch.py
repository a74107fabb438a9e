"""Train many runs: on a CPU, several single-threaded worker processes at once (one run each, a
better use of a few cores than one run on all of them); on GPUs, one run after another, each
through `torchrun` on every GPU. Runs already finished are read, not trained (a record scored by
other evaluation code is scored again from its checkpoint); each run's time and the total are
printed.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import queue
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mlc import paths
from mlc.config import SCALES, RunConfig, make_config
from mlc.models.pretrain import pretrained_weights
from mlc.provenance import kernel_fingerprint
from mlc.runs import load_record, scored_now


def cli_args(cfg: RunConfig) -> list[str]:
    """`python -m mlc train` arguments that make `cfg` (every field that differs from the
    defaults of its detector, scale, schedule and seed as a --set)."""
    base = make_config(cfg.detector, cfg.scale, cfg.schedule, cfg.seed).to_json()
    sets = [f"--set={k}={json.dumps(v)}" for k, v in cfg.to_json().items() if v != base[k]]
    return ["--detector", cfg.detector, "--scale", cfg.scale, "--schedule", cfg.schedule,
            "--seed", str(cfg.seed), *sets]


def training_images(cfg: RunConfig) -> int:
    """How many images one epoch of `cfg` trains on (COCO's train2017 for the coco scale)."""
    spec = cfg.scale_spec.shapes
    return spec.num_train if spec is not None else 118_287


def _train_one(job: tuple[RunConfig, int, str | None, str]) -> tuple[str, float, str]:
    """Train one run in this worker process with `threads` threads; (name, seconds, outcome)."""
    import torch

    from mlc.provenance import known_fingerprint
    from mlc.runs import get_or_train

    cfg, threads, device, fingerprint = job
    torch.set_num_threads(threads)
    known_fingerprint(threads, fingerprint)
    t0 = time.perf_counter()
    try:
        record = get_or_train(cfg, device=device, progress=False)
        outcome = ("trained" if record and record.get("trained_now") else
                   "scored again" if record and record.get("scored_again") else "read")
    except Exception as err:  # reported with the run's name; the other runs go on
        outcome = f"failed: {type(err).__name__}: {err}"
    return cfg.name, time.perf_counter() - t0, outcome


def steps(cfg: RunConfig) -> int:
    """Optimiser steps of a whole run: epochs times the batches of one epoch."""
    return cfg.epochs * math.ceil(training_images(cfg) / cfg.batch_size)


# What a run's pace is read from, most alike first: the same method on the same detector, then the
# detector alone, then the scale.
_PACE_KEYS = (lambda c: (c["scale"], c["detector"], c["ml"], c["iur"], c["alignment"], c["vfl"], c["tal"]),
              lambda c: (c["scale"], c["detector"]), lambda c: (c["scale"],))


def paces(results_root: Path | None = None) -> list[dict]:
    """Seconds per step by each key of _PACE_KEYS: the median over the committed records (on
    a CPU, paces at one thread, as `mlc runs` trains)."""
    seen: list[dict] = [{} for _ in _PACE_KEYS]
    for path in sorted(Path(results_root or paths.results_root()).glob("*/*.json")):
        try:
            record = json.loads(path.read_text())
            cfg, pace = record["config"], record["run"]["seconds_per_step"]
        except (ValueError, KeyError, TypeError):
            continue  # not a run's record (pretrained weights, an exploration log)
        for table, key in zip(seen, _PACE_KEYS):
            table.setdefault(key(cfg), []).append(pace)
    return [{k: statistics.median(v) for k, v in table.items()} for table in seen]


def run_minutes(cfg: RunConfig, pace_tables: list[dict]) -> float | None:
    """A run's estimated training minutes from the committed records' paces (the most alike
    run's), None where no record of its scale says."""
    as_json = cfg.to_json()
    for table, key in zip(pace_tables, _PACE_KEYS):
        if key(as_json) in table:
            return table[key(as_json)] * steps(cfg) / 60
    return None


def left_line(left: list[RunConfig], pace_tables: list[dict]) -> str:
    """'N runs (seeds ...), about M CPU-minutes' of the runs not trained."""
    minutes = [run_minutes(c, pace_tables) for c in left]
    known = sum(m for m in minutes if m is not None)
    unknown = sum(m is None for m in minutes)
    seeds = sorted({c.seed for c in left})
    untimed = f" and {unknown} run(s) no record times" if unknown else ""
    return (f"{len(left)} run(s)" + (f" (seeds {', '.join(map(str, seeds))})" if seeds else "")
            + f", about {known:.0f} CPU-minutes{untimed}")


class Budget:
    """A wall-clock budget in minutes (None: no limit): a run is started only when the committed
    records' paces say it can end within it, a seed only when all its runs can, so that whole
    seeds are left behind where possible."""

    def __init__(self, minutes: float | None, workers: int = 1, pace_tables: list[dict] | None = None):
        self.minutes, self.workers = minutes, max(1, workers)
        self.start = time.monotonic()
        self.pace_tables = pace_tables if pace_tables is not None else (paces() if minutes else [])

    def elapsed_min(self) -> float:
        return (time.monotonic() - self.start) / 60

    def fits(self, cfg: RunConfig, seed_runs: list[RunConfig] | None = None) -> bool:
        """Whether `cfg` (and, when given, the rest of its seed shared among the workers) can
        end within the budget; a run no record times is started while time is left."""
        if self.minutes is None:
            return True
        left = self.minutes - self.elapsed_min()
        own = run_minutes(cfg, self.pace_tables) or 0.0
        if seed_runs:
            whole = sum(run_minutes(c, self.pace_tables) or 0.0 for c in seed_runs)
            own = max(own, whole / self.workers)
        return left > 0 and own <= left


def train_missing(configs: list[RunConfig], workers: int = 1, ngpus: int = 0,
                  device: str | None = None,
                  budget: Budget | None = None) -> tuple[list[tuple[str, float, str]], list[RunConfig]]:
    """Train every config that has no record yet (or score it again, see mlc.runs), seed by
    seed, within `budget`; returns ((name, seconds, outcome) per run started, the runs not
    started).

    `ngpus` > 0: each run through `torchrun --nproc_per_node ngpus`, one after another;
    else `workers` processes with cores // workers threads each.
    """
    budget = budget or Budget(None)
    # Seed by seed, so that a stopped `make reproduce` leaves whole seeds behind it; within a
    # seed the longest runs first, so that the workers finish together rather than one alone.
    todo = sorted({c.name: c for c in configs
                   if (record := load_record(c)) is None or not scored_now(record, c)}.values(),
                  key=lambda c: (c.seed, -training_images(c) * c.epochs))
    print(f"{len(configs)} runs asked for, {len(configs) - len(todo)} finished, "
          f"{len(todo)} to train or score again" + (f" on {ngpus} GPU(s)" if ngpus else
                                     f" in {min(workers, max(len(todo), 1))} worker(s)"), flush=True)
    start, done = time.perf_counter(), []
    for sc in sorted({c.scale for c in todo if c.pretrained and c.scale_spec.pretrain is not None}):
        spec = SCALES[sc]  # made here once, before the workers that read it start
        pretrained_weights(spec.pretrain, spec.shapes, spec.tiny_widths)
    waiting = list(todo)

    def next_run() -> RunConfig | None:
        """The next run to start, or None (and nothing more starts) when the budget says no."""
        if not waiting:
            return None
        cfg = waiting[0]
        first_of_seed = all(c.seed != cfg.seed for c in todo if c not in waiting)
        if not budget.fits(cfg, [c for c in waiting if c.seed == cfg.seed] if first_of_seed else None):
            return None
        return waiting.pop(0)

    if ngpus:
        while (cfg := next_run()) is not None:
            t0 = time.perf_counter()
            rc = subprocess.run(["torchrun", "--standalone", f"--nproc_per_node={ngpus}", "-m",
                                 "mlc", "train", "--quiet", *cli_args(cfg)]).returncode
            done.append((cfg.name, time.perf_counter() - t0, "trained" if rc == 0 else f"failed: rc {rc}"))
            print(f"  {cfg.name}: {done[-1][2]} in {done[-1][1]:.0f} s", flush=True)
    elif todo:
        threads = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count()) // workers)
        fingerprint = kernel_fingerprint(threads)  # the same for every worker
        ctx = multiprocessing.get_context("spawn")
        finished: queue.Queue = queue.Queue()
        with ctx.Pool(min(workers, len(todo)), maxtasksperchild=1) as pool:
            running = 0
            while True:
                while running < workers and (cfg := next_run()) is not None:
                    pool.apply_async(_train_one, [(cfg, threads, device, fingerprint)],
                                     callback=finished.put, error_callback=finished.put)
                    running += 1
                if not running:
                    break
                outcome = finished.get()
                running -= 1
                if isinstance(outcome, BaseException):  # the worker itself died
                    outcome = ("?", 0.0, f"failed: {type(outcome).__name__}: {outcome}")
                done.append(outcome)
                name, seconds, said = outcome
                print(f"  [{len(done)}/{len(todo)}] {name}: {said} in {seconds:.0f} s", flush=True)
    total = time.perf_counter() - start
    print(f"training took {total:.0f} s ({total / 60:.1f} min) for {len(done)} run(s)", flush=True)
    failed = [d for d in done if d[2].startswith("failed")]
    if failed:
        print("failed: " + "; ".join(f"{n}: {o}" for n, _, o in failed), file=sys.stderr)
    return done, waiting
