"""RetinaNet as a subclass of torchvision's RetinaNet and RetinaNetHead.

torchvision matches anchors to objects (IoU >= 0.5 positive, < 0.4 negative, in between
ignored, low-quality matches allowed); the subclasses compute the focal and L1 losses from
`DenseTargets` with one positive count over the global batch, and post-process as
MMDetection does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNetHead

from mlc.config import ML_CANDIDATE_IOU
from mlc.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from mlc.models.dense import (
    MLCHead,
    flatten_level,
    global_count,
    iou_layer,
    match_with_candidates,
    sibling_convs,
)
from mlc.models.postprocess import DetectionTransform, InferenceSettings, dense_detections
from mlc.targets import DenseTargets


class RetinaNetHeadMLC(MLCHead, RetinaNetHead):
    """RetinaNet's head, with or without IUR's IoU layer (one conv on the regression tower, an
    IoU per anchor), its loss computed from `DenseTargets` given by RetinaNet's own matching or
    by mutual labeling (candidates: anchors with IoU >= 0.4)."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int,
                 norm_layer=None, iur: bool = False, gamma: float = 1.0,
                 ml_alpha: float | None = None, alignment: bool = False, num_convs: int = 4) -> None:
        super().__init__(in_channels, num_anchors, num_classes, norm_layer=norm_layer)
        # torchvision builds four convs per tower (the paper's); a scale with narrower heads
        # (FCOS's `head_convs`) keeps the first `num_convs` of each, as FCOS's towers do.
        for tower in (self.classification_head, self.regression_head):
            tower.conv = tower.conv[:num_convs]
        self.iou_pred = iou_layer(in_channels, num_anchors) if iur else None
        self.gamma, self.ml_alpha, self.alignment = gamma, ml_alpha, alignment

    def decode_boxes(self, regression: Tensor, anchors: Tensor) -> Tensor:
        return self.regression_head.box_coder.decode_single(regression, anchors)

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        out = {"cls_logits": self.classification_head(x)}
        reg_head = self.regression_head
        regression, iou = [], []
        layers = [reg_head.bbox_reg] + ([self.iou_pred] if self.iou_pred is not None else [])
        for features in x:
            outputs = sibling_convs(reg_head.conv(features), layers)
            regression.append(flatten_level(outputs[0], 4))
            if self.iou_pred is not None:
                iou.append(flatten_level(outputs[1], 1))
        out["bbox_regression"] = torch.cat(regression, 1)
        if self.iou_pred is not None:
            out["iou_logits"] = torch.cat(iou, 1).squeeze(-1)
        return out

    def dense_loss(self, t: DenseTargets, out: dict[str, Tensor], anchors: Tensor) -> dict[str, Tensor]:
        """Focal loss and L1 loss on the encoded box deltas of localization positives, each per
        positive over the global batch."""
        pos = t.loc_pos
        coder = self.regression_head.box_coder
        target = coder.encode_single(t.boxes[pos], anchors[pos])
        l1 = F.l1_loss(out["bbox_regression"][pos], target, reduction="none").sum(-1)
        losses = {
            "classification": self.classification_loss(out["cls_logits"], t),
            "bbox_regression": (l1 * t.loc_weight[pos]).sum() / global_count(pos),
        }
        return losses


class RetinaNetDetector(RetinaNet):
    """torchvision's RetinaNet with MMDetection's post-processing (x IUR's IoU when present)."""

    def __init__(self, backbone: nn.Module, head: RetinaNetHeadMLC,
                 anchor_generator: AnchorGenerator, settings: InferenceSettings,
                 min_size: int, max_size: int) -> None:
        super().__init__(backbone, head.classification_head.num_classes, min_size=min_size,
                         max_size=max_size, anchor_generator=anchor_generator, head=head)
        self.settings = settings
        self.transform = DetectionTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD)

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor]) -> dict[str, Tensor]:
        """RetinaNet's matching (IoU >= 0.5 positive, < 0.4 negative), with the candidates of
        mutual labeling (IoU >= 0.4) beside it."""
        matched, candidates = match_with_candidates(self.proposal_matcher, targets, anchors,
                                                    ML_CANDIDATE_IOU["retinanet"])
        return self.head.compute_loss(targets, head_outputs, anchors, matched, candidates)

    def postprocess_detections(self, head_outputs: dict[str, list[Tensor]],
                               anchors: list[list[Tensor]],
                               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        return dense_detections(head_outputs, anchors, image_shapes, self.box_coder.decode_single,
                                self.settings)
