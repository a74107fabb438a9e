"""RetinaNet as a subclass of torchvision's RetinaNet and RetinaNetHead.

torchvision matches anchors to objects (IoU >= 0.5 positive, < 0.4 negative, in between
ignored, low-quality matches allowed); the subclasses compute the focal and L1 losses from
`DenseTargets` with one positive count over the global batch, and post-process as
MMDetection does.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNetHead

from mlc.models.dense import (
    DenseTargets,
    DenseTargetsLoss,
    InferenceSettings,
    focal_classification_loss,
    global_count,
    select_detections,
)


class RetinaNetHeadMLC(DenseTargetsLoss, RetinaNetHead):
    """RetinaNet's head computing its loss from `DenseTargets`."""

    def dense_loss(self, t: DenseTargets, out: dict[str, Tensor], anchors: Tensor) -> dict[str, Tensor]:
        """Focal loss and L1 loss on the encoded box deltas of localization positives."""
        pos = t.loc_pos
        coder = self.regression_head.box_coder
        target = coder.encode_single(t.boxes[pos], anchors[pos])
        l1 = F.l1_loss(out["bbox_regression"][pos], target, reduction="none").sum(-1)
        return {
            "classification": focal_classification_loss(out["cls_logits"], t),
            "bbox_regression": (l1 * t.loc_weight[pos]).sum() / global_count(pos),
        }


class RetinaNetDetector(RetinaNet):
    """torchvision's RetinaNet with MMDetection's post-processing."""

    def __init__(self, backbone: nn.Module, head: RetinaNetHeadMLC,
                 anchor_generator: AnchorGenerator, settings: InferenceSettings,
                 min_size: int, max_size: int) -> None:
        super().__init__(backbone, head.classification_head.num_classes, min_size=min_size,
                         max_size=max_size, anchor_generator=anchor_generator, head=head)
        self.settings = settings

    def postprocess_detections(self, head_outputs: dict[str, list[Tensor]],
                               anchors: list[list[Tensor]],
                               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        return [
            select_detections(
                [x[i] for x in head_outputs["cls_logits"]],
                [x[i] for x in head_outputs["bbox_regression"]],
                anchors[i], self.box_coder.decode_single, shape, self.settings,
            )
            for i, shape in enumerate(image_shapes)
        ]
