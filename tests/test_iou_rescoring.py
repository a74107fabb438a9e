"""IoU rescoring (IUR): the IoU layer, its target and loss, and ranking by score x IoU."""

from __future__ import annotations

import pytest
import torch

from mlc.config import ConfigError, make_config
from mlc.data.coco import collate
from mlc.models import build_detector, switch_mlc_terms
from mlc.models.dense import iou_rescoring_loss, paired_iou
from mlc.models.postprocess import quality_per_level


def test_paired_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 5.0], [5.0, 0.0, 15.0, 10.0], [5.0, 5.0, 6.0, 6.0]])
    assert torch.allclose(paired_iou(a, b), torch.tensor([0.5, 50 / 150, 0.0]))


def test_iur_loss_is_the_mse_to_the_detached_iou_over_the_positives():
    logits = torch.zeros(1, 3, requires_grad=True)  # predicted IoU 0.5 everywhere
    pred = torch.tensor([[[0.0, 0, 10, 10], [0.0, 0, 10, 5], [0.0, 0, 4, 4]]], requires_grad=True)
    gt = torch.tensor([[[0.0, 0, 10, 5], [0.0, 0, 10, 5], [20.0, 20, 30, 30]]])
    positives = torch.tensor([[True, True, False]])
    loss = iou_rescoring_loss(logits, pred, gt, positives)
    # IoUs 0.5 and 1.0: errors 0 and 0.25, mean over the 2 positives.
    assert loss.item() == pytest.approx(0.125)
    loss.backward()
    assert pred.grad is None or not pred.grad.any()  # the target is detached from the boxes
    assert logits.grad[0, 2] == 0 and logits.grad[0, 1] != 0


@pytest.mark.parametrize("detector", ["fcos_minus", "fcos", "retinanet"])
def test_iur_heads_train_and_rescore(detector, smoke_sets):
    train, val = smoke_sets
    torch.manual_seed(0)
    model, _ = build_detector(make_config(detector, "smoke", iur=True, gamma=2.0),
                              train.num_classes)
    images, targets = collate([train[0], train[1]])
    model.train()
    losses = model(images, targets)  # before mlc_start_epoch: the term is there with weight 0
    assert losses["iou_rescoring"].item() == 0.0
    switch_mlc_terms(model, True)
    losses = model(images, targets)
    assert torch.isfinite(losses["iou_rescoring"]) and losses["iou_rescoring"] > 0
    sum(losses.values()).backward()
    assert model.head.iou_pred.weight.grad is not None and model.head.iou_pred.weight.grad.any()
    model.eval()
    with torch.no_grad():
        assert len(model([val[0][0]])[0]["boxes"]) <= 100


def test_quality_multiplies_centerness_and_predicted_iou():
    ctr = [torch.logit(torch.tensor([[[0.5], [0.8]]]))]  # [levels][N, HWA, 1]
    iou = [torch.logit(torch.tensor([[0.4, 0.5]]))]
    q = quality_per_level({"bbox_ctrness": ctr, "iou_logits": iou})
    assert torch.allclose(q[0], torch.tensor([[0.2, 0.4]]))
    assert quality_per_level({"cls_logits": []}) is None


def test_iur_config_is_checked():
    with pytest.raises(ConfigError, match="gamma .* must be >= 0"):
        make_config("fcos_minus", "smoke", iur=True, gamma=-1.0)
