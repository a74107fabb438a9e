"""RPN as a proposal-only model: torchvision's RegionProposalNetwork on a backbone, no second stage.

The subclass skips proposal filtering during training (nothing consumes the proposals) and
returns each proposal's objectness with its box at inference, so that AR@100/300/1000 can
be read from the ranked list.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class ProposalRPN(RegionProposalNetwork):
    """torchvision's RPN returning losses in training and {boxes, scores} per image otherwise."""

    def forward(self, images: ImageList, features: dict[str, Tensor],
                targets: list[dict[str, Tensor]] | None = None):
        feats = list(features.values())
        objectness, deltas = self.head(feats)
        anchors = self.anchor_generator(images, feats)
        num_anchors_per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        if self.training:
            labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched_gt_boxes, anchors)
            loss_objectness, loss_box = self.compute_loss(objectness, deltas, labels,
                                                          regression_targets)
            return {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
        proposals = self.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
        boxes, scores = self.filter_proposals(proposals, objectness, images.image_sizes,
                                              num_anchors_per_level)
        return [{"boxes": b, "scores": s, "labels": s.new_zeros(s.shape, dtype=int)}
                for b, s in zip(boxes, scores)]


class ProposalNetwork(nn.Module):
    """Resize and normalise, backbone, RPN; boxes come back in input-image coordinates."""

    def __init__(self, backbone: nn.Module, rpn: ProposalRPN,
                 transform: GeneralizedRCNNTransform) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        image_list, targets = self.transform(images, targets)
        out = self.rpn(image_list, self.backbone(image_list.tensors), targets)
        if self.training:
            return out
        return self.transform.postprocess(out, image_list.image_sizes, original_sizes)
