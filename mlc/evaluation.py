"""COCO evaluation with pycocotools: AP for detections, class-agnostic AR for proposals."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pycocotools.cocoeval import COCOeval
from torch import nn

from mlc.data.coco import CocoDetection, collate
from mlc.util import distributed

DETECTION_METRICS = ("AP", "AP50", "AP75", "APS", "APM", "APL")
PROPOSAL_LIMITS = (100, 300, 1000)


@torch.no_grad()
def predict(model: nn.Module, dataset: CocoDetection, device: torch.device, batch_size: int,
            rank: int = 0, world_size: int = 1) -> list[dict]:
    """COCO-format results ({image_id, category_id, bbox xywh, score}) for this process's share
    of the images (every world_size-th one), in input-image coordinates."""
    model.eval()
    indices = list(range(rank, len(dataset), world_size))
    results = []
    for start in range(0, len(indices), batch_size):
        images, targets = collate([dataset[i] for i in indices[start:start + batch_size]])
        outputs = model([img.to(device, non_blocking=True) for img in images])
        for target, out in zip(targets, outputs):
            boxes = out["boxes"].float().cpu()
            boxes[:, 2:] -= boxes[:, :2]
            for box, score, label in zip(boxes.tolist(), out["scores"].tolist(),
                                         out["labels"].tolist()):
                results.append({"image_id": target["image_id"],
                                "category_id": dataset.category_ids[label],
                                "bbox": [round(v, 3) for v in box], "score": round(score, 5)})
    return results


def _run_cocoeval(dataset: CocoDetection, results: list[dict], use_cats: bool,
                  max_dets: tuple[int, ...]) -> COCOeval:
    gt = dataset.coco
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = sorted(dataset.ids)
        ev.params.useCats = int(use_cats)
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
    return ev


def detection_metrics(dataset: CocoDetection, results: list[dict]) -> dict[str, float]:
    """COCO AP, AP50, AP75, APS, APM, APL in percent (0 when there is no detection; None for
    an object size that the validation set does not contain)."""
    if not results:
        return {k: 0.0 for k in DETECTION_METRICS}
    ev = _run_cocoeval(dataset, results, use_cats=True, max_dets=(1, 10, 100))
    with contextlib.redirect_stdout(io.StringIO()):
        ev.summarize()
    return {k: None if v == -1 else round(100 * float(v), 3)
            for k, v in zip(DETECTION_METRICS, ev.stats[:6])}


def proposal_metrics(dataset: CocoDetection, results: list[dict]) -> dict[str, float]:
    """Class-agnostic average recall over IoU 0.5:0.95 at 100, 300 and 1000 proposals, percent."""
    if not results:
        return {f"AR{k}": 0.0 for k in PROPOSAL_LIMITS}
    ev = _run_cocoeval(dataset, results, use_cats=False, max_dets=PROPOSAL_LIMITS)
    recall = ev.eval["recall"][:, :, 0, :]  # [IoU thresholds, 1 category, maxDets], area "all"
    out = {}
    for m, k in enumerate(PROPOSAL_LIMITS):
        r = recall[:, :, m]
        out[f"AR{k}"] = round(100 * float(np.mean(r[r > -1])) if (r > -1).any() else 0.0, 3)
    return out


def evaluate(model: nn.Module, dataset: CocoDetection, proposals: bool, device: torch.device,
             batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, float] | None:
    """Metrics over the whole set, computed on rank 0 from every process's share (None elsewhere)."""
    shares = distributed.gather(predict(model, dataset, device, batch_size, rank, world_size))
    if rank != 0:
        return None
    results = [r for share in shares for r in share]
    return proposal_metrics(dataset, results) if proposals else detection_metrics(dataset, results)
