"""Runs by config. `runs/<scale>/<detector>-<hash>/` holds a run's config, step log, checkpoint,
provenance and metrics; `results/<scale>/<detector>-<hash>.json` is its small committed record
(config, metrics, timing, provenance, per-epoch losses). A run whose record exists in either
place is read, never trained again. Records are written last and atomically, so a record's
presence means the run finished.

The hash names what was trained; a record also carries its evaluation identity (the evaluation
code's version and the validation set). A record of another evaluation identity is scored again
from the run's checkpoint, or retrained where the checkpoint is not there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from mlc import paths
from mlc.config import ConfigError, RunConfig, config_from_json
from mlc.data.build import data_source
from mlc.engine import evaluate_run, train
from mlc.overrides import check_config
from mlc.provenance import provenance
from mlc.util import cpu, distributed
from mlc.util.io import atomic_write_text
from mlc.util.lock import file_lock, try_lock, unlock
from mlc.version import evaluation_version


def gradient_digest() -> str:
    """The digest `kernel_fingerprint` reports, computed in this process."""
    from mlc.config import make_config
    from mlc.models import build_detector

    digest = hashlib.sha256()
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for detector in ("fcos_minus", "rpn"):
        model, _ = build_detector(make_config(detector, "shapes"), num_classes=4)
        model.train()
        images = [torch.rand(3, 96, 96, generator=g) for _ in range(8)]
        corners = torch.rand(8, 2, 2, generator=g) * 80
        targets = [{"boxes": torch.cat([c.min(0).values, c.max(0).values + 8]).view(1, 4),
                    "labels": torch.randint(0, 4, (1,), generator=g)} for c in corners]
        sum(model(images, targets).values()).backward()
        for param in model.parameters():
            if param.grad is not None:
                digest.update(param.grad.numpy().tobytes())
    return digest.hexdigest()[:12]


def evaluation_identity(cfg: RunConfig) -> str:
    """Eight hex digits over the evaluation code's version and the validation set `cfg` is
    scored on (a generated set's whole spec, or COCO's folder)."""
    name, spec = data_source(cfg.scale, cfg.head_offset)
    blob = json.dumps({"evaluation_version": evaluation_version(), "data": name,
                       "spec": asdict(spec) if spec is not None else None}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def evaluation_stamp(cfg: RunConfig, scored: dict) -> dict:
    """A record's `evaluation`: its identity, what scored it and when, on what kernels."""
    made = provenance()
    return {"identity": evaluation_identity(cfg), "evaluation_version": evaluation_version(),
            "val_images": scored["val_images"], "seconds": scored["eval_seconds"],
            **{k: made[k] for k in ("git_commit", "threads", "kernels", "kernel_fingerprint", "date")
               if k in made}}


def scored_now(record: dict, cfg: RunConfig) -> bool:
    """Whether the record was scored by this evaluation code on this validation set."""
    return record.get("evaluation", {}).get("identity") == evaluation_identity(cfg)


def epoch_curve(log: Path) -> list[dict]:
    """Mean of every logged loss term per epoch, and the epoch's last lr."""
    by_epoch: dict[int, list[dict]] = {}
    for line in Path(log).read_text().splitlines():
        entry = json.loads(line)
        by_epoch.setdefault(entry["epoch"], []).append(entry)
    curve = []
    for epoch, entries in sorted(by_epoch.items()):
        keys = [k for k in entries[0] if k not in ("step", "epoch", "lr")]
        curve.append({"epoch": epoch + 1, "lr": entries[-1]["lr"], "steps": len(entries),
                      **{k: round(sum(e[k] for e in entries) / len(entries), 5) for k in keys}})
    return curve


def record_paths(cfg: RunConfig, runs_root: Path | None = None,
                 results_root: Path | None = None) -> tuple[Path, Path]:
    """(run folder, committed record file) of a config."""
    results = Path(results_root or paths.results_root()) / cfg.scale / f"{cfg.name}.json"
    return cfg.run_dir(runs_root or paths.runs_root()), results


def load_record(cfg: RunConfig, runs_root: Path | None = None,
                results_root: Path | None = None) -> dict | None:
    """The finished run's record, from its run folder or the committed results, else None."""
    run_dir, result = record_paths(cfg, runs_root, results_root)
    for path, source in ((run_dir / "metrics.json", "run folder"), (result, "committed results")):
        if path.exists():
            return {**json.loads(path.read_text()), "source": source}
    return None


def get_or_train(cfg: RunConfig, runs_root: Path | None = None, data_root: Path | None = None,
                 device: str | None = None, progress: bool = True,
                 stop_after_epoch: int | None = None, resume: bool = True,
                 results_root: Path | None = None, allow_training: bool = True) -> dict | None:
    """The run's record: read if it exists, else trained (resuming a checkpoint), unless
    allow_training is False, in which case a missing run gives None.

    A record scored by other evaluation code or on another validation set counts as missing;
    with allow_training, it is scored again from the run's checkpoint (never retrained when
    the checkpoint is there).

    A process holds a lock on the run folder while it checks and trains, so that a second
    process asking for the same run waits and then reads the record; under torchrun, rank 0
    holds it for the whole job. Before any work: every field's type is checked, a CPU run must
    use the pinned kernel level (mlc.util.cpu), and a run from ImageNet weights must have them.
    """
    check_config(cfg)
    run_dir, result = record_paths(cfg, runs_root, results_root)
    done = load_record(cfg, runs_root, results_root)
    if done is not None and not result.exists():  # killed before the committed copy was written
        atomic_write_text(result, (run_dir / "metrics.json").read_text())
    if done is not None and scored_now(done, cfg):
        return {**done, "trained_now": False}
    if not allow_training:
        return None
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if not use_cuda:
        cpu.check()
    problems = missing_prerequisites(cfg, data_root)
    if any(not p.startswith("the ImageNet weights") for p in problems):  # weights alone: fetched
        raise ConfigError(f"{cfg.name} cannot start: " + "; ".join(problems))
    require_imagenet_weights(cfg)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        lock = _lock_for_the_job(run_dir / ".lock", device)
    else:
        lock = file_lock(run_dir / ".lock")
    with lock:
        done = load_record(cfg, runs_root, results_root)  # another process may have finished it
        if done is not None and scored_now(done, cfg):
            return {**done, "trained_now": False} if _is_rank_zero() else None
        for stale in run_dir.glob(".*.tmp") if _is_rank_zero() else ():  # left by a killed write
            stale.unlink()
        distributed.barrier()  # under torchrun: no rank writes before the stale files are gone
        if done is not None and (run_dir / "checkpoint.pt").exists():
            return _score_and_record(cfg, done, run_dir, result, data_root, device)
        return _train_and_record(cfg, run_dir, result, data_root, device, progress,
                                 stop_after_epoch, resume)


@contextmanager
def _lock_for_the_job(path: Path, device: str | None, poll_seconds: float = 2.0) -> Iterator[None]:
    """Under torchrun: rank 0 holds the run's lock while the job checks and trains; every rank
    waits with it, trying together every `poll_seconds`, so that no collective times out while
    another job holds the lock for hours."""
    info = distributed.setup(device)
    fd, said = None, False
    while True:
        if info.is_main and fd is None:
            fd = try_lock(path)
        if distributed.gather(fd is not None)[0]:
            break
        if info.is_main and not said:
            print(f"waiting for {path}: another job is training this run", file=sys.stderr,
                  flush=True)
            said = True
        time.sleep(poll_seconds)
    try:
        yield
    finally:
        if fd is not None:
            unlock(fd)


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", 0)) == 0


def imagenet_weights_file() -> Path:
    """Where torchvision keeps ResNet-50's ImageNet weights once fetched."""
    from torchvision.models import ResNet50_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(ResNet50_Weights.IMAGENET1K_V1.url).name


def missing_prerequisites(cfg: RunConfig, data_root: Path | None = None) -> list[str]:
    """Everything a run needs that is not here, each named, before any work or download: COCO's
    files at `coco` scale, ImageNet weights for a pretrained ResNet-50 (fetched on first use where
    the internet is reachable), a writable runs folder."""
    problems = []
    if cfg.scale_spec.shapes is None:
        root = Path(data_root or paths.data_root()) / cfg.scale_spec.data
        needed = [root / "annotations" / f"instances_{s}2017.json" for s in ("train", "val")]
        needed += [root / f"{s}2017" for s in ("train", "val")]
        absent = [str(p) for p in needed if not p.exists()]
        if absent:
            problems.append(f"the COCO 2017 files {', '.join(absent)} are missing (unzip "
                            "train2017.zip, val2017.zip and annotations_trainval2017.zip from "
                            f"cocodataset.org into {root})")
    if cfg.pretrained and cfg.scale_spec.backbone == "resnet50" and not imagenet_weights_file().exists():
        problems.append(f"the ImageNet weights of ResNet-50 are not at {imagenet_weights_file()} "
                        "(torchvision fetches them on first use where the internet is reachable; "
                        "--set pretrained=false trains from random init on purpose)")
    runs = paths.runs_root()
    if runs.exists() and not os.access(runs, os.W_OK):
        problems.append(f"the runs folder {runs} is not writable")
    return problems


def require_imagenet_weights(cfg: RunConfig) -> None:
    """Refuse a run that starts from ImageNet weights when they cannot be had, rather than let
    it train from random init for hours toward a table it does not belong to."""
    if not (cfg.pretrained and cfg.scale_spec.backbone == "resnet50"):
        return
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V1
    try:
        weights.get_state_dict(progress=False)  # from torch's cache, else downloaded into it
    except Exception as err:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise ConfigError(
            f"the ImageNet weights of ResNet-50 could not be loaded ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}); put "
            f"{Path(weights.url).name} (from {weights.url}) at {cache}, or pass "
            "--set pretrained=false to train from random init on purpose") from err


def _train_and_record(cfg: RunConfig, run_dir: Path, result: Path, data_root: Path | None,
                      device: str | None, progress: bool, stop_after_epoch: int | None,
                      resume: bool) -> dict | None:
    """Train the run and write its record (provenance, metrics.json, the committed copy)."""
    checkpoint = run_dir / "checkpoint.pt"
    if resume and checkpoint.exists() and _is_rank_zero():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
        print(f"resuming {cfg.name} from epoch {state['epoch']}, step {state['step']}",
              file=sys.stderr, flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_json(), indent=2))
    try:
        out = train(cfg, run_dir, data_root or paths.data_root(), device=device, resume=resume,
                    stop_after_epoch=stop_after_epoch, progress=progress)
    except BaseException:
        if not checkpoint.exists() and _is_rank_zero():  # nothing trained: leave nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if "metrics" not in out:
        return {**out, "config": cfg.to_json(), "run_dir": str(run_dir)}
    metrics = out.pop("metrics")
    if metrics is None:  # not rank 0: rank 0 writes the record
        distributed.barrier()
        return None
    record = {"name": cfg.name, "config": cfg.to_json(), "metrics": metrics, "run": out,
              "curve": epoch_curve(run_dir / "log.jsonl"), "provenance": provenance(),
              "evaluation": evaluation_stamp(cfg, out)}
    atomic_write_text(run_dir / "provenance.json", json.dumps(record["provenance"], indent=2))
    _write_record(record, run_dir, result)
    return {**record, "source": "run folder", "trained_now": True}


def _score_and_record(cfg: RunConfig, record: dict, run_dir: Path, result: Path,
                      data_root: Path | None, device: str | None) -> dict | None:
    """Score the finished run's checkpoint again and replace its record's metrics and
    evaluation (its training, curve and provenance stay)."""
    scored = evaluate_run(cfg, run_dir, data_root or paths.data_root(), device)
    if scored["metrics"] is None:  # not rank 0
        distributed.barrier()
        return None
    record = {k: v for k, v in record.items() if k != "source"}
    record.update(metrics=scored["metrics"], evaluation=evaluation_stamp(cfg, scored),
                  run={**record["run"], "eval_seconds": scored["eval_seconds"],
                       "val_images": scored["val_images"]})
    _write_record(record, run_dir, result)
    return {**record, "source": "run folder", "trained_now": False, "scored_again": True}


def _write_record(record: dict, run_dir: Path, result: Path) -> None:
    text = json.dumps(record, indent=1)
    atomic_write_text(run_dir / "metrics.json", text)  # its presence marks the run done
    atomic_write_text(result, text)
    distributed.barrier()


def read_config(run_dir: Path) -> RunConfig:
    """The config a run folder was made with."""
    path = Path(run_dir) / "config.json"
    try:
        cfg = config_from_json(json.loads(path.read_text()))
        check_config(cfg)
    except (ConfigError, TypeError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from err
    return cfg
