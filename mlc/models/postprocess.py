"""Inference of the dense detectors as MMDetection does it, with MLC's rescoring, IoU-NMS, and
the boxes as they enter NMS (which the divergence metric reads).

For each level, the score threshold applies to the class probability; the candidates are
ranked by that probability times the localization quality (centerness and/or IUR's predicted
IoU) when the head has one, the top ones kept, and NMS runs on the ranked scores. With
IoU-NMS (IoU-Net) NMS instead ranks by the predicted IoU and a kept box takes the highest
class probability of the boxes it suppressed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image


@dataclass(frozen=True)
class InferenceSettings:
    """MMDetection's test settings for FCOS and RetinaNet, and whether NMS is IoU-NMS."""

    score_thresh: float = 0.05
    topk_candidates: int = 1000
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    iou_nms: bool = False


def _sigmoid_product(head_outputs: dict[str, list[Tensor]],
                     keys: tuple[str, ...]) -> list[Tensor] | None:
    """Per level, the product of the sigmoids of the present `keys`, as [N, HWA] probabilities
    (None when none is present)."""
    keys = tuple(k for k in keys if k in head_outputs)
    if not keys:
        return None
    levels = []
    for lvl in range(len(head_outputs[keys[0]])):
        n = head_outputs[keys[0]][lvl].shape[0]
        prob = torch.sigmoid(head_outputs[keys[0]][lvl]).reshape(n, -1)
        for k in keys[1:]:
            prob = prob * torch.sigmoid(head_outputs[k][lvl]).reshape(n, -1)
        levels.append(prob)
    return levels


def quality_per_level(head_outputs: dict[str, list[Tensor]]) -> list[Tensor] | None:
    """The localization quality of the boxes per level ([N, HWA]): sigmoid of centerness and/or
    of the predicted IoU (IUR), multiplied when both exist; None when the head predicts neither."""
    return _sigmoid_product(head_outputs, ("bbox_ctrness", "iou_logits"))


def iou_guided_nms(boxes: Tensor, probs: Tensor, ious: Tensor, labels: Tensor,
                   threshold: float) -> tuple[Tensor, Tensor]:
    """IoU-Net's IoU-guided NMS: per class, keep boxes by predicted IoU; each kept box scores the
    highest class probability among itself and the boxes it suppressed.

    Returns the kept indices (by descending predicted IoU) and their scores.
    """
    keep = batched_nms(boxes, ious, labels, threshold)
    if keep.numel() == 0:
        return keep, probs[keep]
    # A suppressed box was suppressed by the first kept box (in IoU order) that overlaps it;
    # a kept box overlaps no kept box before it, so it is its own first.
    overlaps = (box_iou(boxes, boxes[keep]) > threshold) & (labels[:, None] == labels[keep][None])
    first = overlaps.to(torch.uint8).argmax(1)
    scores = torch.zeros(keep.numel(), dtype=probs.dtype, device=probs.device)
    return keep, scores.scatter_reduce(0, first, probs, "amax", include_self=False)


def select_detections(
    cls_logits: list[Tensor],
    box_regression: list[Tensor],
    anchors: list[Tensor],
    decode: Callable[[Tensor, Tensor], Tensor],
    image_shape: tuple[int, int],
    settings: InferenceSettings,
    quality: list[Tensor] | None = None,
    predicted_iou: list[Tensor] | None = None,
) -> dict[str, Tensor]:
    """Detections of one image from per-level outputs ([HWA, C] logits, [HWA, 4] regression;
    quality and predicted IoU as probabilities [HWA]), plus the candidates as they enter NMS
    (`pre_nms_boxes`, `pre_nms_scores`, `pre_nms_labels`)."""
    if settings.iou_nms and predicted_iou is None:
        raise ValueError("IoU-NMS needs IUR's predicted IoU (a config with iur=True)")
    all_boxes, all_scores, all_labels, all_probs, all_ious = [], [], [], [], []
    for level, (logits, reg, anc) in enumerate(zip(cls_logits, box_regression, anchors)):
        num_classes = logits.shape[-1]
        prob = torch.sigmoid(logits).flatten()
        keep = torch.where(prob > settings.score_thresh)[0]
        rank = prob[keep]
        if quality is not None:
            rank = rank * quality[level][torch.div(keep, num_classes, rounding_mode="floor")]
        scores, order = rank.topk(min(settings.topk_candidates, keep.numel()))
        keep = keep[order]
        anchor_idx = torch.div(keep, num_classes, rounding_mode="floor")
        all_boxes.append(clip_boxes_to_image(decode(reg[anchor_idx], anc[anchor_idx]), image_shape))
        all_scores.append(scores)
        all_labels.append(keep % num_classes)
        if settings.iou_nms:
            all_probs.append(prob[keep])
            all_ious.append(predicted_iou[level][anchor_idx])
    boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
    if settings.iou_nms:
        keep, kept_scores = iou_guided_nms(boxes, torch.cat(all_probs), torch.cat(all_ious),
                                           labels, settings.nms_thresh)
        order = kept_scores.argsort(descending=True, stable=True)[: settings.detections_per_img]
        keep, final_scores = keep[order], kept_scores[order]
    else:
        keep = batched_nms(boxes, scores, labels, settings.nms_thresh)[: settings.detections_per_img]
        final_scores = scores[keep]
    return {"boxes": boxes[keep], "scores": final_scores, "labels": labels[keep],
            "pre_nms_boxes": boxes, "pre_nms_scores": scores, "pre_nms_labels": labels}


def dense_detections(head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                     image_shapes: list[tuple[int, int]], decode: Callable[[Tensor, Tensor], Tensor],
                     settings: InferenceSettings) -> list[dict[str, Tensor]]:
    """`select_detections` for every image of a batch, from per-level head outputs [N, HWA, .]."""
    quality = quality_per_level(head_outputs)
    ious = _sigmoid_product(head_outputs, ("iou_logits",)) if settings.iou_nms else None
    return [
        select_detections([x[i] for x in head_outputs["cls_logits"]],
                          [x[i] for x in head_outputs["bbox_regression"]], anchors[i], decode,
                          shape, settings, quality=None if quality is None else [q[i] for q in quality],
                          predicted_iou=None if ious is None else [q[i] for q in ious])
        for i, shape in enumerate(image_shapes)
    ]


class DetectionTransform(GeneralizedRCNNTransform):
    """torchvision's resize-and-normalise transform that also maps the pre-NMS boxes back to the
    input image's coordinates."""

    def postprocess(self, result: list[dict[str, Tensor]], image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        if not self.training:
            for pred, size, original in zip(result, image_shapes, original_image_sizes):
                if "pre_nms_boxes" in pred:
                    pred["pre_nms_boxes"] = resize_boxes(pred["pre_nms_boxes"], size, original)
        return super().postprocess(result, image_shapes, original_image_sizes)
