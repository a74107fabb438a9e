"""Evaluation on the validation set: COCO AP for detections, class-agnostic AR for proposals
(both by faster-coco-eval: pycocotools' protocol in C++, the same recall to the last bit and the
same AP, in a tenth of the time, which 1000 proposals on each of 1200 images need), the
divergence metric from the boxes as they enter NMS and, for IUR models, AP with IoU-NMS in
place of rescoring (the same trained model, so Table 2 needs no extra run). The headline metric
is also computed on each half of the validation images (even and odd ids): how far the two
halves differ measures the noise the finite validation set puts into a result. The headline
and the divergence are also computed on the set's first 200 images (the book's whole
validation set until 2026-11-28), so that the noise study shows what a set that size decides."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster
from torch import nn

from mlc.data.coco import CocoDetection, collate
from mlc.divergence import boxes_around_objects, divergence_by_floor
from mlc.models.rpn import ProposalNetwork
from mlc.util import distributed

DETECTION_METRICS = ("AP", "AP50", "AP75", "APS", "APM", "APL")
PROPOSAL_LIMITS = (100, 300, 1000)
DIVERGENCE_FLOOR = 0.3  # DESIGN.md's IoU floor of the metric's box set
DIVERGENCE_FLOORS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # recorded for the sensitivity study
MIN_BOXES = 5
OBJECT_ID_STRIDE = 100_000  # object id = image index x stride + object index in the image
FIRST_IMAGES = 200  # the subset recorded beside the whole set (the module's docstring)


@torch.no_grad()
def predict(model: nn.Module, dataset: CocoDetection, device: torch.device, batch_size: int,
            rank: int = 0, world_size: int = 1) -> tuple[list[dict], list[torch.Tensor]]:
    """COCO-format results ({image_id, category_id, bbox xywh, score}) for this process's share
    of the images (every world_size-th one), in input-image coordinates, and the divergence
    metric's boxes: [score, IoU, object id] rows of the pre-NMS boxes around each object."""
    model.eval()
    proposals = isinstance(model, ProposalNetwork)
    indices = list(range(rank, len(dataset), world_size))
    results, around = [], []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        images, targets = collate([dataset[i] for i in chunk])
        outputs = model([img.to(device, non_blocking=True) for img in images])
        for index, target, out in zip(chunk, targets, outputs):
            if "pre_nms_boxes" in out:  # proposals are class-agnostic
                gt_labels = torch.zeros_like(target["labels"]) if proposals else target["labels"]
                s, iou, obj = boxes_around_objects(
                    out["pre_nms_boxes"], out["pre_nms_scores"].float(), out["pre_nms_labels"],
                    target["boxes"].to(device), gt_labels.to(device), min(DIVERGENCE_FLOORS))
                around.append(torch.stack([s.cpu().double(), iou.cpu().double(),
                                           (obj.cpu() + index * OBJECT_ID_STRIDE).double()], 1))
            boxes = out["boxes"].float().cpu()
            boxes[:, 2:] -= boxes[:, :2]
            for box, score, label in zip(boxes.tolist(), out["scores"].tolist(),
                                         out["labels"].tolist()):
                results.append({"image_id": target["image_id"],
                                "category_id": dataset.category_ids[label],
                                "bbox": [round(v, 3) for v in box], "score": round(score, 5)})
    return results, around


def _run_cocoeval(dataset: CocoDetection, results: list[dict], use_cats: bool,
                  max_dets: tuple[int, ...], image_ids: list[int] | None = None) -> COCOeval_faster:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(dataset.coco.dataset)
        ev = COCOeval_faster(gt, gt.loadRes(results), "bbox")
        ev.params.imgIds = sorted(dataset.ids) if image_ids is None else sorted(image_ids)
        ev.params.useCats = int(use_cats)
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
    return ev


def detection_metrics(dataset: CocoDetection, results: list[dict],
                      image_ids: list[int] | None = None) -> dict[str, float]:
    """COCO AP, AP50, AP75, APS, APM, APL in percent (0 when there is no detection; None for
    an object size that the validation set does not contain), over `image_ids` (default all)."""
    if not results:
        return {k: 0.0 for k in DETECTION_METRICS}
    ev = _run_cocoeval(dataset, results, use_cats=True, max_dets=(1, 10, 100), image_ids=image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.summarize()
    return {k: None if v == -1 else round(100 * float(v), 3)
            for k, v in zip(DETECTION_METRICS, ev.stats[:6])}


def proposal_metrics(dataset: CocoDetection, results: list[dict],
                     image_ids: list[int] | None = None) -> dict[str, float]:
    """Class-agnostic average recall over IoU 0.5:0.95 at 100, 300 and 1000 proposals, percent,
    over `image_ids` (default all)."""
    if not results:
        return {f"AR{k}": 0.0 for k in PROPOSAL_LIMITS}
    ev = _run_cocoeval(dataset, results, use_cats=False, max_dets=PROPOSAL_LIMITS,
                       image_ids=image_ids)
    recall = ev.eval["recall"][:, :, 0, :]  # [IoU thresholds, 1 category, maxDets], area "all"
    out = {}
    for m, k in enumerate(PROPOSAL_LIMITS):
        r = recall[:, :, m]
        out[f"AR{k}"] = round(100 * float(np.mean(r[r > -1])) if (r > -1).any() else 0.0, 3)
    return out


def divergence_metrics(around: list[torch.Tensor]) -> dict:
    """The divergence at DESIGN.md's floor and at every recorded floor, from `predict`'s rows."""
    rows = torch.cat(around) if around else torch.zeros(0, 3, dtype=torch.float64)
    scores, ious, ids = rows[:, 0], rows[:, 1], rows[:, 2].long()
    by_floor = divergence_by_floor(scores, ious, ids, DIVERGENCE_FLOORS, MIN_BOXES)
    for figures in by_floor.values():  # JSON has no NaN: no object qualified
        figures.update({k: None if v != v else round(v, 5) for k, v in figures.items()
                        if k != "n_objects"})
    return {"divergence": by_floor[f"{DIVERGENCE_FLOOR:.1f}"], "divergence_by_floor": by_floor}


@contextlib.contextmanager
def iou_nms_inference(model: nn.Module):
    """Post-process with IoU-NMS instead of rescoring while inside the block."""
    before = model.settings
    model.settings = dataclasses.replace(before, iou_nms=True)
    try:
        yield model
    finally:
        model.settings = before


def evaluate(model: nn.Module, dataset: CocoDetection, device: torch.device, batch_size: int,
             rank: int = 0, world_size: int = 1, iou_nms: bool = False) -> dict | None:
    """Metrics over the whole set, computed on rank 0 from every process's share (None
    elsewhere): AP or AR, the divergence, and with `iou_nms` the AP under IoU-NMS as `iou_nms`."""
    proposals = isinstance(model, ProposalNetwork)
    results, around = predict(model, dataset, device, batch_size, rank, world_size)
    shares = distributed.gather((results, around))
    extra = None
    if iou_nms:
        with iou_nms_inference(model):
            extra = distributed.gather(predict(model, dataset, device, batch_size, rank,
                                               world_size)[0])
    if rank != 0:
        return None
    results = [r for share in shares for r in share[0]]
    score = proposal_metrics if proposals else detection_metrics
    metrics = score(dataset, results)
    headline = "AR100" if proposals else "AP"
    metrics["val_halves"] = {headline: [score(dataset, results, [i for i in dataset.ids if i % 2 == r])
                                        [headline] for r in (0, 1)]}
    around = [a for share in shares for a in share[1]]
    metrics.update(divergence_metrics(around))
    if len(dataset.ids) > FIRST_IMAGES:
        rows = torch.cat(around) if around else torch.zeros(0, 3, dtype=torch.float64)
        first = rows[rows[:, 2] // OBJECT_ID_STRIDE < FIRST_IMAGES]
        metrics["val_first"] = {
            "images": FIRST_IMAGES,
            headline: score(dataset, results, list(dataset.ids[:FIRST_IMAGES]))[headline],
            "divergence": divergence_metrics([first])["divergence"]}
    if extra is not None:
        metrics["iou_nms"] = detection_metrics(dataset, [r for share in extra for r in share])
    return metrics
