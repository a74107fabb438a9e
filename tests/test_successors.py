"""VFL and TAL, MLC's successors: the losses and the assignment against hand-computed cases, the
config's refusals, and that VFL changes the classification loss only."""

from __future__ import annotations

import math

import pytest
import torch

from mlc.config import ConfigError, make_config
from mlc.data.build import datasets
from mlc.data.coco import collate
from mlc.models import build_detector, switch_mlc_terms
from mlc.successors import (
    TaskAligned,
    quality_focal_loss,
    task_aligned_assignment,
    task_aligned_targets,
    varifocal_loss,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def bce(p: float, q: float) -> float:
    return -(q * math.log(p) + (1 - q) * math.log(1 - p))


def test_varifocal_loss_by_hand():
    # A positive of class 0 (IoU target 0.6) with p = (0.5, 0.75); a negative with p = 0.25 twice.
    logits = torch.tensor([[0.0, logit(0.75)], [logit(0.25), logit(0.25)]])
    targets = torch.tensor([[0.6, 0.0], [0.0, 0.0]])
    expected = (0.6 * bce(0.5, 0.6)  # a positive weighs its target
                + 0.75 * 0.75 ** 2 * bce(0.75, 0.0)  # its other class is a negative: alpha p^gamma
                + 2 * 0.75 * 0.25 ** 2 * bce(0.25, 0.0))
    got = varifocal_loss(logits, targets, torch.ones(2))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # weights multiply per anchor
    got = varifocal_loss(logits, targets, torch.tensor([2.0, 0.0]))
    assert got.item() == pytest.approx(2 * (expected - 2 * 0.75 * 0.25 ** 2 * bce(0.25, 0.0)), rel=1e-6)


def test_varifocal_gradient_of_a_negative_is_scaled_not_its_weight():
    """The focal weight alpha p^gamma is a constant of the gradient (VarifocalNet detaches it)."""
    x = torch.tensor([[logit(0.75)]], requires_grad=True)
    varifocal_loss(x, torch.zeros(1, 1), torch.ones(1)).backward()
    assert x.grad.item() == pytest.approx(0.75 * 0.75 ** 2 * 0.75, rel=1e-6)  # weight x (p - 0)


def test_quality_focal_loss_by_hand():
    logits = torch.tensor([[logit(0.8), logit(0.3)]])
    targets = torch.tensor([[0.5, 0.0]])
    expected = bce(0.8, 0.5) * 0.3 ** 2 + bce(0.3, 0.0) * 0.3 ** 2
    assert quality_focal_loss(logits, targets, torch.ones(1)).item() == pytest.approx(expected, rel=1e-6)


# Two objects side by side, A = [0, 10] and B = [5, 15] in x (both 0-10 in y), and seven anchors
# along y = 5 whose predicted boxes (0-10 in y too) give these IoUs with A and B:
#   anchor x  predicted  IoU A   IoU B
#   0      1  [0, 10]    1       1/3
#   1      3  [0, 6]     0.6     1/15
#   2      7  [4, 14]    3/7     9/11
#   3      9  [4, 10]    0.6     5/11
#   4     13  [5, 15]    1/3     1
#   5     20  [16, 24]   0       0      (outside both)
#   6     16  [5, 15]    1/3     1      (outside B, though it predicts B exactly)
GT = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10]])
X = [1, 3, 7, 9, 13, 20, 16]
PRED = [(0, 10), (0, 6), (4, 14), (4, 10), (5, 15), (16, 24), (5, 15)]


def tal_case(topk: int):
    points = torch.tensor([[x, 5.0] for x in X])
    pred = torch.tensor([[x0, 0.0, x1, 10] for x0, x1 in PRED])
    scores = torch.full((7, 2), 0.5)
    scores[2, 1] = 0.25  # B's class scores lower at anchor 2
    return task_aligned_assignment(scores, pred, points, GT, torch.tensor([0, 1]), topk=topk,
                                   alpha=1.0, beta=1.0)


def test_task_aligned_assignment_by_hand():
    # t = s * u. A: 0.5, 0.3, 0.214, 0.3, 0.167, 0, 0.167 -> top 4: anchors 0, 1, 3, 2.
    # B: 0.167, 0.033, 0.205, 0.227, 0.5, 0, 0.5 -> top 4: anchors 4, 6, 3, 2.
    # Anchor 6 is in B's top 4 but outside B: negative. Anchor 2 is A's and B's: B's (IoU 9/11 >
    # 3/7). Anchor 3 is A's and B's: A's (0.6 > 5/11).
    owner, target = tal_case(topk=4)
    assert owner.tolist() == [0, 0, 1, 0, 1, -1, -1]
    # normalised per object: t / max t x max IoU; A: max t 0.5, max IoU 1; B: over its positives
    # 2 and 4, max t 0.5, max IoU 1.
    expected = [0.5 / 0.5, 0.3 / 0.5, 0.25 * 9 / 11 / 0.5, 0.3 / 0.5, 1.0, 0.0, 0.0]
    assert target.tolist() == pytest.approx(expected, rel=1e-6)


def test_task_aligned_ties_go_to_the_lower_anchor_index():
    # top 2: A's second place is a tie of anchors 1 and 3 (t = 0.3): anchor 1 takes it; B's top
    # 2 are anchors 4 and 6 (a tie at 0.5, both in), and 6 lies outside B.
    owner, target = tal_case(topk=2)
    assert owner.tolist() == [0, 0, -1, -1, 1, -1, -1]
    assert target.tolist() == pytest.approx([1.0, 0.6, 0, 0, 1.0, 0, 0], rel=1e-6)


def test_task_aligned_equal_iou_goes_to_the_lower_object_index():
    gt = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]])  # the same box twice
    owner, _ = task_aligned_assignment(torch.full((1, 2), 0.5), torch.tensor([[0.0, 0, 10, 10]]),
                                       torch.tensor([[5.0, 5]]), gt, torch.tensor([1, 0]), topk=1)
    assert owner.tolist() == [0]


def test_task_aligned_assignment_without_objects():
    owner, target = task_aligned_assignment(torch.rand(3, 2), torch.rand(3, 4), torch.rand(3, 2),
                                            torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert owner.tolist() == [-1, -1, -1] and target.tolist() == [0, 0, 0]


def test_task_aligned_targets_of_a_batch():
    """Image 0 is the hand case, image 1 has no object: labels, boxes and both positive sets."""
    anchors = torch.tensor([[x - 1.0, 4, x + 1, 6] for x in X])
    pred = torch.tensor([[x0, 0.0, x1, 10] for x0, x1 in PRED])
    logits = torch.zeros(2, 7, 2)
    targets = [{"boxes": GT, "labels": torch.tensor([0, 1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    t = task_aligned_targets(targets, logits, torch.stack([pred, pred]), torch.stack([anchors] * 2),
                             TaskAligned(topk=4, alpha=1.0, beta=1.0))
    assert t.labels[0].tolist() == [0, 0, 1, 0, 1, -1, -1] and (t.labels[1] == -1).all()
    assert torch.equal(t.cls_pos, t.loc_pos) and torch.equal(t.cls_neg, ~t.cls_pos)
    assert torch.equal(t.boxes[0, 2], GT[1]) and torch.equal(t.boxes[0, 3], GT[0])
    assert torch.equal(t.loc_weight, t.cls_target)


def test_task_aligned_assignment_under_float16():
    scores = torch.full((7, 2), 0.5, dtype=torch.float16)
    pred = torch.tensor([[x0, 0.0, x1, 10] for x0, x1 in PRED], dtype=torch.float16)
    owner, target = task_aligned_assignment(scores, pred, torch.tensor([[x, 5.0] for x in X]),
                                            GT, torch.tensor([0, 1]), topk=4, alpha=1.0, beta=6.0)
    assert owner.tolist() == [0, 0, 1, 0, 1, -1, -1]
    assert target.dtype == torch.float32 and torch.isfinite(target).all()


@pytest.mark.parametrize("flags, reason", [
    ({"tal": True, "ml": True}, "both choose the positives"),
    ({"tal": True, "vfl": True}, "both set the classification target"),
    ({"tal": True, "alignment": True}, "TAL already trains the class score"),
    ({"vfl": True, "alignment": True}, "the same term twice"),
])
def test_refused_combinations_name_the_reason(flags, reason):
    with pytest.raises(ConfigError, match=reason):
        make_config("fcos_minus", "smoke", **flags)


@pytest.mark.parametrize("flag", ["vfl", "tal"])
def test_rpn_has_no_class_score_for_vfl_or_tal(flag):
    with pytest.raises(ConfigError, match="needs a classification head"):
        make_config("rpn", "smoke", **{flag: True})


@pytest.mark.parametrize("flags", [{"vfl": True, "ml": True, "iur": True}, {"tal": True, "iur": True}],
                         ids=str)
def test_sensible_combinations_train(flags):
    make_config("retinanet", "smoke", **flags)


def _losses(detector: str, data_root, **flags) -> dict[str, float]:
    train_set, _ = datasets("smoke", data_root, seed=0)
    images, targets = collate([train_set[i] for i in range(4)])
    torch.manual_seed(0)
    model, _ = build_detector(make_config(detector, "smoke", **flags), train_set.num_classes)
    switch_mlc_terms(model, True)
    return {k: v.item() for k, v in model.train()(images, targets).items()}


@pytest.mark.parametrize("detector", ["fcos_minus", "retinanet"])
def test_vfl_changes_the_classification_loss_only(detector, data_root):
    plain, vfl = _losses(detector, data_root), _losses(detector, data_root, vfl=True)
    assert vfl.keys() == plain.keys()
    assert vfl["classification"] != pytest.approx(plain["classification"])
    assert vfl["bbox_regression"] == plain["bbox_regression"]


@pytest.mark.parametrize("detector", ["fcos_minus", "retinanet"])
def test_tal_box_loss_is_normalised_by_the_targets_sum(detector, data_root):
    """TOOD divides the box loss by the sum of the positives' targets, the heads by their count:
    the weights the head gets are the targets scaled to a mean of 1 over the positives."""
    train_set, _ = datasets("smoke", data_root, seed=0)
    images, targets = collate([train_set[i] for i in range(4)])
    torch.manual_seed(0)
    model, _ = build_detector(make_config(detector, "smoke", tal=True), train_set.num_classes)
    switch_mlc_terms(model, True)
    seen = []
    loss = model.head.dense_loss
    model.head.dense_loss = lambda t, out, anchors: seen.append(t) or loss(t, out, anchors)
    losses = model.train()(images, targets)
    t = seen[0]
    assert t.loc_pos.any() and all(math.isfinite(v.item()) for v in losses.values())
    weight, target = t.loc_weight[t.loc_pos], t.cls_target[t.loc_pos]
    assert weight.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(weight / weight.sum(), target / target.sum(), rtol=1e-5)
