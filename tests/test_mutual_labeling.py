"""Mutual labeling worked out by hand (FCOS and RetinaNet), its candidate rules, and the
switch at mlc_start_epoch."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import Matcher

from mlc.config import ConfigError, make_config
from mlc.models.dense import match_with_candidates
from mlc.models.fcos import FCOSHeadMLC
from mlc.mutual import candidate_objects, mutual_labels


def _otsu_of_two(a: float, b: float) -> float:
    """Otsu on two distinct values with 256 bins: every split scores the same, the first wins,
    so the threshold is the centre of the first bin."""
    return a + (b - a) / 512


def _point_anchors(xs: list[float], y: float) -> torch.Tensor:
    """Unit-size anchors centred on (x, y): FCOS's linear coder then decodes distances as is."""
    return torch.tensor([[x - 0.5, y - 0.5, x + 0.5, y + 0.5] for x in xs])


def test_fcos_mutual_labels_by_hand():
    """Object 0 (class 2, box 0..20) has four in-box locations, object 1 (class 1) two; one
    location is outside both. Predicted IoUs and scores are set per location."""
    head = FCOSHeadMLC(32, num_classes=3, num_convs=1, centerness=False, ml_alpha=0.0)
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0], [40.0, 0.0, 50.0, 10.0]]),
                "labels": torch.tensor([2, 1])}]
    anchors = _point_anchors([10.0, 10.0, 10.0, 10.0, 45.0, 45.0, 80.0], 10.0)[None]
    # Distances (l, t, r, b) from (10, 10): object 0's box (IoU 1) or its left half (IoU 0.5);
    # from (45, 10): object 1's box (IoU 1) or a box 4 wide of its 10 (IoU 0.4).
    reg = torch.tensor([[10.0, 10, 10, 10], [10, 10, 0, 10], [10, 10, 10, 10], [10, 10, 0, 10],
                        [5, 10, 5, 0], [5, 10, -1, 0], [1, 1, 1, 1]])[None]
    probs = torch.full((1, 7, 3), 0.01)
    probs[0, :4, 2] = torch.tensor([0.2, 0.6, 0.6, 0.2])  # object 0's class at its locations
    probs[0, 4:6, 1] = torch.tensor([0.3, 0.9])
    out = {"bbox_regression": reg, "cls_logits": torch.logit(probs)}
    matched = torch.tensor([[0, 0, 0, 0, 1, 1, -1]])
    t = head.mutual_targets(targets, out, anchors, matched, matched.clamp(min=-1))

    # By hand. Object 0: IoUs {1, .5} -> tau .5 + .5/512: classification positives at 0 and 2;
    # scores {.2, .6} -> localization positives at 1 and 2. Object 1: IoUs {1, .4} and scores
    # {.3, .9}: classification positive 4, localization positive 5. Location 6 stays negative.
    assert t.cls_pos[0].tolist() == [True, False, True, False, True, False, False]
    assert t.cls_neg[0].tolist() == [False, True, False, True, False, True, True]
    assert t.loc_pos[0].tolist() == [False, True, True, False, False, True, False]
    assert t.labels[0].tolist() == [2, 2, 2, 2, 1, 1, -1]
    assert torch.equal(t.boxes[0, 5], targets[0]["boxes"][1])
    assert (t.cls_weight == 1).all() and (t.loc_weight == 1).all()  # FCOS ignores nothing


def test_retinanet_candidates_by_hand():
    """IoU >= 0.5 positive, < 0.4 negative, in between ignored; candidates are IoU >= 0.4."""
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0],   # IoU 1
                            [0.0, 0.0, 10.0, 4.5],    # 0.45: ignored
                            [0.0, 0.0, 10.0, 3.0],    # 0.3: negative
                            [50.0, 50.0, 60.0, 60.0]])  # 0: negative
    matched, candidates = match_with_candidates(Matcher(0.5, 0.4, allow_low_quality_matches=True),
                                                [{"boxes": box, "labels": torch.tensor([0])}],
                                                [anchors], candidate_iou=0.4)
    assert matched[0].tolist() == [0, -2, -1, -1]
    assert candidates[0].tolist() == [0, 0, -1, -1]


def test_retinanet_mutual_labels_and_weights_by_hand():
    """Four candidates of one object (0, 1 matched; 2, 3 originally ignored) and a negative,
    alpha 0.5: the ignored ones are weighted by their margin to the thresholds (Eq. 7, 8)."""
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([3])}]
    matched = torch.tensor([[0, 0, -2, -2, -1]])
    candidate = torch.tensor([[0, 0, 0, 0, -1]])
    labels, boxes, groups = candidate_objects(targets, candidate)
    ious = torch.tensor([[0.8, 0.4, 0.8, 0.4, 0.0]], dtype=torch.float64)
    scores = torch.tensor([[0.3, 0.7, 0.7, 0.3, 0.0]], dtype=torch.float64)
    t = mutual_labels(labels, boxes, groups, ignored=(candidate >= 0) & (matched < 0),
                      negative=matched == -1, ious=ious, scores=scores, alpha=0.5)
    tau_iou, tau_score = _otsu_of_two(0.4, 0.8), _otsu_of_two(0.3, 0.7)
    assert t.cls_pos[0].tolist() == [True, False, True, False, False]
    assert t.cls_neg[0].tolist() == [False, True, False, True, True]
    assert t.loc_pos[0].tolist() == [False, True, True, False, False]
    assert t.labels[0].tolist() == [3, 3, 3, 3, -1]
    expected_cls = [1.0, 1.0, (0.8 - tau_iou) ** 0.5, (tau_iou - 0.4) ** 0.5, 1.0]
    expected_loc = [1.0, 1.0, (0.7 - tau_score) ** 0.5, (tau_score - 0.3) ** 0.5, 1.0]
    assert t.cls_weight[0].tolist() == pytest.approx(expected_cls, rel=1e-6)
    assert t.loc_weight[0].tolist() == pytest.approx(expected_loc, rel=1e-6)


def test_an_object_whose_candidates_agree_keeps_them_all():
    """A group of equal values (or of one candidate) is all positive."""
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 9.0, 9.0]]),
                "labels": torch.tensor([0, 1])}]
    candidate = torch.tensor([[0, 0, 1]])
    labels, boxes, groups = candidate_objects(targets, candidate)
    t = mutual_labels(labels, boxes, groups, ignored=torch.zeros(1, 3, dtype=torch.bool),
                      negative=torch.zeros(1, 3, dtype=torch.bool),
                      ious=torch.tensor([[0.6, 0.6, 0.2]]), scores=torch.tensor([[0.1, 0.1, 0.3]]),
                      alpha=0.0)
    assert t.cls_pos.all() and t.loc_pos.all() and not t.cls_neg.any()


def test_groups_span_the_images_of_a_batch():
    """Object k of image 1 is its own Otsu group, not object k of image 0."""
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([0])}] * 2
    candidate = torch.tensor([[0, 0, -1], [0, 0, -1]])
    labels, boxes, groups = candidate_objects(targets, candidate)
    assert groups.tolist() == [[0, 0, -1], [1, 1, -1]]
    t = mutual_labels(labels, boxes, groups, ignored=torch.zeros(2, 3, dtype=torch.bool),
                      negative=candidate < 0, ious=torch.tensor([[0.9, 0.8, 0], [0.3, 0.2, 0]]),
                      scores=torch.tensor([[0.5, 0.4, 0], [0.5, 0.4, 0]]), alpha=0.0)
    # One threshold over both images would make image 1's candidates all negative.
    assert t.cls_pos.tolist() == [[True, False, False], [True, False, False]]


def test_ml_config_is_checked():
    with pytest.raises(ConfigError, match="alpha .* must be >= 0"):
        make_config("retinanet", "smoke", ml=True, alpha=-0.5)
    with pytest.raises(ConfigError, match="no candidate rule .* rpn: anchors with IoU >= 0.3"):
        make_config("fcos_minus", "smoke", ml=True, center_sampling_radius=1.5)
    with pytest.raises(ConfigError, match="allowed: fcos, fcos_minus, retinanet"):
        make_config("rpn", "smoke", alignment=True)
    with pytest.raises(ConfigError, match="mlc_start_epoch"):
        make_config("fcos_minus", "smoke", ml=True, mlc_start_epoch=2)
    assert [make_config(d, "coco").alpha for d in ("fcos_minus", "retinanet", "rpn")] == [0, 0.5, 2]
    assert make_config("fcos_minus", "coco").mlc_start_epoch == 12
