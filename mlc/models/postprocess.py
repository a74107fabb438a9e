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
    """Per level, the product of the sigmoids of the present `keys`, as [N, HWA] float32
    probabilities (None when none is present)."""
    keys = tuple(k for k in keys if k in head_outputs)
    if not keys:
        return None
    levels = []
    for lvl in range(len(head_outputs[keys[0]])):
        n = head_outputs[keys[0]][lvl].shape[0]
        prob = torch.sigmoid(head_outputs[keys[0]][lvl].float()).reshape(n, -1)
        for k in keys[1:]:
            prob = prob * torch.sigmoid(head_outputs[k][lvl].float()).reshape(n, -1)
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


def _level_candidates(logits: Tensor, quality: Tensor | None,
                      settings: InferenceSettings) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The top candidates of one level for every image at once ([N, HWA, C] logits, [N, HWA]
    quality): their rank (probability x quality), probability, anchor and class, each [N, k].

    Candidates at or below the score threshold are ranked last and dropped later, all images
    together, so that no step waits on the GPU for a per-image count. In float32: under autocast,
    half-precision probabilities would tie by the thousand at the top-k cut."""
    n, _, num_classes = logits.shape
    prob = torch.sigmoid(logits.float())
    rank = prob if quality is None else prob * quality[..., None]
    rank = rank.reshape(n, -1).masked_fill(prob.reshape(n, -1) <= settings.score_thresh, -1.0)
    top, idx = rank.topk(min(settings.topk_candidates, rank.shape[1]), dim=1)
    return top, prob.reshape(n, -1).gather(1, idx), idx // num_classes, idx % num_classes


def dense_detections(head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                     image_shapes: list[tuple[int, int]], decode: Callable[[Tensor, Tensor], Tensor],
                     settings: InferenceSettings) -> list[dict[str, Tensor]]:
    """Detections of every image of a batch from per-level head outputs [N, HWA, .], plus the
    candidates as they enter NMS (`pre_nms_boxes`, `pre_nms_scores`, `pre_nms_labels`)."""
    if settings.iou_nms and "iou_logits" not in head_outputs:
        raise ValueError("IoU-NMS needs IUR's predicted IoU (a config with iur=True)")
    quality = quality_per_level(head_outputs)
    predicted_iou = _sigmoid_product(head_outputs, ("iou_logits",)) if settings.iou_nms else None
    fields: dict[str, list[Tensor]] = {"scores": [], "probs": [], "labels": [], "boxes": [], "ious": []}
    for level, (logits, reg) in enumerate(zip(head_outputs["cls_logits"],
                                              head_outputs["bbox_regression"])):
        scores, probs, anchor_idx, labels = _level_candidates(
            logits, None if quality is None else quality[level], settings)
        level_anchors = torch.stack([a[level] for a in anchors])
        n, k = anchor_idx.shape
        boxes = decode(reg.float().gather(1, anchor_idx[..., None].expand(n, k, 4)).reshape(n * k, 4),
                       level_anchors.gather(1, anchor_idx[..., None].expand(n, k, 4)).reshape(n * k, 4))
        fields["scores"].append(scores)
        fields["probs"].append(probs)
        fields["labels"].append(labels)
        fields["boxes"].append(boxes.reshape(n, k, 4))
        if predicted_iou is not None:
            fields["ious"].append(predicted_iou[level].gather(1, anchor_idx))
    batch = {name: torch.cat(values, dim=1) for name, values in fields.items() if values}
    valid = batch["probs"] > settings.score_thresh
    counts = valid.sum(1).tolist()
    flat = valid.flatten().nonzero().squeeze(1)
    per_image = {name: x.flatten(0, 1)[flat].split(counts) for name, x in batch.items()}
    return [_nms(*(per_image[name][i] for name in ("boxes", "scores", "labels", "probs")),
                 per_image["ious"][i] if predicted_iou is not None else None, shape, settings)
            for i, shape in enumerate(image_shapes)]


def _nms(boxes: Tensor, scores: Tensor, labels: Tensor, probs: Tensor, ious: Tensor | None,
         image_shape: tuple[int, int], settings: InferenceSettings) -> dict[str, Tensor]:
    """One image's detections from its ranked candidates: NMS on the ranked scores, or IoU-NMS
    on the predicted IoUs when `ious` is given."""
    boxes = clip_boxes_to_image(boxes, image_shape)
    if ious is not None:
        keep, kept_scores = iou_guided_nms(boxes, probs, ious, labels, settings.nms_thresh)
        order = kept_scores.argsort(descending=True, stable=True)[: settings.detections_per_img]
        keep, final_scores = keep[order], kept_scores[order]
    else:
        keep = batched_nms(boxes, scores, labels, settings.nms_thresh)[: settings.detections_per_img]
        final_scores = scores[keep]
    return {"boxes": boxes[keep], "scores": final_scores, "labels": labels[keep],
            "pre_nms_boxes": boxes, "pre_nms_scores": scores, "pre_nms_labels": labels}


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
