"""Build a detector from a RunConfig: FCOS, FCOS-, RetinaNet or RPN on the scale's backbone."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator

from mlc.config import RunConfig
from mlc.models.backbone import IMAGENET_MEAN, IMAGENET_STD, resnet50_fpn, tiny_fpn
from mlc.models.fcos import FCOSDetector, FCOSHeadMLC
from mlc.models.postprocess import DetectionTransform, InferenceSettings
from mlc.models.pretrain import load_body, pretrained_weights
from mlc.models.retinanet import RetinaNetDetector, RetinaNetHeadMLC
from mlc.models.rpn import ProposalNetwork, ProposalRPN, RPNHeadMLC
from mlc.successors import TaskAligned, Varifocal


def fpn_levels(cfg: RunConfig) -> str:
    """The FPN levels a detector reads: RPN P2-P6; FCOS and RetinaNet P3-P7 on ResNet-50, the
    scale's `dense_levels` on the tiny backbone."""
    if cfg.detector == "rpn":
        return "p2p6"
    return "p3p7" if cfg.scale_spec.backbone == "resnet50" else cfg.scale_spec.dense_levels


def _strides(cfg: RunConfig) -> tuple[int, ...]:
    """Strides of the five FPN levels."""
    return (8, 16, 32, 64, 128) if fpn_levels(cfg) == "p3p7" else (4, 8, 16, 32, 64)


def anchor_generator(cfg: RunConfig) -> AnchorGenerator:
    """Anchors per detector: FCOS one point per location (size = stride); RetinaNet 3 octaves x 3
    ratios at 4x stride (32-512 on COCO); RPN one size x 3 ratios (8x stride on COCO, 4x on the
    small generated images)."""
    strides = _strides(cfg)
    if cfg.detector in ("fcos", "fcos_minus"):
        return AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
    ratios = ((0.5, 1.0, 2.0),) * len(strides)
    if cfg.detector == "retinanet":
        sizes = tuple(tuple(4 * s * 2 ** (i / 3) for i in range(3)) for s in strides)
        return AnchorGenerator(sizes, ratios)
    base = 8 if cfg.scale_spec.backbone == "resnet50" else 4
    return AnchorGenerator(tuple((base * s,) for s in strides), ratios)


def build_backbone(cfg: RunConfig) -> tuple[nn.Module, str]:
    """The scale's backbone with FPN, and how it was initialised: from ImageNet (ResNet-50) or the
    scale's generated classification set (the tiny ResNet, mlc.models.pretrain) when `pretrained`."""
    sc = cfg.scale_spec
    if sc.backbone == "resnet50":
        return resnet50_fpn(cfg.pretrained, fpn_levels(cfg), sc.fpn_channels)
    backbone = tiny_fpn(sc.tiny_widths, sc.fpn_channels, fpn_levels(cfg))
    if not cfg.pretrained:
        return backbone, "random"
    path = pretrained_weights(sc.pretrain, sc.shapes, sc.tiny_widths)
    load_body(backbone.body, path)
    rescale_to_initial_norm(backbone.body)
    return backbone, f"pretrained:{path.stem}"


@torch.no_grad()
def rescale_to_initial_norm(body: nn.Module) -> None:
    """Scale each conv weight of a pretrained tiny body to the norm PyTorch's default init gives
    its shape in expectation, sqrt(out_channels / 3). Every such conv feeds a GroupNorm, so the
    body computes the same function; but pretraining grew the early layers' norms about 3x, and
    under a normalisation the step a weight takes shrinks with its norm squared, so unscaled they
    would barely move at the detector's lr and keep features made for telling classes apart."""
    for module in body.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.mul_((module.out_channels / 3) ** 0.5 / module.weight.norm())


def build_detector(cfg: RunConfig, num_classes: int) -> tuple[nn.Module, dict]:
    """The detector of `cfg` and a dict describing it (backbone init, parameter count)."""
    sc = cfg.scale_spec
    backbone, init = build_backbone(cfg)
    anchors = anchor_generator(cfg)
    settings = InferenceSettings(cfg.score_thresh, cfg.topk_candidates, cfg.nms_thresh,
                                 cfg.detections_per_img)
    ml_alpha = cfg.alpha if cfg.ml else None
    if cfg.detector in ("fcos", "fcos_minus"):
        head = FCOSHeadMLC(backbone.out_channels, num_classes, sc.head_convs,
                           centerness=cfg.detector == "fcos", norm_groups=min(32, sc.fpn_channels // 4),
                           iur=cfg.iur, gamma=cfg.gamma, ml_alpha=ml_alpha, alignment=cfg.alignment)
        model = FCOSDetector(backbone, head, anchors, settings, sc.min_size, sc.max_size,
                             cfg.center_sampling_radius)
    elif cfg.detector == "retinanet":
        # RetinaNet's head has no normalisation (as in the paper); from random init on the tiny
        # backbone it barely learns in 19 epochs, so there it gets GroupNorm (torchvision's v2).
        norm = None if sc.backbone == "resnet50" else partial(nn.GroupNorm, sc.fpn_channels // 4)
        head = RetinaNetHeadMLC(backbone.out_channels, anchors.num_anchors_per_location()[0],
                                num_classes, norm_layer=norm, iur=cfg.iur, gamma=cfg.gamma,
                                ml_alpha=ml_alpha, alignment=cfg.alignment,
                                num_convs=sc.head_convs)
        model = RetinaNetDetector(backbone, head, anchors, settings, sc.min_size, sc.max_size)
    else:
        rpn = ProposalRPN(
            anchors, RPNHeadMLC(backbone.out_channels, anchors.num_anchors_per_location()[0], cfg.iur),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n={"training": 2000, "testing": cfg.proposals_per_img},
            post_nms_top_n={"training": 1000, "testing": cfg.proposals_per_img}, nms_thresh=0.7,
        )
        rpn.ml_alpha, rpn.gamma = ml_alpha, cfg.gamma
        transform = DetectionTransform(sc.min_size, sc.max_size, IMAGENET_MEAN, IMAGENET_STD)
        model = ProposalNetwork(backbone, rpn, transform)
    if cfg.detector in ("fcos", "fcos_minus", "retinanet"):
        head.varifocal = Varifocal(cfg.vfl_alpha, cfg.vfl_gamma) if cfg.vfl else None
        head.task_aligned = TaskAligned(cfg.tal_topk, cfg.tal_alpha, cfg.tal_beta) if cfg.tal else None
    info = {"backbone": sc.backbone, "backbone_init": init,
            "parameters": sum(p.numel() for p in model.parameters())}
    return model, info


def switch_mlc_terms(model: nn.Module, on: bool) -> None:
    """Switch MLC's training terms (mutual labeling, IUR's loss, alignment) on or off; the
    engine turns them on at the config's `mlc_start_epoch`."""
    for module in model.modules():
        if hasattr(module, "mlc_terms_on"):
            module.mlc_terms_on = on

