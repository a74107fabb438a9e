"""What a dense detector trains on: for every anchor, whether it is a positive or negative for
classification, a positive for localization, its object and its loss weights.

The detector's own matching gives `baseline_targets`; mutual labeling (`mlc.mutual`) gives
other sets and weights of the same form, so the losses never change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


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
    cls_target: Tensor | None = None  # soft target of the positives (VFL: IoU; TAL: alignment)


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
