"""The generated set and COCO-format loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mlc.data.coco import CocoDetection, Split, collate
from mlc.data.shapes import ShapesSpec, generate, render_image
from mlc.evaluation import detection_metrics

SPEC = ShapesSpec(num_train=6, num_val=4, image_size=64, max_objects=3, min_size=12,
                  max_size=40, distractors=1)


def test_render_is_deterministic_and_seed_dependent():
    a, anns_a = render_image(SPEC, "train", 3)
    b, anns_b = render_image(SPEC, "train", 3)
    c, _ = render_image(SPEC, "val", 3)
    assert np.array_equal(a, b) and anns_a == anns_b
    assert not np.array_equal(a, c)


def test_generated_set_round_trips_through_pycocotools(tmp_path):
    root = generate(SPEC, tmp_path / "set")
    val = CocoDetection(Split(root / "val", root / "annotations" / "instances_val.json"),
                        train=False)
    assert len(val) == SPEC.num_val and val.num_classes == SPEC.num_classes
    image, target = val[0]
    assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
    # The ground truth submitted as detections scores a perfect AP.
    results = []
    for img_id in val.coco.getImgIds():
        for ann in val.coco.loadAnns(val.coco.getAnnIds(imgIds=img_id)):
            results.append({"image_id": img_id, "category_id": ann["category_id"],
                            "bbox": ann["bbox"], "score": 1.0})
    assert detection_metrics(val, results)["AP"] == pytest.approx(100.0)


def test_metrics_over_a_subset_of_images(tmp_path):
    """The noise study's halves: detections right on half the images and wrong on the rest
    score 100 on that half, 0 on the other."""
    root = generate(SPEC, tmp_path / "set")
    val = CocoDetection(Split(root / "val", root / "annotations" / "instances_val.json"),
                        train=False)
    results = []
    for img_id in val.coco.getImgIds():
        for ann in val.coco.loadAnns(val.coco.getAnnIds(imgIds=img_id)):
            x, y, w, h = ann["bbox"]
            box = [x, y, w, h] if img_id % 2 == 0 else [x + 2 * w, y + 2 * h, w, h]
            results.append({"image_id": img_id, "category_id": ann["category_id"], "bbox": box,
                            "score": 1.0})
    even = [i for i in val.ids if i % 2 == 0]
    odd = [i for i in val.ids if i % 2 == 1]
    assert detection_metrics(val, results, even)["AP"] == pytest.approx(100.0)
    assert detection_metrics(val, results, odd)["AP"] == pytest.approx(0.0)


def test_heads_coloured_by_class_keep_the_layout():
    """head_colour="class" paints each class's head in its own hue and changes nothing else:
    the same boxes, the same pixels off the heads."""
    random = ShapesSpec(**{**SPEC.__dict__, "head_colour": "random"})
    coloured = ShapesSpec(**{**SPEC.__dict__, "head_colour": "class"})
    a, anns_a = render_image(random, "train", 1)
    b, anns_b = render_image(coloured, "train", 1)
    assert anns_a == anns_b and anns_a
    changed = np.abs(a.astype(int) - b.astype(int)).sum(-1) > 0
    assert 0 < changed.mean() < 0.2
    with pytest.raises(ValueError, match="head_colour"):
        ShapesSpec(head_colour="blue")


def test_generate_skips_an_identical_set_and_rewrites_a_changed_one(tmp_path):
    root = generate(SPEC, tmp_path / "set")
    png = root / "train" / "000000.png"
    before = png.stat().st_mtime_ns
    generate(SPEC, root)
    assert png.stat().st_mtime_ns == before
    generate(ShapesSpec(**{**SPEC.__dict__, "seed": 5}), root)
    assert json.loads((root / "spec.json").read_text())["seed"] == 5


def _write_coco(tmp_path, annotations, categories, n_images=3):
    (tmp_path / "img").mkdir()
    images = []
    for i in range(n_images):
        Image.fromarray(np.full((40, 50, 3), 30 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": 50, "height": 40})
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return Split(tmp_path / "img", path)


def test_crowd_empty_images_and_noncontiguous_categories(tmp_path):
    cats = [{"id": 7, "name": "a"}, {"id": 3, "name": "b"}, {"id": 90, "name": "c"}]
    anns = [
        {"id": 1, "image_id": 10, "category_id": 90, "bbox": [5, 5, 10, 20], "area": 200,
         "iscrowd": 0},
        {"id": 2, "image_id": 10, "category_id": 7, "bbox": [0, 0, 30, 30], "area": 900,
         "iscrowd": 1},
        {"id": 3, "image_id": 11, "category_id": 3, "bbox": [1, 1, 0, 5], "area": 0,
         "iscrowd": 0},
        {"id": 4, "image_id": 11, "category_id": 3, "bbox": [40, 30, 20, 20], "area": 400,
         "iscrowd": 0},
    ]
    split = _write_coco(tmp_path, anns, cats)
    with pytest.warns(UserWarning, match=r"skipped 1 annotation.*ids \[3\]"):
        train = CocoDetection(split, train=True)
        val = CocoDetection(split, train=False)
    # Category ids 3, 7, 90 become labels 0, 1, 2.
    assert train.category_ids == [3, 7, 90] and train.num_classes == 3
    # Image 12 has no annotation: skipped in training, kept for evaluation.
    assert [train.ids, val.ids] == [[10, 11], [10, 11, 12]]
    _, t = val[0]
    # The crowd box is not a training target; the box is converted to x0, y0, x1, y1.
    assert t["labels"].tolist() == [2] and t["boxes"].tolist() == [[5, 5, 15, 25]]
    # The zero-width box was dropped; the box crossing the border is clipped to the image.
    _, t = val[1]
    assert t["boxes"].tolist() == [[40, 30, 50, 40]] and t["labels"].tolist() == [0]
    _, t = val[2]
    assert t["boxes"].shape == (0, 4)


def _unflipped(train: CocoDetection) -> CocoDetection:
    plain = CocoDetection(train.split, train=False)
    plain.ids = train.ids
    return plain


def test_flip_is_a_function_of_seed_epoch_and_image(smoke_sets):
    train, _ = smoke_sets
    plain = _unflipped(train)

    def flipped() -> list[bool]:
        return [not torch.equal(train[i][0], plain[i][0]) for i in range(len(train))]

    flips = []
    for epoch in range(4):
        train.set_epoch(epoch)
        flips.append(flipped())
    train.set_epoch(0)
    assert flipped() == flips[0]
    assert any(any(f) for f in flips) and not all(all(f) for f in flips)


def test_flip_moves_boxes_with_the_image(smoke_sets):
    train, _ = smoke_sets
    plain = _unflipped(train)
    for epoch in range(6):
        train.set_epoch(epoch)
        image, target = train[0]
        ref_image, ref = plain[0]
        if torch.equal(image, ref_image.flip(-1)):
            w = image.shape[-1]
            expected = torch.stack([w - ref["boxes"][:, 2], ref["boxes"][:, 1],
                                    w - ref["boxes"][:, 0], ref["boxes"][:, 3]], 1)
            assert torch.equal(target["boxes"], expected)
            return
    pytest.fail("image 0 was never flipped in six epochs")


def test_collate_keeps_lists(smoke_sets):
    train, _ = smoke_sets
    images, targets = collate([train[0], train[1]])
    assert isinstance(images, list) and len(images) == 2 and len(targets) == 2
