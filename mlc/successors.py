"""MLC's successors, for the book's comparison: varifocal loss (VFL, VarifocalNet) and
task-aligned assignment (TAL, TOOD without its T-head), as targets and losses of the same form
as the rest of the package (`DenseTargets`), so that the heads' loss code stays one.

VFL changes the classification loss only: the target of a positive at its object's class is the
IoU of its decoded box with the object, a positive weighs its target and a negative alpha * p^gamma.
TAL replaces the positive assignment: per object, the top-k anchors by t = s^alpha * u^beta
(s the score of the object's class, u the IoU of the decoded box) whose centre lies inside its
box; an anchor two objects claim goes to the one its box overlaps more; each positive's soft
target is t normalised per object to the object's best IoU; the classification loss is the
quality focal loss on that target and the box loss weighs each positive by it (TOOD's settings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from mlc.targets import DenseTargets


@dataclass(frozen=True)
class Varifocal:
    """VFL's settings (VarifocalNet): negatives weigh alpha * p^gamma."""

    alpha: float = 0.75
    gamma: float = 2.0


@dataclass(frozen=True)
class TaskAligned:
    """TAL's settings (TOOD's assigner): top-k per object by s^alpha * u^beta; the quality focal
    loss's beta (GFL's, as TOOD uses it)."""

    topk: int = 13
    alpha: float = 1.0
    beta: float = 6.0
    qfl_beta: float = 2.0


def varifocal_loss(cls_logits: Tensor, targets: Tensor, weight: Tensor, alpha: float = 0.75,
                   gamma: float = 2.0) -> Tensor:
    """Summed VFL of [M, C] logits against [M, C] IoU targets (0 off the positive's class):
    BCE x target where the target is > 0, BCE x alpha * p^gamma elsewhere; x weight ([M])."""
    logits, q = cls_logits.float(), targets.float()
    p = torch.sigmoid(logits)
    focal = torch.where(q > 0, q, alpha * p.detach().pow(gamma))
    bce = F.binary_cross_entropy_with_logits(logits, q, reduction="none")
    return ((bce * focal).sum(-1) * weight).sum()


def quality_focal_loss(cls_logits: Tensor, targets: Tensor, weight: Tensor, beta: float = 2.0) -> Tensor:
    """Summed quality focal loss (GFL) of [M, C] logits against [M, C] soft targets: BCE x
    |p - target|^beta; x weight ([M])."""
    logits, y = cls_logits.float(), targets.float()
    scale = (torch.sigmoid(logits) - y).abs().pow(beta)
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return ((bce * scale.detach()).sum(-1) * weight).sum()


def soft_class_targets(cls_logits: Tensor, t: DenseTargets) -> Tensor:
    """[N, A, C] targets: `t.cls_target` at each classification positive's class, 0 elsewhere."""
    y = torch.zeros(cls_logits.shape, dtype=torch.float32, device=cls_logits.device)
    y[t.cls_pos, t.labels[t.cls_pos]] = t.cls_target[t.cls_pos].float()
    return y


@torch.no_grad()
def task_aligned_assignment(scores: Tensor, pred_boxes: Tensor, points: Tensor, gt_boxes: Tensor,
                            gt_labels: Tensor, topk: int = 13, alpha: float = 1.0,
                            beta: float = 6.0) -> tuple[Tensor, Tensor]:
    """TAL of one image: each anchor's object index ([A], -1: negative) and soft target ([A]).

    `scores` [A, C] probabilities, `pred_boxes` [A, 4] decoded boxes, `points` [A, 2] anchor
    centres, `gt_boxes` [G, 4] and `gt_labels` [G]. Per object the k anchors of highest t =
    s^alpha * u^beta (equal t: the lower anchor index first) are candidates, and those with their
    centre inside the box and t > 0 are positives; an anchor several objects take goes to the
    one of highest IoU (equal IoU: the lower object index). The target is t / max t x max IoU
    over each object's positives.
    """
    num_anchors = len(points)
    assigned = torch.full((num_anchors,), -1, dtype=torch.long, device=points.device)
    target = torch.zeros(num_anchors, dtype=torch.float32, device=points.device)
    if len(gt_boxes) == 0 or num_anchors == 0:
        return assigned, target
    iou = box_iou(gt_boxes.float(), pred_boxes.float())  # [G, A]
    s = scores.float().t()[gt_labels]  # [G, A]
    metric = s.pow(alpha) * iou.pow(beta)
    order = torch.sort(metric, dim=1, descending=True, stable=True).indices[:, :min(topk, num_anchors)]
    candidate = torch.zeros_like(metric, dtype=torch.bool).scatter_(1, order, True)
    x, y = points[:, 0], points[:, 1]
    inside = ((x[None] > gt_boxes[:, None, 0]) & (x[None] < gt_boxes[:, None, 2])
              & (y[None] > gt_boxes[:, None, 1]) & (y[None] < gt_boxes[:, None, 3]))
    positive = candidate & inside & (metric > 0)
    # Several objects: the one of highest IoU; argmax over a reversed stack would take the last
    # maximum, so mask and take the first.
    claimed = torch.where(positive, iou, torch.full_like(iou, -1.0))
    best_iou = claimed.max(0).values
    first_best = (claimed == best_iou[None]) & positive
    owner = torch.where(first_best.any(0), first_best.float().argmax(0), -1)
    pos = owner >= 0
    assigned[pos] = owner[pos]
    t_pos = metric[owner[pos], pos.nonzero().squeeze(1)]
    iou_pos = iou[owner[pos], pos.nonzero().squeeze(1)]
    groups = owner[pos]
    num_gt = len(gt_boxes)
    max_t = torch.zeros(num_gt, device=points.device).scatter_reduce(0, groups, t_pos, "amax")
    max_iou = torch.zeros(num_gt, device=points.device).scatter_reduce(0, groups, iou_pos, "amax")
    target[pos] = t_pos / max_t[groups].clamp(min=1e-12) * max_iou[groups]
    return assigned, target


def task_aligned_targets(targets: list[dict[str, Tensor]], cls_logits: Tensor, pred_boxes: Tensor,
                         anchors: Tensor, settings: TaskAligned) -> DenseTargets:
    """TAL's `DenseTargets` for a batch: positives for classification and localization alike,
    every other anchor a negative, `cls_target` the soft target and `loc_weight` the same target
    (TOOD's box loss weighs each positive by it)."""
    probs = torch.sigmoid(cls_logits.detach().float())
    points = (anchors[..., :2] + anchors[..., 2:]) / 2
    labels, boxes, soft = [], [], []
    for i, t in enumerate(targets):
        owner, target = task_aligned_assignment(probs[i], pred_boxes[i].detach(), points[i],
                                                t["boxes"], t["labels"], settings.topk,
                                                settings.alpha, settings.beta)
        if len(t["boxes"]):
            idx = owner.clamp(min=0)
            labels.append(torch.where(owner >= 0, t["labels"][idx], -1))
            boxes.append(t["boxes"][idx])
        else:
            labels.append(owner)
            boxes.append(anchors.new_zeros((len(owner), 4)))
        soft.append(target)
    labels = torch.stack(labels)
    pos = labels >= 0
    target = torch.stack(soft)
    return DenseTargets(labels=labels, boxes=torch.stack(boxes), cls_pos=pos, cls_neg=~pos,
                        loc_pos=pos, cls_weight=torch.ones_like(target), loc_weight=target,
                        cls_target=target)
