"""Data sets by scale: the generated `smoke` and `shapes` sets, or COCO 2017 under data/coco."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mlc.config import SCALES
from mlc.data.coco import CocoDetection, Split
from mlc.data.shapes import ShapesSpec, generate

COCO_HELP = ("COCO 2017 is expected as downloaded from https://cocodataset.org: unzip "
             "train2017.zip, val2017.zip and annotations_trainval2017.zip into {root}, giving "
             "{root}/train2017/, {root}/val2017/ and {root}/annotations/instances_*2017.json")


def data_source(scale: str, head_offset: float | None = None) -> tuple[str, ShapesSpec | None]:
    """The folder under the data root and the generator spec of a scale's data; `head_offset`
    moves the class-defining head of a generated set (its own folder, e.g. shapes-head0.9)."""
    sc = SCALES[scale]
    if head_offset is None or sc.shapes is None or head_offset == sc.shapes.head_offset:
        return sc.data, sc.shapes
    return f"{sc.data}-head{head_offset:g}", replace(sc.shapes, head_offset=head_offset)


def splits(scale: str, data_root: Path, head_offset: float | None = None) -> tuple[Split, Split]:
    """Train and val splits of a scale's data, generating a synthetic set if it is missing."""
    name, spec = data_source(scale, head_offset)
    root = Path(data_root) / name
    if spec is not None:
        generate(spec, root)
        return tuple(Split(root / s, root / "annotations" / f"instances_{s}.json")
                     for s in ("train", "val"))
    out = tuple(Split(root / f"{s}2017", root / "annotations" / f"instances_{s}2017.json")
                for s in ("train", "val"))
    for split in out:
        if not split.annotations.exists() or not split.images.is_dir():
            raise FileNotFoundError(f"{split.annotations} or {split.images} is missing. "
                                    + COCO_HELP.format(root=root))
    return out


def datasets(scale: str, data_root: Path, seed: int,
             head_offset: float | None = None) -> tuple[CocoDetection, CocoDetection]:
    """Training set (with flips, images without boxes skipped) and validation set."""
    train, val = splits(scale, data_root, head_offset)
    return CocoDetection(train, train=True, seed=seed), CocoDetection(val, train=False)
