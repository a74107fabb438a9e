"""RPN as a proposal-only model: torchvision's RegionProposalNetwork on a backbone, no second stage.

The subclass labels anchors with RPN's own matching (IoU >= 0.7 positive, < 0.3 negative) or
with mutual labeling (candidates: IoU >= 0.3), samples 256 anchors per image for the objectness
loss (RPN's own sampler; under ML every candidate is in the sample, filled up with random
negatives, and the regression covers every localization positive, as Eq. 9 says), and adds
IUR: an IoU layer beside the objectness layer, whose predicted IoU multiplies the objectness that
ranks the proposals. At inference it
returns each proposal's score with its box, and the candidates as they enter NMS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers
from torchvision.ops import clip_boxes_to_image

from mlc.config import ML_CANDIDATE_IOU
from mlc.models.dense import (
    decode_where,
    flatten_level,
    global_count,
    iou_layer,
    iou_rescoring_loss,
    match_with_candidates,
    mutual_targets,
    sibling_convs,
)
from mlc.models.postprocess import DetectionTransform
from mlc.targets import DenseTargets, baseline_targets


class RPNHeadMLC(RPNHead):
    """RPN's head, with IUR's IoU layer (one conv on the shared conv's output) when asked."""

    def __init__(self, in_channels: int, num_anchors: int, iur: bool = False) -> None:
        super().__init__(in_channels, num_anchors)
        self.iou_pred = iou_layer(in_channels, num_anchors, kernel_size=1) if iur else None

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        layers = [self.cls_logits, self.bbox_pred] + ([self.iou_pred] if self.iou_pred is not None else [])
        objectness, deltas, iou = [], [], []
        for features in x:
            outputs = sibling_convs(self.conv(features), layers)
            objectness.append(outputs[0])
            deltas.append(outputs[1])
            if self.iou_pred is not None:
                iou.append(outputs[2])
        return objectness, deltas, iou


class ProposalRPN(RegionProposalNetwork):
    """torchvision's RPN with mutual labeling and IUR, returning losses in training and {boxes,
    scores} per image otherwise (see the module docstring)."""

    ml_alpha: float | None = None
    gamma: float = 1.0
    mlc_terms_on: bool = False

    def forward(self, images: ImageList, features: dict[str, Tensor],
                targets: list[dict[str, Tensor]] | None = None):
        feats = list(features.values())
        objectness, deltas, iou = self.head(feats)
        anchors = self.anchor_generator(images, feats)
        num_anchors_per_level = [o[0].numel() for o in objectness]
        n = len(anchors)
        iou_logits = torch.cat([flatten_level(x, 1) for x in iou], 1).squeeze(-1) if iou else None
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        objectness, deltas = objectness.view(n, -1), deltas.view(n, -1, 4)
        if self.training:
            return self.rpn_loss(targets, objectness, deltas, iou_logits, torch.stack(anchors))
        proposals = self.box_coder.decode(deltas.detach().reshape(-1, 4), anchors).view(n, -1, 4)
        scores = objectness.detach()
        if iou_logits is not None:  # IUR: rank by objectness x predicted IoU, as a logit (in
            # float32: under autocast, half precision would tie most of the ranking at the clamp)
            scores = torch.logit(torch.sigmoid(scores.float())
                                 * torch.sigmoid(iou_logits.detach().float()), eps=1e-7)
        pre_nms = self._get_top_n_idx(scores, num_anchors_per_level)
        boxes, probs = self.filter_proposals(proposals, scores, images.image_sizes,
                                             num_anchors_per_level)
        batch = torch.arange(n, device=scores.device)[:, None]
        return [{"boxes": b, "scores": s, "labels": s.new_zeros(s.shape, dtype=torch.int64),
                 "pre_nms_boxes": clip_boxes_to_image(proposals[i][pre_nms[i]], size),
                 "pre_nms_scores": torch.sigmoid(scores[batch, pre_nms][i]),
                 "pre_nms_labels": pre_nms.new_zeros(pre_nms.shape[1])}
                for i, (b, s, size) in enumerate(zip(boxes, probs, images.image_sizes))]

    def rpn_targets(self, targets: list[dict[str, Tensor]], objectness: Tensor, deltas: Tensor,
                    anchors: Tensor) -> tuple[DenseTargets, Tensor | None]:
        """RPN's own labels, or mutual labeling's once MLC's terms are on, with ML's candidate
        mask ([N, A]; None for RPN's own labels). Objects are treated as one class (RPN's
        objectness)."""
        agnostic = [{"boxes": t["boxes"], "labels": torch.zeros_like(t["labels"])} for t in targets]
        matched, candidates = match_with_candidates(self.proposal_matcher, agnostic, list(anchors),
                                                    ML_CANDIDATE_IOU["rpn"])
        if self.ml_alpha is None or not self.mlc_terms_on:
            return baseline_targets(agnostic, matched), None
        candidates = torch.stack(candidates)
        t = mutual_targets(agnostic, torch.stack(matched), candidates, self.box_coder.decode_single,
                           deltas, objectness[..., None], anchors, self.ml_alpha)
        return t, candidates >= 0

    def sample(self, t: DenseTargets, candidates: Tensor | None) -> tuple[Tensor, Tensor]:
        """The anchors of the objectness loss and those of the regression loss ([N, A] masks).

        RPN's own labels: its sampler (256 per image, at most half positive), regression on the
        sampled positives. Mutual labeling: every candidate of an object (its classification
        positives and its new negatives) is in the sample, filled up to 256 with random other
        negatives, and the regression covers all localization positives.
        """
        if candidates is None:
            labels = torch.where(t.cls_pos, 1.0, torch.where(t.cls_neg, 0.0, -1.0))
            sampled_pos, sampled_neg = self.fg_bg_sampler(list(labels))
            sampled = torch.stack(sampled_pos).bool() | torch.stack(sampled_neg).bool()
            return sampled, sampled & t.loc_pos
        return candidates_filled_with_negatives(candidates, t.cls_neg & ~candidates,
                                                self.fg_bg_sampler.batch_size_per_image), t.loc_pos

    def rpn_loss(self, targets: list[dict[str, Tensor]], objectness: Tensor, deltas: Tensor,
                 iou_logits: Tensor | None, anchors: Tensor) -> dict[str, Tensor]:
        """RPN's losses on the labels of `rpn_targets` and the anchors of `sample`: BCE on the
        sampled anchors, smooth L1 on the regression's, both per sampled anchor; IUR's MSE x
        gamma on the positives."""
        t, candidates = self.rpn_targets(targets, objectness, deltas, anchors)
        sampled, loc = self.sample(t, candidates)
        norm = global_count(sampled)
        bce = F.binary_cross_entropy_with_logits(objectness[sampled], t.cls_pos[sampled].float(),
                                                 reduction="none")
        target = self.box_coder.encode_single(t.boxes[loc], anchors[loc])
        l1 = F.smooth_l1_loss(deltas[loc], target, beta=1 / 9, reduction="none").sum(-1)
        losses = {"loss_objectness": (bce * t.cls_weight[sampled]).sum() / norm,
                  "loss_rpn_box_reg": (l1 * t.loc_weight[loc]).sum() / norm}
        if iou_logits is not None:
            union = t.cls_pos | t.loc_pos
            boxes = decode_where(self.box_coder.decode_single, deltas, anchors, union)
            weight = self.gamma if self.mlc_terms_on else 0.0
            losses["iou_rescoring"] = weight * iou_rescoring_loss(iou_logits, boxes, t.boxes, union)
        return losses


def candidates_filled_with_negatives(candidates: Tensor, negatives: Tensor, per_image: int) -> Tensor:
    """[N, A] mask: every candidate, and random `negatives` up to `per_image` anchors per image
    (none where the candidates alone reach it)."""
    sampled = candidates.clone()
    for i in range(len(candidates)):
        room = per_image - int(candidates[i].sum())
        pool = negatives[i].nonzero().squeeze(1)
        if room > 0 and len(pool):
            pick = pool[torch.randperm(len(pool), device=pool.device)[:room]]
            sampled[i, pick] = True
    return sampled


class ProposalNetwork(nn.Module):
    """Resize and normalise, backbone, RPN; boxes come back in input-image coordinates."""

    def __init__(self, backbone: nn.Module, rpn: ProposalRPN, transform: DetectionTransform) -> None:
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
