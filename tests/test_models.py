"""Every detector trains (forward, backward) and predicts, at smoke scale and with the coco preset."""

from __future__ import annotations

import pytest
import torch

from mlc.config import DETECTORS, make_config
from mlc.data.coco import collate
from mlc.models import build_detector
from mlc.models.fcos import centerness_targets
from mlc.models.postprocess import InferenceSettings, dense_detections


def _train_step(model, images, targets):
    model.train()
    losses = model(images, targets)
    loss = sum(losses.values())
    loss.backward()
    return losses


@pytest.mark.parametrize("detector", DETECTORS)
def test_forward_backward_and_inference(detector, smoke_sets):
    train, val = smoke_sets
    torch.manual_seed(0)
    model, info = build_detector(make_config(detector, "smoke"), train.num_classes)
    images, targets = collate([train[0], train[1]])
    losses = _train_step(model, images, targets)
    expected = {"fcos": {"classification", "bbox_regression", "bbox_ctrness"},
                "fcos_minus": {"classification", "bbox_regression"},
                "retinanet": {"classification", "bbox_regression"},
                "rpn": {"loss_objectness", "loss_rpn_box_reg"}}[detector]
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    model.eval()
    with torch.no_grad():
        out = model([val[0][0]])
    assert set(out[0]) >= {"boxes", "scores", "labels"}
    limit = 1000 if detector == "rpn" else 100
    assert out[0]["boxes"].shape[1] == 4 and len(out[0]["boxes"]) <= limit
    assert info["parameters"] > 0


def test_fcos_minus_has_no_centerness():
    cfg_plain, cfg_minus = make_config("fcos", "smoke"), make_config("fcos_minus", "smoke")
    plain, _ = build_detector(cfg_plain, 3)
    minus, _ = build_detector(cfg_minus, 3)
    assert hasattr(plain.head.regression_head, "bbox_ctrness")
    assert not hasattr(minus.head.regression_head, "bbox_ctrness")


def test_centerness_targets_by_hand():
    anchors = torch.tensor([[4.0, 4.0, 6.0, 6.0], [1.0, 1.0, 3.0, 3.0]])  # centres (5,5), (2,2)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 4.0]])
    # (5,5) in [0,10]^2: l=r=t=b -> 1. (2,2): l=2, r=8, t=2, b=2 -> sqrt(2/8 * 1) = 0.5.
    assert torch.allclose(centerness_targets(anchors, boxes), torch.tensor([1.0, 0.5]))


def test_dense_detections_threshold_on_probability_and_rank_by_product():
    logits = torch.logit(torch.tensor([[0.9, 0.01], [0.6, 0.04], [0.3, 0.02]]))
    quality = torch.tensor([0.1, 0.9, 0.5])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [20.0, 20, 30, 30]])

    def decode(reg, anchors):
        return anchors

    outputs = {"cls_logits": [logits[None]], "bbox_regression": [torch.zeros(1, 3, 4)],
               "bbox_ctrness": [torch.logit(quality)[None, :, None]]}
    (out,) = dense_detections(outputs, [[boxes]], [(100, 100)], decode, InferenceSettings())
    # Class 1 probabilities are all below 0.05; class 0 ranks by p x q: .54, .15, .09.
    assert out["labels"].tolist() == [0, 0, 0]
    assert torch.allclose(out["scores"], torch.tensor([0.54, 0.15, 0.09]))
    assert out["boxes"][0].tolist() == [50.0, 50.0, 60.0, 60.0]
    assert out["pre_nms_scores"].numel() == 3


@pytest.mark.parametrize("iou_nms", [False, True])
def test_dense_detections_of_a_batch_equal_each_image_alone(iou_nms, exact_kernels):
    """The batch is processed all at once; each image's detections must not depend on the others
    (bit for bit at the pinned kernel level; elsewhere vector kernels may round differently)."""
    g = torch.Generator().manual_seed(0)
    levels = [(64, 3), (16, 3)]
    outputs = {key: [torch.randn(3, hwa, c, generator=g) * 3 for hwa, _ in levels]
               for key, c in (("cls_logits", 3), ("bbox_regression", 4), ("iou_logits", 1))}
    anchors = [[torch.rand(hwa, 2, generator=g).mul(50).repeat(1, 2) + torch.tensor([0, 0, 20, 20])
                for hwa, _ in levels] for _ in range(3)]
    shapes = [(60, 60), (70, 50), (40, 80)]
    settings = InferenceSettings(score_thresh=0.3, topk_candidates=40, iou_nms=iou_nms)

    def decode(reg, anc):
        return anc + reg

    batch = dense_detections(outputs, anchors, shapes, decode, settings)
    for i, shape in enumerate(shapes):
        (alone,) = dense_detections({k: [x[i:i + 1] for x in v] for k, v in outputs.items()},
                                    [anchors[i]], [shape], decode, settings)
        for key in ("boxes", "scores", "labels", "pre_nms_boxes", "pre_nms_scores"):
            if exact_kernels:
                assert torch.equal(batch[i][key], alone[key]), (i, key)
            else:
                torch.testing.assert_close(batch[i][key], alone[key], rtol=1e-5, atol=1e-6,
                                           msg=f"image {i}, {key}")
        assert 0 < alone["pre_nms_scores"].numel() < 80
        assert (alone["pre_nms_boxes"][:, 2:] <= torch.tensor(shape[::-1])).all()


def test_coco_preset_resnet50_fpn_one_step_on_cpu(smoke_sets):
    """The paper's model (ResNet-50-FPN, random init here), resize to 800 and schedule code."""
    from mlc.engine import learning_rate

    train, _ = smoke_sets
    cfg = make_config("fcos_minus", "coco", pretrained=False)
    torch.manual_seed(0)
    model, info = build_detector(cfg, train.num_classes)
    assert info["backbone"] == "resnet50" and info["backbone_init"] == "random"
    assert [m.__class__.__name__ for m in model.backbone.body.modules()].count("Bottleneck") == 16
    images, targets = collate([train[0], train[1]])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                          lr=learning_rate(cfg, 0, 0), momentum=0.9)
    losses = _train_step(model, images, targets)
    opt.step()
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        images_t, _ = model.transform([train[0][0]])
    assert min(images_t.tensors.shape[-2:]) == 800
