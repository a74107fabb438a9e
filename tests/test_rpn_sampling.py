"""RPN under mutual labeling (DESIGN.md): every candidate of an object is in the objectness loss's
sample, filled up to 256 with other negatives, and the regression covers all of A_loc+ (Eq. 9);
RPN's own labels keep RPN's sampler."""

from __future__ import annotations

import torch

from mlc.config import make_config
from mlc.models import build_detector
from mlc.models.rpn import candidates_filled_with_negatives
from mlc.targets import DenseTargets


def rpn():
    model, _ = build_detector(make_config("rpn", "smoke", ml=True), num_classes=1)
    return model.rpn


def hand_case(num_anchors: int = 600, num_candidates: int = 10) -> tuple[DenseTargets, torch.Tensor]:
    """One image: candidates 0..num_candidates-1; of them 0-3 classification positives and 2-6
    localization positives (4, 5, 6: regressed, not classification positives); the others
    baseline negatives."""
    idx = torch.arange(num_anchors)[None]
    candidates = idx < num_candidates
    cls_pos, loc_pos = idx < 4, (idx >= 2) & (idx < 7)
    ones = torch.ones(1, num_anchors)
    t = DenseTargets(labels=torch.where(candidates, 0, -1), boxes=torch.zeros(1, num_anchors, 4),
                     cls_pos=cls_pos, cls_neg=~cls_pos, loc_pos=loc_pos, cls_weight=ones,
                     loc_weight=ones)
    return t, candidates


def test_ml_samples_every_candidate_and_regresses_every_localization_positive():
    t, candidates = hand_case()
    torch.manual_seed(0)
    sampled, regressed = rpn().sample(t, candidates)
    assert sampled[0, :10].all()  # the 4 positives and the 6 new negatives, always
    assert sampled.sum() == 256  # filled up with 246 of the 590 baseline negatives
    assert torch.equal(regressed, t.loc_pos)  # anchors 2-6, sampled or not


def test_candidates_beyond_256_are_all_sampled_and_nothing_is_added():
    t, candidates = hand_case(num_candidates=300)
    sampled, _ = rpn().sample(t, candidates)
    assert torch.equal(sampled, candidates)


def test_fill_takes_negatives_only_and_at_most_what_there_is():
    candidates = torch.tensor([[True, False, False, False, False]])
    negatives = torch.tensor([[False, True, False, True, False]])
    assert candidates_filled_with_negatives(candidates, negatives, 256).tolist() == [
        [True, True, False, True, False]]
    torch.manual_seed(0)
    one = candidates_filled_with_negatives(candidates, negatives, 2)
    assert one.sum() == 2 and one[0, 0] and not (one & ~candidates & ~negatives).any()


def test_rpn_own_labels_keep_rpn_sampler():
    """Without ML: at most 128 positives, 256 in all, regression on the sampled positives."""
    idx = torch.arange(600)[None]
    pos = idx < 200
    ones = torch.ones(1, 600)
    t = DenseTargets(labels=torch.where(pos, 0, -1), boxes=torch.zeros(1, 600, 4), cls_pos=pos,
                     cls_neg=~pos, loc_pos=pos, cls_weight=ones, loc_weight=ones)
    torch.manual_seed(0)
    sampled, regressed = rpn().sample(t, None)
    assert sampled.sum() == 256 and (sampled & pos).sum() == 128
    assert torch.equal(regressed, sampled & pos)
