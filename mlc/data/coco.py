"""A COCO-format detection set read through pycocotools, with the detectors' training transforms.

It reads COCO 2017 as downloaded (`data/coco/annotations/instances_train2017.json`,
`data/coco/train2017/`) and the generated sets alike. As COCO training code does, crowd
boxes and degenerate boxes are dropped from the training targets (the evaluator still sees
them), images left without a box are skipped in training, and category ids, which need not
be contiguous, map to labels 0..K-1.
"""

from __future__ import annotations

import contextlib
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from mlc.data.validate import DataError, read_annotations


@dataclass(frozen=True)
class Split:
    """Where one split of a COCO-format set lies."""

    images: Path
    annotations: Path


def load_coco(annotations: Path) -> COCO:
    """A pycocotools COCO of a checked annotation file (see `read_annotations`)."""
    coco = COCO()
    coco.dataset = read_annotations(annotations)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


class CocoDetection(torch.utils.data.Dataset):
    """Images as float tensors in [0, 1] and targets {boxes (x0, y0, x1, y1), labels, image_id}.

    `train=True` drops images without a usable box and flips half the images horizontally;
    which ones is a function of (seed, epoch, index), so runs are repeatable with any number of
    loader workers and processes. Call `set_epoch` before each epoch.
    """

    def __init__(self, split: Split, train: bool, seed: int = 0, flip_prob: float = 0.5) -> None:
        self.split = split
        self.coco = load_coco(split.annotations)
        self.train = train
        self.seed = seed
        self.flip_prob = flip_prob if train else 0.0
        self.epoch = 0
        self.category_ids = sorted(self.coco.getCatIds())
        self.label_of = {cid: i for i, cid in enumerate(self.category_ids)}
        ids = sorted(self.coco.getImgIds())
        if train:
            ids = [i for i in ids if len(self._annotations(i)) > 0]
        self.ids = ids

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _annotations(self, image_id: int) -> list[dict]:
        """The image's non-crowd annotations (unusable boxes were dropped on loading)."""
        return self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False))

    def _read_image(self, image_id: int) -> torch.Tensor:
        """The image as a uint8 (H, W, 3) tensor, or a DataError naming the file and image id."""
        path = self.split.images / self.coco.loadImgs(image_id)[0]["file_name"]
        where = f"image id {image_id} of {self.split.annotations}"
        try:
            with Image.open(path) as im:
                return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
        except FileNotFoundError:
            raise DataError(f"{path}: image file missing ({where})") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise DataError(f"{path}: not a readable image ({where}): {err}") from None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image_id = self.ids[index]
        image = self._read_image(image_id)
        image = image.permute(2, 0, 1).float().div_(255)
        height, width = image.shape[-2:]

        anns = self._annotations(image_id)
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(0, width)
        boxes[:, 1::2].clamp_(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        labels = torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        target = {"boxes": boxes[keep], "labels": labels[keep], "image_id": image_id}

        if self.flip_prob and random.Random(f"{self.seed}-{self.epoch}-{image_id}").random() \
                < self.flip_prob:
            image = image.flip(-1)
            b = target["boxes"]
            target["boxes"] = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], 1)
        return image, target


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Keep images of different sizes as a list, as torchvision's detectors take them."""
    images, targets = zip(*batch)
    return list(images), list(targets)
