"""The batched Otsu threshold against scikit-image, and the divergence metric against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from skimage.filters import threshold_otsu

from mlc.divergence import spearman_divergence
from mlc.mutual import otsu_threshold


def _groups_case(draw_sizes, rng, quantize=None):
    values, ids = [], []
    for g, n in enumerate(draw_sizes):
        v = rng.random(n) * rng.uniform(0.01, 10) + rng.uniform(-5, 5)
        if quantize:  # many ties, as scores and IoUs have
            v = np.round(v * quantize) / quantize
        values.append(v)
        ids.append(np.full(n, g))
    return np.concatenate(values), np.concatenate(ids)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 60), min_size=1, max_size=12), seed=st.integers(0, 2**31),
       bins=st.sampled_from([2, 16, 256]), quantize=st.sampled_from([None, 4, 100]))
def test_otsu_equals_skimage_on_every_group(sizes, seed, bins, quantize):
    rng = np.random.default_rng(seed)
    values, ids = _groups_case(sizes, rng, quantize)
    order = rng.permutation(len(values))  # groups interleaved, as objects in a batch are
    values, ids = values[order], ids[order]
    out = otsu_threshold(torch.from_numpy(values), torch.from_numpy(ids), len(sizes), bins)
    for g in range(len(sizes)):
        member = values[ids == g]
        if np.unique(member).size >= 2:
            assert out[g].item() == threshold_otsu(member, nbins=bins), g
        else:  # one value, or all equal: every member is positive
            assert out[g].item() < member.min()
            assert np.nextafter(out[g].item(), np.inf) == member.min()


def test_otsu_on_many_objects_and_empty_groups():
    rng = np.random.default_rng(0)
    values, ids = _groups_case([200] * 100, rng, quantize=1000)
    values = values.astype(np.float32)  # 100 objects x 200 candidates, in float32 as in training
    out = otsu_threshold(torch.from_numpy(values), torch.from_numpy(ids), 102)
    assert out.dtype == torch.float32 and out.shape == (102,)
    for g in range(100):
        expected = threshold_otsu(values[ids == g].astype(np.float64))
        assert out[g].item() == np.float32(expected), g
    assert torch.isnan(out[100:]).all()


def test_otsu_splits_two_clusters_by_hand():
    values = torch.tensor([0.1, 0.12, 0.15, 0.8, 0.82, 0.9, 0.5, 0.5])
    ids = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    t = otsu_threshold(values, ids, 2)
    assert 0.15 < t[0] < 0.8
    assert t[1] < 0.5


def test_spearman_per_object_mean_and_pooled_match_scipy():
    rng = np.random.default_rng(1)
    scores, ious, ids, per_object = [], [], [], []
    for obj in range(30):
        n = int(rng.integers(1, 25))
        iou = np.round(rng.random(n), 2)
        score = np.round(iou * rng.uniform(-1, 1) + rng.random(n) * 0.5, 2)  # ties included
        scores.append(score)
        ious.append(iou)
        ids.append(np.full(n, 1000 + 7 * obj))  # object ids need not be contiguous
        if n >= 5 and np.unique(score).size > 1 and np.unique(iou).size > 1:
            per_object.append(spearmanr(score, iou).statistic)
    s, i, o = (np.concatenate(x) for x in (scores, ious, ids))
    perm = rng.permutation(len(s))
    out = spearman_divergence(torch.from_numpy(s[perm]), torch.from_numpy(i[perm]),
                              torch.from_numpy(o[perm]), min_boxes=5)
    assert out["n_objects"] == len(per_object)
    assert out["mean"] == pytest.approx(np.mean(per_object), abs=1e-12)
    assert out["pooled"] == pytest.approx(spearmanr(s, i).statistic, abs=1e-12)


def test_spearman_of_perfectly_aligned_and_reversed_objects():
    iou = torch.tensor([0.3, 0.5, 0.7, 0.9, 0.95] * 2)
    score = torch.cat([iou[:5] * 2, -iou[5:]])
    out = spearman_divergence(score, iou, torch.tensor([0] * 5 + [1] * 5))
    assert out == {"mean": pytest.approx(0.0), "pooled": out["pooled"], "n_objects": 2}
    out = spearman_divergence(iou[:5], iou[:5], torch.zeros(5, dtype=torch.long))
    assert out["mean"] == pytest.approx(1.0) and out["pooled"] == pytest.approx(1.0)
