"""Backbones with FPNs: ResNet-50-FPN for `coco`, a tiny GroupNorm ResNet-FPN for CPU scales."""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet50_Weights, resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

# Input normalisation of every detector (ImageNet statistics, as torchvision's detectors).
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def resnet50_imagenet(pretrained: bool) -> tuple[nn.Module, str]:
    """ResNet-50 with frozen BN, from ImageNet weights or (pretrained False) random init, and how
    it was initialised, for the run's provenance. Missing weights raise (`mlc.runs` refuses such
    a run before any work, naming where the file goes)."""
    if pretrained:
        net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V1, norm_layer=FrozenBatchNorm2d)
        return net, "imagenet:ResNet50_Weights.IMAGENET1K_V1"
    return resnet50(weights=None, norm_layer=FrozenBatchNorm2d), "random"


def resnet50_fpn(pretrained: bool, levels: str, out_channels: int = 256):
    """ResNet-50-FPN as torchvision builds it: P3-P7 for FCOS/RetinaNet, P2-P6 for RPN.

    As in torchvision's detection models, a pretrained stem and first stage stay frozen; a
    randomly initialised network trains every layer.
    """
    net, init = resnet50_imagenet(pretrained)
    trainable = 3 if init != "random" else 5
    if levels == "p3p7":
        fpn = _resnet_fpn_extractor(net, trainable, returned_layers=[2, 3, 4],
                                    extra_blocks=LastLevelP6P7(out_channels, out_channels))
    elif levels == "p2p6":
        fpn = _resnet_fpn_extractor(net, trainable, returned_layers=[1, 2, 3, 4],
                                    extra_blocks=LastLevelMaxPool())
    else:
        raise ValueError(f"unknown levels {levels!r}; allowed: p3p7, p2p6")
    return fpn, init


class BasicBlock(nn.Module):
    """A ResNet basic block with GroupNorm, so that results do not depend on the batch split."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(8, cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.GroupNorm(8, cout))

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.norm1(self.conv1(x)))
        return self.relu(self.norm2(self.conv2(out)) + identity)


class TinyResNet(nn.Sequential):
    """A 4-stage ResNet at strides 4, 8, 16, 32 with one basic block per stage."""

    def __init__(self, widths: tuple[int, int, int, int]) -> None:
        w1, w2, w3, w4 = widths
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, w1, 3, 2, 1, bias=False), nn.GroupNorm(8, w1),
                                  nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(w1, w1, 2)
        self.layer2 = BasicBlock(w1, w2, 2)
        self.layer3 = BasicBlock(w2, w3, 2)
        self.layer4 = BasicBlock(w3, w4, 2)


def tiny_fpn(widths: tuple[int, int, int, int], out_channels: int, levels: str = "p2p6") -> BackboneWithFPN:
    """Tiny ResNet with an FPN: P2-P6 (strides 4-64) from its four stages, or P3-P7 (strides
    8-128, as FCOS and RetinaNet on ResNet-50) from the last three and two extra convs."""
    body = TinyResNet(widths)
    if levels == "p2p6":
        return BackboneWithFPN(body, return_layers={f"layer{i}": str(i - 1) for i in range(1, 5)},
                               in_channels_list=list(widths), out_channels=out_channels,
                               extra_blocks=LastLevelMaxPool())
    if levels == "p3p7":
        return BackboneWithFPN(body, return_layers={f"layer{i}": str(i - 2) for i in range(2, 5)},
                               in_channels_list=list(widths[1:]), out_channels=out_channels,
                               extra_blocks=LastLevelP6P7(out_channels, out_channels))
    raise ValueError(f"unknown levels {levels!r}; allowed: p3p7, p2p6")
