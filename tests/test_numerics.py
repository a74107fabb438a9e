"""A non-finite loss stops the run at once, naming the step, every loss term and the last good
checkpoint; images with no object or one object train."""

from __future__ import annotations

import pytest
import torch

import mlc.engine as engine
from mlc.config import DETECTORS, make_config
from mlc.models import build_detector
from mlc.runs import get_or_train


def test_diverging_run_stops_at_the_first_nonfinite_loss(tmp_path, data_root):
    cfg = make_config("retinanet", "smoke", lr=1e6, warmup_iters=0)
    with pytest.raises(FloatingPointError) as err:
        get_or_train(cfg, tmp_path, data_root, progress=False, results_root=tmp_path)
    message = str(err.value)
    assert "non-finite loss at step 1 (epoch 1)" in message
    assert "'classification': nan" in message and "'bbox_regression'" in message
    assert message.endswith("last good checkpoint: none")


def test_nan_after_a_checkpoint_names_it(tmp_path, data_root, monkeypatch):
    real_build = engine.build_detector

    def build_with_nan_at_step_2(cfg, num_classes):
        model, info = real_build(cfg, num_classes)
        forward, calls = model.forward, {"n": 0}

        def forward_nan(images, targets=None):
            out = forward(images, targets)
            if model.training:
                calls["n"] += 1
                if calls["n"] == 3:  # step 2, the first of epoch 2
                    out = {k: v * float("nan") for k, v in out.items()}
            return out

        model.forward = forward_nan
        return model, info

    monkeypatch.setattr(engine, "build_detector", build_with_nan_at_step_2)
    cfg = make_config("fcos", "smoke")
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 2 \(epoch 2\)") as err:
        get_or_train(cfg, tmp_path, data_root, progress=False, results_root=tmp_path)
    checkpoint = tmp_path / "smoke" / cfg.name / "checkpoint.pt"
    assert str(err.value).endswith(f"last good checkpoint: {checkpoint}")
    assert "bbox_ctrness" in str(err.value)
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1


@pytest.mark.parametrize("detector", DETECTORS)
def test_images_with_no_object_and_one_object_train(detector, smoke_sets):
    train, _ = smoke_sets
    torch.manual_seed(0)
    model, _ = build_detector(make_config(detector, "smoke"), train.num_classes)
    image, target = train[0]
    one = {"boxes": target["boxes"][:1], "labels": target["labels"][:1]}
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}
    model.train()
    for targets in ([empty, empty], [one, empty], [one, one]):
        losses = model([image, image.flip(-1)], targets)
        assert all(torch.isfinite(v) for v in losses.values()), (detector, losses)
        sum(losses.values()).backward()
