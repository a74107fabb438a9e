"""`python -m mlc bench`: what MLC costs, measured side by side in one process.

Training steps of each detector with and without ML, IUR and both (MLC's terms switched on),
inference with and without IUR, and the batched Otsu threshold against a per-object loop of
scikit-image's. Variants are timed in alternation, round after round, and each figure is the
median over rounds, so that a noisy machine slows all of them alike; the ratios to the
baseline are what to read. Targets (issue 3): ML+IUR step <= 1.05x, inference <= 1.02x,
batched Otsu >= 100x the loop.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from mlc import paths
from mlc.config import make_config
from mlc.data.build import datasets, splits
from mlc.data.coco import collate
from mlc.models import build_detector, switch_mlc_terms
from mlc.mutual import otsu_threshold

VARIANTS = {"baseline": {}, "ML": {"ml": True}, "IUR": {"iur": True},
            "ML+IUR": {"ml": True, "iur": True}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(fns: dict[str, Callable[[], None]], rounds: int, repeat: int,
              device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternation (after one warm-up call)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / repeat)
    return {name: statistics.median(t) for name, t in times.items()}


def _batch(scale: str, device: torch.device):
    data_root = paths.data_root()
    splits(scale, data_root)
    train_set, val_set = datasets(scale, data_root, seed=0)
    size = make_config("fcos_minus", scale).batch_size
    images, targets = collate([train_set[i] for i in range(size)])
    images = [img.to(device) for img in images]
    targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    return images, targets, train_set.num_classes


def training_steps(detector: str, scale: str, device: torch.device, rounds: int,
                   repeat: int) -> dict[str, float]:
    """Seconds per SGD step (forward, backward, update; AMP on CUDA) of each variant."""
    images, targets, num_classes = _batch(scale, device)
    steps = {}
    for name, overrides in VARIANTS.items():
        cfg = make_config(detector, scale, **overrides)
        torch.manual_seed(0)
        model, _ = build_detector(cfg, num_classes)
        model.to(device).train()
        switch_mlc_terms(model, True)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")

        def step(model=model, opt=opt, scaler=scaler) -> None:
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                loss = sum(model(images, targets).values())
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        steps[name] = step
    return alternate(steps, rounds, repeat, device)


@torch.no_grad()
def inference(detector: str, scale: str, device: torch.device, rounds: int, repeat: int,
              score_thresh: float) -> dict[str, float]:
    """Seconds per batch of inference (with post-processing) without and with IUR."""
    images, _, num_classes = _batch(scale, device)
    calls = {}
    for name, overrides in (("baseline", {}), ("IUR", {"iur": True})):
        torch.manual_seed(0)
        model, _ = build_detector(make_config(detector, scale, score_thresh=score_thresh,
                                              **overrides), num_classes)
        model.to(device).eval()

        def call(model=model) -> None:
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                model(images)
        calls[name] = call
    return alternate(calls, rounds, repeat, device)


def otsu_speed(device: torch.device, objects: int = 100, candidates: int = 200,
               rounds: int = 7) -> dict[str, float]:
    """Seconds for `objects` thresholds of `candidates` values each: batched, and one
    scikit-image call per object (the values of each selected by its object id, as a loop over
    a batch's objects would)."""
    from skimage.filters import threshold_otsu

    g = torch.Generator().manual_seed(0)
    values = torch.rand(objects * candidates, generator=g).to(device)
    ids = torch.randperm(objects * candidates, generator=g).to(device) % objects

    def loop() -> None:
        for k in range(objects):
            threshold_otsu(values[ids == k].cpu().numpy(), nbins=256)

    return alternate({"batched": lambda: otsu_threshold(values, ids, objects), "loop": loop},
                     rounds, 3, device)


def run(scale: str, detectors: list[str], device: torch.device, rounds: int, repeat: int) -> dict:
    """Every measurement, printed as it comes, returned as a dict."""
    report: dict = {"scale": scale, "device": str(device), "threads": torch.get_num_threads(),
                    "training": {}, "inference": {}}
    print(f"scale {scale}, device {device}, {torch.get_num_threads()} threads; median of {rounds} "
          f"alternating rounds of {repeat} calls")
    print("\ntraining step, seconds (ratio to the baseline; target ML+IUR <= 1.05)")
    for det in detectors:
        t = training_steps(det, scale, device, rounds, repeat)
        report["training"][det] = t
        print(f"  {det:<11}" + "  ".join(f"{k} {v:.4f} ({v / t['baseline']:.3f}x)" for k, v in t.items()))
    print("\ninference per batch, seconds (ratio; target IUR <= 1.02)")
    for det in detectors:
        for thresh in (0.05, 0.0):
            t = inference(det, scale, device, rounds, repeat, thresh)
            report["inference"][f"{det}@{thresh}"] = t
            print(f"  {det:<11}score_thresh {thresh:<5} baseline {t['baseline']:.4f}  IUR "
                  f"{t['IUR']:.4f} ({t['IUR'] / t['baseline']:.3f}x)")
    t = otsu_speed(device)
    report["otsu"] = t
    print(f"\nOtsu, 100 objects x 200 candidates: batched {t['batched'] * 1e3:.2f} ms, "
          f"scikit-image loop {t['loop'] * 1e3:.2f} ms: {t['loop'] / t['batched']:.1f}x "
          f"(target >= 100x)")
    return report
