"""What FCOS and RetinaNet share: per-anchor training targets, their losses, and post-processing.

The heads build a `DenseTargets` (which anchors are positive for classification, which are
negative, which are positive for localization, and each one's loss weight) and the losses
read only that, so a labeling rule other than the detector's own (mutual labeling) changes
the sets and weights, never the loss code. Losses are normalised by the number of positives
over the whole global batch (all processes), as MMDetection does, so that a DDP step equals
the single-process step on the same images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_area, clip_boxes_to_image, sigmoid_focal_loss


@dataclass
class DenseTargets:
    """Training targets of every anchor of a batch, each tensor [N, A] (boxes [N, A, 4])."""

    labels: Tensor  # class index of the matched object, -1 where none
    boxes: Tensor  # the matched object's box (undefined where none)
    cls_pos: Tensor  # positive for classification
    cls_neg: Tensor  # negative for classification (neither set: ignored)
    loc_pos: Tensor  # positive for localization
    cls_weight: Tensor
    loc_weight: Tensor


def baseline_targets(targets: list[dict[str, Tensor]], matched_idxs: list[Tensor]) -> DenseTargets:
    """The detector's own labels from matched indices (>= 0 object, -1 background, -2 ignored)."""
    labels, boxes = [], []
    for t, m in zip(targets, matched_idxs):
        if t["boxes"].numel() == 0:
            labels.append(torch.full_like(m, -1))
            boxes.append(m.new_zeros((m.numel(), 4), dtype=torch.float32))
            continue
        idx = m.clamp(min=0)
        labels.append(torch.where(m >= 0, t["labels"][idx], -1))
        boxes.append(t["boxes"][idx])
    matched = torch.stack(matched_idxs)
    pos = matched >= 0
    ones = torch.ones_like(matched, dtype=torch.float32)
    return DenseTargets(labels=torch.stack(labels), boxes=torch.stack(boxes), cls_pos=pos,
                        cls_neg=matched == -1, loc_pos=pos, cls_weight=ones, loc_weight=ones)


class DenseTargetsLoss:
    """Mixin for a torchvision dense head: its compute_loss labels anchors by the detector's own
    matching and hands the `DenseTargets` to the head's `dense_loss`."""

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor], matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        return self.dense_loss(baseline_targets(targets, matched_idxs), head_outputs,
                               torch.stack(anchors))


def global_count(mask: Tensor) -> Tensor:
    """The number of True entries, averaged over processes, at least 1: a loss normaliser."""
    count = mask.sum().to(torch.float32)
    if dist.is_available() and dist.is_initialized():
        count = count.clone()
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count.clamp(min=1.0)


def focal_classification_loss(cls_logits: Tensor, t: DenseTargets) -> Tensor:
    """Sigmoid focal loss over positives and negatives, weighted, per classification positive."""
    valid = t.cls_pos | t.cls_neg
    onehot = torch.zeros_like(cls_logits)
    onehot[t.cls_pos, t.labels[t.cls_pos]] = 1.0
    loss = sigmoid_focal_loss(cls_logits[valid], onehot[valid], reduction="none").sum(-1)
    return (loss * t.cls_weight[valid]).sum() / global_count(t.cls_pos)


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of each box in `a` with the box at the same index in `b` ([..., 4] x0, y0, x1, y1)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a.reshape(-1, 4)).view(a.shape[:-1]) + box_area(b.reshape(-1, 4)).view(
        b.shape[:-1]) - inter
    return inter / union.clamp(min=1e-6)


def iou_rescoring_loss(iou_logits: Tensor, pred_boxes: Tensor, gt_boxes: Tensor,
                       positives: Tensor) -> Tensor:
    """IUR (Eq. 10): MSE between the predicted IoU (sigmoid) and the detached IoU of the decoded
    box with its object, over the given positives (A_cls+ U A_loc+), per positive over the global
    batch. Inputs are [N, A] logits, [N, A, 4] boxes and an [N, A] mask."""
    target = paired_iou(pred_boxes[positives].detach(), gt_boxes[positives])
    error = (torch.sigmoid(iou_logits[positives]) - target) ** 2
    return error.sum() / global_count(positives)


def iou_rescoring_term(t: DenseTargets, out: dict[str, Tensor], anchors: Tensor,
                       decode: Callable[[Tensor, Tensor], Tensor], gamma: float) -> Tensor:
    """gamma x the IUR loss of a dense head, on A_cls+ U A_loc+ (Eq. 11), with the boxes decoded
    by the head's own box coder."""
    union = t.cls_pos | t.loc_pos
    boxes = torch.zeros_like(t.boxes)
    boxes[union] = decode(out["bbox_regression"][union], anchors[union])
    return gamma * iou_rescoring_loss(out["iou_logits"], boxes, t.boxes, union)


def iou_layer(in_channels: int, num_anchors: int) -> nn.Conv2d:
    """IUR's single 3x3 conv predicting one IoU logit per anchor, initialised as FCOS's
    centerness layer (normal std 0.01, zero bias)."""
    conv = nn.Conv2d(in_channels, num_anchors, kernel_size=3, padding=1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


def quality_per_level(head_outputs: dict[str, list[Tensor]], image: int) -> list[Tensor] | None:
    """The localization quality of one image's boxes per level: sigmoid of centerness and/or of
    the predicted IoU (IUR), multiplied when both exist; None when the head predicts neither."""
    keys = [k for k in ("bbox_ctrness", "iou_logits") if k in head_outputs]
    if not keys:
        return None
    levels = len(head_outputs[keys[0]])
    return [torch.stack([torch.sigmoid(head_outputs[k][lvl][image]).view(-1) for k in keys])
            .prod(0) for lvl in range(levels)]


def flatten_level(x: Tensor, channels: int) -> Tensor:
    """(N, A*C, H, W) -> (N, H*W*A, C), the layout torchvision's dense heads use."""
    n, _, h, w = x.shape
    return x.view(n, -1, channels, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, channels)


@dataclass(frozen=True)
class InferenceSettings:
    """MMDetection's test settings for FCOS and RetinaNet."""

    score_thresh: float = 0.05
    topk_candidates: int = 1000
    nms_thresh: float = 0.5
    detections_per_img: int = 100


def dense_detections(head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                     image_shapes: list[tuple[int, int]], decode: Callable[[Tensor, Tensor], Tensor],
                     settings: InferenceSettings) -> list[dict[str, Tensor]]:
    """`select_detections` for every image of a batch, from per-level head outputs [N, HWA, .]."""
    return [
        select_detections([x[i] for x in head_outputs["cls_logits"]],
                          [x[i] for x in head_outputs["bbox_regression"]], anchors[i], decode,
                          shape, settings, quality=quality_per_level(head_outputs, i))
        for i, shape in enumerate(image_shapes)
    ]


def select_detections(
    cls_logits: list[Tensor],
    box_regression: list[Tensor],
    anchors: list[Tensor],
    decode: Callable[[Tensor, Tensor], Tensor],
    image_shape: tuple[int, int],
    settings: InferenceSettings,
    quality: list[Tensor] | None = None,
) -> dict[str, Tensor]:
    """Detections of one image from per-level outputs ([HWA, C] logits, [HWA, 4] regression).

    As in MMDetection, the score threshold applies to the class probability; boxes are then
    ranked, suppressed and reported by that probability times the quality (centerness or
    predicted IoU, as probabilities [HWA]) when there is one.
    """
    all_boxes, all_scores, all_labels = [], [], []
    for level, (logits, reg, anc) in enumerate(zip(cls_logits, box_regression, anchors)):
        num_classes = logits.shape[-1]
        prob = torch.sigmoid(logits)
        rank = prob if quality is None else prob * quality[level].view(-1, 1)
        keep = torch.where(prob.flatten() > settings.score_thresh)[0]
        scores = rank.flatten()[keep]
        scores, order = scores.topk(min(settings.topk_candidates, scores.numel()))
        keep = keep[order]
        anchor_idx = torch.div(keep, num_classes, rounding_mode="floor")
        boxes = clip_boxes_to_image(decode(reg[anchor_idx], anc[anchor_idx]), image_shape)
        all_boxes.append(boxes)
        all_scores.append(scores)
        all_labels.append(keep % num_classes)
    boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
    keep = batched_nms(boxes, scores, labels, settings.nms_thresh)[: settings.detections_per_img]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
