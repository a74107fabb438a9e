"""Mutual labeling (Sec. 3.1): each object's candidate anchors are split into positives and
negatives for classification by an Otsu threshold on their IoUs, and for localization by one on
their scores, every object of a batch at once (no Python loop over objects)."""

from __future__ import annotations

import torch
from torch import Tensor

from mlc.targets import DenseTargets


@torch.no_grad()
def otsu_threshold(values: Tensor, group_ids: Tensor, num_groups: int, bins: int = 256) -> Tensor:
    """One Otsu threshold per group: `num_groups` values (dtype of `values`), as
    `otsu_threshold_torch` computes them; on CUDA by the Triton kernels of `mlc.kernels`
    (7 launches instead of ~60, which is what the time of this function is made of there)."""
    if values.is_cuda and values.dtype in (torch.float32, torch.float64):
        from mlc.kernels import otsu_threshold_triton

        return otsu_threshold_triton(values, group_ids, num_groups, bins)
    return otsu_threshold_torch(values, group_ids, num_groups, bins)


@torch.no_grad()
def otsu_threshold_torch(values: Tensor, group_ids: Tensor, num_groups: int, bins: int = 256) -> Tensor:
    """One Otsu threshold per group: `num_groups` values (dtype of `values`), in torch ops.

    Computed in float64 with the histogram numpy builds (`bins` equal bins over the group's
    [min, max], bin centres as candidate thresholds), so that for every group with at least
    two distinct values it equals `skimage.filters.threshold_otsu(values[group_ids == g],
    nbins=bins)` on the CPU. A group of one value, or of equal values, gets the float just below
    its minimum (all its members are above it: positive); an empty group gets NaN.
    """
    v = values.detach().reshape(-1).to(torch.float64)
    g = group_ids.reshape(-1).long()
    inf = torch.full((num_groups,), float("inf"), dtype=torch.float64, device=v.device)
    lo = inf.scatter_reduce(0, g, v, "amin")
    hi = (-inf).scatter_reduce(0, g, v, "amax")
    spread = hi > lo
    span = torch.where(spread, hi - lo, 1.0)
    step = span / bins
    # np.histogram: index from (v - lo) * bins / span, corrected against the bin edges
    # lo + i * step (the last edge exactly hi, hence no upper correction for the last bin)
    lo_v, step_v = lo.index_select(0, g), step.index_select(0, g)
    idx = ((v - lo_v) * (bins / span).index_select(0, g)).long().clamp_(0, bins - 1)
    idx -= (v < idx * step_v + lo_v).long()
    idx += ((v >= (idx + 1) * step_v + lo_v) & (idx != bins - 1)).long()
    idx.clamp_(0, bins - 1)
    counts = torch.zeros(num_groups * bins, dtype=torch.float64, device=v.device)
    counts = counts.index_add_(0, g * bins + idx, torch.ones_like(v)).view(num_groups, bins)

    i = torch.arange(bins + 1, dtype=torch.float64, device=v.device)
    edges = i * step[:, None] + lo[:, None]
    edges[:, -1] = torch.where(spread, hi, edges[:, -1])
    centres = (edges[:, :-1] + edges[:, 1:]) / 2.0
    weight1 = counts.cumsum(1)
    weight2 = weight1[:, -1:] - weight1 + counts  # integers: exact
    mass = counts * centres
    mean1 = mass.cumsum(1) / weight1
    mean2 = (mass.flip(1).cumsum(1).flip(1)) / weight2
    between = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    # Over a run of empty bins the variance repeats that of the occupied bin before it, which
    # numpy's first maximum picks: only occupied bins compete, so that a parallel cumsum's
    # last-digit differences (CUDA) along such a run cannot move the threshold.
    between = torch.where(counts[:, :-1] > 0, torch.nan_to_num_(between, nan=-1.0), -1.0)
    best = between.max(1, keepdim=True).indices  # first maximum
    threshold = centres.gather(1, best).squeeze(1)

    lo = lo.to(values.dtype)
    below_min = torch.nextafter(lo, torch.full_like(lo, -float("inf")))
    threshold = torch.where(spread, threshold.to(values.dtype), below_min)
    return torch.where(torch.isfinite(lo), threshold, torch.full_like(lo, float("nan")))


def candidate_objects(targets: list[dict[str, Tensor]],
                      candidate: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Class label, box and batch-wide object index (the Otsu group) of each anchor's candidate
    object: [N, A], [N, A, 4], [N, A]; label and index -1 where the anchor is no candidate."""
    labels, boxes, groups, offset = [], [], [], 0
    for t, c in zip(targets, candidate):
        idx = c.clamp(min=0)
        if t["boxes"].numel() == 0:
            labels.append(torch.full_like(c, -1))
            boxes.append(c.new_zeros((c.numel(), 4), dtype=torch.float32))
        else:
            labels.append(torch.where(c >= 0, t["labels"][idx], -1))
            boxes.append(t["boxes"][idx])
        groups.append(torch.where(c >= 0, c + offset, -1))
        offset += len(t["boxes"])
    return torch.stack(labels), torch.stack(boxes), torch.stack(groups)


def mutual_labels(labels: Tensor, boxes: Tensor, groups: Tensor, ignored: Tensor, negative: Tensor,
                  ious: Tensor, scores: Tensor, alpha: float) -> DenseTargets:
    """Mutual labeling (Sec. 3.1, Eq. 4-8) of a batch's anchors, all objects at once.

    `labels`, `boxes`, `groups` are each anchor's candidate object (`candidate_objects`; group
    -1: no candidate), `ignored` marks candidates the detector's own rule ignored, `negative`
    the detector's own negatives (those that are no candidate stay negative), `ious` the IoU of
    each anchor's decoded box with its candidate and `scores` its predicted probability of the
    candidate's class. Per object, classification positives have an IoU above the Otsu
    threshold of the object's IoUs and its other candidates are classification negatives;
    localization positives have a score above the Otsu threshold of its scores. Originally
    ignored candidates weigh |IoU - tau_IoU|^alpha in classification and
    |score - tau_score|^alpha in localization; all others 1.
    """
    cand = groups >= 0
    num_groups = int(groups.max()) + 1 if cand.any() else 0
    g, iou, score = groups[cand], ious[cand].detach(), scores[cand].detach()
    tau_iou = otsu_threshold(iou, g, num_groups)[g]
    tau_score = otsu_threshold(score, g, num_groups)[g]
    cls_pos = torch.zeros_like(cand)
    loc_pos = torch.zeros_like(cand)
    cls_pos[cand] = iou > tau_iou
    loc_pos[cand] = score > tau_score
    cls_weight = torch.ones(cand.shape, dtype=torch.float32, device=cand.device)
    loc_weight = torch.ones_like(cls_weight)
    was_ignored = ignored[cand]
    one = torch.ones_like(iou, dtype=torch.float32)
    cls_weight[cand] = torch.where(was_ignored, (iou - tau_iou).abs().float() ** alpha, one)
    loc_weight[cand] = torch.where(was_ignored, (score - tau_score).abs().float() ** alpha, one)
    return DenseTargets(labels=labels, boxes=boxes, cls_pos=cls_pos,
                        cls_neg=(negative & ~cand) | (cand & ~cls_pos), loc_pos=loc_pos,
                        cls_weight=cls_weight, loc_weight=loc_weight)
