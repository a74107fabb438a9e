"""`python -m mlc bench`: what MLC costs, measured side by side in one process.

Training steps of each detector with and without ML, IUR and both (MLC's terms switched on),
inference with and without IUR, and the batched Otsu threshold against a per-object loop of
scikit-image's. Variants are timed in alternation, round after round, and each figure is the
median over rounds, so that a noisy machine slows all of them alike; the ratios to the
baseline are what to read. Targets (issue 3): ML+IUR step <= 1.05x, inference <= 1.02x,
batched Otsu >= 100x the loop.

At `coco` scale the models are ResNet-50-FPN in the layout of an ImageNet-initialised run (frozen
BN, stem and first stage frozen; random weights, which do not change the timing), the batch is
COCO's when data/coco exists, else generated images of COCO's sizes, and torchvision's own FCOS
R50-FPN is timed beside the FCOS preset (issue 1's anchor: within 5%).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.detection import FCOS

from mlc import paths
from mlc.config import DENSE, SCALES, make_config
from mlc.data.build import datasets, splits
from mlc.data.coco import collate
from mlc.models import build_backbone, build_detector, switch_mlc_terms
from mlc.mutual import otsu_threshold, otsu_threshold_torch
from mlc.util import cpu

VARIANTS = {"baseline": {}, "ML": {"ml": True}, "IUR": {"iur": True},
            "ML+IUR": {"ml": True, "iur": True}, "VFL": {"vfl": True}, "TAL": {"tal": True}}
SUCCESSORS = ("VFL", "TAL")  # MLC's successors: the dense detectors only


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(fns: dict[str, Callable[[], object]], rounds: int, repeat: int,
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


def synthetic_coco_batch(size: int, num_classes: int = 80, seed: int = 0):
    """`size` random images of COCO's common sizes with 1-15 boxes each (COCO has 7.3 on
    average), for timing the `coco` preset where COCO is not on disk."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(480, 640), (640, 480), (427, 640), (640, 427), (375, 500), (612, 612)]
    images, targets = [], []
    for i in range(size):
        h, w = shapes[i % len(shapes)]
        n = int(torch.randint(1, 16, (1,), generator=g))
        wh = torch.exp(torch.empty(n, 2).uniform_(2.5, 6.0, generator=g))  # 12 to 400 px
        xy = torch.rand(n, 2, generator=g) * (torch.tensor([w, h]) - wh).clamp(min=1)
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w, h]))], 1)
        images.append(torch.rand(3, h, w, generator=g))
        targets.append({"boxes": boxes, "labels": torch.randint(0, num_classes, (n,), generator=g),
                        "image_id": i})
    return images, targets, num_classes


def _batch(scale: str, device: torch.device):
    """One global batch of the scale's training set (generated COCO-like images if the scale is
    `coco` and COCO is not under the data folder)."""
    data_root = paths.data_root()
    size = SCALES[scale].batch_size
    try:
        splits(scale, data_root)
        train_set, _ = datasets(scale, data_root, seed=0)
        images, targets = collate([train_set[i] for i in range(size)])
        num_classes, source = train_set.num_classes, f"{size} images of {scale}'s training set"
    except FileNotFoundError:
        images, targets, num_classes = synthetic_coco_batch(size)
        source = f"{size} generated images of COCO's sizes (no COCO under {data_root})"
    images = [img.to(device) for img in images]
    targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    return images, targets, num_classes, source


def pretrained_layout(model: nn.Module) -> nn.Module:
    """Freeze what torchvision freezes in an ImageNet-initialised ResNet-50 (stem and layer1),
    so that a randomly initialised model times like the run a user makes."""
    body = model.backbone.body
    for name, param in body.named_parameters():
        if not name.startswith(("layer2", "layer3", "layer4")):
            param.requires_grad_(False)
    return model


def _bench_config(detector: str, scale: str, **overrides):
    """The scale's config; at `coco` scale without ImageNet weights (nothing to download)."""
    if SCALES[scale].backbone == "resnet50":
        overrides["pretrained"] = False
    return make_config(detector, scale, **overrides)


def _prepare(model: nn.Module, scale: str, device: torch.device) -> nn.Module:
    if SCALES[scale].backbone == "resnet50":
        pretrained_layout(model)
    return model.to(device)


def sgd_step(model: nn.Module, images, targets, grad_clip: float | None, device: torch.device):
    """A function doing one training step as the engine does (AMP on CUDA, the loss read back,
    gradient clipping where the config has it)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            loss = sum(model(images, targets).values())
        loss.item()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(opt)
        scaler.update()
    return step


def step_memory(step: Callable[[], None], device: torch.device) -> float | None:
    """GiB a training step allocates above what is resident before it (CUDA only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**30


def anchor(scale: str, device: torch.device, rounds: int, repeat: int) -> dict:
    """torchvision's FCOS (its head, loss and post-processing) on the very backbone of the
    scale's FCOS preset, beside the preset: seconds per step, images per second, step memory."""
    images, targets, num_classes, source = _batch(scale, device)
    cfg = _bench_config("fcos", scale)
    torch.manual_seed(0)
    ours, _ = build_detector(cfg, num_classes)
    torch.manual_seed(0)
    backbone, _ = build_backbone(cfg)
    theirs = FCOS(backbone, num_classes, min_size=cfg.scale_spec.min_size,
                  max_size=cfg.scale_spec.max_size, detections_per_img=cfg.detections_per_img)
    steps = {"torchvision FCOS": sgd_step(_prepare(theirs, scale, device).train(), images, targets,
                                          None, device),
             "mlc FCOS preset": sgd_step(_prepare(ours, scale, device).train(), images, targets,
                                         cfg.grad_clip, device)}
    memory = {name: step_memory(fn, device) for name, fn in steps.items()}
    times = alternate(steps, rounds, repeat, device)
    return {"batch": source, "seconds": times, "memory_gib": memory,
            "images_per_second": {k: len(images) / v for k, v in times.items()}}
def training_steps(detector: str, scale: str, device: torch.device, rounds: int,
                   repeat: int) -> dict[str, float]:
    """Seconds per SGD step (forward, backward, update; AMP on CUDA) of each variant."""
    images, targets, num_classes, _ = _batch(scale, device)
    steps = {}
    for name, overrides in VARIANTS.items():
        if name in SUCCESSORS and detector not in DENSE:
            continue
        cfg = _bench_config(detector, scale, **overrides)
        torch.manual_seed(0)
        model, _ = build_detector(cfg, num_classes)
        switch_mlc_terms(model, True)
        steps[name] = sgd_step(_prepare(model, scale, device).train(), images, targets,
                               cfg.grad_clip, device)
    return alternate(steps, rounds, repeat, device)


@torch.no_grad()
def inference(detector: str, scale: str, device: torch.device, rounds: int, repeat: int,
              score_thresh: float) -> dict[str, float]:
    """Seconds per batch of inference (with post-processing) without and with IUR."""
    images, _, num_classes, _ = _batch(scale, device)
    calls, shared = {}, None
    for name, overrides in (("baseline", {}), ("IUR", {"iur": True})):
        torch.manual_seed(0)
        model, _ = build_detector(_bench_config(detector, scale, score_thresh=score_thresh,
                                                **overrides), num_classes)
        if shared is None:
            shared = model.state_dict()
        else:  # the same weights, and IUR's layer zeroed: a constant predicted IoU keeps the
            # baseline's ranking, so both send the same boxes through NMS and the ratio is the
            # layer's and the product's cost, not a different NMS workload
            missing = model.load_state_dict(shared, strict=False).missing_keys
            assert missing and all("iou" in k for k in missing), missing
            for key, param in model.named_parameters():
                if key in missing:
                    param.zero_()
        _prepare(model, scale, device).eval()

        def call(model=model) -> list[dict]:
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                return model(images)
        calls[name] = call
    same = all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(*(c() for c in calls.values())))
    return {**alternate(calls, rounds, repeat, device), "same_boxes": same}


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

    fns = {"batched": lambda: otsu_threshold(values, ids, objects), "loop": loop}
    if device.type == "cuda":  # the Triton kernels beside the same arithmetic in torch ops
        assert torch.equal(otsu_threshold(values, ids, objects),
                           otsu_threshold_torch(values, ids, objects))
        fns["torch ops"] = lambda: otsu_threshold_torch(values, ids, objects)
    return alternate(fns, rounds, 3, device)


PARTS = ("anchor", "training", "inference", "otsu")


def run(scale: str, detectors: list[str], device: torch.device, rounds: int, repeat: int,
        parts: tuple[str, ...] = PARTS) -> dict:
    """The measurements named in `parts`, printed as they come, returned as a dict."""
    report: dict = {"scale": scale, "device": str(device), "threads": torch.get_num_threads(),
                    "training": {}, "inference": {}}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report["device_name"] = name
    if device.type == "cpu":
        report["cpu"] = cpu.level()
    print(f"scale {scale}, device {device} ({name}), {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; median of {rounds} alternating rounds of {repeat} calls")
    if device.type == "cpu":
        print("CPU kernels: " + ", ".join(f"{lib} {report['cpu'][key]}"
                                          for lib, key in cpu.LIBRARIES.items())
              + f" ({report['cpu']['kernels']}; {report['cpu']['cpu_model']})")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the engine sets it
    if "anchor" in parts and "fcos" in detectors:
        a = anchor(scale, device, rounds, repeat)
        report["anchor"] = a
        base = a["seconds"]["torchvision FCOS"]
        print(f"\nFCOS beside torchvision's own ({a['batch']}; target: within 5%)")
        for k, v in a["seconds"].items():
            mem = a["memory_gib"][k]
            print(f"  {k:<17} {v:.4f} s/step ({v / base:.3f}x)  {a['images_per_second'][k]:.1f} "
                  f"img/s" + (f"  step memory {mem:.1f} GiB" if mem is not None else ""))
    if "training" in parts:
        print("\ntraining step, seconds (ratio to the baseline; target ML+IUR <= 1.05)")
    for det in detectors if "training" in parts else []:
        t = training_steps(det, scale, device, rounds, repeat)
        report["training"][det] = t
        print(f"  {det:<11}" + "  ".join(f"{k} {v:.4f} ({v / t['baseline']:.3f}x)" for k, v in t.items()))
    if "inference" in parts:
        print("\ninference per batch, seconds (ratio; target IUR <= 1.02)")
    for det in detectors if "inference" in parts else []:
        for thresh in (0.05, 0.0):
            t = inference(det, scale, device, rounds, repeat, thresh)
            report["inference"][f"{det}@{thresh}"] = t
            print(f"  {det:<11}score_thresh {thresh:<5} baseline {t['baseline']:.4f}  IUR "
                  f"{t['IUR']:.4f} ({t['IUR'] / t['baseline']:.3f}x)"
                  + ("" if t["same_boxes"] else "  (the two kept different boxes)"))
    if "otsu" in parts:
        t = otsu_speed(device)
        report["otsu"] = t
        print(f"\nOtsu, 100 objects x 200 candidates (target >= 100x the loop; batched: Triton on "
              f"CUDA): scikit-image "
              f"loop {t['loop'] * 1e3:.2f} ms; batched {t['batched'] * 1e3:.3f} ms "
              f"({t['loop'] / t['batched']:.1f}x)"
              + (f"; the same in torch ops {t['torch ops'] * 1e3:.3f} ms "
              f"({t['loop'] / t['torch ops']:.1f}x)" if "torch ops" in t else ""))
    return report
