"""The tiny backbone's pretraining: deterministic, made once and read after, loaded exactly into
the detectors that ask for it, and committed for the `shapes` scale at the current code."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mlc.config import SCALES, ConfigError, make_config
from mlc.models import build_detector
from mlc.models import pretrain as pt

SMOKE = SCALES["smoke"]
COMMITTED = Path(__file__).resolve().parents[1] / "results" / "pretrained"


def smoke_weights(**spec) -> torch.nn.Module:
    body, _ = pt.train_classifier(replace(SMOKE.pretrain, **spec), SMOKE.shapes, SMOKE.tiny_widths)
    return body


def test_pretraining_is_deterministic(exact_kernels):
    first, second = smoke_weights().state_dict(), smoke_weights().state_dict()
    for key, value in first.items():
        if exact_kernels:
            assert torch.equal(value, second[key]), key
        else:
            torch.testing.assert_close(value, second[key])
    other = smoke_weights(seed=1).state_dict()
    assert not all(torch.equal(v, other[k]) for k, v in first.items())


def test_the_classification_set_is_drawn_apart_from_the_detection_set():
    data = SMOKE.pretrain.data(SMOKE.shapes)
    assert data.seed != SMOKE.shapes.seed
    images, labels = pt.classification_set(data, "train")
    assert images.shape == (SMOKE.pretrain.images, 3, data.image_size, data.image_size)
    assert images.dtype == torch.uint8 and labels.shape == (SMOKE.pretrain.images, data.num_classes)
    assert set(labels.unique().tolist()) <= {0.0, 1.0} and labels.sum(1).min() >= 0


def test_weights_are_made_once_then_read(tmp_path, monkeypatch):
    monkeypatch.setenv("MLC_RESULTS", str(tmp_path))
    path = pt.pretrained_weights(SMOKE.pretrain, SMOKE.shapes, SMOKE.tiny_widths, progress=False)
    record = json.loads(path.with_suffix(".json").read_text())
    assert path.parent == tmp_path / "pretrained"
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["provenance"]["threads"] == SMOKE.pretrain.threads
    assert 0 <= record["val"]["exact_match"] <= 100

    def refuse(*args, **kwargs):
        raise AssertionError("pretrained again although the weights exist")

    monkeypatch.setattr(pt, "train_classifier", refuse)
    assert pt.pretrained_weights(SMOKE.pretrain, SMOKE.shapes, SMOKE.tiny_widths) == path


def test_the_weights_name_follows_spec_widths_and_code(monkeypatch):
    name = pt.weights_name(SMOKE.pretrain, SMOKE.shapes, SMOKE.tiny_widths)
    assert pt.weights_name(replace(SMOKE.pretrain, epochs=3), SMOKE.shapes, SMOKE.tiny_widths) != name
    assert pt.weights_name(SMOKE.pretrain, SMOKE.shapes, (16, 32, 64, 128)) != name
    monkeypatch.setattr(pt, "pretrain_code_version", lambda: "00000000")
    assert pt.weights_name(SMOKE.pretrain, SMOKE.shapes, SMOKE.tiny_widths) != name


def test_a_pretrained_detector_loads_those_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MLC_RESULTS", str(tmp_path))
    for detector in ("fcos_minus", "retinanet", "rpn"):
        model, info = build_detector(make_config(detector, "smoke", pretrained=True), num_classes=3)
        path = pt.pretrained_weights(SMOKE.pretrain, SMOKE.shapes, SMOKE.tiny_widths)
        assert info["backbone_init"] == f"pretrained:{path.stem}"
        saved = torch.load(path, weights_only=True)
        body = model.backbone.body.state_dict()
        assert saved.keys() == body.keys()
        for key, value in saved.items():  # convs rescaled to their initial norm, the rest as saved
            if value.dim() == 4:
                torch.testing.assert_close(body[key] / body[key].norm(), value / value.norm())
            else:
                assert torch.equal(body[key], value), (detector, key)
    random, info = build_detector(make_config("fcos_minus", "smoke"), num_classes=3)
    assert info["backbone_init"] == "random"
    assert not all(torch.allclose(saved[k] / saved[k].norm(), v / v.norm())
                   for k, v in random.backbone.body.state_dict().items() if v.dim() == 4)


def test_pretrained_needs_a_pretraining_at_its_scale():
    assert make_config("fcos_minus", "shapes").pretrained is False  # random init stays the default
    assert make_config("fcos_minus", "shapes", pretrained=True).pretrained
    with pytest.raises(ConfigError, match="no pretraining.*shapes"):
        make_config("fcos_minus", "shapes-v1", pretrained=True)


def test_the_shapes_weights_are_committed_at_this_code():
    """make reproduce reads them rather than pretraining for minutes; a change to the code that
    makes them must pretrain and commit them again (python -m mlc pretrain shapes)."""
    sc = SCALES["shapes"]
    name = pt.weights_name(sc.pretrain, sc.shapes, sc.tiny_widths)
    path = COMMITTED / f"{name}.pt"
    assert path.exists(), f"{path} is missing: run python -m mlc pretrain shapes and commit it"
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["spec"]["threads"] == 1 and record["provenance"]["kernels"] == "pinned"


def test_rescaling_a_pretrained_body_keeps_its_function_and_restores_its_initial_norms():
    """Every conv of the tiny body feeds a GroupNorm, so scaling its weight changes nothing the
    body computes; the scale is what a fresh layer of that shape has, sqrt(out_channels / 3)."""
    from mlc.models import rescale_to_initial_norm
    from mlc.models.backbone import TinyResNet

    torch.manual_seed(0)
    body = smoke_weights()
    fresh = TinyResNet(SMOKE.tiny_widths)
    x = torch.randn(2, 3, 64, 64)
    before = body(x)
    rescale_to_initial_norm(body)
    torch.testing.assert_close(body(x), before, rtol=1e-4, atol=1e-5)
    for (name, ours), theirs in zip(body.state_dict().items(), fresh.state_dict().values()):
        if ours.dim() == 4:
            assert ours.norm().item() == pytest.approx((ours.shape[0] / 3) ** 0.5, rel=1e-5), name
            assert ours.norm().item() == pytest.approx(theirs.norm().item(), rel=0.1), name
