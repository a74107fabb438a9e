"""Mutual labeling's thresholds: one Otsu threshold per object over its candidates' IoUs or
scores, every object of a batch at once (no Python loop over groups or objects)."""

from __future__ import annotations

import torch
from torch import Tensor


def otsu_threshold(values: Tensor, group_ids: Tensor, num_groups: int, bins: int = 256) -> Tensor:
    """One Otsu threshold per group: `num_groups` values (dtype of `values`).

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
    span = torch.where(spread, hi - lo, torch.ones_like(lo))

    # numpy's uniform-bin histogram: index from the normalised value, then corrected against the
    # bin edges (edge i = lo + i * step, the last edge exactly hi), as np.histogram does.
    edges = torch.arange(bins + 1, dtype=torch.float64, device=v.device) * (span / bins)[:, None]
    edges = edges + lo[:, None]
    edges[:, -1] = torch.where(spread, hi, edges[:, -1])
    idx = (((v - lo[g]) / span[g]) * bins).long().clamp(0, bins - 1)
    idx = idx - (v < edges[g, idx]).long()
    idx = (idx + ((v >= edges[g, idx + 1]) & (idx != bins - 1)).long()).clamp(0, bins - 1)
    counts = torch.zeros(num_groups * bins, dtype=torch.float64, device=v.device)
    counts = counts.index_add_(0, g * bins + idx, torch.ones_like(v)).view(num_groups, bins)

    # Otsu: the between-class variance of every split between bin i and i+1.
    centres = (edges[:, :-1] + edges[:, 1:]) / 2.0
    weight1 = counts.cumsum(1)
    weight2 = counts.flip(1).cumsum(1).flip(1)
    mass = counts * centres
    mean1 = mass.cumsum(1) / weight1
    mean2 = (mass.flip(1).cumsum(1) / weight2.flip(1)).flip(1)
    between = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    best = torch.nan_to_num(between, nan=-1.0).argmax(1, keepdim=True)
    threshold = centres.gather(1, best).squeeze(1)

    lo = lo.to(values.dtype)  # "just below the minimum" in the caller's precision
    below_min = torch.nextafter(lo, torch.full_like(lo, -float("inf")))
    threshold = torch.where(spread, threshold.to(values.dtype), below_min)
    return torch.where(torch.isfinite(lo), threshold, torch.full_like(lo, float("nan")))
