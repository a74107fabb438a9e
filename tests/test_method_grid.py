"""Every combination the tables need trains and evaluates; IoU-NMS and the divergence's box set
worked out by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mlc.config import make_config
from mlc.divergence import boxes_around_objects
from mlc.engine import train
from mlc.models.postprocess import iou_guided_nms

GRID = [(d, ml, iur) for d in ("fcos_minus", "fcos", "retinanet", "rpn")
        for ml in (False, True) for iur in (False, True)]


def _finite(tree) -> bool:
    if isinstance(tree, dict):
        return all(_finite(v) for v in tree.values())
    if isinstance(tree, list):
        return all(_finite(v) for v in tree)
    return tree is None or math.isfinite(tree)


@pytest.mark.parametrize("detector,ml,iur", GRID)
def test_every_combination_trains_and_evaluates(detector, ml, iur, tmp_path, data_root):
    cfg = make_config(detector, "smoke", ml=ml, iur=iur)
    out = train(cfg, tmp_path / cfg.name, data_root, progress=False)
    log = [json.loads(line) for line in (tmp_path / cfg.name / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(row["loss"]) for row in log)
    assert ("iou_rescoring" in log[-1]) == iur
    m = out["metrics"]
    assert _finite(m) and {"mean", "pooled", "n_objects"} <= set(m["divergence"])
    assert ("AR100" in m) == (detector == "rpn")
    assert ("iou_nms" in m) == (iur and detector != "rpn")


@pytest.mark.parametrize("detector", ["fcos_minus", "retinanet"])
def test_prediction_alignment_trains(detector, tmp_path, data_root):
    cfg = make_config(detector, "smoke", alignment=True)
    out = train(cfg, tmp_path / cfg.name, data_root, progress=False)
    log = [json.loads(line) for line in (tmp_path / cfg.name / "log.jsonl").read_text().splitlines()]
    assert [row["alignment"] > 0 for row in log] == [row["epoch"] >= 1 for row in log]
    assert _finite(out["metrics"])


@pytest.mark.parametrize("detector", ["retinanet", "rpn"])
def test_mutual_labeling_switches_on_at_its_epoch(detector, tmp_path, data_root):
    """Before mlc_start_epoch an ML run is the baseline step for step; after it, it is not."""
    logs = {}
    for ml in (False, True):
        cfg = make_config(detector, "smoke", ml=ml)
        train(cfg, tmp_path / cfg.name, data_root, progress=False)
        logs[ml] = [json.loads(x) for x in (tmp_path / cfg.name / "log.jsonl").read_text().splitlines()]
    before = [(a, b) for a, b in zip(logs[False], logs[True]) if a["epoch"] == 0]
    after = [(a, b) for a, b in zip(logs[False], logs[True]) if a["epoch"] == 1]
    assert before and all(a == b for a, b in before)
    assert any(a["loss"] != b["loss"] for a, b in after)


@pytest.mark.parametrize("detector", ["fcos_minus", "retinanet"])
@pytest.mark.parametrize("flag", ["vfl", "tal"])
def test_successors_train_and_switch_on_at_their_epoch(detector, flag, tmp_path, data_root):
    """VFL and TAL train and evaluate; before mlc_start_epoch the run is the baseline step for
    step (the same plain pretraining as MLC), after it, it is not."""
    logs = {}
    for on in (False, True):
        cfg = make_config(detector, "smoke", **{flag: on})
        out = train(cfg, tmp_path / cfg.name, data_root, progress=False)
        assert _finite(out["metrics"])
        logs[on] = [json.loads(x) for x in (tmp_path / cfg.name / "log.jsonl").read_text().splitlines()]
    before = [(a, b) for a, b in zip(logs[False], logs[True]) if a["epoch"] == 0]
    after = [(a, b) for a, b in zip(logs[False], logs[True]) if a["epoch"] == 1]
    assert before and all(a == b for a, b in before)
    assert any(a["loss"] != b["loss"] for a, b in after)


def test_iou_nms_by_hand():
    """A (IoU .9, p .5) suppresses B (IoU .8, p .9) and takes its probability; C stands alone;
    D is another class over A, kept with its own probability."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [50.0, 50, 60, 60], [0.0, 0, 10, 10]])
    probs = torch.tensor([0.5, 0.9, 0.3, 0.2])
    ious = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 0, 1])
    keep, scores = iou_guided_nms(boxes, probs, ious, labels, threshold=0.5)
    assert keep.tolist() == [0, 2, 3]
    assert scores.tolist() == pytest.approx([0.9, 0.3, 0.2])


def test_divergence_box_set_by_hand():
    """Each box goes to the object of its class it overlaps most, at IoU >= the floor."""
    gt = torch.tensor([[0.0, 0, 10, 10], [20.0, 0, 30, 10]])
    gt_labels = torch.tensor([0, 1])
    boxes = torch.tensor([[0.0, 0, 10, 5],    # object 0, IoU .5
                          [20.0, 0, 30, 10],  # class 0 over object 1 (class 1): no object
                          [20.0, 0, 30, 2],   # object 1, IoU .2: under the floor
                          [22.0, 0, 30, 10]])  # object 1, IoU .8
    scores = torch.tensor([0.4, 0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1, 1])
    s, iou, obj = boxes_around_objects(boxes, scores, labels, gt, gt_labels, iou_floor=0.3)
    assert s.tolist() == pytest.approx([0.4, 0.7])
    assert iou.tolist() == pytest.approx([0.5, 0.8])
    assert obj.tolist() == [0, 1]
