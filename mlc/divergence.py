"""The paper's divergence metric: per object, the Spearman rank correlation between the score of
the object's class and the IoU with the object, over the pre-NMS boxes matched to it.

The box set (DESIGN.md): the detector's boxes as they enter NMS, each given to the object of its
class it overlaps most, kept at IoU >= 0.3 (a parameter; the book shows other floors); the
score is the one NMS ranks by (the class probability, times the quality where the detector
rescores). The figure is the mean over objects with at least 5 boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou


def _average_ranks(values: Tensor, groups: Tensor) -> Tensor:
    """1-based ranks of `values` within each group, ties given their mean rank (scipy's rankdata)."""
    n = values.numel()
    by_value = torch.argsort(values, stable=True)
    order = by_value[torch.argsort(groups[by_value], stable=True)]
    g, v = groups[order], values[order]
    new_group = torch.ones(n, dtype=torch.bool, device=values.device)
    new_group[1:] = g[1:] != g[:-1]
    new_run = new_group.clone()
    new_run[1:] |= v[1:] != v[:-1]
    position = torch.arange(n, device=values.device, dtype=torch.float64)
    group_start = torch.cummax(torch.where(new_group, position, torch.zeros_like(position)), 0).values
    rank_in_group = position - group_start + 1
    run = new_run.long().cumsum(0) - 1
    run_sum = torch.zeros(int(run[-1]) + 1, dtype=torch.float64, device=values.device)
    run_len = torch.zeros_like(run_sum)
    run_sum.index_add_(0, run, rank_in_group)
    run_len.index_add_(0, run, torch.ones_like(rank_in_group))
    ranks = torch.empty(n, dtype=torch.float64, device=values.device)
    ranks[order] = (run_sum / run_len)[run]
    return ranks


def _grouped_pearson(x: Tensor, y: Tensor, groups: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Pearson correlation per group (NaN where either side is constant) and group sizes."""
    count = torch.zeros(num_groups, dtype=torch.float64, device=x.device).index_add_(
        0, groups, torch.ones_like(x))

    def group_sum(t: Tensor) -> Tensor:
        return torch.zeros(num_groups, dtype=torch.float64, device=x.device).index_add_(0, groups, t)

    dx = x - (group_sum(x) / count.clamp(min=1))[groups]
    dy = y - (group_sum(y) / count.clamp(min=1))[groups]
    cov, vx, vy = group_sum(dx * dy), group_sum(dx * dx), group_sum(dy * dy)
    denom = torch.sqrt(vx * vy)
    corr = torch.where(denom > 0, cov / denom, torch.full_like(cov, float("nan")))
    return corr, count


def spearman_divergence(scores: Tensor, ious: Tensor, object_ids: Tensor,
                        min_boxes: int = 5) -> dict[str, float]:
    """The divergence between classification and localization of a detector's boxes.

    Returns `mean`: the mean over objects with at least `min_boxes` boxes (and not constant
    scores or IoUs) of the per-object Spearman correlation between score and IoU (the paper's
    figure; 1 means no divergence); `pooled`: Spearman over all boxes together; `n_objects`:
    how many objects entered the mean.
    """
    if scores.numel() == 0:
        return {"mean": float("nan"), "pooled": float("nan"), "n_objects": 0}
    s, i = scores.detach().to(torch.float64), ious.detach().to(torch.float64)
    _, groups = torch.unique(object_ids.reshape(-1), return_inverse=True)
    num_groups = int(groups.max()) + 1
    corr, count = _grouped_pearson(_average_ranks(s, groups), _average_ranks(i, groups), groups,
                                   num_groups)
    keep = (count >= min_boxes) & torch.isfinite(corr)
    one = torch.zeros_like(groups)
    pooled, _ = _grouped_pearson(_average_ranks(s, one), _average_ranks(i, one), one, 1)
    return {"mean": float(corr[keep].mean()) if keep.any() else float("nan"),
            "pooled": float(pooled[0]), "n_objects": int(keep.sum())}


def boxes_around_objects(boxes: Tensor, scores: Tensor, labels: Tensor, gt_boxes: Tensor,
                         gt_labels: Tensor, iou_floor: float) -> tuple[Tensor, Tensor, Tensor]:
    """The metric's box set for one image: each predicted box (as it enters NMS) goes to the
    object of its class it overlaps most, if that IoU is at least `iou_floor`.

    Returns the kept boxes' scores, their IoUs with their objects and the objects' indices.
    """
    empty = scores.new_zeros(0)
    if boxes.numel() == 0 or gt_boxes.numel() == 0:
        return empty, empty, empty.long()
    overlap = box_iou(boxes.float(), gt_boxes.float())
    overlap = torch.where(labels[:, None] == gt_labels[None, :], overlap, torch.zeros_like(overlap))
    best_iou, best = overlap.max(1)
    keep = best_iou >= iou_floor
    return scores[keep], best_iou[keep], best[keep]


def divergence_by_floor(scores: Tensor, ious: Tensor, object_ids: Tensor, floors: tuple[float, ...],
                        min_boxes: int = 5) -> dict[str, dict[str, float]]:
    """`spearman_divergence` of the boxes with IoU >= each floor (keys as "0.3")."""
    return {f"{floor:.1f}": spearman_divergence(scores[ious >= floor], ious[ious >= floor],
                                                object_ids[ious >= floor], min_boxes)
            for floor in floors}
