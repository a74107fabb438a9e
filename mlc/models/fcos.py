"""FCOS and FCOS- (no centerness) as subclasses of torchvision's FCOS and FCOSHead.

torchvision's FCOS does the location-to-object assignment (inside the box, on the level
whose size range admits it, ties to the smallest box); these subclasses replace the loss
(global positive count, labels from a `DenseTargets`) and the post-processing (MMDetection's
score rule), and FCOS- drops the centerness layer, its loss and its use at inference.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import (
    FCOSClassificationHead,
    FCOSHead,
    FCOSRegressionHead,
)
from torchvision.ops import generalized_box_iou_loss

from mlc.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from mlc.models.dense import (
    MLCHead,
    flatten_level,
    global_count,
    iou_layer,
    sibling_convs,
)
from mlc.models.postprocess import DetectionTransform, InferenceSettings, dense_detections
from mlc.targets import DenseTargets


def centerness_targets(anchors: Tensor, boxes: Tensor) -> Tensor:
    """FCOS's centerness of each anchor point inside its box: sqrt(min/max(l,r) * min/max(t,b))."""
    cx = (anchors[..., 0] + anchors[..., 2]) / 2
    cy = (anchors[..., 1] + anchors[..., 3]) / 2
    lr = torch.stack([cx - boxes[..., 0], boxes[..., 2] - cx], -1).clamp(min=1e-6)
    tb = torch.stack([cy - boxes[..., 1], boxes[..., 3] - cy], -1).clamp(min=1e-6)
    return torch.sqrt((lr.min(-1).values / lr.max(-1).values) * (tb.min(-1).values / tb.max(-1).values))


class FCOSHeadMLC(MLCHead, FCOSHead):
    """FCOS's head, with or without the centerness layer, with or without IUR's IoU layer (one
    conv on the regression tower, Sec. 3.2), its loss computed from `DenseTargets` given by
    FCOS's own assignment or by mutual labeling (candidates: FCOS's in-box locations).

    Its towers use GroupNorm with 32 groups as FCOS does, or fewer on narrow towers (a group
    of one channel would be instance norm).
    """

    def __init__(self, in_channels: int, num_classes: int, num_convs: int, centerness: bool,
                 norm_groups: int = 32, iur: bool = False, gamma: float = 1.0,
                 ml_alpha: float | None = None, alignment: bool = False) -> None:
        super().__init__(in_channels, 1, num_classes, num_convs)
        if norm_groups != 32:
            norm = partial(nn.GroupNorm, norm_groups)
            self.classification_head = FCOSClassificationHead(in_channels, 1, num_classes,
                                                              num_convs, norm_layer=norm)
            self.regression_head = FCOSRegressionHead(in_channels, 1, num_convs, norm_layer=norm)
        self.centerness = centerness
        if not centerness:
            del self.regression_head.bbox_ctrness
        self.iou_pred = iou_layer(in_channels, 1) if iur else None
        self.gamma, self.ml_alpha, self.alignment = gamma, ml_alpha, alignment

    def decode_boxes(self, regression: Tensor, anchors: Tensor) -> Tensor:
        return self.box_coder.decode(regression, anchors)

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        reg_head = self.regression_head
        regression, ctrness, iou = [], [], []
        layers = [reg_head.bbox_reg] + ([reg_head.bbox_ctrness] if self.centerness else []) + (
            [self.iou_pred] if self.iou_pred is not None else [])
        for features in x:
            outputs = list(sibling_convs(reg_head.conv(features), layers))
            regression.append(flatten_level(F.relu(outputs.pop(0)), 4))
            if self.centerness:
                ctrness.append(flatten_level(outputs.pop(0), 1))
            if self.iou_pred is not None:
                iou.append(flatten_level(outputs.pop(0), 1))
        out = {"cls_logits": self.classification_head(x), "bbox_regression": torch.cat(regression, 1)}
        if self.centerness:
            out["bbox_ctrness"] = torch.cat(ctrness, 1)
        if self.iou_pred is not None:
            out["iou_logits"] = torch.cat(iou, 1).squeeze(-1)
        return out

    def dense_loss(self, t: DenseTargets, out: dict[str, Tensor], anchors: Tensor) -> dict[str, Tensor]:
        """Focal loss, GIoU loss on the decoded boxes of localization positives and (FCOS)
        centerness BCE, each per positive over the global batch."""
        pos = t.loc_pos
        norm = global_count(pos)
        pred_boxes = self.box_coder.decode(out["bbox_regression"][pos], anchors[pos])
        giou = generalized_box_iou_loss(pred_boxes, t.boxes[pos], reduction="none")
        losses = {
            "classification": self.classification_loss(out["cls_logits"], t),
            "bbox_regression": (giou * t.loc_weight[pos]).sum() / norm,
        }
        if self.centerness:
            target = centerness_targets(anchors[pos], t.boxes[pos])
            bce = F.binary_cross_entropy_with_logits(out["bbox_ctrness"][pos].squeeze(-1), target,
                                                     reduction="sum")
            losses["bbox_ctrness"] = bce / norm
        return losses


class FCOSDetector(FCOS):
    """torchvision's FCOS with MMDetection's post-processing: boxes ranked by the class
    probability times centerness and/or IUR's predicted IoU, when the head has them."""

    def __init__(self, backbone: nn.Module, head: FCOSHeadMLC, anchor_generator: AnchorGenerator,
                 settings: InferenceSettings, min_size: int, max_size: int,
                 center_sampling_radius: float | None) -> None:
        radius = float("inf") if center_sampling_radius is None else center_sampling_radius
        super().__init__(backbone, head.classification_head.num_classes, min_size=min_size,
                         max_size=max_size, anchor_generator=anchor_generator, head=head,
                         center_sampling_radius=radius)
        self.settings = settings
        self.transform = DetectionTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD)

    def postprocess_detections(self, head_outputs: dict[str, list[Tensor]],
                               anchors: list[list[Tensor]],
                               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        return dense_detections(head_outputs, anchors, image_shapes, self.box_coder.decode, self.settings)
