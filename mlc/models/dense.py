"""What FCOS, RetinaNet and RPN share in training: labels from the detector's own matching or
from mutual labeling, and the losses MLC adds (IUR, prediction alignment).

The heads turn a `DenseTargets` (which anchors are positive for classification, which are
negative, which are positive for localization, and each one's loss weight) into their own
losses, so mutual labeling changes the sets and weights, never the loss code. Losses are
normalised by the number of positives over the whole global batch (all processes), as
MMDetection does, so that a DDP step equals the single-process step on the same images.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_area, box_iou, sigmoid_focal_loss

from mlc.mutual import candidate_objects, mutual_labels
from mlc.successors import (
    TaskAligned,
    Varifocal,
    quality_focal_loss,
    soft_class_targets,
    task_aligned_targets,
    varifocal_loss,
)
from mlc.targets import DenseTargets, baseline_targets


def global_count(mask: Tensor) -> Tensor:
    """The number of True entries, averaged over processes, at least 1: a loss normaliser."""
    count = mask.sum().to(torch.float32)
    if dist.is_available() and dist.is_initialized():
        count = count.clone()
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count.clamp(min=1.0)


def global_sum(values: Tensor) -> Tensor:
    """The sum of `values`, averaged over processes, at least 1e-6: a loss normaliser."""
    total = values.detach().sum().to(torch.float32)
    if dist.is_available() and dist.is_initialized():
        total = total.clone()
        dist.all_reduce(total)
        total = total / dist.get_world_size()
    return total.clamp(min=1e-6)


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of each box in `a` with the box at the same index in `b` ([..., 4] x0, y0, x1, y1)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a.reshape(-1, 4)).view(a.shape[:-1]) + box_area(b.reshape(-1, 4)).view(
        b.shape[:-1]) - inter
    return inter / union.clamp(min=1e-6)


def match_with_candidates(matcher: Matcher, targets: list[dict[str, Tensor]], anchors: list[Tensor],
                          candidate_iou: float) -> tuple[list[Tensor], list[Tensor]]:
    """The detector's own matching of anchors to objects (>= 0 object, -1 negative, -2 ignored)
    and mutual labeling's candidates: the matched object, or the best-overlapping one where the
    IoU is at least `candidate_iou` (-1: no candidate)."""
    matched, candidates = [], []
    for t, anc in zip(targets, anchors):
        if t["boxes"].numel() == 0:
            none = torch.full((anc.shape[0],), -1, dtype=torch.int64, device=anc.device)
            matched.append(none)
            candidates.append(none)
            continue
        quality = box_iou(t["boxes"], anc)
        m = matcher(quality)
        best_iou, best = quality.max(0)
        matched.append(m)
        candidates.append(torch.where(m >= 0, m, torch.where(best_iou >= candidate_iou, best, -1)))
    return matched, candidates


def decode_where(decode, deltas: Tensor, anchors: Tensor, mask: Tensor) -> Tensor:
    """[N, A, 4] float32 boxes decoded where `mask` is set, zeros elsewhere (in float32 also
    under autocast, where the deltas come as float16)."""
    boxes = torch.zeros((*mask.shape, 4), device=deltas.device)
    boxes[mask] = decode(deltas[mask].float(), anchors[mask])
    return boxes


def mutual_targets(targets: list[dict[str, Tensor]], matched: Tensor, candidate: Tensor, decode,
                   deltas: Tensor, cls_logits: Tensor, anchors: Tensor, alpha: float) -> DenseTargets:
    """Mutual labeling (Sec. 3.1) of every candidate from the detached IoU of its decoded box
    with its object and its probability of the object's class ([N, A, C] logits; RPN's
    objectness as one class)."""
    labels, boxes, groups = candidate_objects(targets, candidate)
    cand = groups >= 0
    with torch.no_grad():
        ious = torch.zeros(cand.shape, device=anchors.device)
        ious[cand] = paired_iou(decode(deltas[cand].float(), anchors[cand]), boxes[cand])
        scores = torch.zeros_like(ious)
        prob = torch.sigmoid(cls_logits[cand].float())
        scores[cand] = prob.gather(1, labels[cand][:, None]).squeeze(1)
    return mutual_labels(labels, boxes, groups, ignored=cand & (matched < 0),
                         negative=matched == -1, ious=ious, scores=scores, alpha=alpha)


def focal_classification_loss(cls_logits: Tensor, t: DenseTargets) -> Tensor:
    """Sigmoid focal loss over positives and negatives, weighted, per classification positive."""
    valid = t.cls_pos | t.cls_neg
    onehot = torch.zeros_like(cls_logits)
    onehot[t.cls_pos, t.labels[t.cls_pos]] = 1.0
    loss = sigmoid_focal_loss(cls_logits[valid], onehot[valid], reduction="none").sum(-1)
    return (loss * t.cls_weight[valid]).sum() / global_count(t.cls_pos)


def with_iou_targets(t: DenseTargets, pred_boxes: Tensor) -> DenseTargets:
    """VFL's targets: `t` with `cls_target` the detached IoU of each classification positive's
    decoded box ([N, A, 4]) with its object."""
    target = torch.zeros(t.cls_pos.shape, dtype=torch.float32, device=t.cls_pos.device)
    pos = t.cls_pos
    target[pos] = paired_iou(pred_boxes[pos].detach().float(), t.boxes[pos].float())
    return replace(t, cls_target=target)


def iou_rescoring_loss(iou_logits: Tensor, pred_boxes: Tensor, gt_boxes: Tensor,
                       positives: Tensor) -> Tensor:
    """IUR (Eq. 10): MSE between the predicted IoU (sigmoid) and the detached IoU of the decoded
    box with its object, over the given positives (A_cls+ U A_loc+), per positive over the global
    batch. Inputs are [N, A] logits, [N, A, 4] boxes and an [N, A] mask."""
    target = paired_iou(pred_boxes[positives].detach(), gt_boxes[positives])
    error = (torch.sigmoid(iou_logits[positives]) - target) ** 2
    return error.sum() / global_count(positives)


def alignment_loss(cls_logits: Tensor, pred_boxes: Tensor, t: DenseTargets) -> Tensor:
    """Prediction alignment, the baseline of Table 1: MSE between the probability of the object's
    class and the detached IoU of the decoded box, over the classification positives."""
    pos = t.cls_pos
    prob = torch.sigmoid(cls_logits[pos].float()).gather(1, t.labels[pos][:, None]).squeeze(1)
    target = paired_iou(pred_boxes[pos].detach().float(), t.boxes[pos])
    return ((prob - target) ** 2).sum() / global_count(pos)


def iou_layer(in_channels: int, num_anchors: int, kernel_size: int = 3) -> nn.Conv2d:
    """IUR's single conv predicting one IoU logit per anchor, shaped as the box layer beside it
    (3x3 in FCOS and RetinaNet, 1x1 in RPN), initialised as FCOS's centerness layer (normal
    std 0.01, zero bias)."""
    conv = nn.Conv2d(in_channels, num_anchors, kernel_size=kernel_size, padding=kernel_size // 2)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


def sibling_convs(x: Tensor, convs: list[nn.Conv2d]) -> tuple[Tensor, ...]:
    """Convs of one shape on the same input, run as one conv of their stacked weights: the
    outputs of each, at about the cost of one (keeps IUR's extra layer nearly free)."""
    weight = torch.cat([c.weight for c in convs])
    bias = torch.cat([c.bias for c in convs])
    out = F.conv2d(x, weight, bias, padding=convs[0].padding)
    return out.split([c.out_channels for c in convs], dim=1)


def flatten_level(x: Tensor, channels: int) -> Tensor:
    """(N, A*C, H, W) -> (N, H*W*A, C), the layout torchvision's dense heads use."""
    n, _, h, w = x.shape
    return x.view(n, -1, channels, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, channels)


class MLCHead:
    """Mixin for torchvision's FCOS and RetinaNet heads: labels anchors by the detector's own
    matching, by mutual labeling or by TAL, hands the `DenseTargets` to the head's `dense_loss`
    (whose classification term is `classification_loss`: focal, VFL or TAL's quality focal
    loss), and adds MLC's terms (IUR's loss x gamma, prediction alignment).

    ML, VFL, TAL, IUR's loss and alignment apply while `mlc_terms_on` (the engine switches it on
    at the config's `mlc_start_epoch`, so every method starts from the same plain detector, as
    TOOD starts from a fixed assignment); before that IUR's and alignment's terms are computed
    with weight 0, so every parameter still takes part in each step (DDP needs it). The head
    defines `decode_boxes`.
    """

    ml_alpha: float | None = None  # None: the detector's own labels
    gamma: float = 1.0
    alignment: bool = False
    varifocal: Varifocal | None = None
    task_aligned: TaskAligned | None = None
    mlc_terms_on: bool = False

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor], matched_idxs: list[Tensor],
                     candidate_idxs: list[Tensor] | None = None) -> dict[str, Tensor]:
        anchors = torch.stack(anchors)
        deltas = head_outputs["bbox_regression"]
        on = self.mlc_terms_on
        if self.task_aligned is not None and on:
            everywhere = torch.ones(deltas.shape[:2], dtype=torch.bool, device=deltas.device)
            boxes = decode_where(self.decode_boxes, deltas.detach(), anchors, everywhere)
            t = task_aligned_targets(targets, head_outputs["cls_logits"], boxes, anchors,
                                     self.task_aligned)
            # TOOD normalises the box loss by the targets' sum, the heads by the positive count.
            t = replace(t, loc_weight=t.loc_weight * global_count(t.loc_pos) / global_sum(
                t.loc_weight[t.loc_pos]))
        elif self.ml_alpha is not None and on:
            matched = torch.stack(matched_idxs)
            candidate = matched.clamp(min=-1) if candidate_idxs is None else torch.stack(candidate_idxs)
            t = self.mutual_targets(targets, head_outputs, anchors, matched, candidate)
        else:
            t = baseline_targets(targets, matched_idxs)
        if self.varifocal is not None and on:
            t = with_iou_targets(t, decode_where(self.decode_boxes, deltas.detach(), anchors, t.cls_pos))
        losses = self.dense_loss(t, head_outputs, anchors)
        if self.iou_pred is not None or self.alignment:
            union = t.cls_pos | t.loc_pos
            boxes = decode_where(self.decode_boxes, deltas, anchors, union)
            weight = 1.0 if on else 0.0
            if self.iou_pred is not None:
                losses["iou_rescoring"] = weight * self.gamma * iou_rescoring_loss(
                    head_outputs["iou_logits"], boxes, t.boxes, union)
            if self.alignment:
                losses["alignment"] = weight * alignment_loss(head_outputs["cls_logits"], boxes, t)
        return losses

    def classification_loss(self, cls_logits: Tensor, t: DenseTargets) -> Tensor:
        """The focal loss on hard labels; on the soft ones of `t.cls_target`, VFL (the IoU) or
        the quality focal loss (TAL's alignment metric); weighted, per positive over the global
        batch."""
        if t.cls_target is None:
            return focal_classification_loss(cls_logits, t)
        valid = t.cls_pos | t.cls_neg
        y = soft_class_targets(cls_logits, t)[valid]
        if self.task_aligned is not None:
            loss = quality_focal_loss(cls_logits[valid], y, t.cls_weight[valid],
                                      self.task_aligned.qfl_beta)
        else:
            loss = varifocal_loss(cls_logits[valid], y, t.cls_weight[valid], self.varifocal.alpha,
                                  self.varifocal.gamma)
        return loss / global_count(t.cls_pos)

    def mutual_targets(self, targets: list[dict[str, Tensor]], out: dict[str, Tensor],
                       anchors: Tensor, matched: Tensor, candidate: Tensor) -> DenseTargets:
        """Mutual labeling of the candidates from the head's predicted boxes and scores."""
        return mutual_targets(targets, matched, candidate, self.decode_boxes,
                              out["bbox_regression"], out["cls_logits"], anchors, self.ml_alpha)
