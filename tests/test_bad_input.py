"""Bad data and bad config: each stops with the file, record and problem named, or is skipped and
counted where COCO training code skips it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mlc.config import ConfigError, make_config
from mlc.data.coco import CocoDetection, Split
from mlc.data.validate import DataError, read_annotations

IMAGE = {"id": 1, "file_name": "a.png", "width": 40, "height": 30}
CATS = [{"id": 5, "name": "thing"}]


def _ann(ann_id, bbox, category_id=5, image_id=1):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": 1.0, "iscrowd": 0}


def _write(tmp_path, data, text=None):
    path = tmp_path / "ann.json"
    path.write_text(text if text is not None else json.dumps(data))
    return path


def test_json_that_does_not_parse(tmp_path):
    path = _write(tmp_path, None, text='{"images": [')
    with pytest.raises(DataError, match=rf"{path}: not valid JSON \(.*line 1"):
        read_annotations(path)


@pytest.mark.parametrize("data, problem", [
    ({"annotations": [], "categories": CATS}, "no 'images' list"),
    ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [], "categories": CATS},
     r"images\[0\] \(id 1\) lacks \['width', 'height'\]"),
    ({"images": [IMAGE], "annotations": [{"id": 7, "image_id": 1, "category_id": 5}],
      "categories": CATS}, r"annotations\[0\] \(id 7\) lacks \['bbox'\]"),
    ({"images": [], "annotations": [], "categories": CATS}, "the image list is empty"),
    ({"images": [IMAGE], "annotations": [_ann(3, [1, 1, 5, 5], category_id=9)],
      "categories": CATS}, r"annotation 3 has category_id 9, which is not in 'categories' \(\[5\]\)"),
    ({"images": [IMAGE], "annotations": [_ann(4, [1, 1, 5, 5], image_id=2)],
      "categories": CATS}, "annotation 4 refers to image 2"),
    ({"images": [IMAGE], "annotations": [_ann(6, [1, 1, 5])], "categories": CATS},
     r"annotation 6 has bbox \[1, 1, 5\]"),
])
def test_missing_keys_unknown_ids_and_empty_lists(tmp_path, data, problem):
    path = _write(tmp_path, data)
    with pytest.raises(DataError, match=problem) as err:
        read_annotations(path)
    assert str(path) in str(err.value)


def test_unusable_boxes_are_skipped_and_counted(tmp_path):
    anns = [_ann(1, [2, 2, 10, 10]), _ann(2, [2, 2, 0, 10]), _ann(3, [2, 2, 10, -1]),
            _ann(4, [float("nan"), 2, 10, 10]), _ann(5, [50, 50, 10, 10]),
            _ann(6, [35, 25, 10, 10])]
    path = _write(tmp_path, {"images": [IMAGE], "annotations": anns, "categories": CATS})
    with pytest.warns(UserWarning, match=r"skipped 4 annotation\(s\).*ids \[2, 3, 4, 5\]"):
        data = read_annotations(path)
    # The box that crosses the border is kept (and clipped when read).
    assert [a["id"] for a in data["annotations"]] == [1, 6]


def _image_set(tmp_path, write_image):
    (tmp_path / "img").mkdir()
    write_image(tmp_path / "img" / "a.png")
    path = _write(tmp_path, {"images": [IMAGE], "annotations": [_ann(1, [2, 2, 10, 10])],
                             "categories": CATS})
    return CocoDetection(Split(tmp_path / "img", path), train=False)


def _truncated(path):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:60])


@pytest.mark.parametrize("write_image, problem", [
    (lambda p: None, "image file missing"),
    (_truncated, "not a readable image"),
    (lambda p: p.write_text("not a png"), "not a readable image"),
])
def test_missing_truncated_or_non_image_files(tmp_path, write_image, problem):
    dataset = _image_set(tmp_path, write_image)
    with pytest.raises(DataError, match=problem) as err:
        dataset[0]
    message = str(err.value)
    assert str(tmp_path / "img" / "a.png") in message and "image id 1" in message


def test_cli_shows_the_data_error_without_a_traceback(tmp_path):
    bad = tmp_path / "data" / "smoke"
    (bad / "annotations").mkdir(parents=True)
    (bad / "annotations" / "instances_train.json").write_text("{oops")
    env = {**os.environ, "MLC_DATA": str(tmp_path / "data"), "MLC_RUNS": str(tmp_path / "runs"),
           "MLC_RESULTS": str(tmp_path / "results")}
    # A set without its spec stamp is regenerated; make the stamp match so the bad file stays.
    from dataclasses import asdict

    from mlc.config import SCALES

    (bad / "spec.json").write_text(json.dumps(asdict(SCALES["smoke"].shapes)))
    res = subprocess.run([sys.executable, "-m", "mlc", "train", "--detector", "fcos", "--scale",
                          "smoke", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "instances_train.json: not valid JSON" in res.stderr


@pytest.mark.parametrize("kwargs, allowed", [
    ({"detector": "yolo"}, "allowed: fcos, fcos_minus, retinanet, rpn"),
    ({"detector": "fcos", "scale": "voc"}, "allowed: coco, shapes, shapes-600, shapes-v1, smoke"),
    ({"detector": "fcos", "schedule": "3x"}, "allowed: ablation, final, smoke"),
])
def test_unknown_names_list_what_is_allowed(kwargs, allowed):
    with pytest.raises(ConfigError, match=allowed):
        make_config(**kwargs)


def _refused_coco_run(tmp_path, monkeypatch, weights_lookup) -> str:
    """The message a coco run at FCOS− stops with, ImageNet weights looked up by
    `weights_lookup`, torch's cache in tmp_path; no run folder may be left."""
    from torchvision.models._api import WeightsEnum

    from mlc.runs import get_or_train

    monkeypatch.setattr(WeightsEnum, "get_state_dict", weights_lookup)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError) as err:
        get_or_train(make_config("fcos_minus", "coco"), runs_root=tmp_path / "runs",
                     data_root=tmp_path / "data", results_root=tmp_path / "results")
    assert not (tmp_path / "runs").exists()
    message = str(err.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "--set pretrained=false" in message
    return message


def test_coco_names_everything_missing_before_any_download(tmp_path, monkeypatch):
    """Neither COCO nor the ImageNet weights here: one message names both, and no 100 MB
    download is tried for a run that could not start anyway."""
    def never(self, *args, **kwargs):
        raise AssertionError("a download was tried before the data set was checked")

    message = _refused_coco_run(tmp_path, monkeypatch, never)
    assert str(tmp_path / "data" / "coco" / "annotations" / "instances_train2017.json") in message
    assert str(tmp_path / "data" / "coco" / "val2017") in message


def test_coco_without_imagenet_weights_is_refused_before_any_work(tmp_path, monkeypatch):
    """No silent random init at coco scale: with the data set in place, a run that cannot load
    the ImageNet weights says where to put them, or how to choose random init on purpose."""
    def offline(self, *args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    coco = tmp_path / "data" / "coco"
    for split in ("train", "val"):
        (coco / f"{split}2017").mkdir(parents=True)
        (coco / "annotations").mkdir(exist_ok=True)
        (coco / "annotations" / f"instances_{split}2017.json").write_text("{}")
    message = _refused_coco_run(tmp_path, monkeypatch, offline)
    assert "ImageNet weights of ResNet-50 could not be loaded" in message and "name resolution" in message


def test_coco_with_random_init_chosen_on_purpose_is_not_refused(monkeypatch):
    from torchvision.models._api import WeightsEnum

    from mlc.runs import require_imagenet_weights

    def never(self, *args, **kwargs):
        raise AssertionError("weights looked up for a run that does not use them")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", never)
    require_imagenet_weights(make_config("fcos_minus", "coco", pretrained=False))
    require_imagenet_weights(make_config("fcos_minus", "shapes"))


def test_smoke_records_and_generated_files_stay_out_of_git_status():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if subprocess.run(["git", "rev-parse"], cwd=root, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    made = ["results/smoke/fcos-00000000.json", "results/smoke/figures/fcos-00000000.json",
            "runs/smoke/fcos-00000000/log.jsonl", "data/smoke/spec.json", "book/intro.ipynb"]
    res = subprocess.run(["git", "check-ignore", "--no-index", *made], cwd=root,
                         capture_output=True, text=True)
    assert res.stdout.split() == made
    kept = subprocess.run(["git", "check-ignore", "--no-index", "results/shapes/fcos-00000000.json"],
                          cwd=root, capture_output=True, text=True)
    assert kept.returncode == 1  # shapes records are committed
