"""Training and evaluation of one run: SGD with warmup and step drops, AMP on CUDA, DDP under
torchrun, a checkpoint each epoch, resume, a JSON-lines step log and a progress bar.

The order of images and the flips are functions of (seed, epoch), and each process takes
every world_size-th image of each global batch, so a run is the same on one process or many
(up to float summation order) and a resumed run equals an uninterrupted one bit for bit on
the CPU.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mlc.config import DENSE, ConfigError, RunConfig
from mlc.data.build import datasets, splits
from mlc.data.coco import collate
from mlc.evaluation import evaluate
from mlc.models import build_detector, switch_mlc_terms
from mlc.util import distributed
from mlc.util.io import atomic_write


class GlobalBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of this process's share of each global batch of a seeded per-epoch permutation."""

    def __init__(self, size: int, global_batch: int, seed: int, rank: int, world_size: int) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by {world_size} processes")
        if size < global_batch:
            raise ConfigError(f"the training set has {size} images, fewer than one batch "
                              f"({global_batch}): lower it with --set batch_size=N (and the lr in "
                              "proportion, --set lr=...)")
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.global_batch

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.size, generator=g).tolist()
        for i in range(len(self)):
            batch = perm[i * self.global_batch:(i + 1) * self.global_batch]
            yield batch[self.rank::self.world_size]


def learning_rate(cfg: RunConfig, epoch: int, step: int) -> float:
    """Linear warmup over the first iterations, then x0.1 after each epoch in lr_steps."""
    lr = cfg.lr * 0.1 ** sum(epoch >= s for s in cfg.lr_steps)
    if step < cfg.warmup_iters:
        lr *= cfg.warmup_factor + (1 - cfg.warmup_factor) * step / cfg.warmup_iters
    return lr


def save_checkpoint(path: Path, cfg: RunConfig, model: nn.Module, optimizer, scaler,
                    epoch: int, step: int) -> None:
    """Atomically write the state after `epoch` whole epochs."""
    state = {"config": cfg.to_json(), "epoch": epoch, "step": step,
             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict()}
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, cfg: RunConfig) -> dict:
    """A checkpoint made by this very config, or a ConfigError saying how it differs."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    theirs, ours = state.get("config", {}), cfg.to_json()
    if json.dumps(theirs, sort_keys=True, default=str) != json.dumps(ours, sort_keys=True,
                                                                      default=str):
        diff = {k: (theirs.get(k), ours[k]) for k in ours if theirs.get(k) != ours[k]}
        raise ConfigError(f"{path} was made by a different config; (checkpoint, this run): {diff}")
    return state


def _truncate_log(log: Path, step: int) -> None:
    """Drop log lines past `step`: they belong to an epoch that was not checkpointed."""
    if log.exists():
        lines = [ln for ln in log.read_text().splitlines() if ln and json.loads(ln)["step"] < step]
        atomic_write(log, lambda f: f.write("".join(ln + "\n" for ln in lines).encode()))


def train_one_epoch(net: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, cfg: RunConfig, epoch: int, step: int,
                    device: torch.device, report) -> int:
    """One pass over the loader; report(step, epoch, lr, loss terms) after every step.

    Returns the global step after the epoch; raises FloatingPointError on a non-finite loss.
    """
    net.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    use_amp = scaler.is_enabled()
    for images, targets in loader:
        lr = learning_rate(cfg, epoch, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = [img.to(device, non_blocking=True) for img in images]
        targets = [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                    for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            losses = net(images, targets)
        loss = sum(losses.values())
        terms = {k: v.item() for k, v in losses.items()}
        if not math.isfinite(sum(terms.values())):
            raise FloatingPointError(f"non-finite loss at step {step} (epoch {epoch + 1}): {terms}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        report(step, epoch, lr, terms)
        step += 1
    return step


def train(cfg: RunConfig, run_dir: Path, data_root: Path, device: str | None = None,
          resume: bool = True, stop_after_epoch: int | None = None, progress: bool = True) -> dict:
    """Train `cfg` into run_dir and evaluate it; returns {metrics, timing, model info}.

    With resume, a checkpoint in run_dir continues where it stopped. stop_after_epoch ends
    the call after that many epochs (a checkpoint is written), for jobs with a time limit.
    """
    dist = distributed.setup(device)
    dev = dist.device
    run_dir = Path(run_dir)
    torch.manual_seed(cfg.seed)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if dist.is_main:
        splits(cfg.scale, data_root, cfg.head_offset)  # generates a synthetic set if missing, on rank 0 only
    distributed.barrier()
    train_set, val_set = datasets(cfg.scale, data_root, cfg.seed, cfg.head_offset)
    model, info = build_detector(cfg, train_set.num_classes)
    model.to(dev)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and dev.type == "cuda")

    ckpt, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    start_epoch, step = 0, 0
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, cfg)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step = state["epoch"], state["step"]
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if start_epoch:
            _truncate_log(log_path, step)
        else:
            log_path.unlink(missing_ok=True)
    distributed.barrier()

    net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None) \
        if dist.world_size > 1 else model
    sampler = GlobalBatchSampler(len(train_set), cfg.batch_size, cfg.seed, dist.rank,
                                 dist.world_size)
    # Loader workers feed a GPU; on a CPU they would only compete with the model for cores.
    workers = min(8, torch.multiprocessing.cpu_count() // dist.world_size) if dev.type == "cuda" else 0
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate,
                                         num_workers=workers, pin_memory=dev.type == "cuda")
    steps_per_epoch = len(sampler)
    end_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch)
    bar = tqdm(total=steps_per_epoch * cfg.epochs, initial=step, unit="step", dynamic_ncols=True,
               disable=not (progress and dist.is_main))
    log = log_path.open("a") if dist.is_main else None

    def report(step: int, epoch: int, lr: float, terms: dict[str, float]) -> None:
        if log is not None:
            log.write(json.dumps({"step": step, "epoch": epoch, "lr": lr,
                                  "loss": sum(terms.values()), **terms}) + "\n")
            log.flush()
        bar.set_postfix({k[:12]: f"{v:.3f}" for k, v in terms.items()}, refresh=False)
        bar.update()

    t_train, steps_run = 0.0, 0
    try:
        for epoch in range(start_epoch, end_epoch):
            bar.set_description(f"{cfg.name} epoch {epoch + 1}/{cfg.epochs}")
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            switch_mlc_terms(model, epoch >= cfg.mlc_start_epoch)
            t0 = time.perf_counter()
            try:
                step = train_one_epoch(net, loader, optimizer, scaler, cfg, epoch, step, dev, report)
            except FloatingPointError as err:
                last = ckpt if ckpt.exists() else "none"
                raise FloatingPointError(f"{err}; last good checkpoint: {last}") from None
            t_train += time.perf_counter() - t0
            steps_run += steps_per_epoch
            if dist.is_main:
                save_checkpoint(ckpt, cfg, model, optimizer, scaler, epoch + 1, step)
            distributed.barrier()
    finally:
        bar.close()
        if log is not None:
            log.close()
    if end_epoch < cfg.epochs:
        return {"stopped_after_epoch": end_epoch}
    scored = score(cfg, model, val_set, dist)
    return {"metrics": scored.pop("metrics"), "model": info, "world_size": dist.world_size,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "train_seconds_this_call": round(t_train, 2), "steps_this_call": steps_run,
            "seconds_per_step": round(t_train / steps_run, 4) if steps_run else None,
            "steps_per_second": round(steps_run / t_train, 3) if steps_run else None,
            "steps_total": step, "train_images": len(train_set), **scored}


def score(cfg: RunConfig, model: nn.Module, val_set, dist: distributed.DistInfo) -> dict:
    """The trained model's metrics on the validation set (None on ranks other than 0), with
    IoU-NMS's AP for IUR models, and the time it took: {metrics, eval_seconds, val_images}."""
    t0 = time.perf_counter()
    metrics = evaluate(model, val_set, dist.device, batch_size=max(1, cfg.batch_size // dist.world_size),
                       rank=dist.rank, world_size=dist.world_size,
                       iou_nms=cfg.iur and cfg.detector in DENSE)
    return {"metrics": metrics, "eval_seconds": round(time.perf_counter() - t0, 2),
            "val_images": len(val_set)}


def evaluate_run(cfg: RunConfig, run_dir: Path, data_root: Path, device: str | None = None) -> dict:
    """Score a finished run again from its checkpoint, as `train` scores it at its end: for a
    record made by other evaluation code or on another validation set. Never trains."""
    dist = distributed.setup(device)
    if dist.is_main:
        splits(cfg.scale, data_root, cfg.head_offset)
    distributed.barrier()
    _, val_set = datasets(cfg.scale, data_root, cfg.seed, cfg.head_offset)
    path = Path(run_dir) / "checkpoint.pt"
    state = load_checkpoint(path, cfg)
    if state["epoch"] != cfg.epochs:
        raise ValueError(f"{path} holds epoch {state['epoch']} of {cfg.epochs}: the run has not "
                         "finished, so there is nothing to score")
    model, _ = build_detector(cfg, val_set.num_classes)
    model.load_state_dict(state["model"])
    return score(cfg, model.to(dist.device), val_set, dist)
