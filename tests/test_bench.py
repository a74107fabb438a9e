"""The benchmark's inference and Otsu parts run and compare like with like."""

from __future__ import annotations

import torch

from mlc.bench import run


def test_inference_compares_the_same_boxes_and_otsu_beats_the_loop():
    report = run("smoke", ["fcos_minus", "retinanet"], torch.device("cpu"), rounds=1, repeat=1,
                 parts=("inference", "otsu"))
    for name, t in report["inference"].items():
        # IUR's layer zeroed: a constant predicted IoU, so the same boxes go through NMS
        assert t["same_boxes"], name
        assert t["baseline"] > 0 and t["IUR"] > 0
    assert report["otsu"]["loop"] > report["otsu"]["batched"] > 0
