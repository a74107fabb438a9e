"""The tiny backbone's ImageNet: pretrained to tell which classes a generated image holds.

The paper's detectors start from an ImageNet-pretrained ResNet-50. The tiny backbone of the CPU
scales starts from weights trained on a multi-label classification task (which of the classes
appear in an image; BCE on the globally pooled last stage) over images of the scale's generator
drawn with a seed of their own, never the detection sets'. The weights are made once, named by
their spec, the scale's widths and the pretraining code's version, written atomically with a
record (accuracy, losses, provenance) and committed; they are bit for bit the same at the pinned
kernel level, one thread, as the runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlc import paths
from mlc.config import PretrainSpec
from mlc.data.shapes import ShapesSpec, render_image
from mlc.models.backbone import IMAGENET_MEAN, IMAGENET_STD, TinyResNet
from mlc.provenance import provenance
from mlc.util.io import atomic_write, atomic_write_text
from mlc.util.lock import file_lock

# The modules whose code decides the weights: the task, the generator and the network.
PRETRAIN_MODULES = ("models/pretrain.py", "data/shapes.py", "models/backbone.py")


class MultiLabelClassifier(nn.Module):
    """The tiny ResNet, global average pooling and one linear layer of per-class logits."""

    def __init__(self, widths: tuple[int, int, int, int], num_classes: int) -> None:
        super().__init__()
        self.body = TinyResNet(widths)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean((2, 3)))


def pretrain_code_version() -> str:
    """Eight hex digits over the docstring-free code of PRETRAIN_MODULES."""
    from mlc.version import PACKAGE, fingerprint

    return fingerprint(PACKAGE, lambda package: [package / m for m in PRETRAIN_MODULES])


def weights_name(spec: PretrainSpec, detection: ShapesSpec, widths: tuple[int, ...]) -> str:
    """`tiny-<hash>`: the identity of the weights a spec makes."""
    blob = json.dumps({"spec": asdict(spec), "data": asdict(spec.data(detection)),
                       "widths": list(widths), "code_version": pretrain_code_version()},
                      sort_keys=True)
    return f"tiny-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def classification_set(data: ShapesSpec, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, H, W uint8) and their multi-hot labels (N, classes) of one split."""
    n = data.num_train if split == "train" else data.num_val
    images = np.empty((n, data.image_size, data.image_size, 3), np.uint8)
    labels = torch.zeros(n, data.num_classes)
    for i in range(n):
        images[i], annotations = render_image(data, split, i)
        for ann in annotations:
            labels[i, ann["category_id"] - 1] = 1.0
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as the detectors see them: [0, 1], then ImageNet's mean and std."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 256) -> dict[str, float]:
    """Exact-match accuracy (every label of an image right) and mean per-label accuracy, in %."""
    model.eval()
    predicted = torch.cat([model(normalise(images[i:i + batch_size])) > 0
                           for i in range(0, len(images), batch_size)])
    right = predicted == labels.bool()
    return {"exact_match": round(100 * right.all(1).float().mean().item(), 2),
            "per_label": round(100 * right.float().mean().item(), 2)}


def train_classifier(spec: PretrainSpec, detection: ShapesSpec, widths: tuple[int, int, int, int],
                     progress: bool = False) -> tuple[nn.Module, dict]:
    """Train the classifier on `spec`'s set; (body, record of accuracy, losses and time)."""
    data = spec.data(detection)
    t0 = time.perf_counter()
    train_x, train_y = classification_set(data, "train")
    val_x, val_y = classification_set(data, "val")
    render_seconds = time.perf_counter() - t0
    torch.manual_seed(spec.seed)
    model = MultiLabelClassifier(widths, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                                weight_decay=spec.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    steps_per_epoch = len(train_x) // spec.batch_size
    total, step, curve = steps_per_epoch * spec.epochs, 0, []
    g = torch.Generator().manual_seed(spec.seed)
    t0 = time.perf_counter()
    for epoch in range(spec.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=g)
        flips = torch.rand(len(train_x), generator=g) < 0.5
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * spec.batch_size:(i + 1) * spec.batch_size]
            x = normalise(train_x[idx])
            x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(3), x)
            for group in optimizer.param_groups:
                group["lr"] = spec.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = loss_fn(model(x), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
        curve.append({"epoch": epoch + 1, "loss": round(sum(losses) / len(losses), 5)})
        if progress:
            print(f"pretraining epoch {epoch + 1}/{spec.epochs}: loss {curve[-1]['loss']:.4f}",
                  flush=True)
    train_seconds = time.perf_counter() - t0
    record = {"val": accuracy(model, val_x, val_y), "train": accuracy(model, train_x, train_y),
              "curve": curve, "render_seconds": round(render_seconds, 1),
              "train_seconds": round(train_seconds, 1), "steps": step}
    return model.body, record


def weights_folder() -> Path:
    return paths.results_root() / "pretrained"


def find_weights(name: str) -> Path | None:
    """The weights file of `name`: made here (MLC_RESULTS) or committed with the repository."""
    for folder in (weights_folder(), paths.REPO_ROOT / "results" / "pretrained"):
        if (folder / f"{name}.pt").exists():
            return folder / f"{name}.pt"
    return None


def pretrained_weights(spec: PretrainSpec, detection: ShapesSpec,
                       widths: tuple[int, int, int, int], progress: bool = True) -> Path:
    """The weights file of the spec, made (under a lock, so that workers asking at once wait for
    one maker) when neither the results folder nor the repository has it."""
    name = weights_name(spec, detection, widths)
    found = find_weights(name)
    if found is not None:
        return found
    folder = weights_folder()
    with file_lock(folder / f".{name}.lock"):
        found = find_weights(name)
        if found is not None:
            return found
        if progress:
            print(f"pretraining the tiny backbone {name} ({spec.images} images, {spec.epochs} "
                  "epochs): made once, then read", flush=True)
        threads = torch.get_num_threads()
        torch.set_num_threads(spec.threads)
        try:
            body, record = train_classifier(spec, detection, widths, progress)
            made = provenance()
        finally:
            torch.set_num_threads(threads)

        path = folder / f"{name}.pt"
        atomic_write(path, lambda f: torch.save(body.state_dict(), f))
        record = {"name": name, "spec": asdict(spec), "data": asdict(spec.data(detection)),
                  "widths": list(widths), "code_version": pretrain_code_version(),
                  "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), **record,
                  "provenance": made}
        atomic_write_text(folder / f"{name}.json", json.dumps(record, indent=1))
        if progress:
            print(f"pretrained {name}: {record['val']['exact_match']}% of held-out images with "
                  f"every label right, in {record['train_seconds']:.0f} s; {path}", flush=True)
        return path


def load_body(body: nn.Module, path: Path) -> None:
    """Load pretrained weights into a TinyResNet body; every tensor must match."""
    body.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
