"""Train many runs: on a CPU, several single-threaded worker processes at once (one run each, a
better use of a few cores than one run on all of them); on GPUs, one run after another, each
through `torchrun` on every GPU. Runs already finished are read, not trained (a record scored by
other evaluation code is scored again from its checkpoint); each run's time and the total are
printed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time

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


def train_missing(configs: list[RunConfig], workers: int = 1, ngpus: int = 0,
                  device: str | None = None) -> list[tuple[str, float, str]]:
    """Train every config that has no record yet (or score it again, see mlc.runs), seed by
    seed; returns (name, seconds, outcome) per run.

    `ngpus` > 0: each run through `torchrun --nproc_per_node ngpus`, one after another;
    else `workers` processes with cores // workers threads each.
    """
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
    if ngpus:
        for cfg in todo:
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
        with ctx.Pool(min(workers, len(todo)), maxtasksperchild=1) as pool:
            for name, seconds, outcome in pool.imap_unordered(
                    _train_one, [(c, threads, device, fingerprint) for c in todo]):
                done.append((name, seconds, outcome))
                print(f"  [{len(done)}/{len(todo)}] {name}: {outcome} in {seconds:.0f} s", flush=True)
    total = time.perf_counter() - start
    print(f"training took {total:.0f} s ({total / 60:.1f} min) for {len(todo)} run(s)", flush=True)
    failed = [d for d in done if d[2].startswith("failed")]
    if failed:
        print("failed: " + "; ".join(f"{n}: {o}" for n, _, o in failed), file=sys.stderr)
    return done
