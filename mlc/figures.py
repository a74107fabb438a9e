"""Figure data that needs a trained model: the boxes of the paper's Fig. 1 (the divergence on real
predictions) and the labels of its Fig. 2 (mutual labeling on an image).

Both are computed from a finished run's checkpoint and kept as small JSON beside the run's
committed record (`results/<scale>/figures/<run>.json`), so that the book draws them without
the checkpoint. The file is named by the run, whose name carries the code version, so a figure
of a retrained run is recomputed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torchvision.ops import box_iou

from mlc import paths
from mlc.config import RunConfig
from mlc.data.build import datasets
from mlc.data.coco import CocoDetection
from mlc.divergence import spearman_divergence
from mlc.engine import load_checkpoint
from mlc.models import build_detector, switch_mlc_terms
from mlc.util.io import atomic_write_text

FIGURES_VERSION = 1  # bump when what is computed here changes
FLOOR = 0.3  # the divergence metric's IoU floor: the boxes drawn around an object


def figure_path(cfg: RunConfig, results_root: Path | None = None) -> Path:
    return Path(results_root or paths.results_root()) / cfg.scale / "figures" / f"{cfg.name}.json"


def load_model(cfg: RunConfig, num_classes: int, device: torch.device,
               runs_root: Path | None = None) -> nn.Module | None:
    """The finished run's trained model from its checkpoint; None where the run has not finished
    (its checkpoint is then an epoch's, not the result's) or its checkpoint is not here."""
    run_dir = cfg.run_dir(runs_root or paths.runs_root())
    ckpt = run_dir / "checkpoint.pt"
    if not (run_dir / "metrics.json").exists() or not ckpt.exists():
        return None
    model, _ = build_detector(cfg, num_classes)
    model.load_state_dict(load_checkpoint(ckpt, cfg)["model"])
    return model.to(device)


def _round(t: torch.Tensor, digits: int = 4) -> list:
    return [[round(v, digits) for v in row] for row in t.tolist()] if t.dim() == 2 \
        else [round(v, digits) for v in t.tolist()]


@torch.no_grad()
def divergence_examples(model: nn.Module, dataset: CocoDetection, device: torch.device,
                        count: int = 4, max_images: int = 100, max_boxes: int = 40,
                        objects: list[tuple[int, int]] | None = None) -> list[dict]:
    """Fig. 1: val objects with the boxes that enter NMS around them (each box given to the
    object of its class it overlaps most, IoU >= 0.3), their scores and IoUs, and what NMS kept.

    Unless `objects` ((image index, object index) pairs) names them, the objects chosen are
    those whose highest-scored box is worst localised against their best box: where the
    divergence turns a well-localised box into a suppressed one (a missed object at a strict
    IoU) and keeps a poor one (a false detection).
    """
    model.eval()
    wanted = {} if objects is None else {tuple(o) for o in objects}
    indices = sorted({i for i, _ in wanted}) if objects else range(min(max_images, len(dataset)))
    found = []
    for index in indices:
        image, target = dataset[index]
        out = model([image.to(device)])[0]
        boxes, scores = out["pre_nms_boxes"].float().cpu(), out["pre_nms_scores"].float().cpu()
        labels = out["pre_nms_labels"].cpu()
        overlap = box_iou(boxes, target["boxes"]) * (labels[:, None] == target["labels"][None, :])
        best_iou, owner = overlap.max(1) if len(target["boxes"]) else (torch.zeros(0), torch.zeros(0))
        kept = box_iou(out["boxes"].float().cpu(), target["boxes"]) if len(target["boxes"]) else None
        for j in range(len(target["boxes"])):
            if objects is not None and (index, j) not in wanted:
                continue
            mine = (owner == j) & (best_iou >= FLOOR)
            if mine.sum() < 2:
                continue
            s, iou, b = scores[mine], best_iou[mine], boxes[mine]
            order = s.argsort(descending=True)[:max_boxes]
            same_class = out["labels"].cpu() == target["labels"][j]
            near = (kept[:, j] >= FLOOR) & same_class
            found.append({
                "image_index": index, "image_id": int(target["image_id"]), "object": j,
                "label": int(target["labels"][j]), "gt_box": _round(target["boxes"][j], 1),
                "boxes": _round(b[order], 1), "scores": _round(s[order]), "ious": _round(iou[order]),
                "gap": round(float(iou.max() - iou[s.argmax()]), 4),
                "spearman": spearman_divergence(s, iou, torch.zeros_like(s), min_boxes=2)["mean"],
                "kept_boxes": _round(out["boxes"].float().cpu()[near], 1),
                "kept_scores": _round(out["scores"].float().cpu()[near]),
                "kept_ious": _round(kept[near, j]),
            })
    if objects is None:
        found.sort(key=lambda e: -e["gap"])
        chosen, images = [], set()
        for e in found:  # one object per image
            if e["image_index"] not in images:
                chosen.append(e)
                images.add(e["image_index"])
            if len(chosen) == count:
                break
        return chosen
    return found


@torch.no_grad()
def mutual_label_example(model: nn.Module, dataset: CocoDetection, device: torch.device,
                         index: int) -> dict:
    """Fig. 2: the candidate locations of each object of one image with the labels mutual
    labeling gives them (classification positive, localization positive, both or neither) and
    the detector's own positives, from a trained FCOS(-) + ML model with MLC's terms on."""
    head = model.head
    captured = {}
    original = head.mutual_targets

    def recording(targets, out, anchors, matched, candidate):
        t = original(targets, out, anchors, matched, candidate)
        captured.update(anchors=anchors, matched=matched, candidate=candidate, t=t)
        return t

    image, target = dataset[index]
    head.mutual_targets = recording
    try:
        switch_mlc_terms(model, True)
        model.train()
        model([image.to(device)], [{k: v.to(device) if torch.is_tensor(v) else v
                                    for k, v in target.items()}])
    finally:
        del head.mutual_targets
        model.eval()
    if not captured:
        raise ValueError("the model does not use mutual labeling (its config has ml=false)")
    resized = model.transform([image.to(device)])[0].image_sizes[0]
    scale = torch.tensor([image.shape[-1] / resized[1], image.shape[-2] / resized[0]])
    anchors, t = captured["anchors"][0].cpu(), captured["t"]
    cand = captured["candidate"][0].cpu()
    keep = cand >= 0
    centres = (anchors[keep, :2] + anchors[keep, 2:]) / 2 * scale
    strides = (anchors[keep, 2] - anchors[keep, 0])
    return {"image_index": index, "image_id": int(target["image_id"]),
            "gt_boxes": _round(target["boxes"], 1), "gt_labels": target["labels"].tolist(),
            "centres": _round(centres, 1), "strides": _round(strides, 1),
            "object": cand[keep].tolist(),
            "own_positive": (captured["matched"][0].cpu()[keep] >= 0).tolist(),
            "cls_positive": t.cls_pos[0].cpu()[keep].tolist(),
            "loc_positive": t.loc_pos[0].cpu()[keep].tolist()}


def figure_datasets(cfg: RunConfig) -> tuple[CocoDetection, CocoDetection]:
    """The run's validation set and its training set without the random flips (the images the
    figures draw on)."""
    train, val = datasets(cfg.scale, paths.data_root(), cfg.seed, cfg.head_offset)
    return val, CocoDetection(train.split, train=False)  # training images without flips


def figure_data(cfg: RunConfig, kind: str, device: str | None = None,
                objects: list[tuple[int, int]] | None = None,
                image_index: int | None = None) -> dict | None:
    """The figure data of a run: read from its JSON if there, else computed from its checkpoint
    and written; None when neither exists. `kind` is "divergence" (Fig. 1) or "labels" (Fig. 2:
    the training image with the most objects among the first 50, unless `image_index`)."""
    path = figure_path(cfg)
    stored = json.loads(path.read_text()) if path.exists() else {}
    key = kind if objects is None else f"{kind}:{sorted(map(tuple, objects))}"
    if stored.get("version") == FIGURES_VERSION and key in stored:
        return stored[key]
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    val, train = figure_datasets(cfg)
    model = load_model(cfg, val.num_classes, dev)
    if model is None:
        return None
    if kind == "divergence":
        data = divergence_examples(model, val, dev, objects=objects)
    elif kind == "labels":
        if image_index is None:
            counts = [len(train[i][1]["boxes"]) for i in range(min(50, len(train)))]
            image_index = max(range(len(counts)), key=counts.__getitem__)
        data = mutual_label_example(model, train, dev, image_index)
    else:
        raise ValueError(f"unknown figure kind {kind!r}; allowed: divergence, labels")
    stored = {**(stored if stored.get("version") == FIGURES_VERSION else {}),
              "version": FIGURES_VERSION, "run": cfg.name, key: data}
    atomic_write_text(path, json.dumps(stored, indent=1))
    return data
