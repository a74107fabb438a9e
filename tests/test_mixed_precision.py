"""Every detector and MLC variant runs under autocast with float16 (as the engine trains on CUDA):
a training step and inference, with the MLC terms on. On a CPU, autocast stands in for CUDA's
(the coco preset on a GPU failed here once: a float16 box written into a float32 tensor)."""

from __future__ import annotations

import math

import pytest
import torch

from mlc.config import make_config
from mlc.data.build import datasets
from mlc.data.coco import collate
from mlc.models import build_detector, switch_mlc_terms

# ML + IUR runs every code path of ML and of IUR; alignment, VFL and TAL have their own.
VARIANTS = [{"ml": True, "iur": True}, {"alignment": True}, {"vfl": True, "ml": True},
            {"tal": True, "iur": True}]


@pytest.mark.parametrize("detector", ["fcos_minus", "fcos", "retinanet", "rpn"])
@pytest.mark.parametrize("flags", VARIANTS, ids=str)
def test_trains_and_predicts_under_float16_autocast(detector, flags, data_root):
    if detector == "rpn" and {"alignment", "vfl", "tal"} & flags.keys():
        pytest.skip("alignment, VFL and TAL are for the dense detectors")
    train_set, _ = datasets("smoke", data_root, seed=0)
    images, targets = collate([train_set[i] for i in range(4)])
    torch.manual_seed(0)
    model, _ = build_detector(make_config(detector, "smoke", **flags), train_set.num_classes)
    switch_mlc_terms(model, True)
    with torch.autocast("cpu", dtype=torch.float16):
        losses = model.train()(images, targets)
        assert all(math.isfinite(v.item()) for v in losses.values()), losses
        sum(losses.values()).backward()
        model.eval()
        with torch.no_grad():
            out = model(images)
    assert len(out) == len(images)
    for det in out:
        assert torch.isfinite(det["boxes"]).all() and torch.isfinite(det["scores"]).all()
